"""Structural checks of generated manifests: each known kompose failure, and node isolation.

Pure functions over plain Kubernetes objects (dicts) that return a list of problems, so the
command can refuse to write a broken tree and the tests can feed deliberately broken objects.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from .k8s import CONNECTS_TO
from .model import CONFIGMAP, DOCKER_HOST_ALIASES, KEY_SECRET

Obj = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet")
# scheme://[user[:pw]@]host[:port] inside an argument or an environment value
_URL_HOST = re.compile(r"[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?([A-Za-z0-9_.-]+)")
# waggle-node.env variables whose value is a host name
HOST_VARIABLES = ("WAGGLE_BEEHIVE_HOST",)
ONE_SHOT_CONTAINERS = ("shovelctl",)


def problems(objects: Iterable[Obj], *, storage_class: str | None = None) -> list[str]:
    objs = list(objects)
    found: list[str] = []
    for check in (no_bare_pods, one_shots_are_jobs, jobs_retry_bounded, resources_everywhere,
                  probes_on_servers, no_host_paths, hosts_are_services, config_refs_resolve,
                  network_policies, no_exposed_services, namespaces_disjoint):
        found += check(objs)
    found += claims_need_storage_class(objs, storage_class)
    return found


def pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    """(workload, pod template metadata, pod spec) of every workload and bare Pod."""
    for o in objs:
        if o["kind"] in WORKLOADS:
            t = o["spec"]["template"]
            yield o, t.get("metadata", {}), t["spec"]
        elif o["kind"] == "Pod":
            yield o, o["metadata"], o["spec"]


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def where(o: Obj) -> str:
    return f"{o['metadata'].get('namespace', '-')}/{o['kind']}/{o['metadata']['name']}"


def no_bare_pods(objs: list[Obj]) -> list[str]:
    # kompose turned `restart: on-failure` into a bare Pod, which cannot be updated or moved
    return [f"{where(o)}: bare Pod (use a Deployment or a Job)" for o in objs if o["kind"] == "Pod"]


def one_shots_are_jobs(objs: list[Obj]) -> list[str]:
    # kompose turned the one-shot shovelctl into a Deployment that restarts it forever
    return [f"{where(o)}: one-shot container {c['name']} must run in a Job"
            for o, _, spec in pod_specs(objs) if o["kind"] != "Job"
            for c in containers(spec) if c["name"] in ONE_SHOT_CONTAINERS]


def jobs_retry_bounded(objs: list[Obj]) -> list[str]:
    out = []
    for o in objs:
        if o["kind"] != "Job":
            continue
        if o["spec"]["template"]["spec"].get("restartPolicy") != "OnFailure":
            out.append(f"{where(o)}: restartPolicy must be OnFailure")
        if not isinstance(o["spec"].get("backoffLimit"), int):
            out.append(f"{where(o)}: no backoffLimit")
    return out


def resources_everywhere(objs: list[Obj]) -> list[str]:
    out = []
    for o, _, spec in pod_specs(objs):
        for c in containers(spec):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(res.get(part, {}))
                if missing:
                    out.append(f"{where(o)}: container {c['name']} has no {part} for "
                               f"{', '.join(sorted(missing))}")
    return out


def probes_on_servers(objs: list[Obj]) -> list[str]:
    """A container that serves ports (the broker, playback) needs readiness and liveness probes,
    so a Service only sends traffic to a pod that answers and a hung broker is restarted."""
    return [f"{where(o)}: container {c['name']} serves ports but has no {kind}"
            for o, _, spec in pod_specs(objs) for c in spec.get("containers", []) if c.get("ports")
            for kind in ("readinessProbe", "livenessProbe") if kind not in c]


def no_host_paths(objs: list[Obj]) -> list[str]:
    return [f"{where(o)}: hostPath volume {v['name']} (host bind mounts do not exist in a pod)"
            for o, _, spec in pod_specs(objs) for v in spec.get("volumes", []) if "hostPath" in v]


def claims_need_storage_class(objs: list[Obj], storage_class: str | None) -> list[str]:
    # kompose's PVCs stayed Pending on clusters without a default StorageClass
    out = []
    for o in objs:
        specs = [o["spec"]] if o["kind"] == "PersistentVolumeClaim" else [
            t["spec"] for t in o.get("spec", {}).get("volumeClaimTemplates", [])]
        for s in specs:
            if storage_class is None:
                out.append(f"{where(o)}: volume claim without --storage-class")
            elif s.get("storageClassName") != storage_class:
                out.append(f"{where(o)}: volume claim without storageClassName {storage_class}")
            if s.get("accessModes") != ["ReadWriteOnce"]:
                out.append(f"{where(o)}: volume claim must be ReadWriteOnce and used by one pod")
    return out


def reached_hosts(meta: Obj, spec: Obj, config: dict[str, dict[str, str]]) -> set[str]:
    """Every host a pod is configured to reach: URLs in args/command/env, host variables of its
    ConfigMaps, and the connects-to annotation (connections hard-coded in an image)."""
    hosts: set[str] = set()
    for item in filter(None, meta.get("annotations", {}).get(CONNECTS_TO, "").split(",")):
        hosts.add(item.rsplit(":", 1)[0])
    for c in containers(spec):
        texts = list(c.get("args", [])) + list(c.get("command", []))
        env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        for ref in c.get("envFrom", []):
            env = config.get(ref.get("configMapRef", {}).get("name", ""), {}) | env
        texts += list(env.values())
        hosts |= {m.group(1) for t in texts for m in _URL_HOST.finditer(str(t))}
        hosts |= {env[v] for v in HOST_VARIABLES if env.get(v)}
    return hosts


def hosts_are_services(objs: list[Obj]) -> list[str]:
    out = []
    by_ns = group(objs)
    for ns, items in by_ns.items():
        services = {o["metadata"]["name"] for o in items if o["kind"] == "Service"}
        config = {o["metadata"]["name"]: o.get("data", {}) for o in items
                  if o["kind"] == "ConfigMap"}
        for o, meta, spec in pod_specs(items):
            for host in sorted(reached_hosts(meta, spec, config)):
                if host.lower() in DOCKER_HOST_ALIASES:
                    out.append(f"{where(o)}: reaches {host}, which means nothing in a pod network")
                elif short_service(host, ns) not in services:
                    out.append(f"{where(o)}: reaches {host}, which is no Service in {ns}")
    return out


def short_service(host: str, ns: str) -> str:
    """`rabbitmq`, `rabbitmq.NS`, `rabbitmq.NS.svc[.cluster.local]` -> rabbitmq; another
    namespace's name -> the full name (which then is no Service of this namespace)."""
    parts = host.split(".")
    if len(parts) == 1 or (parts[1] == ns and parts[2:3] in ([], ["svc"])):
        return parts[0]
    return host


