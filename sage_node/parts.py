"""The node's parts - epmd, RabbitMQ, Redis, the data-sharing service, the data service - as
pure descriptions: the files each needs, its command line and environment, and how to tell it
is ready. node.py starts and stops them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from . import broker
from .config import NodeConfig, NodeIdentity

LOOPBACK = "127.0.0.1"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Probe:
    """How to tell a part is ready: ``kind`` is tcp (a port accepts), amqp (a login works),
    or redis (PING answers)."""

    kind: str
    port: int
    user: str = ""
    password: str = ""


@dataclass(frozen=True)
class Part:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path | None
    probe: Probe
    listens: tuple[str, ...]      # address:port, for status and the docs
    after: tuple[str, ...] = ()   # parts that must be ready before this one starts


@dataclass(frozen=True)
class FileSpec:
    path: Path
    content: str
    mode: int


@dataclass(frozen=True)
class Layout:
    """Where everything lives under the state folder."""

    root: Path

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def state(self) -> Path:
        return self.root / "node.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def rabbitmq(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def store(self) -> Path:
        return self.root / "data" / "store.sqlite"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def data_config(self) -> Path:
        return self.root / "data-config.json"

    def log(self, part: str) -> Path:
        return self.logs / f"{part}.log"


def files(config: NodeConfig, secrets: broker.Secrets, addresses: tuple[str, ...]) -> list[FileSpec]:
    layout = Layout(config.state_dir)
    p = config.ports
    listen = broker.Listen(amqp=p.amqp, mqtt=p.mqtt, management=p.management,
                           prometheus=p.prometheus, addresses=addresses)
    definitions = layout.rabbitmq / "definitions.json"
    return [
        FileSpec(definitions, broker.definitions_json(
            secrets, to_beehive_max_length=config.to_beehive_max_length), 0o600),
        FileSpec(layout.rabbitmq / "rabbitmq.conf", broker.rabbitmq_conf(
            listen, definitions_path=str(definitions),
            service_password=secrets.service_password), 0o600),
        FileSpec(layout.rabbitmq / "enabled_plugins", broker.enabled_plugins(), 0o644),
        FileSpec(layout.redis / "redis.conf", redis_conf(config), 0o644),
    ]


def redis_conf(config: NodeConfig) -> str:
    """WES's app-meta cache: Redis with maxmemory 5mb, allkeys-lru; here on loopback only and
    without persistence (the metadata is rewritten before every plugin starts)."""
    return "\n".join([
        "# Written by sage-node up: the app-meta cache (WES wes-app-meta-cache)",
        f"bind {LOOPBACK}", f"port {config.ports.redis}", "protected-mode yes",
        "daemonize no", 'logfile ""', f"dir {Layout(config.state_dir).redis}",
        'save ""', "appendonly no", "maxmemory 5mb", "maxmemory-policy allkeys-lru",
    ]) + "\n"


def plan(config: NodeConfig, identity: NodeIdentity, secrets: broker.Secrets,
         addresses: tuple[str, ...]) -> list[Part]:
    """The parts in start order; each starts once the parts it comes ``after`` are ready."""
    layout = Layout(config.state_dir)
    p = config.ports
    rmq = layout.rabbitmq
    erl_env = {"ERL_EPMD_PORT": str(p.epmd), "ERL_EPMD_ADDRESS": LOOPBACK}
    return [
        Part("epmd", (str(config.epmd), "-address", LOOPBACK, "-port", str(p.epmd)),
             BASE_ENV | erl_env | {"HOME": str(rmq)}, None, Probe("tcp", p.epmd),
             (f"{LOOPBACK}:{p.epmd}",)),
        Part("redis", (str(config.redis_server), str(layout.redis / "redis.conf")),
             dict(BASE_ENV), layout.redis, Probe("redis", p.redis), (f"{LOOPBACK}:{p.redis}",)),
        Part("rabbitmq", (str(config.rabbitmq_server),), BASE_ENV | erl_env | {
            "HOME": str(rmq / "home"),               # the Erlang cookie, 0400
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",   # nothing from /etc/rabbitmq
            "RABBITMQ_CONFIG_FILE": str(rmq / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(rmq / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(rmq / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(rmq / "mnesia"),
            "RABBITMQ_LOG_BASE": str(layout.logs),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_NODENAME": broker.NODE_NAME,
            "RABBITMQ_DIST_PORT": str(p.erlang_dist),
            # Erlang distribution on loopback only (by default it listens on every address);
            # schedulers that sleep instead of spinning when idle (+sbwt none ...): the node
            # shares a few CPUs with the plugins and their builds, as RabbitMQ's docs advise
            # for shared hosts
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} "
                                                   "+sbwt none +sbwtdcpu none +sbwtdio none",
        }, rmq, Probe("amqp", p.amqp, "service", secrets.service_password),
             tuple(f"{a}:{port}" for port in (p.amqp, p.mqtt) for a in addresses)
             + (f"{LOOPBACK}:{p.management}", f"{LOOPBACK}:{p.prometheus}",
                f"{LOOPBACK}:{p.erlang_dist}"),
             after=("epmd",)),
        Part("data-sharing-service", (str(config.dss_python), "main.py"), BASE_ENV | {
            "HOME": str(config.state_dir), "PYTHONUNBUFFERED": "1",
            "RABBITMQ_HOST": LOOPBACK, "RABBITMQ_PORT": str(p.amqp),
            "RABBITMQ_USERNAME": "service", "RABBITMQ_PASSWORD": secrets.service_password,
            "SYSTEM_USERS": "service",
            "APP_META_CACHE_HOST": LOOPBACK, "APP_META_CACHE_PORT": str(p.redis),
            "WAGGLE_NODE_ID": identity.node_id, "WAGGLE_NODE_VSN": identity.vsn,
            "METRICS_HOST": LOOPBACK, "METRICS_PORT": str(p.dss_metrics),
        }, config.dss_checkout, Probe("tcp", p.dss_metrics), (f"{LOOPBACK}:{p.dss_metrics}",),
             after=("rabbitmq", "redis")),
        Part("data", (sys.executable, "-m", "sage_node.dataservice",
                      "--store", str(layout.store), "--max-mb", str(config.data_max_mb),
                      "--amqp-port", str(p.amqp), "--api-port", str(p.data_api)), BASE_ENV | {
            "HOME": str(config.state_dir), "PYTHONUNBUFFERED": "1",
            "SAGE_NODE_SERVICE_PASSWORD": secrets.service_password,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }, None, Probe("tcp", p.data_api), (f"{LOOPBACK}:{p.data_api}",),
             after=("rabbitmq",)),
    ]



def secrets_json(secrets: broker.Secrets) -> str:
    return json.dumps(secrets.as_json(), indent=2) + "\n"
