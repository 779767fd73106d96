"""Session fixtures shared by every stage's tests.

``sage_build``: one real diskimage-builder build of the bookworm ``sage`` image, with every
external source served from a local git repository this fixture creates (GitHub is not
reachable here). The build is cached under ~/.cache/sage-image/test-builds, keyed by a hash of
everything that goes into it, so the whole suite (build, boot and publish tests) builds at
most once per change of the builder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.build.sources import STANDIN_GIT_ENV, STANDIN_TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = [ROOT / "sage_image" / d for d in ("build", "elements", "catalog")]
SOURCE_NAMES = ("cc-snapshot", "waggle-node", "beehive-server", "edge-plugins", "sage-ecr")
TEST_CACHE = Path(os.environ.get("SAGE_IMAGE_TEST_CACHE",
                                 Path.home() / ".cache" / "sage-image" / "test-builds"))


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


@pytest.fixture(scope="session")
def sage_build(source_repos) -> Path:
    """Output folder of a real bookworm sage build (built once, then reused)."""
    if os.geteuid() != 0:
        pytest.skip("building an image needs root")
    key = _tree_hash(BUILD_INPUTS + [STANDIN_TEMPLATES])
    out = TEST_CACHE / f"bookworm-sage-{key}"
    if (out / "manifest.json").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for stale in TEST_CACHE.glob("bookworm-sage-*"):
        shutil.rmtree(stale, ignore_errors=True)  # keep one build, not one per change
    args = [sys.executable, "-m", "sage_image.cli", "build", "--release", "bookworm",
            "--variant", "sage", "--out", str(out)]
    for name, (repo, commit) in source_repos.items():
        args += ["--source", f"{name}={repo}@{commit}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"sage build failed:\n{result.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def sage_manifest(sage_build) -> dict:
    return json.loads((sage_build / "manifest.json").read_text())
