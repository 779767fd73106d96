"""Kubernetes Jobs that run the release plan: one Job per image (build, then test) and per
publish, on one shared cache volume; a pod waits on the volume for what it needs (see the
package docstring). Rendered as a kustomize tree by sage_image/k8s/render.py."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...catalog.model import CI, Catalog, KubeResources
from ...errors import UsageError
from ...k8s import render
from ..plan import ImageJob, PublishJob, ReleasePlan
from ..run import LAYER_FILE
from .common import bootstrap_lines, build_argv, children, require_ci, shell, slug

Obj = dict[str, Any]


@dataclass(frozen=True)
class K8sOptions:
    run: str  # names this run's Jobs and its folder on the volume
    ref: str  # sage-image-builder commit (or tag) the pods check out
    repo: str  # where they check it out from
    namespace: str = "sage-image"
    storage_class: str | None = None
    clouds_secret: str = "sage-image-clouds"  # a Secret with key clouds.yaml (never generated)


CACHE_MOUNT = "/cache"
PVC_NAME = "sage-image-cache"
JOB_DEADLINE_SECONDS = 12 * 3600  # waits included: a gpu build waits for sage, sage for base
JOB_TTL_SECONDS = 7 * 24 * 3600
# An init container that only polls the volume: small, and not a catalog setting.
WAIT_RESOURCES = KubeResources(cpu_request="10m", memory_request="16Mi", cpu_limit="50m",
                               memory_limit="32Mi")
RUN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")

# The controller-free dependency: poll the shared volume for what the dependency produces;
# give up (and mark what this pod would have done as failed) when its failure marker appears.
WAIT_SCRIPT = """set -u
echo "waiting for $SAGE_WAIT_FOR"
while [ ! -e "$SAGE_WAIT_FOR" ]; do
  if [ -e "$SAGE_WAIT_FAILED" ]; then
    echo "not starting: $SAGE_WAIT_FAILED exists (a job this one needs failed)"
    for f in $SAGE_MARK_FAILED; do mkdir -p "$(dirname "$f")" && touch "$f"; done
    exit 1
  fi
  sleep "${SAGE_WAIT_INTERVAL:-15}"
done
echo "found $SAGE_WAIT_FOR\""""

# Runs one plan job; leaves SAGE_IMAGE_OK on success, every SAGE_MARK_FAILED file on failure
# (so whatever waits on this pod stops waiting). The work runs in a subshell with `set -e`
# outside any `if`, where bash would ignore it.
WORK_SCRIPT = """set -u
(
  set -euo pipefail
  {bootstrap}
  if [ ! -d /src/.git ]; then
    git init -q /src
    git -C /src fetch -q --depth 1 "$SAGE_IMAGE_REPO" "$SAGE_IMAGE_REF"
    git -C /src checkout -q FETCH_HEAD
  fi
  cd /src
  scripts/setup
  {command}
  test -e "$SAGE_IMAGE_PRODUCES" || {{ echo "missing $SAGE_IMAGE_PRODUCES after $SAGE_IMAGE_JOB"; exit 1; }}
)
status=$?
if [ "$status" -eq 0 ]; then
  mkdir -p "$(dirname "$SAGE_IMAGE_OK")" && touch "$SAGE_IMAGE_OK"
else
  for f in $SAGE_MARK_FAILED; do mkdir -p "$(dirname "$f")" && touch "$f"; done
fi
exit "$status\""""


