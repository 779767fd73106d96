"""Session fixtures shared by every stage's tests.

``local_sites``: three real Glance servers on loopback (chi-uc, chi-tacc, kvm-tacc).

``sage_release``: one real ``sage-image release --releases bookworm --variants sage --publish``
- a layer-only base build, the sage build on that layer, its QEMU boot test and the publish to
the three local sites - with every external source served from a local git repository this
fixture creates (GitHub is not reachable here). Its output folder is kept under
~/.cache/sage-image/test-builds, keyed by a hash of everything that goes into the images, so a
re-run of the suite rebuilds nothing unless the builder changed. The release itself runs every
time and reuses only what answers for today's inputs: a test result is kept only when the
tester (a digest of `sage_image/boottest`) and every check's definition digest are today's -
publish's own gate - so a changed check or tester boots the image again, without a rebuild; a
test that reads results reads them through `tests.contract.fresh_results`, which asks the same.
The publish runs every time, to fresh sites.

``sage_build``: the sage image's build output folder from that release.

``kustomize``: `kubectl kustomize DIR` with the pinned kubectl (scripts/test-tools.txt).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sage_image.builder.sources import STANDIN_GIT_ENV, STANDIN_TEMPLATES
from sage_image.localcloud.cloud import LocalCloud, SiteSpec, start_cloud
from sage_image.outfolder import Manifest, read_manifest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = [ROOT / "sage_image" / d for d in ("builder", "elements", "catalog")] + [ROOT / "sage_node"]
SOURCE_NAMES = ("cc-snapshot", "waggle-node", "beehive-server", "edge-plugins", "sage-ecr",
                "wes-data-sharing-service")
TEST_CACHE = Path(os.environ.get("SAGE_IMAGE_TEST_CACHE",
                                 Path.home() / ".cache" / "sage-image" / "test-builds"))


# What the slow tests need free where they write (the temp folder and ~/.cache: one file system
# here). Below it they fail in many ways at once - builds refuse at their min_free_gb, Swift
# answers 507 inside its 1 % fallocate_reserve - so the run stops first with one line instead.
SLOW_TESTS_FREE_GIB = 20


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.get_closest_marker("slow") for item in session.items):
        return
    where = Path(tempfile.gettempdir())
    free_gib = shutil.disk_usage(where).free / 2**30
    if free_gib < SLOW_TESTS_FREE_GIB:
        pytest.exit(f"the slow tests need {SLOW_TESTS_FREE_GIB} GiB free in {where}, there are "
                    f"{free_gib:.1f}: free some space (or run -m 'not slow')", returncode=2)


def _tree_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for root in paths:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _fixture_repo(name: str, root: Path) -> tuple[Path, str]:
    """A deterministic git repository standing in for upstream ``name`` (marked as a fixture)."""
    repo = root / name
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(STANDIN_TEMPLATES / name, repo)
    (repo / "TEST-FIXTURE").write_text(f"test fixture for {name}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root)} | STANDIN_GIT_ENV
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["commit", "-q", "-m", f"test fixture for {name}"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    return repo, commit


@pytest.fixture(scope="session")
def source_repos(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("sources")
    return {name: _fixture_repo(name, root) for name in SOURCE_NAMES}


SITES = ("CHI@UC", "CHI@TACC", "KVM@TACC")
CLOUDS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}


@pytest.fixture(scope="session")
def local_sites(tmp_path_factory) -> LocalCloud:
    """Three real Glance sites; always stopped and removed, also when a test fails."""
    root = tmp_path_factory.mktemp("glance-sites")
    cloud = start_cloud(root, [SiteSpec(c) for c in CLOUDS.values()])
    try:
        yield cloud
    finally:
        cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ReleaseRun:
    out: Path
    returncode: int
    stderr: str
    seconds: float

    @property
    def record(self) -> dict:
        return json.loads((self.out / "release.json").read_text())

    def build_folder(self, image: str) -> Path:
        """IMAGE's output folder; the test fails with the build's log when it was not built."""
        build = self.record["jobs"].get(f"build:{image}")
        if build is None:
            pytest.fail(f"{self.out}: the release did not build {image}")
        if build["status"] not in ("ok", "cached"):
            log = self.out / "logs" / f"build_{image}.log"
            pytest.fail(f"the {image} build failed: {build['reason']}\n"
                        f"{log.read_text()[-3000:] if log.exists() else ''}")
        return self.out / image


def run_release(out: Path, sources: dict[str, tuple[Path, str]], clouds_yaml: Path | None, *,
                variant: str = "sage", arch: str = "amd64", extra: tuple[str, ...] = ()
                ) -> ReleaseRun:
    """The release of bookworm variants (comma-separated) for one arch; published to the local
    sites when `clouds_yaml` names them; `extra`: more `sage-image release` options."""
    args = [sys.executable, "-m", "sage_image.cli", "release", "--releases", "bookworm",
            "--variants", variant, "--arches", arch, "--sites", ",".join(SITES),
            "--out", str(out), "--jobs", "1", *extra] + (["--publish"] if clouds_yaml else [])
    for name, (repo, commit) in sources.items():
        args += ["--source", f"{name}={repo}@{commit}"]
    env = os.environ | ({"OS_CLIENT_CONFIG_FILE": str(clouds_yaml)} if clouds_yaml else {})
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        _, stderr = proc.communicate(timeout=3600)
    except BaseException:
        # Interrupted (Ctrl-C, timeout): let the release stop its jobs and clean up first.
        proc.terminate()
        proc.wait(timeout=300)
        raise
    return ReleaseRun(out, proc.returncode, stderr, time.monotonic() - started)


@pytest.fixture(scope="session")
def sage_release(source_repos, local_sites) -> ReleaseRun:
    if os.geteuid() != 0:
        pytest.skip("building an image needs root")
    out = _cached_release_dir("release")
    # A failed job is for the tests to report (test_release_integration names it); only a
    # release that could not even record its jobs stops every test that needs it here.
    run = run_release(out, source_repos, local_sites.clouds_yaml)
    if not (out / "release.json").exists():
        pytest.fail(f"the release did not run:\n{run.stderr[-5000:]}")
    return run


def _cached_release_dir(kind: str) -> Path:
    """TEST_CACHE/KIND-KEY for the current build inputs; older keys of KIND are removed."""
    out = TEST_CACHE / f"{kind}-{_tree_hash(BUILD_INPUTS + [STANDIN_TEMPLATES])}"
    for stale in TEST_CACHE.glob(f"{kind}-*"):
        if stale != out:
            shutil.rmtree(stale, ignore_errors=True)  # keep one, not one per change
    return out


@pytest.fixture(scope="session")
def gpu_release(source_repos, request) -> ReleaseRun:
    """`sage-image release --variants gpu` (not published): the sage layer (layer only) on the
    base layer `sage_release` saved, the CUDA image on it and its boot test. Only for the
    opt-in `gpu` tests (`scripts/test -m gpu`): the CUDA toolkit and the driver's DKMS build
    make it ~25 minutes more than the whole default suite can spend.
    SAGE_IMAGE_TEST_GPU_RELEASE=DIR tests an existing `sage-image release --variants gpu`
    output folder instead (its gpu image boot-tested by the current checks) and builds nothing."""
    existing = os.environ.get("SAGE_IMAGE_TEST_GPU_RELEASE")
    if existing:
        return ReleaseRun(Path(existing), 0, "", 0.0)
    request.getfixturevalue("sage_release")  # first: the base layer it saves
    return _opt_in_release("gpu", source_repos, variant="gpu")


@pytest.fixture(scope="session")
def arm64_release(source_repos) -> ReleaseRun:
    """`sage-image release --variants base,sage --arches arm64` (not published), every package
    script under qemu-user: the arm64 base, the sage image on its layer, both boot-tested
    under `qemu-system-aarch64 -M virt` (TCG). Only for the opt-in `emulated` tests
    (`scripts/test -m emulated`): the two emulated builds take well over an hour here.
    SAGE_IMAGE_TEST_ARM64_RELEASE=DIR uses an existing release output folder that has them."""
    existing = os.environ.get("SAGE_IMAGE_TEST_ARM64_RELEASE")
    if existing:
        return ReleaseRun(Path(existing), 0, "", 0.0)
    return _opt_in_release("arm64", source_repos, variant="base,sage", arch="arm64")


def _opt_in_release(kind: str, source_repos: dict[str, tuple[Path, str]], **what: str
                    ) -> ReleaseRun:
    if os.geteuid() != 0:
        pytest.skip("building an image needs root")
    out = _cached_release_dir(kind)
    run = run_release(out, source_repos, None, **what)
    if not (out / "release.json").exists():
        pytest.fail(f"the {kind} release did not run:\n{run.stderr[-5000:]}")
    return run


@pytest.fixture(scope="session")
def sage_build(sage_release) -> Path:
    """Output folder of the real, layered, boot-tested and published bookworm sage build."""
    return sage_release.build_folder("bookworm-sage-amd64")


@pytest.fixture(scope="session")
def sage_manifest(sage_build) -> Manifest:
    return read_manifest(sage_build)



# `scripts/setup --test` installs it into .venv (the tests run .venv/bin/pytest, .venv/bin is not
# necessarily on PATH, and a kubectl on PATH could be any version).
KUBECTL = Path(sys.executable).with_name("kubectl")


@pytest.fixture(scope="session")
def kustomize() -> Callable[[Path], list[dict[str, Any]]]:
    """Render a kustomize tree as kubectl apply -k would; a refused tree raises RuntimeError
    with kustomize's message."""
    assert KUBECTL.is_file(), "kubectl is a test tool (scripts/test-tools.txt): run scripts/setup --test"

    def render(tree: Path) -> list[dict[str, Any]]:
        proc = subprocess.run([str(KUBECTL), "kustomize", str(tree)], capture_output=True,
                              text=True, timeout=120, env=os.environ | {"KUBECONFIG": "/dev/null"})
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip())
        return [d for d in yaml.safe_load_all(proc.stdout) if d]
    return render
