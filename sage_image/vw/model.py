"""The Virtual Waggle node as typed data: components, the request, and input checks.

Both `sage-image vw k8s` paths end here: the built-in stack (from the facts about the pinned
waggle-node commit) and a converted compose file (compose.py) are the same `Workload` tuples,
so one generator (k8s.py) turns either into manifests.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..catalog.model import Catalog, Kubernetes, Source
from ..errors import ConfigError, UsageError

# Beehive v1 ports a node connects to: SSH registration and AMQPS with client certificates.
BEEHIVE_REGISTRATION_PORT = 20022
BEEHIVE_AMQPS_PORT = 23181
BEEHIVE_SERVICE = "beehive"
CONFIGMAP = "waggle-node-env"
KEY_SECRET = "waggle-registration-key"
SUB_ID = "0000000000000000"
# Names a Docker host used for "the machine I run on"; meaningless inside a pod network.
DOCKER_HOST_ALIASES = ("host.docker.internal", "172.17.0.1", "gateway.docker.internal")
MAX_NODES = 10_000
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

WorkloadKind = Literal["StatefulSet", "Deployment", "Job"]
# scratch: always an emptyDir (pod-local, e.g. credentials shared by two containers of one pod);
# data: an emptyDir, or a PVC of --storage-class; key: the registration key Secret.
VolumeKind = Literal["scratch", "data", "key"]


@dataclass(frozen=True)
class Port:
    name: str
    port: int


@dataclass(frozen=True)
class Probe:
    exec: tuple[str, ...] = ()
    tcp_port: int | None = None
    http_path: str | None = None
    http_port: int | None = None
    initial_delay: int = 10
    period: int = 30
    timeout: int = 5


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False
    sub_path: str | None = None


@dataclass(frozen=True)
class Volume:
    name: str
    kind: VolumeKind


@dataclass(frozen=True)
class Endpoint:
    """A host:port a container connects to; every host must be a Service in its namespace."""

    host: str
    port: int


@dataclass(frozen=True)
class Container:
    name: str
    image: str                              # catalog image key or a pinned reference
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    env_from_config: bool = True
    mounts: tuple[Mount, ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None
    connects_to: tuple[Endpoint, ...] = ()
    # Only makes sense with a Beehive and a registration key (dropped in local-only mode).
    needs_beehive: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    kind: WorkloadKind
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...] = ()
    # Every long-running workload gets a Service named like it (headless when it has no ports),
    # plus one per alias (a compose service that now runs as a container of this pod).
    service_ports: tuple[Port, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Beehive:
    host: str
    is_ip: bool


@dataclass(frozen=True)
class NodeSpec:
    index: int
    node_id: str
    namespace: str


@dataclass(frozen=True)
class K8sRequest:
    nodes: int
    stack: tuple[Workload, ...]
    kube: Kubernetes
    source: Source
    beehive: Beehive | None = None
    register_key: Path | None = None
    namespace_prefix: str = "vw-node"
    first_node_id: int = 1
    storage_class: str | None = None
    image_registry: str | None = None
    # Variables of waggle-node.env besides the per-node ones (e.g. read from a compose env_file).
    extra_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def local_only(self) -> bool:
        return self.beehive is None


# -- the built-in stack: what the pinned waggle-node compose file runs ----------------------------
def broker(extra_containers: tuple[Container, ...] = (), aliases: tuple[str, ...] = ()) -> Workload:
    """rabbitmq as a one-replica StatefulSet; registration joins its pod (see registration())."""
    rabbit = Container(
        name="rabbitmq", image="rabbitmq",
        ports=(Port("amqp", 5672), Port("management", 15672)),
        mounts=(Mount("waggle-etc", "/etc/waggle", read_only=True),
                Mount("rabbitmq-data", "/var/lib/rabbitmq")),
        # The image is rabbitmq:3.6-management, which has no rabbitmq-diagnostics: readiness is
        # "AMQP listener accepts connections", liveness the slower `rabbitmqctl status`.
        readiness=Probe(tcp_port=5672, initial_delay=10, period=10, timeout=5),
        liveness=Probe(exec=("rabbitmqctl", "status"), initial_delay=60, period=60, timeout=15),
    )
    return Workload(
        name="rabbitmq", kind="StatefulSet", containers=(rabbit,) + extra_containers,
        volumes=(Volume("waggle-etc", "scratch"), Volume("rabbitmq-data", "data"),
                 Volume("registration-key", "key")),
        service_ports=rabbit.ports, aliases=aliases,
    )


def registration() -> Container:
    """Gets the node's certificates from Beehive over SSH and writes them to /etc/waggle.

    The broker's shovels read those files, so both share one pod-local emptyDir instead of a
    ReadWriteOnce volume that would pin two Deployments to one cluster node.
    """
    return Container(
        name="registration", image="registration",
        mounts=(Mount("waggle-etc", "/etc/waggle"),
                Mount("registration-key", "/etc/waggle/register.pem", read_only=True,
                      sub_path="register.pem")),
        connects_to=(Endpoint(BEEHIVE_SERVICE, BEEHIVE_REGISTRATION_PORT),),
        needs_beehive=True,
    )


def default_stack() -> tuple[Workload, ...]:
    stager = Container(
        name="message-staging-node", image="message-staging-node",
        args=("amqp://worker:worker@rabbitmq", "messages", SUB_ID,
              "amqp://worker:worker@rabbitmq", "to-beehive"),
        connects_to=(Endpoint("rabbitmq", 5672),),
    )
    shovels = Container(
        name="shovelctl", image="shovelctl", args=("enable",),
        # shovelctl talks to the management API; the shovels it creates run inside the broker
        # and connect to Beehive's AMQPS port with the certificates registration fetched.
        connects_to=(Endpoint("rabbitmq", 15672), Endpoint(BEEHIVE_SERVICE, BEEHIVE_AMQPS_PORT)),
        needs_beehive=True,
    )
    playback = Container(
        name="playback", image="playback", ports=(Port("http", 8090),), env_from_config=False,
        mounts=(Mount("playback-media", "/data", read_only=True),),
        # /blank.jpg is served even without any media, so it is a fair readiness check.
        readiness=Probe(http_path="/blank.jpg", http_port=8090, initial_delay=5, period=15),
        liveness=Probe(tcp_port=8090, initial_delay=15, period=30),
    )
    return (
        broker((registration(),), aliases=("registration",)),
        Workload("message-staging-node", "Deployment", (stager,)),
        Workload("shovelctl", "Job", (shovels,)),
        Workload("playback", "Deployment", (playback,), volumes=(Volume("playback-media", "data"),),
                 service_ports=playback.ports),
    )


# -- input checks: each raises UsageError with one clear line ------------------------------------
def check_nodes(nodes: int) -> int:
    if nodes < 1:
        raise UsageError(f"--nodes must be at least 1, got {nodes}")
    if nodes > MAX_NODES:
        raise UsageError(f"--nodes must be at most {MAX_NODES}, got {nodes}")
    return nodes


def parse_beehive(host: str) -> Beehive:
    """A DNS name (ExternalName Service) or an IP address (Service + EndpointSlice)."""
    if host.lower() in DOCKER_HOST_ALIASES or host.startswith("172.17."):
        raise UsageError(
            f"--beehive {host}: that is how a Docker container reaches its host; it means nothing "
            "in a pod network", hint="give Beehive's DNS name or an address pods can route to")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            raise UsageError(f"--beehive {host}: not an address a pod can reach Beehive at")
        return Beehive(host=str(address), is_ip=True)
    name = host.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise UsageError(f"--beehive {host!r}: not a valid host name or IP address")
    return Beehive(host=name.lower(), is_ip=False)


def check_key(path: Path) -> Path:
    """The registration key must be a readable, non-empty file; its content is never shown."""
    if not path.exists():
        raise UsageError(f"--register-key {path}: no such file",
                         hint="copy $BEEHIVE_ROOT/ssh_keys/beehive-registration-key from Beehive")
    if not path.is_file():
        raise UsageError(f"--register-key {path}: not a regular file")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--register-key {path}: cannot read: {exc.strerror}") from exc
    if b"PRIVATE KEY" not in text:
        raise UsageError(f"--register-key {path}: does not look like an SSH private key")
    return path


def check_prefix(prefix: str) -> str:
    # namespace = PREFIX-<16 hex digits>, a DNS label of at most 63 characters
    if not _DNS_LABEL.match(prefix) or len(prefix) > 63 - 17:
        raise UsageError(f"--namespace-prefix {prefix!r}: use lowercase letters, digits and '-',"
                         f" at most {63 - 17} characters, starting and ending alphanumeric")
    return prefix


def check_storage_class(name: str) -> str:
    if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name):
        raise UsageError(f"--storage-class {name!r}: not a valid StorageClass name")
    return name


def parse_node_id(text: str) -> int:
    if not re.match(r"^[0-9a-fA-F]{1,16}$", text):
        raise UsageError(f"--first-node-id {text!r}: expected up to 16 hexadecimal digits")
    return int(text, 16)


def node_specs(request: K8sRequest) -> tuple[NodeSpec, ...]:
    last = request.first_node_id + request.nodes - 1
    if last >= 16 ** 16:
        raise UsageError(f"--first-node-id plus --nodes runs past ffffffffffffffff ({last:x})")
    specs = []
    for i in range(request.nodes):
        node_id = f"{request.first_node_id + i:016x}"
        specs.append(NodeSpec(index=i, node_id=node_id,
                              namespace=f"{request.namespace_prefix}-{node_id}"))
    return tuple(specs)


def kubernetes_config(catalog: Catalog) -> Kubernetes:
    if catalog.kubernetes is None:
        raise ConfigError(f"{catalog.path.name}: no 'kubernetes' section",
                          hint="add one like the shipped catalog's")
    if "waggle-node" not in catalog.sources:
        raise ConfigError(f"{catalog.path.name}: sources has no 'waggle-node' pin")
    return catalog.kubernetes
