"""`up`, `down` and `status`: start the parts in order with one deadline, stop them all.

node.json in the state folder records what runs (pid and start time of each part, the
addresses the broker listens on); it is written after every start, so that `down` - or a
failed `up` cleaning up after itself - finds everything that was started.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import broker, proc
from .config import NodeConfig, NodeIdentity, RunnerKind, read_identity
from .errors import CommandError, NodeError, PartError, UsageError
from .listeners import listeners_of
from .parts import LOOPBACK, FileSpec, Layout, Part, Probe, files, plan, secrets_json

log = logging.getLogger("sage_node.node")
STOP_TIMEOUT = 30.0
POLL = 0.25

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PartStatus:
    name: str
    running: bool
    pid: int | None
    log: Path
    listens: tuple[str, ...]


def read_state(layout: Layout) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(layout.state.read_text())
        return data
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise NodeError(f"{layout.state}: unreadable ({exc})",
                        hint=f"stop what runs with `sage-node down`, or remove {layout.state}") from None


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(mode)
    tmp.replace(path)


def part_statuses(layout: Layout, state: dict[str, Any] | None) -> list[PartStatus]:
    found = []
    for name, info in (state or {}).get("parts", {}).items():
        running = proc.Proc.from_json(info).alive()
        found.append(PartStatus(name=name, running=running, pid=info["pid"] if running else None,
                                log=layout.log(name), listens=tuple(info.get("listens", ()))))
    return found


def is_up(config: NodeConfig) -> dict[str, Any] | None:
    """node.json when every part it names runs, else None."""
    layout = Layout(config.state_dir)
    state = read_state(layout)
    statuses = part_statuses(layout, state)
    if state and statuses and all(s.running for s in statuses) and state.get("complete"):
        return state
    return None


def load_secrets(layout: Layout) -> broker.Secrets:
    """The node's generated passwords, made on first use and kept 0600."""
    if layout.secrets.exists():
        data = json.loads(layout.secrets.read_text())
        return broker.Secrets(admin_password=data["admin_password"],
                              service_password=data["service_password"])
    secrets = broker.Secrets.generate()
    fd = os.open(layout.secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets_json(secrets))
    return secrets


def docker_bridge(docker: str = "docker") -> str:
    """The default bridge's address on this host: where plugins in containers reach it. Docker
    names it as the network's gateway, or only its interface (docker0) has it."""
    try:
        out = proc.run([docker, "network", "inspect", "bridge", "--format",
                        '{{range .IPAM.Config}}{{.Gateway}} {{end}}|'
                        '{{index .Options "com.docker.network.bridge.name"}}'], timeout=60).stdout
    except CommandError as exc:
        raise NodeError(f"cannot ask Docker for its bridge: {exc.message}",
                        hint="is Docker running (sudo systemctl start docker)? "
                             "Without Docker: set `runner: process` in the config") from None
    gateways, _, interface = out.strip().partition("|")
    found = [g for g in gateways.split() if "." in g] or \
        [a for a in [interface_address(interface or "docker0")] if a]
    if not found:
        raise NodeError(f"Docker's bridge ({interface or 'docker0'}) has no IPv4 address")
    return found[0]


def interface_address(name: str) -> str | None:
    """An interface's IPv4 address (SIOCGIFADDR), None when it has none."""
    import fcntl
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            raw = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(raw[20:24])


def _setting_for(config: NodeConfig, port: int) -> str:
    return next((f"ports.{name}" for name, p in config.ports.items() if p == port), "a port")


def check_free(config: NodeConfig, parts: list[Part]) -> None:
    for part in parts:
        for address in part.listens:
            host, port = address.rsplit(":", 1)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, int(port)))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise UsageError(
                            f"{part.name}: {address} is in use by another program",
                            hint=f"stop it (Virtual Waggle's rabbitmq?) or set "
                                 f"{_setting_for(config, int(port))} in the config") from None
                    raise UsageError(f"{part.name}: cannot listen on {address} ({exc.strerror})") from None


def check_programs(config: NodeConfig) -> None:
    needs = [(config.rabbitmq_server, "rabbitmq-server (Debian package rabbitmq-server)",
              "programs.rabbitmq_server"),
             (config.epmd, "epmd (Debian package erlang-base)", "programs.epmd"),
             (config.redis_server, "redis-server (Debian package redis-server)",
              "programs.redis_server"),
             (config.dss_python, "the data-sharing service's Python", "dss.python"),
             (config.dss_checkout / "main.py", "the data-sharing service (main.py)",
              "dss.checkout")]
    for path, what, setting in needs:
        if not path.exists():
            raise UsageError(f"{what}: {path} not found", hint=f"install it or set {setting}")


def _probe(probe: Probe) -> bool:
    try:
        if probe.kind == "amqp":
            import pika
            params = pika.ConnectionParameters(
                LOOPBACK, probe.port, credentials=pika.PlainCredentials(probe.user, probe.password),
                connection_attempts=1, socket_timeout=2, blocked_connection_timeout=2)
            pika.BlockingConnection(params).close()
        elif probe.kind == "redis":
            import redis
            redis.Redis(host=LOOPBACK, port=probe.port, socket_timeout=2).ping()
        else:
            socket.create_connection((LOOPBACK, probe.port), timeout=1).close()
        return True
    except Exception:   # any failure means "not yet"; the deadline decides
        return False


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""


