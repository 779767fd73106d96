"""What a plugin gets, as WES gives it (edge-scheduler 0.28.0 resourcemanager.go, pluginctl):
pure functions from a plugin request to the container's name, environment, mounts and labels.

Environment: the user's -e values first, then WES's system values, so that a system value wins
(upstream: "so that they don't override our environmental variables"). Names of services
sage-node does not run (audio, GPS, scoreboard, ROS) keep WES's values, so code that reads them
fails to connect as it would on a node without them; ROS_IP (the pod's address, unknown before
a container starts) is not set.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .config import NodeIdentity
from .errors import UsageError

PLUGINCTL_JOB = "Pluginctl"        # edge-scheduler's pluginctlJob
RUNNER_LABEL = "pluginctl"         # app.kubernetes.io/created-by as pluginctl sets it
HOME_LABEL = "sage-node.home"      # which node (state folder) a container belongs to
ZONE = "core"                      # the k8s node label WES's app-meta-cache reads
UPLOADS = "/run/waggle/uploads"
DATA_CONFIG = "/run/waggle/data-config.json"
NAME_PATTERN = re.compile(r"^[a-z0-9-]+$")
ENV_PATTERN = re.compile(r"^([^=\s]+)=(.*)$", re.S)


@dataclass(frozen=True)
class PluginRequest:
    """`run`/`deploy` as the user asked for it."""

    image: str
    args: tuple[str, ...] = ()
    name: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    entrypoint: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a runner needs to start one plugin; no runner decides any of it."""

    name: str
    image: str
    app_id: str
    entrypoint: str | None
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]            # in order; a later duplicate wins
    mounts: tuple[tuple[Path, str, bool], ...]  # (host path, container path, read-only)
    labels: dict[str, str] = field(hash=False)

    def effective_env(self) -> dict[str, str]:
        return dict(self.env)


def parse_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        match = ENV_PATTERN.match(item.strip())
        if not match:
            raise UsageError(f"-e {item!r}: expected KEY=VALUE")
        pairs.append((match.group(1), match.group(2)))
    return tuple(pairs)


def read_env_file(path: Path) -> list[str]:
    """--env-from FILE: KEY=VALUE lines (blank lines and # comments skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"failed to open env-from file {str(path)!r}: {exc.strerror}") from None
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def image_tag(image: str) -> str:
    """The tag after ':' in the image's last path element, or latest (the upload folder's tag)."""
    parts = posixpath.basename(image).split(":")
    return parts[1] if len(parts) == 2 and parts[1] else "latest"


def plugin_name(request: PluginRequest) -> str:
    """-n as given (pluginctl's rule), else <image>-<tag with . as ->-<8 hex of the spec>."""
    if request.name is not None:
        if not NAME_PATTERN.match(request.name):
            raise UsageError("plugin name must consist of alphanumeric characters with '-' "
                             f"RFC1123 (got {request.name!r})")
        return request.name
    spec = json.dumps({"image": request.image, "args": list(request.args),
                       "env": dict(request.env), "entrypoint": request.entrypoint,
                       "job": PLUGINCTL_JOB}, sort_keys=True)
    base = posixpath.basename(request.image).split(":")[0]
    name = f"{base}-{image_tag(request.image).replace('.', '-')}-" \
           f"{hashlib.sha256(spec.encode()).hexdigest()[:8]}"
    name = re.sub(r"[^a-z0-9-]", "-", name.lower())
    return name


def node_name(identity: NodeIdentity) -> str:
    """What a plugin sees as HOST and meta.host (WES: the k3s node, <id>.ws-nxcore)."""
    return f"{identity.node_id}.sage-node"


def system_env(*, broker_host: str, broker_port: int, app_id: str,
               identity: NodeIdentity) -> tuple[tuple[str, str], ...]:
    return (
        ("PULSE_SERVER", "tcp:wes-audio-server.default.svc.cluster.local:4713"),
        ("WAGGLE_PLUGIN_HOST", broker_host),
        ("WAGGLE_PLUGIN_PORT", str(broker_port)),
        ("WAGGLE_PLUGIN_USERNAME", "plugin"),
        ("WAGGLE_PLUGIN_PASSWORD", "plugin"),
        ("WAGGLE_GPS_SERVER", "wes-gps-server.default.svc.cluster.local"),
        ("WAGGLE_APP_ID", app_id),
        ("ROS_MASTER_URI", "http://wes-roscore.default.svc.cluster.local:11311"),
        ("WAGGLE_SCOREBOARD", "wes-scoreboard.default.svc.cluster.local"),
        ("HOST", node_name(identity)),
    )


def upload_dir(state_dir: Path, *, task: str, image: str, job: str = PLUGINCTL_JOB) -> Path:
    """WES: /media/plugin-data/uploads/<job>/<task>/<tag>; here under the node's state folder."""
    return state_dir / "uploads" / job / task / image_tag(image)


def labels(name: str, *, home: Path, job: str = PLUGINCTL_JOB) -> dict[str, str]:
    return {
        "app": name, "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": RUNNER_LABEL, "app.kubernetes.io/created-by": RUNNER_LABEL,
        "sagecontinuum.org/plugin-job": job, "sagecontinuum.org/plugin-task": name,
        "role": "plugin", "sagecontinuum.org/role": "plugin",
        HOME_LABEL: str(home),
    }


def app_meta(spec: ContainerSpec, identity: NodeIdentity, *, job: str = PLUGINCTL_JOB) -> dict[str, str]:
    """What WES's init container writes to app-meta.<app id> before the plugin starts."""
    return {"host": node_name(identity), "job": job, "task": spec.name, "plugin": spec.image,
            "zone": ZONE}


def container_spec(request: PluginRequest, *, state_dir: Path, identity: NodeIdentity,
                   broker_host: str, broker_port: int, data_config: Path,
                   app_id: str | None = None) -> ContainerSpec:
    name = plugin_name(request)
    app_id = app_id or str(uuid.uuid4())   # WES: the pod's UID
    env = request.env + system_env(broker_host=broker_host, broker_port=broker_port,
                                   app_id=app_id, identity=identity)
    mounts = ((upload_dir(state_dir, task=name, image=request.image), UPLOADS, False),
              (data_config, DATA_CONFIG, True))
    return ContainerSpec(name=name, image=request.image, app_id=app_id,
                         entrypoint=request.entrypoint, args=request.args, env=env,
                         mounts=mounts, labels=labels(name, home=state_dir))
