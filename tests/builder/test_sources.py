"""Fetching pinned sources into the cache, overrides, stand-ins - with real git repositories."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from sage_image.builder.plan import PlannedSource
from sage_image.builder.sources import (
    SourceCache,
    export_sources,
    fetch_sources,
    make_stand_in,
)
from sage_image.errors import SourceError

from .conftest import make_git_repo


def planned(name: str, url: str, commit: str | None, *, overridden: bool = False) -> PlannedSource:
    return PlannedSource(name=name, url=url, commit=commit, pinned=commit or "0" * 40,
                         path=f"/opt/{name}", overridden=overridden)


def head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_pinned_commit_is_fetched_and_checked_out(tmp_path):
    repo = tmp_path / "upstream"
    first = make_git_repo(repo, {"waggle-node": "#!/bin/sh\necho v1\n"})
    make_git_repo(repo, {"waggle-node": "#!/bin/sh\necho v2\n"}, message="newer")
    cache = SourceCache(tmp_path / "cache")
    (fetched,) = fetch_sources((planned("waggle-node", str(repo), first),), cache,
                               allow_stand_ins=False, warn=print)
    assert fetched.commit == first and not fetched.stand_in
    out = export_sources((fetched,), cache, tmp_path / "sources")
    checkout = out / "waggle-node"
    assert head(checkout) == first  # the pin, not the newest commit
    assert "v1" in (checkout / "waggle-node").read_text()
    assert (out / "sources.list").read_text() == "waggle-node /opt/waggle-node\n"
    origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=checkout,
                            capture_output=True, text=True).stdout.strip()
    assert origin == str(repo)


def test_cached_commit_needs_no_network(tmp_path):
    repo = tmp_path / "upstream"
    commit = make_git_repo(repo, {"README": "x"})
    cache = SourceCache(tmp_path / "cache")
    source = planned("edge-plugins", str(repo), commit)
    fetch_sources((source,), cache, allow_stand_ins=False, warn=print)
    subprocess.run(["rm", "-rf", str(repo)], check=True)  # upstream gone
    (again,) = fetch_sources((source,), cache, allow_stand_ins=False, warn=print)
    assert again.commit == commit


def test_unreachable_source_is_a_clear_error(tmp_path):
    cache = SourceCache(tmp_path / "cache")
    source = planned("beehive-server", str(tmp_path / "missing"), "a" * 40)
    with pytest.raises(SourceError) as info:
        fetch_sources((source,), cache, allow_stand_ins=False, warn=print)
    assert "source beehive-server: cannot fetch" in info.value.message
    assert "a" * 40 in info.value.message
    assert "--source beehive-server=" in info.value.hint
    assert info.value.exit_code == 2


def test_missing_commit_is_a_clear_error(tmp_path):
    repo = tmp_path / "upstream"
    make_git_repo(repo, {"README": "x"})
    with pytest.raises(SourceError, match="has no commit or ref"):
        fetch_sources((planned("sage-ecr", str(repo), "b" * 40),), SourceCache(tmp_path / "c"),
                      allow_stand_ins=False, warn=print)


def test_override_without_commit_takes_head(tmp_path):
    repo = tmp_path / "upstream"
    commit = make_git_repo(repo, {"README": "x"})
    (fetched,) = fetch_sources((planned("sage-ecr", str(repo), None, overridden=True),),
                               SourceCache(tmp_path / "c"), allow_stand_ins=False, warn=print)
    assert fetched.commit == commit


def test_stand_in_is_used_only_when_allowed_and_is_labelled(tmp_path):
    cache = SourceCache(tmp_path / "cache")
    source = planned("waggle-node", "https://unreachable.invalid/waggle-node", "c" * 40)
    warnings: list[str] = []
    (fetched,) = fetch_sources((source,), cache, allow_stand_ins=True, warn=warnings.append)
    assert fetched.stand_in and "STAND-IN" in warnings[0]
    out = export_sources((fetched,), cache, tmp_path / "sources")
    assert "STAND-IN" in (out / "waggle-node" / "README.md").read_text()
    # an overridden source never silently falls back to a stand-in
    with pytest.raises(SourceError):
        fetch_sources((planned("waggle-node", str(tmp_path / "nope"), None, overridden=True),),
                      cache, allow_stand_ins=True, warn=print)


def test_stand_in_commit_is_deterministic(tmp_path):
    first = make_stand_in("beehive-server", tmp_path / "a")
    second = make_stand_in("beehive-server", tmp_path / "b")
    assert head(first) == head(second)


def test_concurrent_fetches_of_one_url_are_safe(tmp_path):
    repo = tmp_path / "upstream"
    commit = make_git_repo(repo, {"README": "x"})
    cache = SourceCache(tmp_path / "cache")
    results, errors = [], []

    def fetch():
        try:
            results.append(cache.resolve(str(repo), commit))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [commit] * 6
