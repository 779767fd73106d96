"""Pure generation of the Kubernetes manifests for N Virtual Waggle nodes.

`plan(request)` returns every object as plain dicts (no I/O, no cluster), `files(plan)` the
kustomize tree as text, `write(plan, out)` puts it on disk - the last two through the shared
renderer (sage_image/k8s/render.py). `--apply` lives in apply.py.

Layout written under --out:
  kustomization.yaml                 resources: nodes/*, plus one secretGenerator per node
  private/register.pem               0600 copy of --register-key (the key is in no YAML file)
  nodes/<namespace>/kustomization.yaml and one file per object
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..k8s import render
from .model import (
    BEEHIVE_AMQPS_PORT,
    BEEHIVE_REGISTRATION_PORT,
    BEEHIVE_SERVICE,
    CONFIGMAP,
    KEY_SECRET,
    SUB_ID,
    Container,
    K8sRequest,
    NodeSpec,
    Port,
    Probe,
    Volume,
    Workload,
    node_specs,
)

LABEL = "sagecontinuum.org"
CONNECTS_TO = f"{LABEL}/connects-to"
MARKER = ".sage-image-vw-k8s"
KEY_FILE = "private/register.pem"
Obj = dict[str, Any]


@dataclass(frozen=True)
class NodePlan:
    node: NodeSpec
    objects: tuple[Obj, ...]


@dataclass(frozen=True)
class Plan:
    request: K8sRequest
    stack: tuple[Workload, ...]
    nodes: tuple[NodePlan, ...]

    def objects(self) -> Iterator[Obj]:
        for node in self.nodes:
            yield from node.objects


def plan(request: K8sRequest) -> Plan:
    stack = effective_stack(request)
    nodes = tuple(NodePlan(node, tuple(node_objects(request, stack, node)))
                  for node in node_specs(request))
    return Plan(request=request, stack=stack, nodes=nodes)


def effective_stack(request: K8sRequest) -> tuple[Workload, ...]:
    """Without a Beehive (local-only, like upstream without private/register.pem) the containers
    that need one are left out, and so is every volume no remaining container mounts."""
    if not request.local_only:
        return request.stack
    kept = []
    for w in request.stack:
        containers = tuple(c for c in w.containers if not c.needs_beehive)
        if not containers:
            continue
        dropped = {c.name for c in w.containers if c.needs_beehive}
        kept.append(Workload(
            name=w.name, kind=w.kind, containers=containers, volumes=w.volumes,
            service_ports=w.service_ports, aliases=tuple(a for a in w.aliases if a not in dropped),
        ))
    return tuple(kept)


def node_objects(request: K8sRequest, stack: tuple[Workload, ...], node: NodeSpec) -> list[Obj]:
    objs: list[Obj] = [namespace(request, node), configmap(request, node)]
    if request.beehive is not None:
        objs += beehive(request, node)
    for w in stack:
        if w.kind != "Job":
            objs.append(service(request, node, w, w.name, w.service_ports))
            # an alias (registration inside the broker pod) serves no port: headless
            objs += [service(request, node, w, alias, ()) for alias in w.aliases]
    for w in stack:
        objs += workload(request, node, w)
    objs.append(network_policy(request, node))
    return objs


# -- metadata ------------------------------------------------------------------------------
def labels(request: K8sRequest, node: NodeSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "virtual-waggle",
        "app.kubernetes.io/managed-by": "sage-image",
        f"{LABEL}/waggle-node-id": node.node_id,
        # the pinned waggle-node commit this deployment reproduces (catalog sources.waggle-node)
        f"{LABEL}/waggle-node-commit": request.source.commit,
    }


def meta(request: K8sRequest, node: NodeSpec, name: str, component: str | None = None) -> Obj:
    lab = labels(request, node)
    if component:
        lab["app.kubernetes.io/name"] = component
    return {"name": name, "namespace": node.namespace, "labels": lab,
            "annotations": {f"{LABEL}/waggle-node-source":
                            f"{request.source.url}@{request.source.commit}"}}


def selector(w: Workload) -> dict[str, str]:
    return {"app.kubernetes.io/name": w.name}


# -- per-node objects -------------------------------------------------------------------------
def namespace(request: K8sRequest, node: NodeSpec) -> Obj:
    m = meta(request, node, node.namespace)
    del m["namespace"]
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": m}


def configmap(request: K8sRequest, node: NodeSpec) -> Obj:
    """The variables waggle-node.env sets, per node; Beehive is the in-namespace Service name."""
    data = dict(request.extra_env)
    data |= {"WAGGLE_NODE_ID": node.node_id, "WAGGLE_SUB_ID": SUB_ID}
    if request.beehive is not None:
        data["WAGGLE_BEEHIVE_HOST"] = BEEHIVE_SERVICE
    else:
        data.pop("WAGGLE_BEEHIVE_HOST", None)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(request, node, CONFIGMAP),
            "data": dict(sorted(data.items()))}


def beehive_ports() -> list[Obj]:
    return [{"name": "registration", "port": BEEHIVE_REGISTRATION_PORT, "protocol": "TCP"},
            {"name": "amqps", "port": BEEHIVE_AMQPS_PORT, "protocol": "TCP"}]


def beehive(request: K8sRequest, node: NodeSpec) -> list[Obj]:
    """`beehive` in every node namespace: a CNAME for a DNS name; for an IP address (which an
    ExternalName cannot hold) a selector-less Service with its own EndpointSlice."""
    assert request.beehive is not None
    m = meta(request, node, BEEHIVE_SERVICE, "beehive")
    if not request.beehive.is_ip:
        return [{"apiVersion": "v1", "kind": "Service", "metadata": m,
                 "spec": {"type": "ExternalName", "externalName": request.beehive.host,
                          "ports": beehive_ports()}}]
    slice_meta = meta(request, node, f"{BEEHIVE_SERVICE}-external", "beehive")
    slice_meta["labels"] |= {"kubernetes.io/service-name": BEEHIVE_SERVICE,
                             "endpointslice.kubernetes.io/managed-by": "sage-image"}
    family = "IPv6" if ":" in request.beehive.host else "IPv4"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": m,
         "spec": {"ports": beehive_ports()}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": slice_meta,
         "addressType": family, "endpoints": [{"addresses": [request.beehive.host]}],
         "ports": beehive_ports()},
    ]


def service(request: K8sRequest, node: NodeSpec, w: Workload, name: str,
            ports: tuple[Port, ...]) -> Obj:
    """Every long-running compose service name resolves, as on a compose network (kompose only
    made Services for services with `ports`, so `rabbitmq` never resolved)."""
    spec: Obj = {"selector": selector(w)}
    if ports:
        spec["ports"] = [{"name": p.name, "port": p.port, "targetPort": p.port, "protocol": "TCP"}
                         for p in ports]
    else:
        spec["clusterIP"] = "None"  # headless: the name resolves to the pod, no port needed
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(request, node, name, w.name),
            "spec": spec}


def workload(request: K8sRequest, node: NodeSpec, w: Workload) -> list[Obj]:
    m = meta(request, node, w.name, w.name)
    template = pod_template(request, node, w)
    if w.kind == "Job":
        template["spec"]["restartPolicy"] = "OnFailure"
        return [{"apiVersion": "batch/v1", "kind": "Job", "metadata": m,
                 "spec": {"backoffLimit": request.kube.job_backoff_limit, "template": template}}]
    spec: Obj = {"replicas": 1, "selector": {"matchLabels": selector(w)}}
    if w.kind == "StatefulSet":
        spec["serviceName"] = w.name
    spec["template"] = template
    claims = [v.name for v in used_volumes(w) if v.kind == "data"] if request.storage_class \
        else []
    if w.kind == "StatefulSet":
        if claims:
            spec["volumeClaimTemplates"] = [
                {"metadata": {"name": c}, "spec": claim_spec(request)} for c in claims]
        return [{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": m, "spec": spec}]
    if claims:
        # a ReadWriteOnce claim cannot be attached to the old and the new pod at once
        spec["strategy"] = {"type": "Recreate"}
    pvcs = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": meta(request, node, f"{w.name}-{c}", w.name), "spec": claim_spec(request)}
            for c in claims]
    return pvcs + [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m, "spec": spec}]


def claim_spec(request: K8sRequest) -> Obj:
    return {"accessModes": ["ReadWriteOnce"], "storageClassName": request.storage_class,
            "resources": {"requests": {"storage": request.kube.volume_size}}}


def pod_template(request: K8sRequest, node: NodeSpec, w: Workload) -> Obj:
    connects = sorted({f"{e.host}:{e.port}" for c in w.containers for e in c.connects_to})
    annotations = {CONNECTS_TO: ",".join(connects)} if connects else {}
    spec: Obj = {
        # no API access needed; and no FOO_SERVICE_HOST variables: a Service named rabbitmq
        # would otherwise inject RABBITMQ_PORT=tcp://..., which the rabbitmq image misreads
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container(request, c) for c in w.containers],
    }
    volumes = pod_volumes(request, w)
    if volumes:
        spec["volumes"] = volumes
    tmeta: Obj = {"labels": selector(w) | labels(request, node)}
    if annotations:
        tmeta["annotations"] = annotations
    return {"metadata": tmeta, "spec": spec}


def pod_volumes(request: K8sRequest, w: Workload) -> list[Obj]:
    out: list[Obj] = []
    for v in used_volumes(w):
        if v.kind == "key":
            out.append({"name": v.name, "secret": {"secretName": KEY_SECRET,
                                                   "defaultMode": 0o400}})
        elif v.kind == "data" and request.storage_class:
            if w.kind != "StatefulSet":  # a StatefulSet gets it from volumeClaimTemplates
                out.append({"name": v.name,
                            "persistentVolumeClaim": {"claimName": f"{w.name}-{v.name}"}})
        else:
            out.append({"name": v.name, "emptyDir": {}})
    return out


def used_volumes(w: Workload) -> list[Volume]:
    """Volumes some container mounts (a stack may declare more, e.g. the key in local mode)."""
    used = {m.volume for c in w.containers for m in c.mounts}
    return [v for v in w.volumes if v.name in used]


def image_ref(request: K8sRequest, image: str) -> str:
    """A catalog image key becomes its pinned reference; a registry is prefixed unless the
    reference already names one (its first part has a dot or a port)."""
    ref = request.kube.images.get(image, image)
    registry = request.image_registry or request.kube.image_registry
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"{registry.rstrip('/')}/{ref}" if registry else ref


def container(request: K8sRequest, c: Container) -> Obj:
    out: Obj = {"name": c.name, "image": image_ref(request, c.image)}
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.ports:
        out["ports"] = [{"name": p.name, "containerPort": p.port, "protocol": "TCP"}
                        for p in c.ports]
    if c.env_from_config:
        out["envFrom"] = [{"configMapRef": {"name": CONFIGMAP}}]
    if c.env:
        out["env"] = [{"name": k, "value": v} for k, v in c.env]
    if c.mounts:
        out["volumeMounts"] = [mount(m) for m in c.mounts]
    if c.readiness:
        out["readinessProbe"] = probe(c.readiness)
    if c.liveness:
        out["livenessProbe"] = probe(c.liveness)
    out["resources"] = render.resources(request.kube.resources_for(c.name))
    return out


def mount(m: Any) -> Obj:
    out: Obj = {"name": m.volume, "mountPath": m.path}
    if m.read_only:
        out["readOnly"] = True
    if m.sub_path:
        out["subPath"] = m.sub_path
    return out


def probe(p: Probe) -> Obj:
    out: Obj
    if p.exec:
        out = {"exec": {"command": list(p.exec)}}
    elif p.http_path:
        out = {"httpGet": {"path": p.http_path, "port": p.http_port}}
    else:
        out = {"tcpSocket": {"port": p.tcp_port}}
    return out | {"initialDelaySeconds": p.initial_delay, "periodSeconds": p.period,
                  "timeoutSeconds": p.timeout}


def network_policy(request: K8sRequest, node: NodeSpec) -> Obj:
    """The node's pods talk to each other, to cluster DNS, and to Beehive's two ports only.

    NetworkPolicy cannot match a DNS name: for a Beehive given by name, egress is limited to its
    ports (20022, 23181) on any address; for an IP address, to exactly that address."""
    egress: list[Obj] = [
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    if request.beehive is not None:
        rule: Obj = {"ports": [{"protocol": "TCP", "port": BEEHIVE_REGISTRATION_PORT},
                               {"protocol": "TCP", "port": BEEHIVE_AMQPS_PORT}]}
        if request.beehive.is_ip:
            bits = 128 if ":" in request.beehive.host else 32
            rule["to"] = [{"ipBlock": {"cidr": f"{request.beehive.host}/{bits}"}}]
        egress.append(rule)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(request, node, "virtual-waggle-node"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"podSelector": {}}]}], "egress": egress}}


# -- the kustomize tree -----------------------------------------------------------------------
def root_kustomization(plan_: Plan) -> Obj:
    """The top level: every node's folder, and the key Secret of each node."""
    generators = {}
    if plan_.request.register_key is not None:
        # The key enters the cluster through kustomize, so no YAML file ever holds it.
        generators["secretGenerator"] = [
            {"name": KEY_SECRET, "namespace": n.node.namespace,
             "files": [f"register.pem={KEY_FILE}"],
             "options": {"disableNameSuffixHash": True,
                         "labels": labels(plan_.request, n.node)}}
            for n in plan_.nodes]
    return render.kustomization([f"nodes/{n.node.namespace}" for n in plan_.nodes], **generators)


def files(plan_: Plan) -> dict[str, str]:
    """Relative path -> text of every generated file except the key copy."""
    out = {render.KUSTOMIZATION: render.dump(root_kustomization(plan_))}
    for n in plan_.nodes:
        base = f"nodes/{n.node.namespace}"
        out |= {f"{base}/{rel}": text for rel, text in render.folder_files(n.objects).items()}
    return out


def write(plan_: Plan, out: Path) -> list[Path]:
    """Write the tree (replacing an earlier one of ours, refusing any other non-empty folder)."""
    written = render.write_tree(out, files(plan_), marker=MARKER, command="sage-image vw k8s")
    (out / ".gitignore").write_text("private/\n")  # the key copy never lands in a repository
    if plan_.request.register_key is not None:
        written.append(copy_key(plan_.request.register_key, out / KEY_FILE))
    return written


def copy_key(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(dest.parent, 0o700)
    # created 0600 from the start: never world-readable, not even for a moment
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())
    return dest
