"""Plugins on the node: build, run (foreground), deploy (background), ps, logs, rm - the
verbs of pluginctl, over the runner boundary (runners.py). Library code: typed errors only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from . import node
from .config import NodeConfig, NodeIdentity
from .errors import CommandError, NodeError, NotRunningError, PluginError
from .parts import LOOPBACK, Layout
from .plugins import ContainerSpec, PluginRequest, app_meta, container_spec, node_name
from .runners import PluginState, Runner, make_runner


def runner_for(config: NodeConfig, state: dict[str, Any] | None = None) -> Runner:
    addresses = (state or {}).get("addresses") or [LOOPBACK]
    return make_runner(config.runner.value, home=config.state_dir, broker_host=addresses[-1],
                       base_image=config.plugin_base_image,
                       base_archive=config.plugin_base_archive, python=config.plugin_python)


def require_up(config: NodeConfig, verb: str) -> dict[str, Any]:
    state = node.is_up(config)
    if state is None:
        raise NotRunningError()
    if state.get("runner") != config.runner.value:
        raise NodeError(f"{verb}: the node was started with runner {state.get('runner')}, "
                        f"the config now says {config.runner.value}",
                        hint="sage-node down, then sage-node up")
    return state


def build(config: NodeConfig, app_dir: Path, extra: list[str], progress: BinaryIO) -> str:
    if not app_dir.is_dir():
        raise PluginError(f"{app_dir}: not a folder")
    if not (app_dir / "Dockerfile").is_file():
        raise PluginError(f"{app_dir}: no Dockerfile", hint="sage-node new NAME makes an app")
    ref = runner_for(config).build(app_dir, extra, progress)
    progress.write(b"Successfully built plugin\n\n")
    progress.flush()
    return ref


def write_app_meta(config: NodeConfig, spec: ContainerSpec, identity: NodeIdentity) -> None:
    """What WES's init container does: app-meta.<app id> in the app-meta cache, no expiry."""
    import redis
    try:
        redis.Redis(host=LOOPBACK, port=config.ports.redis, socket_timeout=5).set(
            f"app-meta.{spec.app_id}",
            json.dumps(app_meta(spec, identity), separators=(",", ":")))
    except redis.RedisError as exc:
        raise NodeError(f"cannot write the app metadata to Redis on port {config.ports.redis}: {exc}",
                        hint="is the node up? sage-node status") from None


@dataclass(frozen=True)
class Launched:
    spec: ContainerSpec
    runner: Runner


# RabbitMQ's default disk_free_limit is 50 MB: below it, its disk alarm blocks every publisher
# (pywaggle then waits for ever). Refuse to start a plugin that close to it.
MIN_FREE_MB = 100


def check_disk(config: NodeConfig) -> None:
    stat = shutil.disk_usage(config.state_dir)
    free_mb = stat.free // (1024 * 1024)
    if free_mb < MIN_FREE_MB:
        raise NodeError(f"only {free_mb} MB free where the node keeps its data ({config.state_dir})"
                        ": RabbitMQ blocks publishers below 50 MB, the plugin would hang",
                        hint="free some space (docker image prune, old uploads)")


def launch(config: NodeConfig, request: PluginRequest, *, verb: str, progress: BinaryIO,
           replace: bool = False) -> Launched:
    """Build a folder if given one, create the plugin, write its app metadata, start it."""
    state = require_up(config, verb)
    check_disk(config)
    runner = runner_for(config, state)
    image = request.image
    if Path(image).is_dir():
        image = build(config, Path(image), [], progress)
    identity = NodeIdentity(node_id=state["node_id"], vsn=state["vsn"])
    spec = container_spec(
        PluginRequest(image=image, args=request.args, name=request.name, env=request.env,
                      entrypoint=request.entrypoint),
        state_dir=config.state_dir, identity=identity, broker_host=runner.broker_host,
        broker_port=config.ports.amqp, data_config=Layout(config.state_dir).data_config)
    if replace:
        runner.remove(spec.name)
    runner.create(spec)
    try:
        write_app_meta(config, spec, identity)
        runner.start(spec.name)
    except (NodeError, CommandError) as exc:
        runner.remove(spec.name)
        message = exc.message if isinstance(exc, NodeError) else str(exc)
        raise PluginError(f"the plugin {spec.name} failed to start: {message}") from None
    return Launched(spec=spec, runner=runner)


def run(config: NodeConfig, request: PluginRequest, *, out: BinaryIO, progress: BinaryIO,
        on_scheduled: Callable[[str], None]) -> int:
    """pluginctl run: start, stream the log, return the plugin's exit code; always remove it
    (also on Ctrl-C, which reaches the caller after the removal)."""
    launched = launch(config, request, verb="run", progress=progress)
    name = launched.spec.name
    try:
        on_scheduled(name)
        launched.runner.logs(name, follow=True, out=out)
        return launched.runner.wait(name)
    finally:
        launched.runner.remove(name)


def remove(config: NodeConfig, name: str) -> None:
    if not runner_for(config).remove(name):
        raise PluginError(f"no plugin named {name}", hint="sage-node ps lists them")


def remove_all(config: NodeConfig) -> list[str]:
    """Every plugin of this node (for `down`); a Docker that does not answer has none to stop."""
    runner = runner_for(config)
    try:
        names = [s.name for s in runner.states()]
    except (CommandError, NodeError):
        return []
    return [name for name in names if runner.remove(name)]


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)

    def frac(value: int, digits: int) -> str:
        whole, rest = divmod(value, 10**digits)
        tail = f"{rest:0{digits}d}".rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 10**6:
        return f"{sign}{frac(ns, 3)}µs"
    if ns < 10**9:
        return f"{sign}{frac(ns, 6)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{sign}{text}{frac(rest, 9)}s"


def ps_rows(states: list[PluginState], node: str, now: datetime | None = None) -> list[list[str]]:
    """pluginctl ps: NAME STATUS NODE START_TIME RUNNING_TIME (no running time for a failure)."""
    now = now or datetime.now(timezone.utc)
    rows = [["NAME", "STATUS", "NODE", "START_TIME", "RUNNING_TIME"]]
    for s in states:
        start = s.started.strftime("%Y/%m/%d %H:%M:%S UTC") if s.started else ""
        duration = ""
        if s.started and s.phase == "Running":
            duration = go_duration(int((now - s.started).total_seconds() * 10**9))
        elif s.started and s.finished and s.phase == "Succeeded":
            duration = go_duration(int((s.finished - s.started).total_seconds() * 10**9))
        rows.append([s.name, s.phase, node, start, duration])
    return rows


def tabwrite(rows: list[list[str]]) -> str:
    """Go's tabwriter (minwidth 0, padding 1, ' '): every cell but the last padded."""
    widths = [max(len(r[i]) for r in rows) + 1 for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] + "\n"
                   for r in rows)


def node_label(config: NodeConfig) -> str:
    state = node.read_state(Layout(config.state_dir)) or {}
    if "node_id" in state:
        return node_name(NodeIdentity(node_id=state["node_id"], vsn=state.get("vsn", "")))
    return ""