def dns_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label; a long one keeps a hash of the whole so names stay unique."""
    name = slug(text)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{name[:limit - 9].rstrip('-')}-{digest}"


def check_run(run: str) -> str:
    if not RUN_RE.match(run):
        raise UsageError(f"bad --run {run!r}: 1-20 lowercase letters, digits and '-'")
    return run


class _Paths:
    """Where things are on the shared volume (mounted at /cache in every pod)."""

    def __init__(self, run: str) -> None:
        self.run = f"{CACHE_MOUNT}/runs/{run}"

    def out(self, key: str) -> str:
        return f"{self.run}/out/{key}"

    def ok(self, plan_id: str) -> str:
        return f"{self.run}/status/{_file(plan_id)}.ok"

    def failed(self, plan_id: str) -> str:
        return f"{self.run}/status/{_file(plan_id)}.failed"

    @staticmethod
    def layer(layer_key: str) -> str:
        return f"{CACHE_MOUNT}/{LAYER_FILE.format(layer_key=layer_key)}"


def _file(plan_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", plan_id)


def k8s_objects(catalog: Catalog, plan: ReleasePlan, options: K8sOptions) -> list[Obj]:
    ci = require_ci(catalog)
    check_run(options.run)
    paths = _Paths(options.run)
    parents = children(plan)
    objs = [_namespace(options), _pvc(ci, options)]
    objs += [_image_job(ci, plan, image, options, paths, image.key in parents)
             for image in plan.images]
    objs += [_publish_job(ci, job, options, paths) for job in plan.publishes]
    return objs


def _labels(options: K8sOptions, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "sage-image", "app.kubernetes.io/part-of": "sage-image-release",
            "sage-image/run": options.run, **extra}


def _namespace(options: K8sOptions) -> Obj:
    # Build pods are privileged (loop devices, KVM): Pod Security must allow it here.
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": options.namespace, "labels": {
                "app.kubernetes.io/name": "sage-image",
                "pod-security.kubernetes.io/enforce": "privileged"}}}


def _pvc(ci: CI, options: K8sOptions) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteMany"],  # pods of one run land on any node
                 "resources": {"requests": {"storage": ci.cache_size}}}
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": PVC_NAME, "namespace": options.namespace,
                         "labels": {"app.kubernetes.io/name": "sage-image"}},
            "spec": spec}


def _env(values: Mapping[str, str]) -> list[Obj]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _wait(ci: CI, name: str, wait_for: str, failed: str, mark_failed: list[str]) -> Obj:
    return {"name": name, "image": ci.wait_image, "command": ["sh", "-c", WAIT_SCRIPT],
            "env": _env({"SAGE_WAIT_FOR": wait_for, "SAGE_WAIT_FAILED": failed,
                         "SAGE_MARK_FAILED": " ".join(mark_failed)}),
            "resources": render.resources(WAIT_RESOURCES),
            "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT}]}


def _work(ci: CI, name: str, plan_id: str, command: list[str], *, produces: str,
          ok: str, mark_failed: list[str], options: K8sOptions, privileged: bool,
          extra_env: Mapping[str, str] | None = None) -> Obj:
    script = WORK_SCRIPT.format(bootstrap="\n  ".join(bootstrap_lines()), command=shell(command))
    container: Obj = {
        "name": name, "image": ci.container, "command": ["bash", "-c", script],
        "env": _env({"SAGE_IMAGE_JOB": plan_id, "SAGE_IMAGE_PRODUCES": produces,
                     "SAGE_IMAGE_OK": ok, "SAGE_MARK_FAILED": " ".join(mark_failed),
                     "SAGE_IMAGE_REPO": options.repo, "SAGE_IMAGE_REF": options.ref,
                     "SAGE_IMAGE_CACHE": CACHE_MOUNT, **(extra_env or {})}),
        "resources": render.resources(ci.resources),
        "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT},
                         {"name": "src", "mountPath": "/src"}],
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
        container["volumeMounts"].append({"name": "dev", "mountPath": "/dev"})
    return container


def _job(options: K8sOptions, name: str, labels: dict[str, str], annotation: str,
         init: list[Obj], containers: list[Obj], volumes: list[Obj]) -> Obj:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": dns_name(f"{name}-{options.run}"), "namespace": options.namespace,
                     "labels": labels, "annotations": {"sage-image/plan-jobs": annotation}},
        "spec": {
            "backoffLimit": 0,  # a failed build is not retried blindly; rerun the release
            "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels},
                         "spec": {"restartPolicy": "Never", "initContainers": init,
                                  "containers": containers, "volumes": volumes}},
        },
    }


def _volumes(*, dev: bool, clouds_secret: str | None = None) -> list[Obj]:
    vols: list[Obj] = [{"name": "cache", "persistentVolumeClaim": {"claimName": PVC_NAME}},
                       {"name": "src", "emptyDir": {}}]
    if dev:
        vols.append({"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}})
    if clouds_secret:
        vols.append({"name": "clouds", "secret": {
            "secretName": clouds_secret, "defaultMode": 0o400,
            "items": [{"key": "clouds.yaml", "path": "clouds.yaml"}]}})
    return vols


def _image_job(ci: CI, plan: ReleasePlan, image: ImageJob, options: K8sOptions, paths: _Paths,
               has_children: bool) -> Obj:
    """One Job per image: [wait for the parent's layer] -> build (-> test, when requested)."""
    ids = [image.build_id] + ([image.test_id] if image.requested else [])
    failed = [paths.failed(i) for i in ids]
    steps: list[Obj] = []
    if image.parent:
        parent = plan.image(image.parent)
        steps.append(_wait(ci, "wait-parent-layer", paths.layer(parent.layer_key),
                           paths.failed(parent.build_id), failed))
    out = paths.out(image.key)
    steps.append(_work(ci, "build", image.build_id, build_argv(plan, image, out, CACHE_MOUNT),
                       produces=(paths.layer(image.layer_key) if has_children
                                 else paths.ok(image.build_id)),
                       ok=paths.ok(image.build_id), mark_failed=failed, options=options,
                       privileged=True))
    if image.requested:
        steps.append(_work(ci, "test", image.test_id,
                           [".venv/bin/sage-image", "test", out, "--junit", f"{out}/junit.xml"],
                           produces=paths.ok(image.test_id), ok=paths.ok(image.test_id),
                           mark_failed=failed[1:], options=options, privileged=True))
    labels = _labels(options, **{"sage-image/image": image.key})
    job = _job(options, f"image-{image.key}", labels, " ".join(ids), steps[:-1], steps[-1:],
               _volumes(dev=True))
    # A node of the image's arch (the well-known label's values are Go's, the same names as
    # Debian's for amd64 and arm64): an arm64 build there runs natively, not under qemu-user.
    job["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/arch": image.arch}
    return job


def _publish_job(ci: CI, job: PublishJob, options: K8sOptions, paths: _Paths) -> Obj:
    test_id = f"test:{job.image}"
    wait = _wait(ci, "wait-test", paths.ok(test_id), paths.failed(test_id), [paths.failed(job.id)])
    work = _work(ci, "publish", job.id,
                 [".venv/bin/sage-image", "publish", paths.out(job.image), "--sites", job.site],
                 produces=paths.ok(job.id), ok=paths.ok(job.id),
                 mark_failed=[paths.failed(job.id)], options=options, privileged=False,
                 extra_env={"OS_CLIENT_CONFIG_FILE": "/etc/sage-image/clouds.yaml"})
    work["volumeMounts"].append({"name": "clouds", "mountPath": "/etc/sage-image",
                                 "readOnly": True})
    labels = _labels(options, **{"sage-image/image": job.image, "sage-image/site": slug(job.site)})
    return _job(options, f"publish-{job.image}-{job.site}", labels, job.id, [wait], [work],
                _volumes(dev=False, clouds_secret=options.clouds_secret))


def _env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def k8s_graph(objects: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """plan job id -> plan job ids it waits for, read back from the Jobs: a work container
    depends on the producers of the files its pod waits for before it, and on the work
    container that ran before it in the same pod (init containers run one after another)."""
    pods = [o["spec"]["template"]["spec"] for o in objects if o.get("kind") == "Job"]
    producers = {}
    for pod in pods:
        for c in pod.get("initContainers", []) + pod["containers"]:
            env = _env_of(c)
            if "SAGE_IMAGE_JOB" in env:
                producers[env["SAGE_IMAGE_PRODUCES"]] = env["SAGE_IMAGE_JOB"]
    graph: dict[str, tuple[str, ...]] = {}
    for pod in pods:
        waits: list[str] = []
        previous: str | None = None
        for c in pod.get("initContainers", []) + pod["containers"]:
            env = _env_of(c)
            if "SAGE_WAIT_FOR" in env:
                waits.append(producers.get(env["SAGE_WAIT_FOR"], f"?{env['SAGE_WAIT_FOR']}"))
            elif "SAGE_IMAGE_JOB" in env:
                deps = waits + ([previous] if previous else [])
                graph[env["SAGE_IMAGE_JOB"]] = tuple(sorted(deps))
                waits, previous = [], env["SAGE_IMAGE_JOB"]
    return graph


def k8s_files(objects: list[Obj], command: str) -> dict[str, str]:
    """relative path -> text, with a kustomization.yaml so `kubectl apply -k DIR` works."""
    return render.folder_files(objects, header=f"# Generated by `{command}`. Do not edit: "
                                               "generate it again.\n",
                               subfolder=lambda obj: "jobs/" if obj["kind"] == "Job" else "")
