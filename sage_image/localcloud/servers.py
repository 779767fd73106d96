"""Start and stop one real Glance or Keystone server: config files, database, gunicorn process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import SageImageError
from ..runner import run
from ..waiting import poll_until

BIN = Path(sys.executable).parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class LocalCloudError(SageImageError):
    """A local Glance/Keystone server could not be started."""


@dataclass(frozen=True)
class Server:
    """A running server process; `pid` leads its own process group."""

    name: str
    kind: str  # "glance", "keystone" or "swift"
    url: str
    pid: int
    root: Path

    @property
    def ready_url(self) -> str:
        """Answers 200 (Swift's healthcheck) or 300 (the version documents) once it serves."""
        return self.url + ("/healthcheck" if self.kind == "swift" else "/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn_argv(app: str, port: int) -> list[str]:
    # --no-control-socket: otherwise every gunicorn on the machine shares ~/.gunicorn/gunicorn.ctl.
    # One gthread worker: oslo.config is process-global and SQLite serialises writes anyway.
    return [str(BIN / "python"), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--worker-class", "gthread", "--threads", "8",
            "--timeout", "600", "--graceful-timeout", "5", "--no-control-socket", app]


def start_process(*, name: str, kind: str, root: Path, argv: list[str], port: int,
                  env: dict[str, str]) -> Server:
    log = (root / "server.log").open("ab")
    try:
        # Not runner.py: long-lived servers, stopped by `localcloud down`. Own session: Ctrl-C
        # at the terminal of `localcloud up` must not stop the sites later.
        proc = subprocess.Popen(argv, cwd=root, env={**os.environ, **env},
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()
    return Server(name=name, kind=kind, url=f"http://127.0.0.1:{port}", pid=proc.pid, root=root)


def wait_ready(server: Server, *, deadline: float) -> None:
    """Poll the server's version document until it answers; fail with its log tail."""
    if not poll_until(lambda: _answers(server), timeout=deadline - time.monotonic()):
        _not_started(server)


def _answers(server: Server) -> bool:
    if not pid_alive(server.pid):
        _not_started(server)
    try:
        with urllib.request.urlopen(server.ready_url, timeout=2):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code in (200, 300)  # both servers answer / with "multiple choices"
    except OSError:
        return False


def _not_started(server: Server) -> NoReturn:
    tail = log_tail(server.root / "server.log")
    raise LocalCloudError(f"local {server.kind} '{server.name}' did not start on {server.url}",
                          hint=f"its log ({server.root / 'server.log'}) ends with: {tail}")


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process(pid: int, *, root: Path) -> None:
    """SIGINT the server's process group (gunicorn stops in <1 s; SIGTERM takes 2.5 s),
    SIGKILL whatever lingers. Checks the pid still runs from `root` before signalling."""
    if not _runs_from(pid, root):
        return
    for sig, grace in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        if poll_until(lambda: not pid_alive(pid), timeout=grace, interval=0.05):
            return


def _runs_from(pid: int, root: Path) -> bool:
    """Whether `pid` is the server started from `root`: it runs there, or (Swift's servers
    chdir to / as they start) its command line names its config file there. A pid from a stale
    state file may belong to another process by now: never signal that."""
    folder = str(root.resolve())
    try:
        if os.readlink(f"/proc/{pid}/cwd") == folder:
            return True
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.decode(errors="replace").startswith(folder + "/") for arg in argv)


# -- Glance ---------------------------------------------------------------------------------

GLANCE_PASTE = """\
[pipeline:glance-api]
pipeline = http_proxy_to_wsgi versionnegotiation {context} rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory

[filter:localadmin]
paste.filter_factory = sage_image.localcloud.glance_app:context_filter_factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
"""


@dataclass(frozen=True)
class KeystoneAuth:
    """How a Keystone-backed Glance checks tokens (its service user is Keystone's admin)."""

    url: str
    username: str
    password: str


def write_glance_config(root: Path, *, keystone: KeystoneAuth | None) -> Path:
    for sub in ("images", "staging", "tasks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    context = "authtoken context" if keystone else "localadmin"
    (root / "glance-api-paste.ini").write_text(GLANCE_PASTE.format(context=context))
    conf = textwrap.dedent(f"""\
        [DEFAULT]
        enabled_backends = fs:file
        # A bare comma list here gives HTTP 500 at request time: it must be a bracketed list.
        enabled_import_methods = [glance-direct,web-download,copy-image]
        show_image_direct_url = false
        [database]
        connection = sqlite:///{root / 'glance.sqlite'}
        [glance_store]
        default_backend = fs
        [fs]
        filesystem_store_datadir = {root / 'images'}
        [os_glance_staging_store]
        filesystem_store_datadir = {root / 'staging'}
        [os_glance_tasks_store]
        filesystem_store_datadir = {root / 'tasks'}
        [paste_deploy]
        config_file = {root / 'glance-api-paste.ini'}
        [oslo_concurrency]
        lock_path = {root / 'locks'}
        """)
    if keystone:
        conf += textwrap.dedent(f"""\
            [keystone_authtoken]
            www_authenticate_uri = {keystone.url}/v3
            auth_url = {keystone.url}/v3
            auth_type = password
            username = {keystone.username}
            password = {keystone.password}
            project_name = admin
            user_domain_name = Default
            project_domain_name = Default
            """)
    path = root / "glance-api.conf"
    path.write_text(conf)
    path.chmod(0o600)
    return path


def sync_glance_db(root: Path, *, template: Path | None) -> None:
    """Create the site's database; copying an already migrated one saves ~1 s per site."""
    db = root / "glance.sqlite"
    if template is not None and template.exists():
        shutil.copyfile(template, db)
        return
    run([BIN / "glance-manage", "--config-file", root / "glance-api.conf", "db_sync"],
        timeout=120)


def start_glance(name: str, root: Path, *, keystone: KeystoneAuth | None = None,
                 db_template: Path | None = None) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    write_glance_config(root, keystone=keystone)
    sync_glance_db(root, template=db_template)
    port = free_port()
    return start_process(name=name, kind="glance", root=root, port=port,
                         argv=gunicorn_argv("sage_image.localcloud.glance_app:application", port),
                         env={"OS_GLANCE_CONFIG_DIR": str(root)})


# -- Keystone -------------------------------------------------------------------------------

def write_keystone_config(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "keystone.conf"
    path.write_text(textwrap.dedent(f"""\
        [database]
        connection = sqlite:///{root / 'keystone.sqlite'}
        [identity]
        # bcrypt's default 12 rounds cost ~0.3 s per password check on this machine; a local
        # test site needs no brute-force resistance.
        password_hash_rounds = 4
        [token]
        provider = fernet
        [fernet_tokens]
        key_repository = {root / 'fernet-keys'}
        [fernet_receipts]
        key_repository = {root / 'fernet-receipts'}
        [credential]
        key_repository = {root / 'credential-keys'}
        """))
    return path


def start_keystone(root: Path, *, port: int, admin_password: str) -> Server:
    conf = write_keystone_config(root)
    url = f"http://127.0.0.1:{port}"
    manage = [BIN / "keystone-manage", "--config-file", conf]
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    # Each keystone-manage run spends ~3 s importing Keystone; the three set-up steps are
    # independent, so they run together.
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda argv: run(argv, timeout=300),
                      ([*manage, "db_sync"], [*manage, "fernet_setup", *user],
                       [*manage, "credential_setup", *user])))
    # The password goes through the environment, not argv (argv is visible in `ps`).
    run([*manage, "bootstrap", "--bootstrap-admin-url", f"{url}/v3",
         "--bootstrap-public-url", f"{url}/v3", "--bootstrap-internal-url", f"{url}/v3",
         "--bootstrap-region-id", "RegionOne"],
        env={**os.environ, "OS_BOOTSTRAP_PASSWORD": admin_password}, timeout=120)
    return start_process(name="keystone", kind="keystone", root=root, port=port,
                         argv=gunicorn_argv("sage_image.localcloud.keystone_app:application",
                                            port),
                         env={"OS_KEYSTONE_CONFIG_DIR": str(root)})
