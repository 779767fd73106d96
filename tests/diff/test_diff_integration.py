"""SBOM and diff on the release fixture's real builds (a layer-only base and the sage image on
it, boot-tested and published to three local Glance sites): no extra build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from sage_image.builder.artifacts import installed_packages, package_architectures
from sage_image.builder.sbom import write_sbom
from sage_image.outfolder import LayerInfo, read_manifest, read_published
from tests import contract

pytestmark = [pytest.mark.slow, pytest.mark.cloud,
              pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root")]


def sage_image(*args, env=None) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run([sys.executable, "-m", "sage_image.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | (env or {}))


CACHE = Path.home() / ".cache" / "sage-image"


@pytest.fixture(scope="module")
def base_build(sage_release, sage_manifest, tmp_path_factory) -> Path:
    """The base build's output folder; when the release reused the base layer from the cache
    (no base build ran), a base output folder made from that layer - its real dpkg database -
    and the catalog's plan for base, with the sources the release gave both builds."""
    out = sage_release.out / "bookworm-base-amd64"
    if (out / "manifest.json").exists():
        return out
    image = next(i for i in sage_release.record["plan"]["images"]
                 if i["key"] == "bookworm-base-amd64")
    layer = CACHE / "layers" / f"{image['layer_key']}.tar.gz"
    assert layer.exists(), f"neither a base build folder nor its layer {layer}"
    out = tmp_path_factory.mktemp("base")
    status = out / "dpkg-status"
    with status.open("wb") as handle:
        subprocess.run(["tar", "-xzOf", layer, "./var/lib/dpkg/status"], stdout=handle, check=True)
    plan = json.loads(sage_image("plan", "--release", "bookworm", "--variant", "base",
                                 "--json").stdout)
    manifest = contract.replace(
        sage_manifest, **{k: plan[k] for k in ("name", "release", "variant", "arch", "family",
                                               "os_version")},
        elements=tuple(plan["elements"]), checks=tuple(plan["checks"]), files={},
        layer=LayerInfo(only=True, from_=None, saved=None),
        sources={s["name"]: sage_manifest.sources[s["name"]] for s in plan["sources"]},
        packages=installed_packages(status), package_arch=package_architectures(status),
        python_packages={}, properties=plan["properties"])
    return contract.write_build(out, contract.replace(manifest, sbom=write_sbom(manifest, out)))


@pytest.mark.parametrize("which", ["base", "sage"])
def test_every_build_has_a_valid_sbom(which, base_build, sage_build):
    out = base_build if which == "base" else sage_build
    manifest = read_manifest(out)
    assert manifest.sbom is not None
    sbom = out / manifest.sbom.path
    assert sbom.name == f"{manifest.name}.cdx.json"
    assert hashlib.sha256(sbom.read_bytes()).hexdigest() == manifest.sbom.sha256
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.read_text()) is None
    doc = json.loads(sbom.read_text())
    versions = {c["name"]: c.get("version") for c in doc["components"]
                if c.get("purl", "").startswith("pkg:deb/debian/")}
    assert versions == manifest.packages
    sources = {c["name"]: c["version"] for c in doc["components"]
               if c["bom-ref"].startswith("source:")}
    assert sources == {n: s.commit for n, s in manifest.sources.items()}
    assert manifest.boot.kernel_version


def test_diff_base_to_sage_adds_the_sage_packages_and_sources(base_build, sage_build,
                                                              sage_manifest):
    result = sage_image("diff", base_build, sage_build, "--json", "--exit-code")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    added = {c["name"] for c in doc["changes"]["package"] if c["kind"] == "added"}
    assert {"docker.io", "docker-compose"} <= added
    base = read_manifest(base_build)
    new_sources = set(sage_manifest.sources) - set(base.sources)
    assert new_sources
    assert {c["name"] for c in doc["changes"]["source"] if c["kind"] == "added"} == new_sources
    assert {"name": "variant", "kind": "changed", "old": "base", "new": "sage"} in doc["changes"]["image"]


def test_diff_against_a_changed_copy(sage_build, sage_manifest, tmp_path):
    name = next(iter(sage_manifest.sources))
    changed = contract.replace(
        sage_manifest,
        packages=sage_manifest.packages | {"docker.io": sage_manifest.packages["docker.io"] + "+sage1"},
        sources=sage_manifest.sources | {name: contract.replace(sage_manifest.sources[name],
                                                                commit="0" * 40)})
    contract.write_build(tmp_path, changed)
    result = sage_image("diff", sage_build, tmp_path / "manifest.json")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if " docker.io " in x)
    assert "upgraded" in line and sage_manifest.packages["docker.io"] in line
    assert f"{name}" in result.stdout and "re-pinned" in result.stdout
    assert sage_image("diff", sage_build, sage_build, "--exit-code").returncode == 0


def test_diff_site_after_the_release_published(sage_build, local_sites, tmp_path):
    env = {"OS_CLIENT_CONFIG_FILE": str(local_sites.clouds_yaml)}
    for site in ("CHI@UC", "KVM@TACC"):
        same = sage_image("diff", sage_build, "--site", site, "--exit-code", env=env)
        assert same.returncode == 0, same.stderr
        assert "no changes" in same.stdout
    copy = tmp_path / "copy"
    shutil.copytree(sage_build, copy, ignore=shutil.ignore_patterns("*.raw", "*.qcow2"))
    manifest = read_manifest(copy)
    contract.write_build(copy, contract.replace(
        manifest, packages=manifest.packages | {"sage-image-extra": "1.0"}))
    differs = sage_image("diff", copy, "--site", "CHI@UC", "--json", "--exit-code", env=env)
    assert differs.returncode == 1, differs.stderr
    assert json.loads(differs.stdout)["changes"]["package"] == [
        {"name": "sage-image-extra", "kind": "added", "old": None, "new": "1.0"}]


def test_release_report_says_what_is_new(sage_release):
    published = read_published(sage_release.out / "bookworm-sage-amd64").sites
    assert all(entry.previous is None for entry in published.values())  # fresh sites
    result = sage_image("report", sage_release.out)
    assert result.returncode == 0, result.stderr
    page = (sage_release.out / "report.html").read_text()
    assert "first version at this site" in page
