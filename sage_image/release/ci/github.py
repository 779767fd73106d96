"""The GitHub Actions workflow that runs the release plan: one job per build, test and publish,
`needs:` exactly the plan's dependencies (see the package docstring for the layer hand-off)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...catalog.model import CI, Catalog
from ...errors import UsageError
from ...k8s.render import dump
from ...outfolder import TEST_RESULTS
from ..plan import ImageJob, PublishJob, ReleasePlan
from ..run import LAYER_FILE
from .common import bootstrap_lines, build_argv, children, require_ci, secret_names, shell, slug

Obj = dict[str, Any]

WORKFLOW_NAME = "sage-image release"
# Generous ceilings: a cold gpu build under TCG-only runners is the slowest job.
TIMEOUT_MINUTES = {"build": 240, "test": 90, "publish": 90}
GH_CACHE = ".cache/sage-image"  # relative to the workspace (actions/cache paths are)


def secret_ref(name: str) -> str:
    return "${{ secrets." + name + " }}"


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



def render_workflow(workflow: Obj, command: str) -> str:
    header = (f"# Generated by `{command}` from the catalog and the release plan.\n"
              "# Do not edit: change the catalog and generate it again (docs/release.md).\n"
              "# Secrets (by name only): <SITE>_APPLICATION_CREDENTIAL_ID / _SECRET per site.\n")
    return header + dump(workflow)
