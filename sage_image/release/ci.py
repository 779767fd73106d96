"""Pure generation of CI from the release plan: a GitHub Actions workflow and Kubernetes Jobs.

Both run exactly the jobs of `plan_release` (build, test, publish) with exactly its
dependencies - `*_graph()` reads the dependencies back out of what was generated, and the
commands refuse to write a file whose graph differs from `ReleasePlan.graph()`.

How a child build gets its parent's layer (the layered-build contract, docs/release.md): the
build arguments are `run.build_args`, the same as a local `sage-image release`: a child starts
`--from-layer C/layers/<parent layer_key>.tar.gz`, a parent saves `--save-layer` there (written
under a temporary name and renamed, so it appears whole), a parent nobody asked for is
`--layer-only`.
- GitHub: each layer travels in an actions/cache entry keyed by its layer key, so a rerun with
  an unchanged base restores it instead of building it; images travel as run artifacts.
- Kubernetes: one shared volume is the cache root; a build pod's init container waits until the
  parent's layer file exists (content-addressed, so a warm cache starts it at once) and fails
  as soon as the parent's failure marker appears. No controller or operator is needed.

Nothing here reads the environment, the clock or a secret: secrets are referenced by name only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ..catalog.model import CI, Catalog
from ..errors import UsageError
from ..outfolder import TEST_RESULTS
from .plan import ImageJob, PublishJob, ReleasePlan
from .run import LAYER_FILE, build_args

Obj = dict[str, Any]

# What a bare Debian container lacks before scripts/setup can run (it needs git and a venv).
BOOTSTRAP_PACKAGES = ("ca-certificates", "git", "python3", "python3-venv")
WORKFLOW_NAME = "sage-image release"
# Generous ceilings: a cold gpu build under TCG-only runners is the slowest job.
TIMEOUT_MINUTES = {"build": 240, "test": 90, "publish": 90}
GH_CACHE = ".cache/sage-image"  # relative to the workspace (actions/cache paths are)


# -- shared --------------------------------------------------------------------------------------
def require_ci(catalog: Catalog) -> CI:
    if catalog.ci is None:
        raise UsageError(f"{catalog.path.name} has no 'ci' section (pinned images and actions)",
                         hint="copy the ci section of the shipped catalog.yaml")
    return catalog.ci


def slug(text: str) -> str:
    """`CHI@UC` -> `chi-uc`: usable in job ids, Kubernetes names, secret names (upper-cased)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def secret_names(site: str) -> tuple[str, str]:
    """Repository secrets holding a site's application credential (id, secret)."""
    base = slug(site).replace("-", "_").upper()
    return f"{base}_APPLICATION_CREDENTIAL_ID", f"{base}_APPLICATION_CREDENTIAL_SECRET"


def secret_ref(name: str) -> str:
    return "${{ secrets." + name + " }}"


def children(plan: ReleasePlan) -> set[str]:
    """Keys of images some other build starts from."""
    return {i.parent for i in plan.images if i.parent}


def build_argv(plan: ReleasePlan, image: ImageJob, out: str, cache: str) -> list[str]:
    return [".venv/bin/sage-image", *build_args(plan, image, out=out, cache=cache)]


def _quote(arg: str) -> str:
    """Shell-quote, but leave "$VAR/..." expandable (our own variables, never user text)."""
    if re.fullmatch(r'"\$\w+[\w@%+=:,./-]*"[\w@%+=:,./-]*', arg):
        return arg  # "$VAR/path" or "$VAR/path"/more: our own variables, expanded by the shell
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def shell(argv: Iterable[str]) -> str:
    return " ".join(_quote(a) for a in argv)


def bootstrap_lines() -> list[str]:
    return ["export DEBIAN_FRONTEND=noninteractive",
            "apt-get update -qq",
            "apt-get install -y -qq --no-install-recommends " + " ".join(BOOTSTRAP_PACKAGES)]


# -- GitHub Actions ------------------------------------------------------------------------------
def gh_job_id(plan_id: str) -> str:
    kind, _, rest = plan_id.partition(":")
    return f"{kind}-{slug(rest)}"


def github_workflow(catalog: Catalog, plan: ReleasePlan) -> Obj:
    """The whole workflow as a dict (see render_workflow for the text)."""
    ci = require_ci(catalog)
    _check_auth_urls(ci, plan.publishes)
    parents = children(plan)
    jobs: Obj = {}
    for image in plan.images:
        jobs[gh_job_id(image.build_id)] = _gh_build(ci, plan, image, image.key in parents)
        if image.requested:
            jobs[gh_job_id(image.test_id)] = _gh_test(ci, image)
    for job in plan.publishes:
        jobs[gh_job_id(job.id)] = _gh_publish(ci, catalog, plan, job)
    return {
        "name": WORKFLOW_NAME,
        "on": {
            "workflow_dispatch": {"inputs": {"publish": {
                "description": "publish every tested image to its sites", "type": "boolean",
                "default": False}}},
            "push": {"branches": ["main"],
                     "paths": ["sage_image/**", "scripts/**", "pyproject.toml"]},
        },
        # Least privilege: the jobs read the repository; caches and artifacts need no scope.
        "permissions": {"contents": "read"},
        # Two runs publishing at once would backdate each other's images.
        "concurrency": {"group": "sage-image-release", "cancel-in-progress": False},
        "jobs": jobs,
    }


