"""The CycloneDX SBOM made from a manifest: valid by the library's own JSON schema validator,
and it lists every package, Python package, source, tool and image file.

The manifest is realistic rather than invented: its package list (names, versions with epochs,
`+` and `~`, architectures) is this machine's own dpkg database, its Python packages are the
ones installed here, its sources are the catalog's.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from sage_image.builder.artifacts import installed_packages, package_architectures
from sage_image.builder.sbom import sbom_json, sbom_name, write_sbom
from sage_image.outfolder import ImageFile, Manifest, SourceEntry
from tests import contract

DPKG_STATUS = Path("/var/lib/dpkg/status")
pytestmark = pytest.mark.skipif(not DPKG_STATUS.exists(), reason="needs a Debian dpkg database")


def _errors(text: str) -> list[str]:
    found = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    return [str(e) for e in found] if found else []


@pytest.fixture(scope="module")
def manifest(catalog) -> Manifest:
    sources = {name: SourceEntry(url=s.url, commit=s.commit or "0" * 40, pinned=s.commit,
                                 stand_in=name == "sage-ecr", path=s.path)
               for name, s in catalog.sources.items()}
    python = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
    digests = {"sha256": "a" * 64, "sha512": "b" * 128, "md5": "c" * 32}
    files = {"qcow2": ImageFile(path="Sage-VirtualWaggle-Debian12.qcow2", disk_format="qcow2",
                                size=900 << 20, virtual_size=4 << 30, **digests),
             "raw": ImageFile(path="Sage-VirtualWaggle-Debian12.raw", disk_format="raw",
                              size=4 << 30, virtual_size=4 << 30, **digests)}
    return contract.manifest(
        elements=("debian-minimal", "chameleon-common", "sage"), sites=("CHI@UC",),
        sources=sources, stand_ins=("sage-ecr",),
        properties={"build-tag": "sage-image-12-1764583200",
                    "build-repo": "https://github.com/ChameleonCloud/sage-image-builder",
                    "build-repo-commit": "d" * 40},
        files=files, packages=installed_packages(DPKG_STATUS),
        package_arch=package_architectures(DPKG_STATUS), python_packages=python,
        checks=("cloud-init", "docker"), created="2026-12-01T10:00:00+00:00")


@pytest.fixture(scope="module")
def sbom_text(manifest) -> str:
    return sbom_json(manifest)  # seconds for ~800 packages: made once


def test_sbom_validates_and_lists_everything(manifest, sbom_text):
    assert _errors(sbom_text) == []
    doc = json.loads(sbom_text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    by_ref = {c["bom-ref"]: c for c in doc["components"]}
    for name, version in manifest.packages.items():
        arch = manifest.package_arch[name]
        purl = PackageURL("deb", "debian", name, version,
                          {"arch": arch, "distro": "bookworm"}).to_string()
        assert by_ref[purl]["version"] == version and by_ref[purl]["purl"] == purl
    assert {"all", "amd64"} <= set(manifest.package_arch.values())
    pypi = {c["name"]: c for c in doc["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    assert set(pypi) == set(manifest.python_packages)
    for name, source in manifest.sources.items():
        c = by_ref[f"source:{name}"]
        props = {p["name"]: p["value"] for p in c["properties"]}
        assert c["version"] == source.commit
        assert c["externalReferences"][0] == {"type": "vcs", "url": source.url}
        assert props["sage-image:stand-in"] == str(source.stand_in).lower()
        assert props["sage-image:path"] == source.path
    files = {c["name"]: c for c in doc["components"] if c["type"] == "file"}
    for f in manifest.files.values():
        hashes = {h["alg"]: h["content"] for h in files[f.path]["hashes"]}
        assert hashes == {"SHA-256": f.sha256, "SHA-512": f.sha512, "MD5": f.md5}
    tools = {t["name"]: t for t in doc["metadata"]["tools"]["components"]}
    assert tools["sage-image"]["version"] == "0.1.0"
    assert {"name": "sage-image:repo-commit", "value": "d" * 40} in tools["sage-image"]["properties"]
    assert tools["diskimage-builder"]["version"] == "3.43.0"
    assert doc["metadata"]["component"]["name"] == manifest.name


def test_same_manifest_same_bytes(manifest, sbom_text, tmp_path):
    entry = write_sbom(contract.replace(manifest), tmp_path)
    assert entry.path == sbom_name(manifest) == "Sage-VirtualWaggle-Debian12.cdx.json"
    assert (tmp_path / entry.path).read_text() == sbom_text
    assert entry.sha256 == hashlib.sha256((tmp_path / entry.path).read_bytes()).hexdigest()


def test_layer_only_and_without_python_packages(manifest):
    layer = contract.replace(manifest, python_packages={}, package_arch={}, files={},
                             packages=dict(list(manifest.packages.items())[:50]))
    text = sbom_json(layer)
    assert _errors(text) == []
    doc = json.loads(text)
    assert not any(c.get("purl", "").startswith("pkg:pypi/") for c in doc["components"])
    assert all("arch=amd64" in c["purl"] for c in doc["components"]
               if c.get("purl", "").startswith("pkg:deb/"))


def test_the_validator_can_fail(sbom_text):
    doc = json.loads(sbom_text)
    doc["components"][0]["type"] = "not-a-type"
    assert _errors(json.dumps(doc))


def test_node_venv_packages_are_components_once_each(manifest):
    with_node = contract.replace(
        manifest, python_packages={"pika": "1.4.4", "pywaggle": "0.56.3"},
        node_python_packages={"pika": "1.2.1", "pywaggle": "0.56.3", "redis": "4.3.6"})
    text = sbom_json(with_node)
    refs = [c["bom-ref"] for c in json.loads(text)["components"]
            if c["bom-ref"].startswith("pkg:pypi/")]
    # both pikas (two versions), one pywaggle (the same in both venvs), redis
    assert sorted(refs) == ["pkg:pypi/pika@1.2.1", "pkg:pypi/pika@1.4.4",
                            "pkg:pypi/pywaggle@0.56.3", "pkg:pypi/redis@4.3.6"]
    assert _errors(text) == []
