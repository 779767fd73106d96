"""Generated manifests: schema-valid for the catalog's Kubernetes versions, free of every known
kompose failure, nodes isolated; and every check shown to catch a broken object."""

from __future__ import annotations

import copy
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from sage_image.vw import k8s, validate
from sage_image.vw.compose import convert
from sage_image.vw.model import KEY_SECRET, parse_beehive

Obj = dict[str, Any]

FIXTURES = Path(__file__).with_name("fixtures")
COMPOSE = FIXTURES / "docker-compose.yml"
# The fixture key's one secret-looking line: no output or YAML file may ever contain it.
KEY_MARKER = "TEST-ONLY-NOT-A-REAL-KEY"



def variants(catalog_stack_env: tuple[Any, Any]) -> dict[str, dict[str, Any]]:
    stack, env = catalog_stack_env
    return {
        "dns-beehive": {},
        "ipv4-beehive": {"beehive": parse_beehive("10.20.30.40")},
        "ipv6-beehive": {"beehive": parse_beehive("2001:db8::10")},
        "storage-class": {"storage_class": "standard"},
        "local-only": {"beehive": None, "register_key": None},
        "from-compose": {"stack": stack, "extra_env": env},
        "three-nodes": {"nodes": 3, "namespace_prefix": "sage", "first_node_id": 0xA0},
    }


_conv = convert(COMPOSE)
VARIANTS = variants((_conv.stack, _conv.env))


