"""A set of local sites: start them together, describe them in a clouds.yaml, stop them.

State lives in DIR/localcloud.json (pids, URLs) so `down` works from another process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..folders import make_folder
from .servers import (
    READY_TIMEOUT,
    KeystoneAuth,
    LocalCloudError,
    Server,
    free_port,
    start_glance,
    start_keystone,
    stop_process,
    sync_glance_db,
    wait_ready,
    write_glance_config,
)
from .swift import ProxySpec, reseller_prefix, start_swift

STATE_FILE = "localcloud.json"
CLOUDS_FILE = "clouds.yaml"
# The sites the README demo publishes to: the clouds.yaml names the shipped catalog uses.
DEMO_CLOUDS = ("chi-uc", "chi-tacc", "kvm-tacc")
PUBLISHER = "sage-publisher"
SWIFT_PROXY = "swift-proxy"


@dataclass(frozen=True)
class SiteSpec:
    cloud: str
    keystone: bool = False  # behind a real Keystone, reached with an application credential


@dataclass
class LocalCloud:
    root: Path
    servers: list[Server] = field(default_factory=list)
    clouds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def clouds_yaml(self) -> Path:
        return self.root / CLOUDS_FILE

    def url(self, name: str) -> str:
        """The URL of the server called `name`: a site's cloud name is its Glance."""
        return next(s.url for s in self.servers if s.name == name)

    def server(self, cloud: str) -> Server:
        return next(s for s in self.servers if s.name == cloud)

    def stop(self) -> None:
        stop_servers(self.root, self.servers)


def start_cloud(root: Path, sites: Sequence[SiteSpec]) -> LocalCloud:
    """Start every site, their object store (Swift) and one Keystone if a site needs it, all at
    once; on any failure stop everything that started."""
    needs_keystone = any(s.keystone for s in sites)
    _check_installed(("glance", "gunicorn", "swift") + (("keystone",) if needs_keystone else ()))
    root = root.resolve()
    make_folder(root, option="--dir")
    if (root / STATE_FILE).exists():
        raise LocalCloudError(f"{root} already has running local sites",
                              hint=f"run 'sage-image localcloud down --dir {root}' first")
    cloud = LocalCloud(root=root)
    keystone = (KeystoneAuth(url=f"http://127.0.0.1:{free_port()}", username="admin",
                             password=secrets.token_urlsafe(18)) if needs_keystone else None)
    try:
        # Keystone's set-up takes ~10 s, Swift's ~3 s: the Glance sites start meanwhile.
        steps = [lambda: _start_swift(cloud, sites, keystone),
                 lambda: _start_glance_sites(cloud, sites, keystone)]
        if keystone is not None:
            steps.append(lambda: _start_keystone(cloud, keystone))
        _run_together(steps)
        _plain_clouds(cloud, sites)
        if keystone is not None:
            _register_keystone_sites(cloud, sites, keystone)
        _write_files(cloud)
    except BaseException:
        stop_servers(root, cloud.servers)
        raise
    return cloud


def _run_together(steps: Sequence[Callable[[], None]]) -> None:
    """Run the steps in parallel; once every one has ended (also on Ctrl-C: what a step is
    starting must be in cloud.servers before they are stopped), raise the first failure."""
    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        futures = [pool.submit(step) for step in steps]
        try:
            wait(futures)
        except KeyboardInterrupt:
            wait(futures)
            raise
    for future in futures:
        future.result()


def _check_installed(modules: Sequence[str]) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"local sites need {', '.join(missing)}, which are not installed",
                         hint="scripts/setup --test (or: pip install -e '.[test]')")


def _start_swift(cloud: LocalCloud, sites: Sequence[SiteSpec],
                 keystone: KeystoneAuth | None) -> None:
    proxies = [ProxySpec(SWIFT_PROXY)] if any(not s.keystone for s in sites) else []
    proxies += [ProxySpec(f"{SWIFT_PROXY}-{s.cloud}", keystone, reseller_prefix(s.cloud))
                for s in sites if s.keystone]
    start_swift(cloud.root / "swift", proxies, cloud.servers)
    deadline = time.monotonic() + READY_TIMEOUT
    swifts = [s for s in cloud.servers if s.kind == "swift"]
    with ThreadPoolExecutor(max_workers=len(swifts)) as pool:
        list(pool.map(lambda s: wait_ready(s, deadline=deadline), swifts))


def _start_keystone(cloud: LocalCloud, keystone: KeystoneAuth) -> None:
    port = int(keystone.url.rsplit(":", 1)[1])
    server = start_keystone(cloud.root / "keystone", port=port, admin_password=keystone.password)
    cloud.servers.append(server)
    wait_ready(server, deadline=time.monotonic() + READY_TIMEOUT)