def _check_auth_urls(ci: CI, publishes: Iterable[PublishJob]) -> None:
    missing = sorted({p.site for p in publishes} - set(ci.auth_urls))
    if missing:
        raise UsageError(f"no ci.auth_urls entry for {', '.join(missing)}",
                         hint="add the site's Keystone URL to the catalog's ci.auth_urls")


def _container(ci: CI, *, privileged: bool) -> Obj:
    # Privileged with the host's /dev: DIB needs loop devices created after the container
    # starts, and the boot test wants /dev/kvm.
    return {"image": ci.container, **({"options": "--privileged -v /dev:/dev"} if privileged else {})}


def _gh_common(ci: CI, plan_id: str, needs: list[str], kind: str, *, arch: str,
               privileged: bool) -> Obj:
    job: Obj = {"name": plan_id}
    if needs:
        job["needs"] = needs
    # A native runner of the image's arch: an arm64 build there needs no emulation.
    job.update({"runs-on": ci.runners[arch], "timeout-minutes": TIMEOUT_MINUTES[kind],
                "container": _container(ci, privileged=privileged)})
    return job


def _setup_steps(ci: CI) -> list[Obj]:
    return [
        {"name": "Install what scripts/setup needs to start", "run": "\n".join(bootstrap_lines())},
        {"name": "Check out", "uses": ci.actions["checkout"]},
        {"name": "scripts/setup (Debian packages and .venv)", "run": "scripts/setup"},
    ]


def _sub_action(ref: str, sub: str) -> str:
    repo, _, pin = ref.partition("@")
    return f"{repo}/{sub}@{pin}"


def _layer_path(layer_key: str) -> str:
    return f"{GH_CACHE}/{LAYER_FILE.format(layer_key=layer_key)}"


def _gh_build(ci: CI, plan: ReleasePlan, image: ImageJob, has_children: bool) -> Obj:
    needs = [gh_job_id(f"build:{image.parent}")] if image.parent else []
    job = _gh_common(ci, image.build_id, needs, "build", arch=image.arch, privileged=True)
    steps = _setup_steps(ci)
    if image.parent:
        parent = plan.image(image.parent)
        steps.append({"name": f"Restore the layer of {parent.key}",
                      "uses": _sub_action(ci.actions["cache"], "restore"),
                      "with": {"path": _layer_path(parent.layer_key),
                               "key": f"sage-layer-{parent.layer_key}",
                               "fail-on-cache-miss": True}})
    # Restored here if an earlier run built the same layer; saved at the end of the job if not.
    steps.append({"name": f"Layer cache of {image.key}", "id": "layer", "uses": ci.actions["cache"],
                  "with": {"path": _layer_path(image.layer_key),
                           "key": f"sage-layer-{image.layer_key}"}})
    cache = f'"$GITHUB_WORKSPACE/{GH_CACHE}"'
    build: Obj = {"name": "sage-image build",
                  "run": shell(build_argv(plan, image, f"out/{image.key}", cache))}
    if not image.requested:  # a layer-only build has nothing to do when its layer was restored
        build["if"] = "steps.layer.outputs.cache-hit != 'true'"
    steps.append(build)
    if has_children:
        steps.append({"name": "Check the layer children start from",
                      "run": f"test -s {_layer_path(image.layer_key)}"})
    if image.requested:
        steps.append({"name": "Keep the image for test and publish",
                      "uses": ci.actions["upload-artifact"],
                      "with": {"name": f"image-{image.key}", "path": f"out/{image.key}",
                               "retention-days": ci.retention_days,
                               "if-no-files-found": "error", "compression-level": 0}})
    job["steps"] = steps
    return job


def _gh_test(ci: CI, image: ImageJob) -> Obj:
    job = _gh_common(ci, image.test_id, [gh_job_id(image.build_id)], "test", arch=image.arch,
                     privileged=True)
    out = f"out/{image.key}"
    job["steps"] = _setup_steps(ci) + [
        {"name": "Get the image", "uses": ci.actions["download-artifact"],
         "with": {"name": f"image-{image.key}", "path": out}},
        {"name": "sage-image test",
         "run": shell([".venv/bin/sage-image", "test", out, "--junit", f"{out}/junit.xml"])},
        {"name": "Keep the test results", "if": "always()", "uses": ci.actions["upload-artifact"],
         "with": {"name": f"test-{image.key}",
                  "path": f"{out}/{TEST_RESULTS}\n{out}/junit.xml",
                  "retention-days": ci.retention_days, "if-no-files-found": "warn"}},
    ]
    return job


