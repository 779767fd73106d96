"""The node's configuration: one table of settings, parsed in one place into a frozen object.

Files, later ones winning: built-in defaults, /etc/sage-node/config.yaml (the image's),
~/.config/sage-node/config.yaml (the user's). $SAGE_NODE_CONFIG names one file that replaces
both (tests use it for a node on free ports in a temporary folder). Every key is optional;
an unknown key or a bad value is an error naming the file and the setting.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

SYSTEM_CONFIG = Path("/etc/sage-node/config.yaml")
USER_CONFIG = Path("~/.config/sage-node/config.yaml")


class RunnerKind(str, Enum):
    """How plugins run: in Docker (the node's way), or as processes in their own mount
    namespace with the same environment and mounts (hosts without Docker; the host tests)."""

    DOCKER = "docker"
    PROCESS = "process"


@dataclass(frozen=True)
class Ports:
    amqp: int
    mqtt: int
    management: int
    prometheus: int
    redis: int
    epmd: int
    erlang_dist: int
    dss_metrics: int
    data_api: int

    def items(self) -> list[tuple[str, int]]:
        return [(name, getattr(self, name)) for name in self.__dataclass_fields__]


@dataclass(frozen=True)
class NodeConfig:
    sources: tuple[Path, ...]      # the files read, in order
    state_dir: Path                # everything the node writes
    waggle_dir: Path               # node-id and vsn (WES: /etc/waggle)
    runner: RunnerKind
    ports: Ports
    ready_timeout: float           # seconds `up` waits for all parts together
    data_max_mb: int               # the local data store's bound
    to_beehive_max_length: int     # the to-beehive queue's bound (nothing drains it here)
    dss_checkout: Path             # wes-data-sharing-service's checkout (main.py)
    dss_python: Path               # a Python with its pinned requirements
    plugin_python: Path            # runner=process: the Python that runs `python3` in plugins
    plugin_base_image: str         # the offline plugin base's reference ...
    plugin_base_archive: Path      # ... and the `docker save` archive it is loaded from
    rabbitmq_server: Path
    epmd: Path
    redis_server: Path

    @property
    def data_api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.data_api}/api/v1/query"


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a port number (1-65535)")
    return value


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return float(value)


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a path")
    return Path(value).expanduser()


def _image(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[\w.-]+)?", value):
        raise ValueError("must be a Docker image reference (name[:tag])")
    return value


def _runner(value: Any) -> RunnerKind:
    try:
        return RunnerKind(value)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(k.value for k in RunnerKind)}") from None


# key: (parser, default). Ports are WES's where WES has one (plugins see WAGGLE_PLUGIN_PORT=5672
# as on a node); the others avoid the usual ones (epmd 4369 may be a system epmd's).
SETTINGS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "state_dir": (_path, "~/.local/state/sage-node"),
    "waggle_dir": (_path, "/etc/waggle"),
    "runner": (_runner, "docker"),
    "ready_timeout": (_seconds, 180),
    "ports.amqp": (_port, 5672),
    "ports.mqtt": (_port, 1883),
    "ports.management": (_port, 15672),
    "ports.prometheus": (_port, 15692),
    "ports.redis": (_port, 6379),
    "ports.epmd": (_port, 4370),
    "ports.erlang_dist": (_port, 25672),
    "ports.dss_metrics": (_port, 18080),
    "ports.data_api": (_port, 10000),
    "data.max_mb": (_positive, 256),
    "broker.to_beehive_max_length": (_positive, 10000),
    "dss.checkout": (_path, "/opt/wes-data-sharing-service"),
    "dss.python": (_path, sys.executable),
    "plugin_python": (_path, sys.executable),
    "plugin_base.image": (_image, "sage-node/plugin-base:pywaggle-0.56.3"),
    "plugin_base.archive": (_path, "/opt/sage/node/plugin-base.tar"),
    "programs.rabbitmq_server": (_path, "/usr/lib/rabbitmq/bin/rabbitmq-server"),
    "programs.epmd": (_path, "/usr/bin/epmd"),
    "programs.redis_server": (_path, "/usr/bin/redis-server"),
}


def config_files(environ: Mapping[str, str]) -> list[Path]:
    """The files to read, in order (missing ones are skipped, except $SAGE_NODE_CONFIG)."""
    if environ.get("SAGE_NODE_CONFIG"):
        return [Path(environ["SAGE_NODE_CONFIG"]).expanduser()]
    return [SYSTEM_CONFIG, USER_CONFIG.expanduser()]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and any(s.startswith(name + ".") for s in SETTINGS):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: must be a mapping of settings")
    return _flatten(data)


def load_config(environ: Mapping[str, str] | None = None) -> NodeConfig:
    environ = os.environ if environ is None else environ
    explicit = bool(environ.get("SAGE_NODE_CONFIG"))
    values = {key: (parse, default, None) for key, (parse, default) in SETTINGS.items()}
    read: list[Path] = []
    for path in config_files(environ):
        if not explicit and not path.exists():
            continue
        for key, value in _read(path).items():
            if key not in SETTINGS:
                names = [*SETTINGS, *{name.split(".")[0] for name in SETTINGS}]
                near = difflib.get_close_matches(key, names, n=1)
                raise ConfigError(f"{path}: unknown setting '{key}'"
                                  + (f" (did you mean '{near[0]}'?)" if near else ""))
            values[key] = (SETTINGS[key][0], value, path)
        read.append(path)
    parsed: dict[str, Any] = {}
    for key, (parse, value, origin) in values.items():
        try:
            parsed[key] = parse(value)
        except ValueError as exc:
            raise ConfigError(f"{origin or 'default'}: {key}: {value!r} {exc}") from exc
    return _build(parsed, tuple(read))


def _build(v: dict[str, Any], sources: tuple[Path, ...]) -> NodeConfig:
    ports = Ports(**{k.split(".", 1)[1]: v[k] for k in v if k.startswith("ports.")})
    taken: dict[int, str] = {}
    for name, port in ports.items():
        if port in taken:
            raise ConfigError(f"{sources[-1] if sources else 'default'}: ports.{name}: "
                              f"{port} is also ports.{taken[port]}")
        taken[port] = name
    return NodeConfig(
        sources=sources, state_dir=v["state_dir"], waggle_dir=v["waggle_dir"],
        runner=v["runner"], ports=ports, ready_timeout=v["ready_timeout"],
        data_max_mb=v["data.max_mb"], to_beehive_max_length=v["broker.to_beehive_max_length"],
        dss_checkout=v["dss.checkout"], dss_python=v["dss.python"],
        plugin_python=v["plugin_python"], plugin_base_image=v["plugin_base.image"],
        plugin_base_archive=v["plugin_base.archive"],
        rabbitmq_server=v["programs.rabbitmq_server"], epmd=v["programs.epmd"],
        redis_server=v["programs.redis_server"],
    )


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str   # lower case, as WES's wes-identity has it
    vsn: str       # upper case


def read_identity(waggle_dir: Path) -> NodeIdentity:
    """The node's id and VSN, as WES reads them (update-stack.sh: lower / upper case)."""
    def one(name: str, pattern: str, what: str) -> str:
        path = waggle_dir / name
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(f"{path}: missing",
                              hint="the sage image writes it at first boot "
                                   "(sage-node-identity.service); see docs/sage-node.md") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        if not re.fullmatch(pattern, text):
            raise ConfigError(f"{path}: {text[:40]!r} is not {what}")
        return text
    node_id = one("node-id", r"[0-9A-Fa-f]{16}", "a node id (16 hex digits)").lower()
    vsn = one("vsn", r"[A-Za-z0-9]{1,16}", "a VSN (letters and digits, e.g. W000)").upper()
    return NodeIdentity(node_id=node_id, vsn=vsn)