def _start_glance_sites(cloud: LocalCloud, sites: Sequence[SiteSpec],
                        keystone: KeystoneAuth | None) -> None:
    # Migrate one database and copy it to every site: db_sync takes ~1 s per site.
    template = cloud.root / ".glance-template"
    write_glance_config(template, keystone=None)
    sync_glance_db(template, template=None)
    try:
        for spec in sites:
            server = start_glance(spec.cloud, cloud.root / spec.cloud,
                                  keystone=keystone if spec.keystone else None,
                                  db_template=template / "glance.sqlite")
            cloud.servers.append(server)
    finally:
        shutil.rmtree(template, ignore_errors=True)
    deadline = time.monotonic() + READY_TIMEOUT
    glances = [s for s in cloud.servers if s.kind == "glance"]
    with ThreadPoolExecutor(max_workers=len(glances) or 1) as pool:
        list(pool.map(lambda s: wait_ready(s, deadline=deadline), glances))


def _plain_clouds(cloud: LocalCloud, sites: Sequence[SiteSpec]) -> None:
    for spec in (s for s in sites if not s.keystone):
        url = cloud.url(spec.cloud)
        # auth_type none needs the endpoint twice: for the session and for the image proxy;
        # the site's object store is its own account in the shared Swift.
        cloud.clouds[spec.cloud] = {
            "auth_type": "none", "auth": {"endpoint": url}, "image_endpoint_override": url,
            "object_store_endpoint_override": f"{cloud.url(SWIFT_PROXY)}/v1/AUTH_{spec.cloud}"}


def _register_keystone_sites(cloud: LocalCloud, sites: Sequence[SiteSpec],
                             keystone: KeystoneAuth) -> None:
    """A project, a member user, an image endpoint per site (one region per site) and an
    application credential: what a Chameleon user gets."""
    import openstack

    admin = openstack.connect(auth_url=f"{keystone.url}/v3", username=keystone.username,
                              password=keystone.password, project_name="admin",
                              user_domain_name="Default", project_domain_name="Default",
                              region_name="RegionOne")
    project = admin.identity.create_project(name="sage", domain_id="default")
    password = secrets.token_urlsafe(18)
    user = admin.identity.create_user(name=PUBLISHER, password=password, domain_id="default",
                                      default_project_id=project.id)
    # ignore_missing=False: the SDK's current call (True is deprecated; Keystone's bootstrap
    # always makes "member", so a missing role is an error, raised as ResourceNotFound)
    member = admin.identity.find_role("member", ignore_missing=False)
    admin.identity.assign_project_role_to_user(project, user, member)
    image = admin.identity.create_service(name="glance", type="image")
    swift = admin.identity.create_service(name="swift", type="object-store")
    for spec in (s for s in sites if s.keystone):
        admin.identity.create_region(id=spec.cloud)
        store = (f"{cloud.url(f'{SWIFT_PROXY}-{spec.cloud}')}/v1/"
                 f"{reseller_prefix(spec.cloud)}%(project_id)s")
        for service, url in ((image, cloud.url(spec.cloud)), (swift, store)):
            for interface in ("public", "internal", "admin"):
                admin.identity.create_endpoint(service_id=service.id, interface=interface,
                                               url=url, region_id=spec.cloud)
    auth = {"auth_url": f"{keystone.url}/v3", "username": PUBLISHER, "password": password,
            "project_name": "sage", "user_domain_name": "Default",
            "project_domain_name": "Default"}
    user_conn = openstack.connect(**auth, region_name="RegionOne")
    credential = user_conn.identity.create_application_credential(user=user.id, name="sage-image")
    for spec in (s for s in sites if s.keystone):
        cloud.clouds[spec.cloud] = {
            "auth_type": "v3applicationcredential", "region_name": spec.cloud,
            "auth": {"auth_url": f"{keystone.url}/v3", "application_credential_id": credential.id,
                     "application_credential_secret": credential.secret}}
        cloud.clouds[f"{spec.cloud}-password"] = {"auth_type": "password",
                                                  "region_name": spec.cloud, "auth": auth}


def _write_files(cloud: LocalCloud) -> None:
    clouds = cloud.root / CLOUDS_FILE
    clouds.write_text(yaml.safe_dump({"clouds": cloud.clouds}, sort_keys=False))
    clouds.chmod(0o600)  # it holds passwords and application credential secrets
    state = {"servers": [{"name": s.name, "kind": s.kind, "url": s.url, "pid": s.pid,
                          "root": str(s.root)} for s in cloud.servers]}
    (cloud.root / STATE_FILE).write_text(json.dumps(state, indent=2))


def load_cloud(root: Path) -> LocalCloud:
    root = root.resolve()
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except FileNotFoundError as exc:
        raise LocalCloudError(f"no local sites are running from {root}") from exc
    servers = [Server(name=s["name"], kind=s["kind"], url=s["url"], pid=s["pid"],
                      root=Path(s["root"])) for s in state["servers"]]
    return LocalCloud(root=root, servers=servers)


def stop_servers(root: Path, servers: Sequence[Server]) -> None:
    """Stop Glance and Swift first (they talk to Keystone), all in parallel, then forget the
    state."""
    glances = [s for s in servers if s.kind != "keystone"]
    for group in (glances, [s for s in servers if s.kind == "keystone"]):
        if group:
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                list(pool.map(lambda s: stop_process(s.pid, root=s.root), group))
    try:
        os.unlink(root / STATE_FILE)
    except FileNotFoundError:
        pass
