"""A passed test counts only for the checks as they are now (issue: "A passed test counts only
for the checks as they are now"). One check's definition is edited in a copy of checks.yaml;
`release`, `publish` and the tests' own fixture helper must each refuse the old result and say
why in one line. The slow twin (tests/release/test_release_integration.py) shows the release
then really boots the image again and fails on a definition that fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sage_image.boottest.checks.model import DEFAULT_CHECKS, load_checks
from sage_image.catalog import load_catalog
from sage_image.outfolder import Tester, read_manifest
from sage_image.release.run import reusable_test
from tests import contract
from tests.publish.conftest import BuildFactory, run_subprocess

IMAGE = "bookworm-sage-amd64"


def _checks_copy(tmp_path: Path, name: str, **changes: object) -> Path:
    """checks.yaml with one check's definition changed."""
    data = yaml.safe_load(DEFAULT_CHECKS.read_text())
    data["checks"][name].update(changes)
    copy = tmp_path / "checks.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@pytest.fixture
def tested_build(tmp_path: Path) -> Path:
    """A sage build with a full pass of every check as defined today, where a release run
    into tmp_path/release looks for it."""
    out = BuildFactory(tmp_path / "release")("Sage-VirtualWaggle-Debian12")
    return out.rename(tmp_path / "release" / IMAGE)


def test_an_unchanged_definition_keeps_the_result(tested_build: Path) -> None:
    assert reusable_test(tested_build, load_catalog(), load_checks()) == (
        "passed on these exact bytes, with these checks", None)
    contract.fresh_results(tested_build)  # the fixture helper accepts it too


def test_release_publish_and_the_fixture_refuse_a_result_for_a_changed_check(
        tested_build: Path, tmp_path: Path) -> None:
    edited = _checks_copy(tmp_path, "docker-run", timeout=301)
    # release: the test job is not cached, and says why in one line
    assert reusable_test(tested_build, load_catalog(), load_checks(edited)) == (
        None, "re-testing: checks changed: docker-run")
    plan = run_subprocess("release", "--releases", "bookworm", "--variants", "sage",
                          "--arches", "amd64", "--out", tmp_path / "release", "--dry-run",
                          "--json", "--checks-file", edited, env=_env())
    assert plan.code == 0, plan.err
    job = plan.json()["jobs"][f"test:{IMAGE}"]
    assert job == {"needs": [f"build:{IMAGE}"], "cached": None,
                   "note": "re-testing: checks changed: docker-run"}
    # publish: refused before any site is contacted (exit 2), naming the changed check
    refused = run_subprocess("publish", tested_build, "--sites", "CHI@UC", "--checks-file",
                             edited, env=_env())
    assert refused.code == 2, refused.err
    assert "out of date (checks changed: docker-run)" in refused.err
    assert "Traceback" not in refused.err and len(refused.err.splitlines()) <= 2
    # the tests' fixture helper: a stale result never reaches a test's assertions
    with pytest.raises(AssertionError, match=r"out of date \(checks changed: docker-run\)"):
        contract.fresh_results(tested_build, definitions=edited)


def test_a_new_check_and_a_new_tester_each_mean_testing_again(tested_build: Path,
                                                               tmp_path: Path) -> None:
    catalog = yaml.safe_load(load_catalog().path.read_text())
    catalog["variants"]["sage"]["checks"].append("cuda-packages")  # a check the variant gains
    for venv in ("python", "node_python"):
        for lock in catalog["variants"]["sage"][venv]["locks"].values():
            lock["file"] = str(load_catalog().path.parent / lock["file"])
    catalog_copy = tmp_path / "catalog.yaml"
    catalog_copy.write_text(yaml.safe_dump(catalog, sort_keys=False))
    assert reusable_test(tested_build, load_catalog(catalog_copy), load_checks())[1] == \
        "re-testing: checks added: cuda-packages"
    # the same checks, run by another tester (the boot-test code changed since)
    results = contract.results(read_manifest(tested_build),
                               who=Tester(version="0.0.9", digest="0" * 16))
    contract.write_test(tested_build, results)
    _, note = reusable_test(tested_build, load_catalog(), load_checks())
    assert note is not None and note.startswith("re-testing: the tester changed (ran: "
                                                "sage-image 0.0.9 0000000000000000")


def test_a_bad_checks_file_is_one_line_exit_2(tested_build: Path, tmp_path: Path) -> None:
    broken = tmp_path / "checks.yaml"
    broken.write_text("schema: 1\nchecks: {docker-run: {reason: r}}\n")
    run = run_subprocess("publish", tested_build, "--checks-file", broken, env=_env())
    assert run.code == 2 and "checks.docker-run: needs exactly one of 'run'" in run.err
    assert "Traceback" not in run.err


def _env() -> dict[str, str]:
    """No cloud: whatever the tests refuse, they refuse before contacting a site."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | {
        "OS_CLIENT_CONFIG_FILE": "/nonexistent/clouds.yaml"}


def test_the_release_json_plan_has_no_note_for_a_first_test(tmp_path: Path) -> None:
    plan = run_subprocess("release", "--releases", "bookworm", "--variants", "sage",
                          "--arches", "amd64", "--out", tmp_path / "none", "--dry-run", "--json",
                          env=_env())
    assert plan.code == 0, plan.err
    assert json.loads(plan.out)["jobs"][f"test:{IMAGE}"]["note"] is None