def config_refs_resolve(objs: list[Obj]) -> list[str]:
    """ConfigMaps, Secrets and claims a pod uses exist in its own namespace (the registration
    key Secret comes from the kustomization's secretGenerator of that namespace)."""
    out = []
    for ns, items in group(objs).items():
        have = {(o["kind"], o["metadata"]["name"]) for o in items}
        have.add(("Secret", KEY_SECRET))  # made per namespace by kustomize, checked by tests
        for o, _, spec in pod_specs(items):
            claims = {t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])}
            for kind, name in pod_refs(spec):
                if (kind, name) not in have and not (kind == "PersistentVolumeClaim"
                                                     and name in claims):
                    out.append(f"{where(o)}: uses {kind} {name}, which is not in {ns}")
    return out


def pod_refs(spec: Obj) -> Iterator[tuple[str, str]]:
    for c in containers(spec):
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref:
                yield "ConfigMap", ref["configMapRef"]["name"]
    for v in spec.get("volumes", []):
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"]
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"]
        if "persistentVolumeClaim" in v:
            yield "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]
    for c in containers(spec):
        for m in c.get("volumeMounts", []):
            names = {v["name"] for v in spec.get("volumes", [])}
            if m["name"] not in names:
                yield "PersistentVolumeClaim", m["name"]


def network_policies(objs: list[Obj]) -> list[str]:
    """Each node namespace has a policy over all its pods that admits only its own pods, and
    lets them out only to their own pods, cluster DNS and Beehive's ports."""
    out = []
    for ns, items in group(objs).items():
        pols = [o for o in items if o["kind"] == "NetworkPolicy"]
        if not any(p["spec"].get("podSelector") == {} and
                   set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} for p in pols):
            out.append(f"{ns}: no NetworkPolicy covering all pods for ingress and egress")
        for p in pols:
            out += [f"{where(p)}: {msg}" for msg in policy_leaks(p)]
    return out


def policy_leaks(policy: Obj) -> list[str]:
    leaks = []
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", [{}]):
            if peer != {"podSelector": {}}:
                leaks.append(f"ingress from {peer or 'anywhere'}")
    for rule in policy["spec"].get("egress", []):
        ports = sorted(p.get("port", 0) for p in rule.get("ports", []))
        for peer in rule.get("to", [{}]):
            if peer == {"podSelector": {}}:
                continue
            ns_sel = peer.get("namespaceSelector", {}).get("matchLabels", {})
            if ns_sel.get("kubernetes.io/metadata.name") == "kube-system" and ports == [53, 53]:
                continue
            if (not peer or "ipBlock" in peer) and ports == [20022, 23181]:
                continue
            leaks.append(f"egress to {peer or 'anywhere'} on ports {ports or 'all'}")
    return leaks


def no_exposed_services(objs: list[Obj]) -> list[str]:
    # NodePorts and LoadBalancers of N nodes would collide and bypass the NetworkPolicy
    return [f"{where(o)}: Service type {o['spec']['type']}" for o in objs
            if o["kind"] == "Service" and o["spec"].get("type") in ("NodePort", "LoadBalancer")]


def namespaces_disjoint(objs: list[Obj]) -> list[str]:
    """Nodes share nothing: every object but its Namespace is namespaced, names a namespace that
    exists, node IDs differ, and no ExternalName points at another node's Service."""
    out = []
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    node_ids: dict[str, str] = {}
    for o in objs:
        ns = o["metadata"].get("namespace")
        if o["kind"] != "Namespace" and ns not in namespaces:
            out.append(f"{where(o)}: not in one of the generated node namespaces")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == CONFIGMAP:
            node_id = o.get("data", {}).get("WAGGLE_NODE_ID", "")
            if node_id in node_ids:
                out.append(f"{where(o)}: node ID {node_id} also used in {node_ids[node_id]}")
            node_ids[node_id] = ns or ""
        if o["kind"] == "Service" and o["spec"].get("type") == "ExternalName":
            target = o["spec"]["externalName"]
            if any(f".{other}." in f".{target}." for other in namespaces):
                out.append(f"{where(o)}: points into a node namespace ({target})")
    return out


def group(objs: list[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = defaultdict(list)
    for o in objs:
        if o["kind"] != "Namespace":
            out[o["metadata"].get("namespace", "")].append(o)
    return out
