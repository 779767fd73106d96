"""RabbitMQ as WES configures it (waggle-edge-stack update-stack.sh), run as the user.

Pure rendering of its files here; starting it is parts.py's. What differs from WES, and why
(docs/sage-node.md): passwords are generated per node (WES: admin/admin, service/service), the
listeners are on loopback and the Docker bridge only (WES: 0.0.0.0 inside the cluster), the
management UI is on loopback only, the shovel to Beehive is left out (WES's own
configs/no-rabbitmq-shovel setup: there is no Beehive to push to, so no shovel user either)
and the to-beehive queue is bounded by a policy, because nothing drains it here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

# WES's enabled_plugins without the two shovel plugins (configs/no-rabbitmq-shovel).
PLUGINS = ("rabbitmq_prometheus", "rabbitmq_management", "rabbitmq_management_agent",
           "rabbitmq_auth_mechanism_ssl", "rabbitmq_mqtt")
QUEUES = ("data", "messages", "to-beehive", "to-beekeeper", "resource-manager")
EXCHANGES = (("data.topic", "topic"), ("data.fanout", "fanout"), ("messages", "fanout"),
             ("to-node", "topic"))
# (exchange, queue, routing key), WES's. WES binds to-node -> "ansible", a queue it never
# declares; RabbitMQ skips that binding on import, here as on a node.
BINDINGS = (("data.fanout", "data", ""), ("messages", "messages", "messages"),
            ("to-node", "resource-manager", "*.resource-manager"),
            ("to-node", "ansible", "*.ansible"))
# plugin/plugin is what pywaggle and every WES plugin use; it stays as WES has it.
PLUGIN_USER = ("plugin", "plugin")
NODE_NAME = "sage-node@localhost"


@dataclass(frozen=True)
class Secrets:
    """Generated once per node, kept 0600 in its state folder."""

    admin_password: str
    service_password: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(admin_password=secrets.token_urlsafe(18),
                   service_password=secrets.token_urlsafe(18))

    def as_json(self) -> dict[str, str]:
        return {"admin_password": self.admin_password, "service_password": self.service_password}


@dataclass(frozen=True)
class Listen:
    amqp: int
    mqtt: int
    management: int
    prometheus: int
    addresses: tuple[str, ...]   # loopback first, then the Docker bridge's when there is one


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(secrets_: Secrets, *, to_beehive_max_length: int) -> dict[str, object]:
    users = [("admin", secrets_.admin_password, "administrator"),
             ("service", secrets_.service_password, ""), (*PLUGIN_USER, "")]
    return {
        "users": [{"name": name, "password_hash": password_hash(password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags}
                  for name, password, tags in users],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": name, "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"} for name, _, _ in users],
        "queues": [{"name": q, "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {}} for q in QUEUES],
        "exchanges": [{"name": name, "vhost": "/", "type": kind, "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}
                      for name, kind in EXCHANGES],
        "bindings": [{"source": src, "vhost": "/", "destination": dst,
                      "destination_type": "queue", "routing_key": key, "arguments": {}}
                     for src, dst, key in BINDINGS],
        "policies": [{"vhost": "/", "name": "sage-node-to-beehive-bound",
                      "pattern": "^to-beehive$", "apply-to": "queues", "priority": 0,
                      "definition": {"max-length": to_beehive_max_length,
                                     "overflow": "drop-head"}}],
    }


def rabbitmq_conf(listen: Listen, *, definitions_path: str, service_password: str) -> str:
    lines = [f"listeners.tcp.{i} = {addr}:{listen.amqp}"
             for i, addr in enumerate(listen.addresses, 1)]
    lines += [f"mqtt.listeners.tcp.{i} = {addr}:{listen.mqtt}"
              for i, addr in enumerate(listen.addresses, 1)]
    lines += [
        f"management.load_definitions = {definitions_path}",
        "management.tcp.ip = 127.0.0.1",
        f"management.tcp.port = {listen.management}",
        "prometheus.tcp.ip = 127.0.0.1",
        f"prometheus.tcp.port = {listen.prometheus}",
        "mqtt.default_user = service",
        f"mqtt.default_pass = {service_password}",
        "log.file = false",
        "log.console = true",
    ]
    return "# Written by sage-node up (WES's settings; see docs/sage-node.md)\n" + "\n".join(lines) + "\n"


def enabled_plugins() -> str:
    return "[" + ",".join(PLUGINS) + "].\n"


def definitions_json(secrets_: Secrets, *, to_beehive_max_length: int) -> str:
    return json.dumps(definitions(secrets_, to_beehive_max_length=to_beehive_max_length),
                      indent=2) + "\n"
