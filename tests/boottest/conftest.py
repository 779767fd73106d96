"""Tiny real disk images for the boot-test error paths (made in seconds with mkfs/qemu-img),
and the session-wide built bookworm sage image for the slow integration tests."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_image.boottest.boot.disk import ROOT_LABEL

MIB = 1 << 20


def make_ext4(path: Path, tree: dict[str, bytes], *, size_mb: int = 16,
              label: str = ROOT_LABEL) -> Path:
    """A bare ext4 file system image holding `tree` (relative path -> content)."""
    root = path.with_suffix(".tree")
    for rel, data in tree.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(data)
    root.mkdir(exist_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(root), str(path),
                    f"{size_mb}M"], check=True)
    return path


def make_mbr_disk(path: Path, fs: Path) -> Path:
    """An MBR disk with one Linux partition at 1 MiB holding the file system `fs`."""
    data = fs.read_bytes()
    sectors = len(data) // 512
    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\0\0\0", 0x83, b"\0\0\0", 2048, sectors)
    mbr[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(mbr) + bytes(MIB - 512) + data)
    return path


def corrupt_qcow2(path: Path) -> Path:
    """A qcow2 whose L1 entry points into nowhere: qemu-img info reads it, check does not."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 1 0 1M", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    with path.open("r+b") as f:
        f.seek(40)
        (l1,) = struct.unpack(">Q", f.read(8))
        f.seek(l1)
        f.write(struct.pack(">Q", (1 << 63) | 0x7FF000))
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny(kind) -> a small image of that kind, made once per session."""
    base = tmp_path_factory.mktemp("tiny-images")
    made: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind in made:
            return made[kind]
        if kind == "not-a-disk":
            path = base / "notes.img"
            path.write_text("this is a text file, not a disk image\n" * 100)
        elif kind == "corrupt-qcow2":
            path = corrupt_qcow2(base / "corrupt.qcow2")
        elif kind == "no-kernel":
            path = make_ext4(base / "nokernel.raw", {"boot/": b"", "etc/hostname": b"x\n"})
        elif kind == "no-kernel-qcow2":
            raw = make_mbr_disk(base / "nokernel-mbr.raw", make("no-kernel"))
            path = base / "nokernel.qcow2"
            subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(path)],
                           check=True)
        elif kind == "bad-kernel":
            path = make_ext4(base / "badkernel.raw", {
                "boot/vmlinuz-6.1.0-1-amd64": b"not a kernel" * 100,
                "boot/initrd.img-6.1.0-1-amd64": b"not an initrd" * 100,
                "boot/vmlinuz-5.10.0-9-amd64": b"old",
                "boot/initrd.img-5.10.0-9-amd64": b"old"})
        elif kind == "unbootable":
            path = make_ext4(base / "unbootable.raw", {"boot/": b""})
        else:
            raise ValueError(kind)
        made[kind] = path
        return path

    return make