def write_files(specs: list[FileSpec]) -> None:
    for spec in specs:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = spec.path.with_name(spec.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(spec.content)
        os.chmod(tmp, spec.mode)
        tmp.replace(spec.path)


def up(config: NodeConfig, *, progress: Progress) -> dict[str, Any]:
    """Start every part; on any failure (or Ctrl-C) stop what was started and raise."""
    layout = Layout(config.state_dir)
    if (state := is_up(config)) is not None:
        progress("sage-node is already up")
        return state
    if read_state(layout) is not None:
        down(config, progress=progress)      # leftovers of a node that half-stopped
    identity = read_identity(config.waggle_dir)
    check_programs(config)
    addresses = (LOOPBACK,)
    if config.runner is RunnerKind.DOCKER:
        addresses += (docker_bridge(),)
    layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    secrets = load_secrets(layout)
    parts = plan(config, identity, secrets, addresses)
    check_free(config, parts)
    write_files(files(config, secrets, addresses))
    if not layout.data_config.exists():
        layout.data_config.write_text("[]\n")   # no cameras or microphones here
    (layout.rabbitmq / "home").mkdir(exist_ok=True)
    state = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "node_id": identity.node_id, "vsn": identity.vsn, "runner": config.runner.value,
             "addresses": list(addresses), "parts": {}, "complete": False}
    try:
        _start_all(config, parts, state, progress)
    except BaseException:
        progress("stopping what was started")
        down(config, progress=lambda _msg: None)
        raise
    state["complete"] = True
    _write_json(layout.state, state)
    return state


def _start_all(config: NodeConfig, parts: list[Part], state: dict[str, Any],
               progress: Progress) -> None:
    layout = Layout(config.state_dir)
    deadline = time.monotonic() + config.ready_timeout
    started: dict[str, tuple[proc.Proc, Any, float]] = {}
    ready: set[str] = set()
    while len(ready) < len(parts):
        for part in parts:
            if part.name not in started and all(dep in ready for dep in part.after):
                layout.log(part.name).unlink(missing_ok=True)
                running, popen = proc.spawn(part.argv, env=part.env, cwd=part.cwd,
                                            log_path=layout.log(part.name))
                started[part.name] = (running, popen, time.monotonic())
                state["parts"][part.name] = running.as_json() | {"listens": list(part.listens)}
                _write_json(layout.state, state)
                progress(f"starting {part.name}")
        for part in parts:
            if part.name in ready or part.name not in started:
                continue
            running, popen, since = started[part.name]
            if popen.poll() is not None:
                raise PartError(part.name, f"exited with {popen.returncode} while starting: "
                                f"{_last_line(layout.log(part.name))}",
                                log=str(layout.log(part.name)))
            if _probe(part.probe):
                ready.add(part.name)
                progress(f"{part.name} is ready ({time.monotonic() - since:.1f} s)")
        if time.monotonic() > deadline:
            late = [p.name for p in parts if p.name not in ready]
            first = late[0]
            raise PartError(first, f"not ready within {config.ready_timeout:.0f} s"
                            + (f" (last log line: {_last_line(layout.log(first))})"
                               if first in started else f" (waiting for {', '.join(late[1:])})"),
                            log=str(layout.log(first)) if first in started else None,
                            hint="raise ready_timeout in the config if this machine is busy")
        time.sleep(POLL)


def down(config: NodeConfig, *, progress: Progress,
         remove_plugins: Callable[[], list[str]] | None = None) -> list[str]:
    """Stop the node's plugins (when given a way to), then its parts, last started first."""
    layout = Layout(config.state_dir)
    stopped = []
    if remove_plugins is not None:
        for name in remove_plugins():
            progress(f"removed plugin {name}")
    state = read_state(layout)
    for name, info in reversed(list((state or {}).get("parts", {}).items())):
        running = proc.Proc.from_json(info)
        if running.alive():
            progress(f"stopping {name}")
        if not proc.stop(running, timeout=STOP_TIMEOUT):
            raise NodeError(f"{name} (pid {running.pid}) did not stop",
                            hint=f"kill it: kill -9 {running.pid}")
        stopped.append(name)
    layout.state.unlink(missing_ok=True)
    return stopped


def status(config: NodeConfig) -> dict[str, Any]:
    layout = Layout(config.state_dir)
    state = read_state(layout)
    parts = part_statuses(layout, state)
    up_now = bool(state and state.get("complete") and parts and all(p.running for p in parts))
    addresses = (state or {}).get("addresses", [LOOPBACK])
    return {
        "up": up_now,
        "state_dir": str(layout.root),
        "runner": config.runner.value,
        "node_id": (state or {}).get("node_id"),
        "vsn": (state or {}).get("vsn"),
        "started": (state or {}).get("started"),
        "parts": [{"name": p.name, "running": p.running, "pid": p.pid, "listens": list(p.listens),
                   "log": str(p.log)} for p in parts],
        # what the parts' processes really listen on, from /proc
        "listening": [f"{item.address}:{item.port}" for item in
                      listeners_of([p.pid for p in parts if p.pid])],
        "ports": dict(config.ports.items()),
        "broker": {"host": addresses[-1], "port": config.ports.amqp,
                   "plugin_user": "plugin", "addresses": addresses},
        "management_url": f"http://{LOOPBACK}:{config.ports.management}/",
        "secrets": str(layout.secrets),
        "data_api": config.data_api_url,
        "store": str(layout.store),
        "uploads": str(layout.uploads),
    }


def identity_of(config: NodeConfig) -> NodeIdentity:
    state = is_up(config)
    if state is None:
        return read_identity(config.waggle_dir)
    return NodeIdentity(node_id=state["node_id"], vsn=state["vsn"])
