"""Integration (slow): the session's hybrid image boots through SeaBIOS and through OVMF.

The same bytes the release built and tested directly (tests/conftest.py `sage_build`) boot through
their own bootloader: GRUB from the BIOS boot partition under SeaBIOS, GRUB's removable EFI
binary from the ESP under OVMF. Each boot stops once cloud-init has finished, `cc` logs in and the
disk's partition table is checked: the direct boot already ran every check on these bytes, and
under TCG a full check run through firmware costs minutes more (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.outfolder import read_manifest
from tests.boottest.image_copies import linked_copy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_CHECKS = "cloud-init,ssh-login,partition-table"


@pytest.mark.parametrize("uefi", [False, True], ids=["seabios", "ovmf"])
def test_hybrid_image_boots_through_firmware(sage_build: Path, tmp_path: Path,
                                             uefi: bool) -> None:
    out = linked_copy(sage_build, tmp_path / "out")
    args = [sys.executable, "-m", "sage_image.cli", "test", str(out), "--firmware", "--json",
            "--accel", "tcg", "--checks", FIRMWARE_CHECKS] + (["--uefi"] if uefi else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=2400, cwd=REPO)
    report = json.loads(proc.stdout)
    failed = {c["name"]: c["reason"] for c in report["checks"] if not c["passed"]}
    assert proc.returncode == 0 and failed == {}, (failed, report.get("error"))
    assert report["mode"] == "firmware"
    assert report["firmware"] == ("uefi" if uefi else "bios")  # as the guest kernel saw it
    manifest = read_manifest(sage_build)
    assert report["tested_sha512"] in {f.sha512 for f in manifest.files.values()}
