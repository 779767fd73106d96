"""`sage-image ci github|k8s`: the generated workflow and Jobs are valid (actionlint, the
Kubernetes schema, shellcheck), pinned, keep secrets out, and run exactly the local release
plan's job graph - and every one of those checks is shown to catch a broken file."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sage_image.catalog.model import ACTION_PIN_RE, IMAGE_PIN_RE, Catalog, load_catalog
from sage_image.cli import main
from sage_image.errors import ConfigError, UsageError
from sage_image.k8s import render
from sage_image.release.ci import common, github, k8s_jobs
from sage_image.release.ci_commands import K8S_MARKER
from sage_image.release.plan import ReleasePlan, plan_release

Obj = dict[str, Any]

# Selections with different shapes: everything; a parent that is requested; children whose
# parents are layer-only; one arch with fewer sites.
SELECTIONS: dict[str, dict[str, Any]] = {
    "whole-catalog": {},
    "bookworm-base-sage": {"releases": ("bookworm",), "variants": ("base", "sage"),
                           "sites": ("CHI@UC", "CHI@TACC", "KVM@TACC")},
    "gpu-only": {"releases": ("jammy", "noble"), "variants": ("gpu",)},
    "arm64": {"arches": ("arm64",), "variants": ("sage",)},
}
OPTIONS = k8s_jobs.K8sOptions(run="t1", ref="0123456789abcdef0123456789abcdef01234567",
                        repo="https://github.com/sagecontinuum/sage-image-builder")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def make_plan(catalog: Catalog, name: str, publish: bool = True) -> ReleasePlan:
    return plan_release(catalog, publish=publish, **SELECTIONS[name])


def actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    assert Path(found).exists(), "actionlint is in the test extra: run scripts/setup --test"
    return found


def lint(tmp_path: Path, workflow: Obj) -> str:
    """actionlint's findings ('' when clean); it runs shellcheck on every run: script too."""
    path = tmp_path / ".github" / "workflows" / "release.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(github.render_workflow(workflow, "sage-image ci github"))
    proc = subprocess.run([actionlint(), "-no-color", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    return proc.stdout + proc.stderr


# -- GitHub Actions ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_workflow_job_graph_equals_the_plan(catalog: Catalog, name: str) -> None:
    plan = make_plan(catalog, name)
    workflow = github.github_workflow(catalog, plan)
    assert github.workflow_graph(workflow) == common.plan_graph(plan)
    assert len(workflow["jobs"]) == len(plan.graph())


def test_graph_check_catches_a_workflow_that_differs(catalog: Catalog) -> None:
    plan = make_plan(catalog, "bookworm-base-sage")
    workflow = github.github_workflow(catalog, plan)
    broken = copy.deepcopy(workflow)
    # the sage build waiting for the base's boot test too is a different (slower) graph
    broken["jobs"]["build-bookworm-sage-amd64"]["needs"].append("test-bookworm-base-amd64")
    assert github.workflow_graph(broken) != common.plan_graph(plan)
    dropped = copy.deepcopy(workflow)
    del dropped["jobs"]["publish-bookworm-sage-amd64-kvm-tacc"]
    assert github.workflow_graph(dropped) != common.plan_graph(plan)


@pytest.mark.parametrize("name", ["bookworm-base-sage", "gpu-only", "arm64"])
def test_actionlint_and_shellcheck_pass(catalog: Catalog, tmp_path: Path, name: str) -> None:
    assert shutil.which("shellcheck"), "shellcheck (scripts/apt-packages.txt) checks run: scripts"
    assert lint(tmp_path, github.github_workflow(catalog, make_plan(catalog, name))) == ""


def test_actionlint_catches_a_broken_workflow(catalog: Catalog, tmp_path: Path) -> None:
    workflow = github.github_workflow(catalog, make_plan(catalog, "bookworm-base-sage"))
    broken = copy.deepcopy(workflow)
    job = broken["jobs"]["build-bookworm-sage-amd64"]
    job["needs"] = ["build-bookworm-bsae-amd64"]  # a job that does not exist
    job["steps"][-1]["if"] = "${{ inputs.publsh }}"  # an input that does not exist
    job["steps"][0]["run"] += "\necho $UNQUOTED_VAR*"  # shellcheck: SC2086
    found = lint(tmp_path, broken)
    assert "bsae" in found and "publsh" in found and "SC2086" in found


def uses(workflow: Obj) -> list[str]:
    return [s["uses"] for j in workflow["jobs"].values() for s in j["steps"] if "uses" in s]


def unpinned(workflow: Obj) -> list[str]:
    refs = uses(workflow)
    bad = [u for u in refs if not re.match(r"^[\w.-]+/[\w./-]+@([0-9a-f]{40}|v\d+\.\d+\.\d+)$", u)]
    images = {j["container"]["image"] for j in workflow["jobs"].values()}
    bad += [i for i in images if not IMAGE_PIN_RE.match(i) or i.endswith(":latest")]
    runners = {j["runs-on"] for j in workflow["jobs"].values()}
    return bad + [r for r in runners if r.endswith("-latest")]


def test_every_action_image_and_runner_is_pinned(catalog: Catalog) -> None:
    workflow = github.github_workflow(catalog, make_plan(catalog, "whole-catalog"))
    assert unpinned(workflow) == []
    assert {u.split("@")[0] for u in uses(workflow)} == {
        "actions/checkout", "actions/cache", "actions/cache/restore", "actions/upload-artifact",
        "actions/download-artifact"}
    broken = copy.deepcopy(workflow)
    first = next(iter(broken["jobs"].values()))
    first["steps"][1]["uses"] = "actions/checkout@v4"
    first["container"]["image"] = "debian:latest"
    first["runs-on"] = "ubuntu-latest"
    assert unpinned(broken) == ["actions/checkout@v4", "debian:latest", "ubuntu-latest"]


def runner_mismatches(catalog: Catalog, plan: ReleasePlan, workflow: Obj) -> list[str]:
    """Every job of an image runs on the catalog's runner for the image's arch."""
    arch_of = {gh: plan.image(key).arch for key in (i.key for i in plan.images)
               for gh in (github.gh_job_id(f"build:{key}"), github.gh_job_id(f"test:{key}"))}
    arch_of |= {github.gh_job_id(p.id): plan.image(p.image).arch for p in plan.publishes}
    assert catalog.ci is not None
    return [f"{job_id}: {job['runs-on']}" for job_id, job in workflow["jobs"].items()
            if job["runs-on"] != catalog.ci.runners[arch_of[job_id]]]


def test_each_job_runs_on_a_native_runner_of_its_images_arch(catalog: Catalog) -> None:
    plan = make_plan(catalog, "whole-catalog")
    workflow = github.github_workflow(catalog, plan)
    assert runner_mismatches(catalog, plan, workflow) == []
    assert workflow["jobs"]["build-bookworm-sage-arm64"]["runs-on"] == "ubuntu-24.04-arm"
    assert workflow["jobs"]["test-bookworm-sage-arm64"]["runs-on"] == "ubuntu-24.04-arm"
    assert workflow["jobs"]["build-bookworm-sage-amd64"]["runs-on"] == "ubuntu-24.04"
    broken = copy.deepcopy(workflow)
    broken["jobs"]["build-bookworm-sage-arm64"]["runs-on"] = "ubuntu-24.04"  # emulated build
    assert runner_mismatches(catalog, plan, broken) == ["build-bookworm-sage-arm64: ubuntu-24.04"]


def node_arch_mismatches(plan: ReleasePlan, objs: list[Obj]) -> list[str]:
    """Every image Job selects nodes of its image's arch."""
    return [o["metadata"]["name"] for o in objs if o["kind"] == "Job"
            and "sage-image/site" not in o["metadata"]["labels"]
            and o["spec"]["template"]["spec"].get("nodeSelector") != {
                "kubernetes.io/arch": plan.image(o["metadata"]["labels"]["sage-image/image"]).arch}]


def test_k8s_image_jobs_select_nodes_of_their_arch(catalog: Catalog) -> None:
    plan = make_plan(catalog, "whole-catalog")
    objs = k8s_jobs.k8s_objects(catalog, plan, OPTIONS)
    assert node_arch_mismatches(plan, objs) == []
    arm = next(o for o in objs if o["metadata"]["name"].startswith("image-bookworm-sage-arm64"))
    assert arm["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    broken = copy.deepcopy(objs)
    job = next(o for o in broken if o["metadata"]["name"] == arm["metadata"]["name"])
    del job["spec"]["template"]["spec"]["nodeSelector"]
    assert node_arch_mismatches(plan, broken) == [arm["metadata"]["name"]]


def secret_leaks(workflow: Obj) -> list[str]:
    """Secrets may only enter a step's env; no script may print a credential variable."""
    leaks = []
    for job_id, job in workflow["jobs"].items():
        outside = {k: v for k, v in job.items() if k != "steps"}
        if "secrets." in str(outside):
            leaks.append(f"{job_id}: secret outside a step")
        for step in job["steps"]:
            if "secrets." in str({k: v for k, v in step.items() if k != "env"}):
                leaks.append(f"{job_id}/{step.get('name')}: secret outside env")
            if re.search(r"(echo|printf|cat)\b[^\n]*CREDENTIAL", step.get("run", "")):
                leaks.append(f"{job_id}/{step.get('name')}: prints a credential")
    return leaks


def test_secrets_are_referenced_by_name_and_only_through_env(catalog: Catalog) -> None:
    plan = make_plan(catalog, "bookworm-base-sage")
    workflow = github.github_workflow(catalog, plan)
    text = github.render_workflow(workflow, "x")
    assert secret_leaks(workflow) == []
    named = set(re.findall(r"\$\{\{ secrets\.(\w+) \}\}", text))
    assert named == {n for p in plan.publishes for n in common.secret_names(p.site)}
    assert "CHI_UC_APPLICATION_CREDENTIAL_SECRET" in named
    broken = copy.deepcopy(workflow)
    step = broken["jobs"]["publish-bookworm-sage-amd64-chi-uc"]["steps"][-3]
    step["run"] = "echo $APPLICATION_CREDENTIAL_SECRET; " + step["run"]
    step2 = broken["jobs"]["publish-bookworm-base-amd64-chi-uc"]["steps"][-2]
    step2["run"] += " --password ${{ secrets.CHI_UC_APPLICATION_CREDENTIAL_SECRET }}"
    assert len(secret_leaks(broken)) == 2


def test_clouds_yaml_script_writes_the_file_without_printing(catalog: Catalog, tmp_path: Path) -> None:
    """Run the generated step's script as GitHub would, with fake secret values."""
    workflow = github.github_workflow(catalog, make_plan(catalog, "bookworm-base-sage"))
    step = next(s for s in workflow["jobs"]["publish-bookworm-sage-amd64-kvm-tacc"]["steps"]
                if s["name"].startswith("clouds.yaml"))
    env = {**step["env"], "APPLICATION_CREDENTIAL_ID": "fake-id",
           "APPLICATION_CREDENTIAL_SECRET": "fake-secret-value", "RUNNER_TEMP": str(tmp_path),
           "GITHUB_ENV": str(tmp_path / "github_env"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "fake-secret" not in proc.stdout + proc.stderr
    clouds = yaml.safe_load((tmp_path / "clouds.yaml").read_text())["clouds"]
    assert clouds["kvm-tacc"]["auth"]["application_credential_secret"] == "fake-secret-value"
    assert clouds["kvm-tacc"]["region_name"] == "KVM@TACC"
    assert (tmp_path / "clouds.yaml").stat().st_mode & 0o077 == 0
    assert (tmp_path / "github_env").read_text().startswith("OS_CLIENT_CONFIG_FILE=")


def layer_handoffs(workflow: Obj) -> list[str]:
    """Every restored parent layer must be a layer some needed job saves, under the same key."""
    saved = {}
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/cache@"):
                saved[step["with"]["key"]] = (job_id, step["with"]["path"])
    problems = []
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "/cache/restore@" in step.get("uses", ""):
                key, path = step["with"]["key"], step["with"]["path"]
                if saved.get(key, (None, None))[1] != path or saved[key][0] not in job.get("needs", []):
                    problems.append(f"{job_id}: {key}")
    return problems


def test_each_child_restores_its_parents_layer_by_layer_key(catalog: Catalog) -> None:
    plan = make_plan(catalog, "gpu-only")
    workflow = github.github_workflow(catalog, plan)
    assert layer_handoffs(workflow) == []
    gpu = plan.image("jammy-gpu-amd64")
    build = workflow["jobs"]["build-jammy-gpu-amd64"]
    restore = next(s for s in build["steps"] if "/cache/restore@" in s.get("uses", ""))
    assert restore["with"]["key"] == f"sage-layer-{plan.image(gpu.parent).layer_key}"
    # layer-only parents skip their build when the layer was cached by an earlier run
    sage = workflow["jobs"]["build-jammy-sage-amd64"]
    assert next(s for s in sage["steps"] if s["name"] == "sage-image build")["if"]
    broken = copy.deepcopy(workflow)
    step = next(s for s in broken["jobs"]["build-jammy-gpu-amd64"]["steps"]
                if "/cache/restore@" in s.get("uses", ""))
    step["with"]["key"] = f"sage-layer-{plan.image('jammy-base-amd64').layer_key}"
    assert layer_handoffs(broken) == ["build-jammy-gpu-amd64: " + step["with"]["key"]]


def test_generation_is_deterministic(catalog: Catalog) -> None:
    plan = make_plan(catalog, "whole-catalog")
    one = github.render_workflow(github.github_workflow(catalog, plan), "c")
    assert one == github.render_workflow(github.github_workflow(catalog, make_plan(catalog, "whole-catalog")), "c")
    assert k8s_jobs.k8s_files(k8s_jobs.k8s_objects(catalog, plan, OPTIONS), "c") == k8s_jobs.k8s_files(
        k8s_jobs.k8s_objects(catalog, plan, OPTIONS), "c")


# -- Kubernetes --------------------------------------------------------------------------------
def schema_errors(obj: Obj, version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']}/{obj['metadata']['name']} @ {version}: {exc.message}"
    return None


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_k8s_objects_are_schema_valid(catalog: Catalog, name: str) -> None:
    objs = k8s_jobs.k8s_objects(catalog, make_plan(catalog, name), OPTIONS)
    assert catalog.kubernetes is not None
    found = [e for v in catalog.kubernetes.versions for o in objs if (e := schema_errors(o, v))]
    assert found == []


def test_schema_check_catches_a_broken_object(catalog: Catalog) -> None:
    objs = k8s_jobs.k8s_objects(catalog, make_plan(catalog, "bookworm-base-sage"), OPTIONS)
    job = copy.deepcopy(next(o for o in objs if o["kind"] == "Job"))
    job["spec"]["backoffLimit"] = "none"
    assert schema_errors(job, "1.32")
    job = copy.deepcopy(next(o for o in objs if o["kind"] == "Job"))
    job["spec"]["template"]["spec"]["initContainer"] = job["spec"]["template"]["spec"].pop("initContainers")
    assert "initContainer" in (schema_errors(job, "1.32") or "")


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_k8s_job_graph_equals_the_plan(catalog: Catalog, name: str) -> None:
    plan = make_plan(catalog, name)
    objs = k8s_jobs.k8s_objects(catalog, plan, OPTIONS)
    assert k8s_jobs.k8s_graph(objs) == common.plan_graph(plan)
    jobs = [o for o in objs if o["kind"] == "Job"]
    assert len(jobs) == len(plan.images) + len(plan.publishes)  # one Job per image, per publish


def test_k8s_graph_check_catches_a_wrong_wait(catalog: Catalog) -> None:
    plan = make_plan(catalog, "gpu-only")
    objs = copy.deepcopy(k8s_jobs.k8s_objects(catalog, plan, OPTIONS))
    gpu = next(o for o in objs if o["metadata"]["name"].startswith("image-jammy-gpu"))
    wait = gpu["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e for e in wait["env"]}
    # waiting for the base layer instead of the sage layer starts gpu too early
    env["SAGE_WAIT_FOR"]["value"] = f"/cache/layers/{plan.image('jammy-base-amd64').layer_key}.tar"
    assert k8s_jobs.k8s_graph(objs) != common.plan_graph(plan)


def test_k8s_pins_privilege_and_secrets(catalog: Catalog) -> None:
    objs = k8s_jobs.k8s_objects(catalog, make_plan(catalog, "bookworm-base-sage"), OPTIONS)
    assert "Secret" not in {o["kind"] for o in objs}  # referenced by name, never generated
    for job in (o for o in objs if o["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        for c in pod["initContainers"] + pod["containers"]:
            assert IMAGE_PIN_RE.match(c["image"]) and not c["image"].endswith(":latest")
            privileged = c.get("securityContext", {}).get("privileged", False)
            assert privileged == (c["name"] in ("build", "test")), c["name"]
        secret_vols = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
        assert secret_vols == (["sage-image-clouds"] if job["metadata"]["name"].startswith("publish")
                               else [])
    names = [o["metadata"]["name"] for o in objs]
    assert len(names) == len(set(names)) and all(len(n) <= 63 for n in names)
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def _by_kind_and_name(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_k8s_tree_renders_with_kustomize_to_exactly_the_checked_objects(
        catalog: Catalog, tmp_path: Path, kustomize: Callable[[Path], list[Obj]]) -> None:
    """What `kubectl apply -k DIR` sends is exactly what the schema and graph tests check."""
    objs = k8s_jobs.k8s_objects(catalog, make_plan(catalog, "whole-catalog"), OPTIONS)
    out = tmp_path / "k8s"
    render.write_tree(out, k8s_jobs.k8s_files(objs, "c"), marker=K8S_MARKER, command="c")
    assert _by_kind_and_name(kustomize(out)) == _by_kind_and_name(objs)
    missing = next((out / "jobs").iterdir())
    missing.unlink()  # the render can fail: a Job the kustomization lists is not there
    with pytest.raises(RuntimeError, match=missing.name):
        kustomize(out)


def test_action_pin_pattern_refuses_floating_refs() -> None:
    assert ACTION_PIN_RE.match("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683")
    assert ACTION_PIN_RE.match("actions/checkout@v4.2.2")
    for bad in ("actions/checkout@v4", "actions/checkout@main", "actions/checkout"):
        assert not ACTION_PIN_RE.match(bad)


def _run_wait(tmp_path: Path, wait_for: Path, failed: Path, marks: list[Path]) -> subprocess.Popen[str]:
    env = {"SAGE_WAIT_FOR": str(wait_for), "SAGE_WAIT_FAILED": str(failed),
           "SAGE_MARK_FAILED": " ".join(map(str, marks)), "SAGE_WAIT_INTERVAL": "0.1",
           "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(["sh", "-c", k8s_jobs.WAIT_SCRIPT], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_wait_script_starts_when_the_layer_appears(tmp_path: Path) -> None:
    layer = tmp_path / "layers" / "abc.tar"
    proc = _run_wait(tmp_path, layer, tmp_path / "build.failed", [tmp_path / "x.failed"])
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting
    layer.parent.mkdir()
    layer.write_bytes(b"layer")
    assert proc.wait(timeout=10) == 0
    assert not (tmp_path / "x.failed").exists()


def test_wait_script_gives_up_when_the_parent_failed(tmp_path: Path) -> None:
    (tmp_path / "build.failed").touch()
    marks = [tmp_path / "status" / "build_child.failed", tmp_path / "status" / "test_child.failed"]
    proc = _run_wait(tmp_path, tmp_path / "never.tar", tmp_path / "build.failed", marks)
    assert proc.wait(timeout=10) == 1
    assert all(m.exists() for m in marks)  # so whatever waits on this pod stops too


def test_pod_scripts_pass_shellcheck(tmp_path: Path) -> None:
    script = k8s_jobs.WORK_SCRIPT.format(bootstrap="\n  ".join(common.bootstrap_lines()),
                                   command=common.shell([".venv/bin/sage-image", "test", "/cache/x"]))
    (tmp_path / "work.sh").write_text("#!/bin/bash\n" + script)
    (tmp_path / "wait.sh").write_text("#!/bin/sh\n" + k8s_jobs.WAIT_SCRIPT)
    (tmp_path / "bad.sh").write_text("#!/bin/sh\nfor f in $(ls $X); do echo $f; done\n")
    check = [shutil.which("shellcheck") or "shellcheck", "-S", "warning"]
    assert subprocess.run(check + [str(tmp_path / "work.sh"), str(tmp_path / "wait.sh")]).returncode == 0
    assert subprocess.run(check + [str(tmp_path / "bad.sh")], capture_output=True).returncode != 0


# -- catalog and command line ------------------------------------------------------------------
def test_an_unpinned_action_in_the_catalog_names_file_and_line(tmp_path: Path) -> None:
    text = load_catalog().path.read_text()
    bad = re.sub(r"checkout: actions/checkout@\w+", "checkout: actions/checkout@v4", text)
    (tmp_path / "catalog.yaml").write_text(bad)
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "checkout@v4" in t)
    with pytest.raises(ConfigError, match=rf"catalog.yaml:{line}: ci.actions.checkout: pin"):
        load_catalog(tmp_path / "catalog.yaml")


@pytest.mark.parametrize("old,new,expected", [
    ("    arm64: ubuntu-24.04-arm\n", "", "ci.runners: missing required setting 'arm64'"),
    ("    arm64: ubuntu-24.04-arm\n", "    arm64: ubuntu-latest\n",
     "ci.runners.arm64: pin a runner version, not 'ubuntu-latest'"),
])
def test_a_runner_per_arch_is_required_and_pinned(tmp_path: Path, old: str, new: str,
                                                  expected: str) -> None:
    text = load_catalog().path.read_text()
    assert old in text
    (tmp_path / "catalog.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_catalog(tmp_path / "catalog.yaml")


def test_ci_github_writes_the_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wf.yml"
    assert main(["ci", "github", "--releases", "bookworm", "--variants", "sage", "--arches",
                 "amd64", "--sites", "CHI@UC", "--out", str(out)]) == 0
    workflow = yaml.safe_load(out.read_text())
    assert set(workflow["jobs"]) == {"build-bookworm-base-amd64", "build-bookworm-sage-amd64",
                                     "test-bookworm-sage-amd64", "publish-bookworm-sage-amd64-chi-uc"}
    assert out.read_text().startswith("# Generated by `sage-image ci github")


def test_ci_k8s_writes_a_kustomize_tree_and_refuses_a_foreign_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k8s"
    args = ["ci", "k8s", "--variants", "sage", "--releases", "bookworm", "--publish", "--run", "r1",
            "--ref", "v0.1.0", "--out", str(out)]
    assert main(args) == 0
    kust = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert all((out / r).is_file() for r in kust["resources"])
    assert main(args) == 0  # our own tree is replaced
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(args[:-1] + [str(foreign)]) == 2
    assert "was not written by" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["ci", "github", "--variants", "sgae", "--out", "-"], "unknown variant 'sgae'"),
    (["ci", "k8s", "--run", "Bad_Run", "--ref", "x"], "bad --run"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_catalog_without_ci_section_is_a_usage_error(tmp_path: Path) -> None:
    text = load_catalog().path.read_text()
    (tmp_path / "catalog.yaml").write_text(text.split("\nci:\n")[0] + "\n")
    catalog = load_catalog(tmp_path / "catalog.yaml")
    with pytest.raises(UsageError, match="no 'ci' section"):
        github.github_workflow(catalog, plan_release(catalog, variants=("base",)))
