"""A release fetches the sources of the builds it will run once, before any job starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.builder.sources import STANDIN_GIT_ENV
from sage_image.catalog import load_catalog
from sage_image.errors import SourceError
from sage_image.release.plan import SourceInputs, plan_release
from sage_image.release.run import ReleaseOptions, fetch_release_sources

CATALOG = load_catalog()


def _repo(path: Path) -> tuple[Path, str]:
    path.mkdir()
    (path / "README").write_text("a stand-in for a test\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(path)} | STANDIN_GIT_ENV
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    return path, commit


def _options(tmp_path: Path, sources: tuple[str, ...]) -> ReleaseOptions:
    return ReleaseOptions(out_dir=tmp_path / "out", cache_root=tmp_path / "cache", jobs=1,
                          sources=sources)


def test_release_fetches_each_source_once_into_the_cache(tmp_path: Path) -> None:
    repo, commit = _repo(tmp_path / "cc-snapshot")
    sources = (f"cc-snapshot={repo}@{commit}",)
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("base",), arches=("amd64", "arm64"),
                        inputs=SourceInputs(sources))
    warnings: list[str] = []
    fetch_release_sources(CATALOG, plan, _options(tmp_path, sources), warn=warnings.append)
    mirrors = list((tmp_path / "cache" / "git").glob("*.git"))
    assert len(mirrors) == 1 and warnings == []  # two images, one source, one fetch


def test_release_with_an_unreachable_source_stops_before_any_job(tmp_path: Path) -> None:
    sources = (f"cc-snapshot={tmp_path / 'nowhere'}",)
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("base",), arches=("amd64",),
                        inputs=SourceInputs(sources))
    with pytest.raises(SourceError) as caught:
        fetch_release_sources(CATALOG, plan, _options(tmp_path, sources), warn=print)
    assert caught.value.message.startswith("source cc-snapshot: cannot fetch")
    assert "--source cc-snapshot=" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_release_cli_unreachable_source_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sage_image.cli", "release", "--releases",
                           "bookworm", "--variants", "base", "--no-test", "--out",
                           str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                           "--source", f"cc-snapshot={tmp_path / 'nowhere'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("sage-image: error: source cc-snapshot: cannot fetch")
    assert lines[1].startswith("hint: override it: --source cc-snapshot=")
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # no job ran, no folder was made