def schema_errors(obj: Obj, version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']} @ {version}: {path}: {exc.message}"
    return None


# -- schema ------------------------------------------------------------------------------------
def test_installed_validator_knows_the_catalog_versions(catalog: Any) -> None:
    from kubernetes_validate.utils import all_versions

    known = {".".join(v.split(".")[:2]) for v in all_versions()}
    assert set(catalog.kubernetes.versions) <= known
    assert max(Version(v) for v in catalog.kubernetes.versions) <= Version(max(known, key=Version))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_schema_valid_for_every_catalog_version(
        variant: str, make_plan: Callable[..., k8s.Plan], catalog: Any) -> None:
    objs = list(make_plan(**VARIANTS[variant]).objects())
    found = [e for v in catalog.kubernetes.versions for o in objs if (e := schema_errors(o, v))]
    assert found == []


def test_schema_check_can_fail(make_plan: Callable[..., k8s.Plan]) -> None:
    objs = list(make_plan().objects())
    sts = copy.deepcopy(next(o for o in objs if o["kind"] == "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["comand"] = ["x"]
    assert "comand" in (schema_errors(sts, "1.32") or "")
    job = copy.deepcopy(next(o for o in objs if o["kind"] == "Job"))
    job["spec"]["backoffLimit"] = "six"
    assert schema_errors(job, "1.32")


# -- structure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_structural_checks_pass(variant: str, make_plan: Callable[..., k8s.Plan]) -> None:
    kwargs = VARIANTS[variant]
    objs = list(make_plan(**kwargs).objects())
    assert validate.problems(objs, storage_class=kwargs.get("storage_class")) == []


@pytest.mark.parametrize("nodes", [1, 50])
def test_n_nodes_are_independent(nodes: int, make_plan: Callable[..., k8s.Plan]) -> None:
    plan = make_plan(nodes=nodes)
    assert len(plan.nodes) == nodes
    namespaces = [n.node.namespace for n in plan.nodes]
    ids = [n.node.node_id for n in plan.nodes]
    assert len(set(namespaces)) == len(set(ids)) == nodes
    for n in plan.nodes:
        config = next(o for o in n.objects if o["kind"] == "ConfigMap")
        assert config["data"]["WAGGLE_NODE_ID"] == n.node.node_id
        for o in n.objects:
            assert o["metadata"].get("namespace", o["metadata"]["name"]) == n.node.namespace
    assert validate.problems(plan.objects()) == []


def test_each_node_has_the_virtual_waggle_services(make_plan: Callable[..., k8s.Plan]) -> None:
    objs = list(make_plan().objects())
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {("Service", "rabbitmq"), ("Service", "registration"), ("Service", "beehive"),
            ("Service", "playback"), ("StatefulSet", "rabbitmq"), ("Job", "shovelctl"),
            ("Deployment", "message-staging-node"), ("Deployment", "playback"),
            ("ConfigMap", "waggle-node-env"), ("NetworkPolicy", "virtual-waggle-node")} <= kinds


def test_the_kompose_failures_do_not_occur(make_plan: Callable[..., k8s.Plan]) -> None:
    objs = list(make_plan().objects())
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    # rabbitmq and registration have no compose `ports`, yet their names resolve
    rabbit = by[("Service", "rabbitmq")]["spec"]
    assert {p["port"] for p in rabbit["ports"]} == {5672, 15672}
    assert by[("Service", "registration")]["spec"]["clusterIP"] == "None"
    # no bare Pod; the broker has probes; the one-shot is a bounded Job
    assert not [o for o in objs if o["kind"] == "Pod"]
    broker = by[("StatefulSet", "rabbitmq")]["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" in broker and "livenessProbe" in broker
    job = by[("Job", "shovelctl")]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert job["backoffLimit"] >= 1
    # no host path, no claim without --storage-class
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    text = yaml.safe_dump_all(objs)
    assert "hostPath" not in text and "volumeClaimTemplates" not in text
    # Beehive is an ExternalName Service, never a Docker host alias
    assert by[("Service", "beehive")]["spec"] == {
        "type": "ExternalName", "externalName": "beehive.example.org",
        "ports": k8s.beehive_ports()}
    assert "host.docker.internal" not in text and "172.17.0.1" not in text
    assert by[("ConfigMap", "waggle-node-env")]["data"]["WAGGLE_BEEHIVE_HOST"] == "beehive"


def test_storage_class_makes_per_node_claims(make_plan: Callable[..., k8s.Plan]) -> None:
    plan = make_plan(nodes=2, storage_class="fast")
    for n in plan.nodes:
        pvcs = [o for o in n.objects if o["kind"] == "PersistentVolumeClaim"]
        assert [p["metadata"]["name"] for p in pvcs] == ["playback-playback-media"]
        assert pvcs[0]["spec"]["storageClassName"] == "fast"
        sts = next(o for o in n.objects if o["kind"] == "StatefulSet")
        assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == [
            "rabbitmq-data"]


def test_local_only_leaves_out_what_needs_beehive(make_plan: Callable[..., k8s.Plan]) -> None:
    objs = list(make_plan(beehive=None, register_key=None).objects())
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("Job", "shovelctl") not in names and ("Service", "beehive") not in names
    assert ("Service", "registration") not in names
    assert KEY_SECRET not in yaml.safe_dump_all(objs)


def test_commit_of_waggle_node_is_recorded(make_plan: Callable[..., k8s.Plan],
                                           catalog: Any) -> None:
    commit = catalog.sources["waggle-node"].commit
    for o in make_plan().objects():
        assert o["metadata"]["labels"][f"{k8s.LABEL}/waggle-node-commit"] == commit
        assert o["metadata"]["annotations"][f"{k8s.LABEL}/waggle-node-source"].endswith(commit)


def test_images_are_the_catalogs_pins(make_plan: Callable[..., k8s.Plan], catalog: Any) -> None:
    pinned = {f"docker.io/{ref}" for ref in catalog.kubernetes.images.values()}
    used = {c["image"] for _, _, spec in validate.pod_specs(list(make_plan().objects()))
            for c in spec["containers"]}
    assert used == pinned
    mirrored = make_plan(image_registry="mirror.example:5000")
    assert all(c["image"].startswith("mirror.example:5000/waggle/")
               for _, _, spec in validate.pod_specs(list(mirrored.objects()))
               for c in spec["containers"])


# -- every structural check can fail -------------------------------------------------------------
def _find(objs: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def _drop_rabbitmq_service(objs: list[Obj]) -> None:
    objs.remove(_find(objs, "Service", "rabbitmq"))


def _bare_pod(objs: list[Obj]) -> None:
    dep = _find(objs, "Deployment", "message-staging-node")
    objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": dict(dep["metadata"]),
                 "spec": dep["spec"]["template"]["spec"]})


def _shovel_as_deployment(objs: list[Obj]) -> None:
    _find(objs, "Job", "shovelctl")["kind"] = "Deployment"


def _job_restarts_never(objs: list[Obj]) -> None:
    job = _find(objs, "Job", "shovelctl")
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    del job["spec"]["backoffLimit"]


def _no_limits(objs: list[Obj]) -> None:
    dep = _find(objs, "Deployment", "playback")
    del dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def _no_probe(objs: list[Obj]) -> None:
    sts = _find(objs, "StatefulSet", "rabbitmq")
    del sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


def _host_path(objs: list[Obj]) -> None:
    dep = _find(objs, "Deployment", "playback")
    dep["spec"]["template"]["spec"]["volumes"][0] = {"name": "playback-media",
                                                      "hostPath": {"path": "./playback"}}


def _claim_without_class(objs: list[Obj]) -> None:
    objs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": dict(_find(objs, "ConfigMap", "waggle-node-env")["metadata"],
                                  name="data"),
                 "spec": {"accessModes": ["ReadWriteOnce"]}})