CLOUDS_SCRIPT = """umask 077
python3 - <<'EOF'
import json, os
cloud = {"auth_type": "v3applicationcredential", "region_name": os.environ["REGION"],
         "auth": {"auth_url": os.environ["AUTH_URL"],
                  "application_credential_id": os.environ["APPLICATION_CREDENTIAL_ID"],
                  "application_credential_secret": os.environ["APPLICATION_CREDENTIAL_SECRET"]}}
path = os.path.join(os.environ["RUNNER_TEMP"], "clouds.yaml")
with open(path, "w") as f:
    json.dump({"clouds": {os.environ["CLOUD"]: cloud}}, f)  # JSON is YAML
EOF
echo "OS_CLIENT_CONFIG_FILE=$RUNNER_TEMP/clouds.yaml" >> "$GITHUB_ENV\""""


def _gh_publish(ci: CI, catalog: Catalog, plan: ReleasePlan, job: PublishJob) -> Obj:
    gh = _gh_common(ci, job.id, [gh_job_id(f"test:{job.image}")], "publish",
                    arch=plan.image(job.image).arch, privileged=False)
    gh["if"] = "${{ inputs.publish }}"  # push runs build and test; publishing is asked for
    out = f"out/{job.image}"
    cred_id, cred_secret = secret_names(job.site)
    gh["steps"] = _setup_steps(ci) + [
        {"name": "Get the image", "uses": ci.actions["download-artifact"],
         "with": {"name": f"image-{job.image}", "path": out}},
        {"name": "Get the test results", "uses": ci.actions["download-artifact"],
         "with": {"name": f"test-{job.image}", "path": out}},
        # Secrets enter through env only (never the script text) and are written, not echoed.
        {"name": f"clouds.yaml for {job.site} from repository secrets",
         "env": {"APPLICATION_CREDENTIAL_ID": secret_ref(cred_id),
                 "APPLICATION_CREDENTIAL_SECRET": secret_ref(cred_secret),
                 "AUTH_URL": ci.auth_urls[job.site], "REGION": job.site,
                 "CLOUD": catalog.sites[job.site].cloud},
         "run": CLOUDS_SCRIPT},
        {"name": "sage-image publish",
         "run": shell([".venv/bin/sage-image", "publish", out, "--sites", job.site])},
        {"name": "Remove clouds.yaml", "if": "always()", "run": 'rm -f "$RUNNER_TEMP/clouds.yaml"'},
    ]
    return gh


def workflow_graph(workflow: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """plan job id -> plan job ids it needs, read back from `name:` and `needs:`."""
    jobs = workflow["jobs"]
    graph = {}
    for job in jobs.values():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        graph[job["name"]] = tuple(sorted(jobs[n]["name"] for n in needs))
    return graph


# -- Kubernetes ----------------------------------------------------------------------------------
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
WAIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"},
                  "limits": {"cpu": "50m", "memory": "32Mi"}}
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
            "resources": WAIT_RESOURCES,
            "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT}]}


def _work(ci: CI, name: str, plan_id: str, command: list[str], *, produces: str,
          ok: str, mark_failed: list[str], options: K8sOptions, privileged: bool,
          extra_env: Mapping[str, str] | None = None) -> Obj:
    script = WORK_SCRIPT.format(bootstrap="\n  ".join(bootstrap_lines()), command=shell(command))
    r = ci.resources
    container: Obj = {
        "name": name, "image": ci.container, "command": ["bash", "-c", script],
        "env": _env({"SAGE_IMAGE_JOB": plan_id, "SAGE_IMAGE_PRODUCES": produces,
                     "SAGE_IMAGE_OK": ok, "SAGE_MARK_FAILED": " ".join(mark_failed),
                     "SAGE_IMAGE_REPO": options.repo, "SAGE_IMAGE_REF": options.ref,
                     "SAGE_IMAGE_CACHE": CACHE_MOUNT, **(extra_env or {})}),
        "resources": {"requests": {"cpu": r.cpu_request, "memory": r.memory_request},
                      "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit}},
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


def plan_graph(plan: ReleasePlan) -> dict[str, tuple[str, ...]]:
    return {k: tuple(sorted(v)) for k, v in plan.graph().items()}


# -- text --------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def render_workflow(workflow: Obj, command: str) -> str:
    header = (f"# Generated by `{command}` from the catalog and the release plan.\n"
              "# Do not edit: change the catalog and generate it again (docs/release.md).\n"
              "# Secrets (by name only): <SITE>_APPLICATION_CREDENTIAL_ID / _SECRET per site.\n")
    return header + dump(workflow)


def k8s_files(objects: list[Obj], command: str) -> dict[str, str]:
    """relative path -> text, with a kustomization.yaml so `kubectl apply -k DIR` works."""
    header = f"# Generated by `{command}`. Do not edit: generate it again.\n"
    files: dict[str, str] = {}
    for obj in objects:
        kind = obj["kind"]
        folder = "jobs/" if kind == "Job" else ""
        files[f"{folder}{kind.lower()}-{obj['metadata']['name']}.yaml"] = header + dump(obj)
    files["kustomization.yaml"] = header + dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": list(files)})
    return files
