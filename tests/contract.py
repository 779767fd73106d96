"""Build output folders for tests, written with the contract's own types (sage_image/outfolder.py).

Tests never spell manifest.json or test-results.json by hand: a key renamed in the contract
fails here, at construction, instead of leaving a hand-written fixture silently out of date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from sage_image.boottest.checks.identity import check_digest, current_tester, variant_expectation
from sage_image.boottest.checks.model import CheckDef, load_checks
from sage_image.builder.build import layout_manifest
from sage_image.catalog import load_catalog
from sage_image.outfolder import (
    MANIFEST_SCHEMA,
    RESULTS_SCHEMA,
    BootFiles,
    CheckRecord,
    Expectation,
    FirewallEntry,
    ImageFile,
    LayerInfo,
    Manifest,
    NtpEntry,
    SourceEntry,
    Tester,
    TestResults,
    read_manifest,
    read_results,
    results_path,
    stale_checks,
    write_manifest,
    write_results,
)

WAGGLE_NODE = SourceEntry(url="https://github.com/waggle-sensor/waggle-node",
                          commit="09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                          pinned="09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                          path="/opt/virtual-waggle", stand_in=False)


def image_file(path: Path, disk_format: str, *, root: Path | None = None,
               virtual_size: int | None = None) -> ImageFile:
    """The manifest entry of a real file (its digests read from it)."""
    digests = {name: hashlib.new(name) for name in ("sha256", "sha512", "md5")}
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(chunk)
    size = path.stat().st_size
    return ImageFile(path=str(path.relative_to(root)) if root else path.name,
                     disk_format=disk_format, size=size,
                     virtual_size=size if virtual_size is None else virtual_size,
                     compression="zlib" if disk_format == "qcow2" else None,
                     **{name: d.hexdigest() for name, d in digests.items()})


def fake_file(name: str, disk_format: str = "raw", *, sha512: str = "ab" * 64,
              size: int = 1) -> ImageFile:
    """A manifest entry for a file that need not exist (gate and diff logic)."""
    return ImageFile(path=name, disk_format=disk_format, size=size, virtual_size=size,
                     sha256="0" * 64, sha512=sha512, md5="0" * 32)


def manifest(name: str = "Sage-VirtualWaggle-Debian12", *, variant: str = "sage",
             arch: str = "amd64", release: str = "bookworm", **changes: Any) -> Manifest:
    """A complete, valid manifest of a bookworm build; `changes` replace any field."""
    catalog = load_catalog()
    fields: dict[str, Any] = dict(
        schema=MANIFEST_SCHEMA, name=name, release=release, variant=variant, arch=arch,
        family="debian", os_version="12",
        qemu_arch=catalog.arches[arch].qemu_arch, elements=("debian-minimal", "vm", variant),
        sites=("CHI@UC", "CHI@TACC", "KVM@TACC"), sources={"waggle-node": WAGGLE_NODE},
        stand_ins=(), dib_version="3.43.0", builder_version="0.1.0",
        properties={"build-image-name": name, "build-variant": variant, "build-distro": "debian",
                    "build-release": release, "build-arch": arch,
                    "build-repo": "https://example.invalid/sage-image-builder",
                    "build-repo-commit": "c" * 40, "build-timestamp": "1700000000",
                    "build-tag": "sage-image-0.1.0-1700000000"},
        files={},
        boot=BootFiles(kernel="boot/vmlinuz", initrd="boot/initrd.img",
                       root="LABEL=cloudimg-rootfs",
                       cmdline=f"root=LABEL=cloudimg-rootfs ro console={catalog.arches[arch].console}",
                       kernel_version="6.1.0-28-amd64"),
        layer=LayerInfo(only=False, from_=None, saved=None),
        layout=layout_manifest(catalog.layouts[catalog.arches[arch].layout]),
        checks=catalog.variant_checks(variant) if variant in catalog.variants else (),
        packages={"docker.io": "20.10.24+dfsg1-1", "docker-compose": "1.29.2-3"},
        package_arch={"docker.io": "amd64", "docker-compose": "all"}, python_packages={},
        node_python_packages={},
        phases={}, ntp=NtpEntry(servers=(), pool=True),
        firewall={"baremetal": FirewallEntry(virt="none", enabled=True),
                  "kvm": FirewallEntry(virt="vm", enabled=False)},
        created="2023-11-14T22:13:20+00:00", sbom=None)
    # properties given are added to (or replace) the build-* ones every build records
    fields["properties"] = fields["properties"] | changes.pop("properties", {})
    fields.update(changes)
    return Manifest(**fields)


def variant_checks(variant: str, *, catalog: Path | None = None,
                   definitions: Path | None = None) -> Expectation:
    """What a run of VARIANT must have run to count today (the catalog's and checks.yaml's)."""
    return variant_expectation(load_catalog(catalog), load_checks(definitions), variant=variant)


def results(m: Manifest, *, checks: Expectation | Mapping[str, str] | Iterable[CheckDef] | None = None,
            failed: Iterable[str] = (), restricted_by: tuple[str, ...] = (),
            tested: str | None = None, who: Tester | None = None, error: str | None = None
            ) -> TestResults:
    """test-results.json as `sage-image test` writes it for manifest `m`: a run of `checks`
    (default: every check of its variant, as defined today) on its raw file (else its qcow2)."""
    if checks is None:
        checks = variant_checks(m.variant)
    if isinstance(checks, Expectation):
        who = who or checks.tester
        digests = dict(checks.checks)
    elif isinstance(checks, Mapping):
        digests = dict(checks)
    else:
        digests = {c.name: check_digest(c) for c in checks}
    failed = set(failed)
    tested_file = m.files.get("raw") or m.files.get("qcow2")
    passed = error is None and not failed and bool(digests)
    return TestResults(
        schema=RESULTS_SCHEMA, name=m.name,
        tested_file=tested_file.path if tested_file else "",
        tested_sha512=tested or (tested_file.sha512 if tested_file else ""),
        passed=passed, qualifies_for_publish=passed and not restricted_by,
        restricted_by=restricted_by, mode="direct", accel="tcg", firmware="bios", memory_mb=2048,
        tester=who or current_tester(),
        checks=tuple(CheckRecord(name=name, passed=name not in failed, seconds=1.0,
                                 reason="timed out" if name in failed else None, digest=digest)
                     for name, digest in digests.items()),
        boot_seconds=20.0, checks_seconds=5.0, started="", finished="", error=error, logs=())


def fresh_results(out: Path, *, catalog: Path | None = None,
                  definitions: Path | None = None) -> TestResults:
    """OUT's test results - only if they answer for the variant's checks as defined now, by
    this tester (the same question publish's gate asks): a test never reads a stale result."""
    m = read_manifest(out)
    r = read_results(results_path(out))
    assert r is not None, f"{out}: not tested"
    stale = stale_checks(r, variant_checks(m.variant, catalog=catalog, definitions=definitions))
    assert not stale, f"{out}: the test results are out of date ({stale})"
    return r


def write_build(out: Path, m: Manifest) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, m)
    return out


def write_test(out: Path, r: TestResults) -> Path:
    return write_results(out / "test-results.json", r)


def replace(record: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(record, **changes)
