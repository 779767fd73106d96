"""`vw k8s --from-compose FILE`: a Virtual Waggle docker-compose file as `Workload`s.

Known Virtual Waggle services (recognised by image name) take their Kubernetes shape from
model.default_stack(), with the compose file's image, command and environment; any other
service gets the generic rules. Every choice that differs from what kompose does is recorded as
a `Decision`, which the command prints. Anything this converter does not understand is an error
naming file:line, never silently dropped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..yamlfile import Document, read_yaml
from .model import (
    BEEHIVE_SERVICE,
    DOCKER_HOST_ALIASES,
    Container,
    Mount,
    Port,
    Probe,
    Volume,
    Workload,
    default_stack,
)

TOP_KEYS = ("version", "services", "networks", "volumes", "name")
SERVICE_KEYS = ("image", "env_file", "environment", "ports", "expose", "volumes", "networks",
                "restart", "command", "entrypoint", "depends_on", "container_name", "labels")
RESTARTS = ("no", "always", "on-failure", "unless-stopped")
# image repository name -> built-in component (model.default_stack)
KNOWN_IMAGES = {"rabbitmq": "rabbitmq", "registration": "registration",
                "message-staging-node": "message-staging-node",
                "stage-messages": "message-staging-node", "shovelctl": "shovelctl",
                "playback-server": "playback"}
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}?")


@dataclass(frozen=True)
class Decision:
    service: str
    kompose: str
    here: str
    why: str


@dataclass(frozen=True)
class Conversion:
    stack: tuple[Workload, ...]
    decisions: tuple[Decision, ...]
    env: tuple[tuple[str, str], ...]


def convert(path: Path) -> Conversion:
    doc = read_yaml(path, what="compose file", shown=str(path), dot_indexes=True)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) \
            or not data["services"]:
        raise doc.fail(("services",), "a compose file needs a non-empty 'services' mapping")
    for key in data:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            raise doc.fail((key,), f"unknown compose feature '{key}' (supported: "
                                   f"{', '.join(TOP_KEYS)}, x-*)")
    return _Converter(doc, path.parent).run(data)


class _Converter:
    def __init__(self, doc: Document, base: Path) -> None:
        self.doc = doc
        self.base = base
        self.decisions: list[Decision] = []
        self.env: dict[str, str] = {}
        self.templates = {c.name: (w, c) for w in default_stack() for c in w.containers}

    def note(self, service: str, kompose: str, here: str, why: str) -> None:
        self.decisions.append(Decision(service, kompose, here, why))

    def run(self, data: dict[str, Any]) -> Conversion:
        services = data["services"]
        for name, raw in services.items():
            self.check_service(name, raw)
        for name, raw in services.items():
            self.read_env_files(name, raw)
        converted = [self.service(name, raw) for name, raw in services.items()]
        stack = self.merge_registration(converted)
        if data.get("networks"):
            self.note("(networks)", "ignores compose networks; every pod can reach every other "
                      "pod of the cluster", "one namespace per node and a NetworkPolicy",
                      "the node's pods reach each other, cluster DNS and Beehive only")
        self.note("(env_file)", "one ConfigMap per env_file, copied verbatim (node ID and "
                  "host.docker.internal included)", "one ConfigMap waggle-node-env per node with "
                  "its own WAGGLE_NODE_ID and WAGGLE_BEEHIVE_HOST=beehive",
                  "N nodes need N identities; Beehive is an in-namespace Service")
        return Conversion(stack=tuple(stack), decisions=tuple(self.decisions),
                          env=tuple(sorted(self.env.items())))

    # -- validation -------------------------------------------------------------------------------
    def check_service(self, name: str, raw: Any) -> None:
        w = ("services", name)
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", str(name)):
            raise self.doc.fail(w, "service name is not a valid Kubernetes name (lowercase, '-')")
        if not isinstance(raw, dict):
            raise self.doc.fail(w, "expected a mapping")
        for key in raw:
            if key not in SERVICE_KEYS:
                hint = ("build the image, push it, and name it with image:" if key == "build"
                        else "use --beehive HOST" if key == "extra_hosts" else None)
                raise self.doc.fail(w + (key,), f"unknown compose feature '{key}' (supported: "
                                              f"{', '.join(SERVICE_KEYS)})", hint=hint)
        if "image" not in raw:
            raise self.doc.fail(w, "no image (vw k8s runs published images only)")
        restart = str(raw.get("restart", "no")).split(":")[0]
        if restart not in RESTARTS:
            raise self.doc.fail(w + ("restart",), f"unknown restart policy {raw['restart']!r}")

    def read_env_files(self, name: str, raw: dict[str, Any]) -> None:
        files = raw.get("env_file", [])
        for i, rel in enumerate([files] if isinstance(files, str) else files):
            path = self.base / str(rel)
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise self.doc.fail(("services", name, "env_file", i),
                                  f"cannot read {path}: {exc.strerror}") from exc
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    self.env[key.strip()] = value.strip().strip("'\"")

    # -- one service ------------------------------------------------------------------------------
    def service(self, name: str, raw: dict[str, Any]) -> tuple[str | None, Workload]:
        component = KNOWN_IMAGES.get(image_repo(str(raw["image"])))
        if component is not None:
            workload = self.known(name, raw, component)
        else:
            workload = self.generic(name, raw)
        self.note_common(name, raw, workload)
        return component, workload

    def known(self, name: str, raw: dict[str, Any], component: str) -> Workload:
        template_w, template_c = self.templates[component]
        mounts, volumes = self.known_volumes(name, raw, component, template_c)
        c = replace(template_c, name=name, image=self.image(name, raw, component),
                    args=self.args(name, raw, "command") or template_c.args,
                    command=self.args(name, raw, "entrypoint") or template_c.command,
                    env=self.environment(name, raw), mounts=template_c.mounts + mounts,
                    ports=merge_ports(template_c.ports, self.ports(name, raw)))
        if component == "registration":
            # placed into the broker's pod by merge_registration()
            return Workload(name=name, kind="Deployment", containers=(c,),
                            volumes=(Volume("waggle-etc", "scratch"),
                                     Volume("registration-key", "key")) + volumes)
        return replace(template_w, name=name, containers=(c,),
                       volumes=template_w.volumes + volumes,
                       service_ports=c.ports if template_w.kind != "Job" else (), aliases=())

    def generic(self, name: str, raw: dict[str, Any]) -> Workload:
        restart = str(raw.get("restart", "no")).split(":")[0]
        kind = "Job" if restart == "no" else "Deployment"
        mounts, volumes = self.generic_volumes(name, raw)
        ports = self.ports(name, raw)
        c = Container(name=name, image=self.image(name, raw, None),
                      args=self.args(name, raw, "command"),
                      command=self.args(name, raw, "entrypoint"), ports=ports,
                      env=self.environment(name, raw), env_from_config="env_file" in raw,
                      mounts=mounts)
        if ports:
            # an unknown server gets the least presumptuous probe: its first port accepts
            c = replace(c, readiness=Probe(tcp_port=ports[0].port),
                        liveness=Probe(tcp_port=ports[0].port, initial_delay=30))
        return Workload(name=name, kind=kind, containers=(c,), volumes=volumes,
                        service_ports=ports if kind != "Job" else ())

    def merge_registration(self, converted: list[tuple[str | None, Workload]]) -> list[Workload]:
        """registration writes the certificates the broker's shovels read: one pod, one
        emptyDir, instead of a shared ReadWriteOnce claim that pins both to one cluster node."""
        workloads = [w for _, w in converted]
        brokers = [w for comp, w in converted if comp == "rabbitmq"]
        regs = [w for comp, w in converted if comp == "registration"]
        if len(brokers) > 1:
            raise UsageError(f"{self.doc.shown}: more than one rabbitmq broker "
                             f"({', '.join(w.name for w in brokers)}); a node has one")
        if not brokers or not regs:
            return workloads
        broker = brokers[0]
        merged = replace(broker, containers=broker.containers + tuple(
            c for r in regs for c in r.containers), aliases=tuple(r.name for r in regs))
        for r in regs:
            self.note(r.name, "a Deployment of its own with an empty PVC for /etc/waggle "
                      "(Pending without a default StorageClass; ReadWriteOnce when shared)",
                      f"a second container of the {broker.name} pod sharing an emptyDir "
                      f"/etc/waggle; a headless Service keeps the name '{r.name}' resolving",
                      "the broker's shovels read the certificates registration writes")
        return [merged if w is broker else w for w in workloads
                if not any(w is r for r in regs)]

    # -- fields -----------------------------------------------------------------------------------
    def image(self, name: str, raw: dict[str, Any], component: str | None) -> str:
        ref = str(raw["image"])
        tag = ref.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" in ref or (tag and tag != "latest"):
            return ref
        if component is None:
            raise self.doc.fail(("services", name, "image"), f"{ref!r} is not pinned by tag",
                              hint="give the image a tag (not latest) or a digest")
        self.note(name, f"keeps the floating image {ref}",
                  "the catalog's pinned image (kubernetes.images)",
                  "N nodes must run the same, reviewable image")
        return component

    def args(self, name: str, raw: dict[str, Any], key: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(shlex.split(value))
        if isinstance(value, list):
            return tuple(str(v) for v in value)
        raise self.doc.fail(("services", name, key), "expected a string or a list")

    def environment(self, name: str, raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        value = raw.get("environment") or {}
        if isinstance(value, list):
            value = dict(item.split("=", 1) if "=" in item else (item, None) for item in value)
        env = []
        for key, val in value.items():
            if val is None:
                if key in self.env:
                    continue  # passed through from the shell; the ConfigMap has it
                raise self.doc.fail(("services", name, "environment"),
                                  f"{key} takes its value from the shell, which a cluster has not")
            val = str(val)
            if any(alias in val for alias in DOCKER_HOST_ALIASES):
                for alias in DOCKER_HOST_ALIASES:
                    val = val.replace(alias, BEEHIVE_SERVICE)
                self.note(name, f"keeps {key}={value[key]}", f"{key}={val}",
                          "Docker host aliases mean nothing in a pod network")
            env.append((str(key), val))
        return tuple(env)

    def ports(self, name: str, raw: dict[str, Any]) -> tuple[Port, ...]:
        out = []
        items = [("ports", i, p) for i, p in enumerate(raw.get("ports", []))] + \
                [("expose", i, p) for i, p in enumerate(raw.get("expose", []))]
        for key, i, item in items:
            target = item.get("target") if isinstance(item, dict) else str(item).rsplit(":", 1)[-1]
            text = str(target)
            if "/" in text and not text.endswith("/tcp"):
                raise self.doc.fail(("services", name, key, i), f"only TCP ports: {item}")
            text = text.removesuffix("/tcp")
            if not text.isdigit() or not 0 < int(text) < 65536:
                raise self.doc.fail(("services", name, key, i), f"cannot read port {item!r}")
            out.append(Port(f"tcp-{text}", int(text)))
        if raw.get("ports"):
            self.note(name, "a Service of the published ports only, or none (so a service "
                      "without ports, like rabbitmq's AMQP port 5672, never resolved)",
                      "a Service for every long-running service with every port it listens on; "
                      "host ports and 127.0.0.1 bindings dropped",
                      "other pods connect by service name; use kubectl port-forward to debug")
        return tuple(out)

    def generic_volumes(self, name: str, raw: dict[str, Any]) -> tuple[tuple[Mount, ...],
                                                                        tuple[Volume, ...]]:
        mounts, volumes = [], []
        for i, (source, target, ro) in enumerate(self.volume_items(name, raw)):
            if is_key(source, target):
                raise self.doc.fail(("services", name, "volumes", i), "only Virtual Waggle's "
                                  "registration service gets the registration key")
            mounts.append(Mount(f"vol-{i}", target, read_only=ro))
            volumes.append(Volume(f"vol-{i}", "data"))
            self.note_data(name, source, target)
        return tuple(mounts), tuple(volumes)

    def known_volumes(self, name: str, raw: dict[str, Any], component: str,
                      template: Container) -> tuple[tuple[Mount, ...], tuple[Volume, ...]]:
        """Compose mounts of a known component: the key, /etc/waggle and the mounts the
        component already has are explained; any other mount becomes a volume of its own."""
        have = {m.path.rstrip("/") for m in template.mounts}
        mounts, volumes = [], []
        for i, (source, target, ro) in enumerate(self.volume_items(name, raw)):
            target = target.rstrip("/")
            if is_key(source, target):
                if component != "registration":
                    raise self.doc.fail(("services", name, "volumes", i), "only registration "
                                      "gets the registration key")
                self.note(name, f"{source}:{target} becomes an empty PVC",
                          "the Secret waggle-registration-key (from --register-key), mounted "
                          "read-only, mode 0400", "a key belongs in a Secret; no file on a host")
            elif target == "/etc/waggle":
                shared = component in ("rabbitmq", "registration")
                self.note(name, f"{source}:{target} becomes an empty PVC",
                          "an emptyDir shared by the broker and registration in one pod" if shared
                          else "dropped: this service reads no certificates",
                          "the node's certificates are pod-local and fetched again on restart"
                          if shared else "only the broker's shovels use them")
            elif target in have:
                self.note_data(name, source, target)
            else:
                mounts.append(Mount(f"vol-{i}", target, read_only=ro))
                volumes.append(Volume(f"vol-{i}", "data"))
                self.note_data(name, source, target)
        return tuple(mounts), tuple(volumes)

    def note_data(self, name: str, source: str, target: str) -> None:
        self.note(name, f"{source}:{target} becomes a PVC (Pending without a default "
                  "StorageClass; ReadWriteOnce when shared)",
                  f"{target} is an emptyDir, or a PVC of each node with --storage-class",
                  "a host path exists on one machine only")

    def volume_items(self, name: str, raw: dict[str, Any]) -> list[tuple[str, str, bool]]:
        out = []
        for i, item in enumerate(raw.get("volumes", [])):
            if isinstance(item, dict):
                source, target = str(item.get("source", "")), str(item.get("target", ""))
                ro = bool(item.get("read_only"))
            else:
                parts = str(item).split(":")
                if len(parts) == 1:
                    parts = ["", parts[0]]
                source, target = parts[0], parts[1]
                ro = len(parts) > 2 and "ro" in parts[2].split(",")
            if not target.startswith("/"):
                raise self.doc.fail(("services", name, "volumes", i), f"cannot read volume {item!r}")
            if target.startswith(("/dev", "/var/run/docker.sock", "/sys", "/proc")):
                raise self.doc.fail(("services", name, "volumes", i),
                                  f"host device or socket {target} is not supported")
            out.append((_VAR.sub(lambda m: self.env.get(m.group(1), m.group(0)), source),
                        target, ro))
        return out

    def note_common(self, name: str, raw: dict[str, Any], w: Workload) -> None:
        restart = raw.get("restart")
        if w.kind == "Job":
            self.note(name, "a Deployment (no restart key) that restarts the one-shot forever",
                      "a Job with restartPolicy OnFailure and a backoffLimit",
                      "it configures the shovels once and exits")
        elif str(restart).startswith("on-failure"):
            self.note(name, "a bare Pod with restartPolicy OnFailure (cannot be updated)",
                      f"a {w.kind}", "a long-running service that should come back")
        if "depends_on" in raw:
            self.note(name, "drops depends_on", "drops depends_on; the broker's readiness probe "
                      "gates its Service and clients retry", "Kubernetes has no start order")
        if "container_name" in raw:
            self.note(name, "uses container_name", "ignores container_name",
                      "pods are named by their workload")


def is_key(source: str, target: str) -> bool:
    return source.endswith("register.pem") or target.endswith("register.pem")


def image_repo(ref: str) -> str:
    """docker.io/waggle/rabbitmq:nc -> rabbitmq"""
    return ref.split("@")[0].rsplit("/", 1)[-1].split(":")[0]


def merge_ports(known: tuple[Port, ...], extra: tuple[Port, ...]) -> tuple[Port, ...]:
    have = {p.port for p in known}
    return known + tuple(p for p in extra if p.port not in have)
