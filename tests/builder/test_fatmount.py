"""FAT partitions without kernel vfat: the mount/umount stand-ins DIB finds first, on real files.

The kernel here cannot mount vfat; tests also fake a /proc/filesystems without it so they take
the same path on a kernel that can.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.builder import fatmount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
MTOOLS = {"MTOOLS_SKIP_CHECK": "1"}


def shim(*args: str, filesystems: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sage_image.builder.fatmount", *args],
                          env=os.environ | {fatmount.FILESYSTEMS_ENV: str(filesystems)},
                          capture_output=True, text=True)


def mtools(*args: str) -> str:
    return subprocess.run(list(args), env=os.environ | MTOOLS, check=True, text=True,
                          capture_output=True).stdout


@pytest.fixture
def fat(tmp_path):
    """A FAT filesystem with one file in it, a mount point, a /proc/filesystems without vfat."""
    image = tmp_path / "esp.img"
    image.write_bytes(b"")
    os.truncate(image, 40 * 2**20)
    subprocess.run(["mkfs.vfat", "-n", "ESP", str(image)], check=True, capture_output=True)
    (tmp_path / "old.txt").write_text("old\n")
    mtools("mcopy", "-i", str(image), str(tmp_path / "old.txt"), "::/old.txt")
    point = tmp_path / "efi"
    point.mkdir()
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\ttmpfs\n\text4\n")
    yield image, point, filesystems
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_fat_is_written_through_mtools_when_the_kernel_lacks_vfat(fat):
    image, point, filesystems = fat
    result = shim("mount", str(image), str(point), filesystems=filesystems)
    assert result.returncode == 0, result.stderr
    assert os.path.ismount(point) and (point / "old.txt").read_text() == "old\n"
    # what grub-install reads: the mount's source is the FAT device itself
    assert fatmount.emulated_source(str(point)) == str(image)

    (point / "old.txt").unlink()
    (point / "EFI" / "BOOT").mkdir(parents=True)
    (point / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + bytes(4096))
    (point / "EFI" / "BOOT" / "grub.cfg").write_text("set root=x\n")
    result = shim("umount", str(point), filesystems=filesystems)
    assert result.returncode == 0, result.stderr

    assert not os.path.ismount(point) and list(point.iterdir()) == []
    listing = sorted(mtools("mdir", "-/", "-b", "-i", str(image), "::/").split())
    assert listing == ["::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTX64.EFI",
                       "::/EFI/BOOT/grub.cfg"]
    assert mtools("mtype", "-i", str(image), "::/EFI/BOOT/grub.cfg") == "set root=x\n"
    fsck = subprocess.run(["fsck.vfat", "-n", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    assert "ESP" in subprocess.run(["blkid", "-c", "/dev/null", "-s", "LABEL", "-o", "value",
                                    str(image)], capture_output=True, text=True).stdout


def test_a_kernel_with_vfat_gets_the_real_mount(fat, monkeypatch):
    image, point, filesystems = fat
    filesystems.write_text("nodev\ttmpfs\n\text4\n\tvfat\n")
    monkeypatch.setenv(fatmount.FILESYSTEMS_ENV, str(filesystems))
    assert not fatmount.needs_emulation(str(image))
    result = shim("mount", str(image), str(point), filesystems=filesystems)
    if Path("/proc/filesystems").read_text().find("vfat") < 0:
        # the system's mount ran and this kernel refused: proof it was not emulated
        assert result.returncode != 0 and not os.path.ismount(point)
    else:
        assert result.returncode == 0 and fatmount.emulated_source(str(point)) is None


def test_other_mounts_pass_through(tmp_path):
    filesystems = tmp_path / "filesystems"
    filesystems.write_text("nodev\ttmpfs\n")
    point = tmp_path / "t"
    point.mkdir()
    assert shim("mount", "-t", "tmpfs", "none", str(point), filesystems=filesystems).returncode == 0
    assert os.path.ismount(point) and fatmount.emulated_source(str(point)) is None
    assert shim("umount", str(point), filesystems=filesystems).returncode == 0
    assert not os.path.ismount(point)


def test_a_lazy_umount_after_a_failure_writes_nothing_back(fat):
    image, point, filesystems = fat
    assert shim("mount", str(image), str(point), filesystems=filesystems).returncode == 0
    (point / "half-written").write_text("x")
    assert shim("umount", "-fl", str(point), filesystems=filesystems).returncode == 0
    assert mtools("mdir", "-b", "-i", str(image), "::/").split() == ["::/old.txt"]
