"""`sage-image release` for real: a layer-only base, the sage build on that layer, its boot
test and the publish to three real Glance sites (the session's `sage_release` run), then a
re-run that has nothing to do."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest
import yaml

from sage_image.boottest.checks.model import DEFAULT_CHECKS
from sage_image.catalog import load_catalog
from sage_image.outfolder import read_results
from tests import contract
from tests.boottest.image_copies import linked_copy
from tests.conftest import SITES, run_release

pytestmark = [pytest.mark.slow, pytest.mark.cloud,
              pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root")]


def test_every_job_of_the_release_succeeded(sage_release):
    jobs = sage_release.record["jobs"]
    assert set(jobs) == {"build:bookworm-base-amd64", "build:bookworm-sage-amd64",
                         "test:bookworm-sage-amd64",
                         *(f"publish:bookworm-sage-amd64@{s}" for s in SITES)}
    assert all(j["status"] in ("ok", "cached") for j in jobs.values()), jobs


def test_sage_was_built_on_the_base_layer(sage_release, sage_manifest):
    plan = {i["key"]: i for i in sage_release.record["plan"]["images"]}
    base, sage = plan["bookworm-base-amd64"], plan["bookworm-sage-amd64"]
    assert not base["requested"] and sage["parent"] == base["key"]
    assert sage_manifest.layer.from_.endswith(f"layers/{base['layer_key']}.tar.gz")
    assert not (sage_release.out / "bookworm-base-amd64" / "CC-Debian12.qcow2").exists()
    # diskimage-builder's debootstrap step unpacked the layer instead of bootstrapping
    log = (sage_release.out / "bookworm-sage-amd64" / "build.log").read_text()
    assert f"{base['layer_key']}.tar.gz found in cache. Using." in log or \
        "debootstrap-debian-bookworm-amd64.tar.gz found in cache. Using." in log


def test_the_image_was_boot_tested_before_publishing(sage_build):
    results = contract.fresh_results(sage_build)
    assert results.passed and all(c.passed for c in results.checks)
    assert {"docker-run", "docker-group", "provenance", "ssh-login"} <= {c.name for c in results.checks}


def test_each_site_has_the_image_in_its_format(sage_release, sage_manifest, local_sites):
    jobs = sage_release.record["jobs"]
    for site, cloud in (("CHI@UC", "chi-uc"), ("CHI@TACC", "chi-tacc"), ("KVM@TACC", "kvm-tacc")):
        job = jobs[f"publish:bookworm-sage-amd64@{site}"]
        assert job["result"] in ("published", "up to date") and job["image_id"]
        with urllib.request.urlopen(f"{local_sites.url(cloud)}/v2/images/{job['image_id']}") as r:
            image = json.loads(r.read())
        fmt = "raw" if site == "KVM@TACC" else "qcow2"
        assert image["name"] == "Sage-VirtualWaggle-Debian12" and image["disk_format"] == fmt
        assert image["os_hash_value"] == sage_manifest.files[fmt].sha512
        assert image["build-variant"] == "sage"


def test_a_rerun_has_nothing_to_do(sage_release, source_repos, local_sites):
    again = run_release(sage_release.out, source_repos, local_sites.clouds_yaml)
    assert again.returncode == 0, again.stderr[-3000:]
    jobs = again.record["jobs"]
    assert jobs["build:bookworm-base-amd64"]["status"] == "cached"
    assert jobs["build:bookworm-sage-amd64"]["status"] == "cached"
    assert jobs["test:bookworm-sage-amd64"]["status"] == "cached"
    assert {jobs[f"publish:bookworm-sage-amd64@{s}"]["result"] for s in SITES} == {"up to date"}


def test_a_changed_check_is_run_again_and_a_failing_definition_fails_the_release(
        sage_release, source_repos, tmp_path):
    """The session's passed test is reused while the checks are the ones it ran; after one
    check's definition changes (a copy of checks.yaml), the release boots the image again -
    and a definition that fails on this good image fails the release. A catalog copy gives
    the variant two checks, so the second boot is short."""
    image = "bookworm-sage-amd64"
    out = tmp_path / "release"
    copy = linked_copy(sage_release.out / image, out / image)
    shutil.copy(sage_release.out / image / "test-results.json", copy / "test-results.json")
    catalog = yaml.safe_load(load_catalog().path.read_text())
    catalog["variants"]["base"]["checks"] = ["ssh-login", "hostname"]
    catalog["variants"]["sage"]["checks"] = []
    for venv in ("python", "node_python"):
        for lock in catalog["variants"]["sage"][venv]["locks"].values():
            lock["file"] = str(load_catalog().path.parent / lock["file"])  # the same lock files
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    options = ("--catalog", str(tmp_path / "catalog.yaml"))

    same = run_release(out, source_repos, None, extra=options)
    assert same.returncode == 0, same.stderr[-3000:]
    assert same.record["jobs"][f"test:{image}"]["status"] == "cached"

    checks = yaml.safe_load(DEFAULT_CHECKS.read_text())
    checks["checks"]["hostname"]["expect"] = {"stdout": "not-{hostname}"}  # fails on any image
    (tmp_path / "checks.yaml").write_text(yaml.safe_dump(checks, sort_keys=False))
    changed = run_release(out, source_repos, None,
                          extra=(*options, "--checks-file", str(tmp_path / "checks.yaml")))
    assert f"test:{image}: re-testing: checks changed: hostname" in changed.stderr
    test = changed.record["jobs"][f"test:{image}"]
    assert changed.returncode == 1 and test["status"] == "failed", changed.stderr[-3000:]
    assert "hostname" in test["reason"]
    results = read_results(copy / "test-results.json")
    assert [(c.name, c.passed) for c in results.checks] == [("ssh-login", True),
                                                            ("hostname", False)]
    # the session's own results are untouched (the copy's were replaced, not written through)
    assert contract.fresh_results(sage_release.out / image).passed