def _docker_host(objs: list[Obj]) -> None:
    _find(objs, "ConfigMap", "waggle-node-env")["data"]["WAGGLE_BEEHIVE_HOST"] = \
        "host.docker.internal"


def _url_to_unknown_host(objs: list[Obj]) -> None:
    dep = _find(objs, "Deployment", "message-staging-node")
    dep["spec"]["template"]["spec"]["containers"][0]["args"][0] = "amqp://worker@rabbit"


def _other_namespace_host(objs: list[Obj]) -> None:
    dep = _find(objs, "Deployment", "message-staging-node")
    dep["spec"]["template"]["spec"]["containers"][0]["args"][0] = \
        "amqp://worker@rabbitmq.vw-node-0000000000000002.svc"


def _missing_configmap(objs: list[Obj]) -> None:
    objs.remove(_find(objs, "ConfigMap", "waggle-node-env"))


def _no_network_policy(objs: list[Obj]) -> None:
    objs.remove(_find(objs, "NetworkPolicy", "virtual-waggle-node"))


def _policy_open_ingress(objs: list[Obj]) -> None:
    _find(objs, "NetworkPolicy", "virtual-waggle-node")["spec"]["ingress"] = [{}]


def _policy_open_egress(objs: list[Obj]) -> None:
    _find(objs, "NetworkPolicy", "virtual-waggle-node")["spec"]["egress"].append(
        {"to": [{"namespaceSelector": {}}]})


def _node_port(objs: list[Obj]) -> None:
    _find(objs, "Service", "playback")["spec"]["type"] = "NodePort"


def _shared_node_id(objs: list[Obj]) -> None:
    maps = [o for o in objs if o["kind"] == "ConfigMap"]
    maps[1]["data"]["WAGGLE_NODE_ID"] = maps[0]["data"]["WAGGLE_NODE_ID"]


def _cross_namespace_object(objs: list[Obj]) -> None:
    _find(objs, "Service", "playback")["metadata"]["namespace"] = "default"


def _externalname_into_other_node(objs: list[Obj]) -> None:
    _find(objs, "Service", "beehive")["spec"]["externalName"] = \
        "rabbitmq.vw-node-0000000000000002.svc.cluster.local"


