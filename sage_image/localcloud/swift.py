"""A real OpenStack Swift for the local sites: one store, a proxy per way of reaching it.

Swift from PyPI (the `swift` package, in the same virtualenv as Glance and Keystone): measured
here against Debian 12's swift 2.30.1 packages it is ready in about 3 s instead of 9-12 s, needs
no /etc/swift/swift.conf (2.30.1 reads that path before its `swift_dir` setting) and installs no
system services. Three storage servers (account, container, object; one device, one replica)
serve every proxy. Sites are kept apart by account, as separate stores would be: a site without
Keystone has the account `AUTH_<cloud>` (its proxy checks nobody); a site behind Keystone has
its own proxy with Keystone auth and its own reseller prefix, so its project's account is not
another site's. Every process runs from its own folder (its config and server.log): `localcloud
down` stops what runs from there, as for Glance.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..runner import run
from .servers import BIN, KeystoneAuth, LocalCloudError, Server, free_port, start_process

STORAGE = ("account", "container", "object")
LOG_HOOK = "sage_image.localcloud.swift_app.log_to_stderr"


@dataclass(frozen=True)
class ProxySpec:
    name: str  # the server's name: swift-proxy, swift-proxy-<cloud>
    keystone: KeystoneAuth | None = None
    reseller_prefix: str = "AUTH_"


def reseller_prefix(cloud: str) -> str:
    """A Keystone site's account prefix: chi-tacc -> CHITACC_ (Swift accounts are
    <prefix><project id>)."""
    return re.sub(r"[^A-Za-z0-9]", "", cloud).upper() + "_"


def check_xattrs(folder: Path) -> None:
    """Swift keeps object metadata in extended attributes (user.swift.metadata): refuse a
    folder whose file system has none before starting anything."""
    probe = folder / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.sage-image-probe", b"1")
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise
        raise LocalCloudError(f"{folder}: its file system has no user extended attributes, "
                              "which Swift keeps object metadata in",
                              hint="use a --dir on ext4, xfs or btrfs (tmpfs has them from "
                                   "Linux 6.6 on)") from exc
    finally:
        probe.unlink()


def start_swift(root: Path, proxies: list[ProxySpec], servers: list[Server]) -> None:
    """Start the storage servers and `proxies`, appending each to `servers` as it starts (so
    that a failure stops every one started); wait_ready is the caller's."""
    etc, data = root / "etc", root / "data"
    (data / "d1").mkdir(parents=True, exist_ok=True)
    check_xattrs(data)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "swift.conf").write_text(textwrap.dedent(f"""\
        [swift-hash]
        swift_hash_path_suffix = {secrets.token_hex(16)}
        [storage-policy:0]
        name = Policy-0
        default = yes
        """))
    ports = {kind: free_port() for kind in STORAGE}
    run([BIN / "python", "-m", "sage_image.localcloud.swift_app", etc,
         *(f"{kind}={port}" for kind, port in ports.items())], timeout=120)
    for kind, port in ports.items():
        conf = _common(etc, port) + textwrap.dedent(f"""\
            devices = {data}
            mount_check = false
            [pipeline:main]
            pipeline = healthcheck {kind}-server
            [app:{kind}-server]
            use = egg:swift#{kind}
            [filter:healthcheck]
            use = egg:swift#healthcheck
            """)
        servers.append(_start(root, f"swift-{kind}", conf, port))
    for proxy in proxies:
        port = free_port()
        servers.append(_start(root, proxy.name, _proxy_conf(etc, port, proxy), port))


def _common(etc: Path, port: int) -> str:
    # workers = 0: one process (no forked workers), so its pid is the server.
    return textwrap.dedent(f"""\
        [DEFAULT]
        bind_ip = 127.0.0.1
        bind_port = {port}
        workers = 0
        swift_dir = {etc}
        log_custom_handlers = {LOG_HOOK}
        """)


def _proxy_conf(etc: Path, port: int, proxy: ProxySpec) -> str:
    auth = "authtoken keystoneauth " if proxy.keystone else ""
    conf = _common(etc, port) + textwrap.dedent(f"""\
        [pipeline:main]
        pipeline = catch_errors healthcheck proxy-logging {auth}proxy-server
        [app:proxy-server]
        use = egg:swift#proxy
        account_autocreate = true
        [filter:catch_errors]
        use = egg:swift#catch_errors
        [filter:healthcheck]
        use = egg:swift#healthcheck
        [filter:proxy-logging]
        use = egg:swift#proxy_logging
        """)
    if proxy.keystone:
        k = proxy.keystone
        conf += textwrap.dedent(f"""\
            [filter:authtoken]
            paste.filter_factory = keystonemiddleware.auth_token:filter_factory
            delay_auth_decision = true
            www_authenticate_uri = {k.url}/v3
            auth_url = {k.url}/v3
            auth_type = password
            username = {k.username}
            password = {k.password}
            project_name = admin
            user_domain_name = Default
            project_domain_name = Default
            [filter:keystoneauth]
            use = egg:swift#keystoneauth
            operator_roles = admin, member
            reseller_prefix = {proxy.reseller_prefix}
            """)
    return conf


def _start(root: Path, name: str, conf: str, port: int) -> Server:
    folder = root / name.removeprefix("swift-")  # account ... proxy, proxy-<cloud>
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "server.conf"
    path.write_text(conf)
    path.chmod(0o600)  # a Keystone proxy's holds the service password
    binary = "proxy" if name.startswith("swift-proxy") else name.removeprefix("swift-")
    return start_process(name=name, kind="swift", root=folder, port=port,
                         argv=[str(BIN / "python"), str(BIN / f"swift-{binary}-server"), str(path)],
                         env={})
