"""Integration (slow, opt-in: `scripts/test -m emulated`): the bookworm arm64 images, for real.

The arm64 release (tests/conftest.py `arm64_release`) builds the base image and the sage image on
its layer with every package script run by qemu-user, and boot-tests both under
`qemu-system-aarch64 -M virt` (TCG, direct boot of each image's own kernel) with the variant's
checks - the same checks as on amd64. Here: every check passed on both, the sage build started
from the arm64 base's own layer, both are arm64 through and through (packages, kernel, UEFI-only
GRUB), and the base boots the complete way, AAVMF firmware then the image's GRUB.
Opt-in: the two emulated builds take well over an hour on this machine, more than the default
suite may take in all (docs/benchmarks.md, "arm64, emulated").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.boottest.checks.model import load_checks, select_checks
from sage_image.catalog.model import load_catalog
from sage_image.outfolder import Manifest, read_manifest
from tests import contract
from tests.boottest.image_copies import linked_copy

pytestmark = [pytest.mark.slow, pytest.mark.emulated]

REPO = Path(__file__).resolve().parents[2]
IMAGES = {"base": "bookworm-base-arm64", "sage": "bookworm-sage-arm64"}


def sage_image(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sage_image.cli", *args], capture_output=True,
                          text=True, timeout=3600, cwd=REPO)


def _manifest(build: Path) -> Manifest:
    return read_manifest(build)


@pytest.mark.parametrize("variant", list(IMAGES))
def test_arm64_image_passes_every_check(arm64_release, variant: str) -> None:
    image = IMAGES[variant]
    build = arm64_release.build_folder(image)
    test = arm64_release.record["jobs"][f"test:{image}"]
    assert test["status"] in ("ok", "cached"), test["reason"]
    results = contract.fresh_results(build)
    wanted = [c.name for c in select_checks(load_catalog(), load_checks(), variant=variant)]
    assert [c.name for c in results.checks] == wanted
    assert {c.name: c.reason for c in results.checks if not c.passed} == {}
    manifest = _manifest(build)
    assert (manifest.arch, manifest.qemu_arch) == ("arm64", "aarch64")
    assert manifest.properties["build-arch"] == "arm64"
    assert "console=ttyAMA0,115200" in manifest.boot.cmdline.split()


def test_arm64_sage_is_built_on_the_arm64_base_layer(arm64_release) -> None:
    base = _manifest(arm64_release.build_folder(IMAGES["base"]))
    sage = _manifest(arm64_release.build_folder(IMAGES["sage"]))
    assert base.layer.saved and sage.layer.from_ == base.layer.saved


@pytest.mark.parametrize("variant", list(IMAGES))
def test_arm64_image_is_arm64_through_and_through(arm64_release, variant: str) -> None:
    manifest = _manifest(arm64_release.build_folder(IMAGES[variant]))
    assert set(manifest.package_arch.values()) == {"arm64", "all"}
    assert manifest.boot.kernel_version.endswith("-arm64")
    # UEFI only (Chameleon's arm64 nodes): GRUB for arm64 EFI, no BIOS GRUB
    assert "grub-efi-arm64" in manifest.packages and "grub-pc" not in manifest.packages
    assert manifest.layout.firmware == ("uefi",)


def test_arm64_base_boots_through_aavmf_and_grub(arm64_release, tmp_path: Path) -> None:
    """The complete boot: AAVMF firmware, the image's own GRUB from its ESP, then its kernel."""
    out = linked_copy(arm64_release.build_folder(IMAGES["base"]), tmp_path / "out")
    proc = sage_image("test", str(out), "--firmware", "--json", "--accel", "tcg",
                      "--checks", "cloud-init,ssh-login,serial-autologin,partition-table")
    report = json.loads(proc.stdout)
    failed = {c["name"]: c["reason"] for c in report["checks"] if not c["passed"]}
    assert proc.returncode == 0 and failed == {}, (failed, report.get("error"))
    assert report["firmware"] == "uefi" and report["mode"] == "firmware"