BREAKERS: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "no rabbitmq Service": (_drop_rabbitmq_service, "reaches rabbitmq, which is no Service"),
    "bare Pod": (_bare_pod, "bare Pod"),
    "shovelctl as Deployment": (_shovel_as_deployment, "must run in a Job"),
    "Job restarts Never": (_job_restarts_never, "restartPolicy must be OnFailure"),
    "no limits": (_no_limits, "has no limits"),
    "no readiness probe": (_no_probe, "no readinessProbe"),
    "hostPath": (_host_path, "hostPath volume"),
    "claim without class": (_claim_without_class, "without --storage-class"),
    "host.docker.internal": (_docker_host, "means nothing in a pod network"),
    "unknown host": (_url_to_unknown_host, "reaches rabbit, which is no Service"),
    "other node's host": (_other_namespace_host, "which is no Service"),
    "missing ConfigMap": (_missing_configmap, "uses ConfigMap waggle-node-env"),
    "no NetworkPolicy": (_no_network_policy, "no NetworkPolicy"),
    "open ingress": (_policy_open_ingress, "ingress from anywhere"),
    "open egress": (_policy_open_egress, "egress to"),
    "NodePort": (_node_port, "Service type NodePort"),
    "shared node ID": (_shared_node_id, "also used in"),
    "object outside node namespaces": (_cross_namespace_object, "not in one of the generated"),
    "ExternalName into another node": (_externalname_into_other_node, "points into a node"),
}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_each_check_catches_its_breakage(name: str, make_plan: Callable[..., k8s.Plan]) -> None:
    objs = copy.deepcopy(list(make_plan(nodes=2).objects()))
    assert validate.problems(objs) == []
    breaker, expected = BREAKERS[name]
    breaker(objs)
    found = validate.problems(objs)
    assert any(expected in p for p in found), found


# -- the kustomize tree ------------------------------------------------------------------------
def test_written_tree_keeps_the_key_out_of_yaml(tmp_path: Path,
                                                make_plan: Callable[..., k8s.Plan]) -> None:
    out = tmp_path / "out"
    written = k8s.write(make_plan(nodes=2), out)
    key = out / k8s.KEY_FILE
    assert key in written and stat.S_IMODE(key.stat().st_mode) == 0o600
    for path in out.rglob("*.yaml"):
        assert KEY_MARKER not in path.read_text(), path
    top = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert [g["namespace"] for g in top["secretGenerator"]] == [
        "vw-node-0000000000000001", "vw-node-0000000000000002"]


def test_rewrite_replaces_our_tree_and_refuses_others(tmp_path: Path,
                                                      make_plan: Callable[..., k8s.Plan]) -> None:
    out = tmp_path / "out"
    k8s.write(make_plan(nodes=3), out)
    k8s.write(make_plan(nodes=1), out)
    assert len(list((out / "nodes").iterdir())) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    from sage_image.errors import UsageError

    with pytest.raises(UsageError, match="not empty"):
        k8s.write(make_plan(), other)


def test_kustomize_renders_secret_per_namespace_and_all_is_schema_valid(
        tmp_path: Path, make_plan: Callable[..., k8s.Plan], catalog: Any,
        kustomize: Callable[[Path], list[Obj]]) -> None:
    out = tmp_path / "out"
    k8s.write(make_plan(nodes=2), out)
    docs = kustomize(out)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert sorted(s["metadata"]["namespace"] for s in secrets) == [
        "vw-node-0000000000000001", "vw-node-0000000000000002"]
    assert all(s["metadata"]["name"] == KEY_SECRET for s in secrets)
    errors = [e for v in catalog.kubernetes.versions for d in docs if (e := schema_errors(d, v))]
    assert errors == []
    assert validate.problems([d for d in docs if d["kind"] != "Secret"]) == []


def test_kustomize_refuses_a_tree_without_the_key(tmp_path: Path,
                                                  make_plan: Callable[..., k8s.Plan],
                                                  kustomize: Callable[[Path], list[Obj]]) -> None:
    """The render above can fail: the Secret is made from the key copy, which must be there."""
    out = tmp_path / "out"
    k8s.write(make_plan(nodes=2), out)
    (out / k8s.KEY_FILE).unlink()
    with pytest.raises(RuntimeError, match="register.pem"):
        kustomize(out)
