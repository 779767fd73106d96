"""What is inside an image file, read without ever opening it read-write.

``qemu-img`` reads any format (qcow2, compressed or not, raw); the partition table and the ext4
superblock are parsed here in Python, and files are read out of the root file system with
``debugfs`` (read-only unless asked) at the partition's byte offset - no loop device, no mount.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import BootTestError, CommandError, UsageError
from ...runner import run

SECTOR = 512
EXT_MAGIC = 0xEF53
ROOT_LABEL = "cloudimg-rootfs"
GPT_SIGNATURE = b"EFI PART"


@dataclass(frozen=True)
class DiskInfo:
    path: Path
    format: str          # qemu-img's name: qcow2, raw
    virtual_size: int


@dataclass(frozen=True)
class Partition:
    index: int           # 1-based, as the kernel numbers them
    offset: int          # bytes from the start of the disk
    size: int
    label: str | None    # ext2/3/4 volume label; None when the partition is not ext


def inspect_disk(path: Path) -> DiskInfo:
    """Format and size of a disk image; UsageError when there is no such file."""
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    try:
        out = run(["qemu-img", "info", "--output=json", path], timeout=60).stdout
    except CommandError as exc:
        raise BootTestError(f"{path}: qemu-img cannot read the image: {_last(exc)}",
                            hint="the file is damaged or truncated; rebuild it") from exc
    info = json.loads(out)
    return DiskInfo(path=path, format=info["format"], virtual_size=int(info["virtual-size"]))


def check_disk(disk: DiskInfo) -> None:
    """Fail early on a damaged qcow2 instead of letting the guest hang on I/O errors."""
    if disk.format != "qcow2":
        return
    proc = run(["qemu-img", "check", "-f", "qcow2", "--output=json", disk.path], check=False,
               timeout=300)
    # Exit 3 means only leaked clusters: wasted space, the data is intact.
    if proc.returncode not in (0, 3):
        detail = _check_detail(proc.stdout, proc.stderr)
        raise BootTestError(f"{disk.path}: the qcow2 image is corrupt: {detail}",
                            hint="rebuild the image (sage-image build)")


def read_bytes(disk: DiskInfo, offset: int, length: int) -> bytes:
    """Bytes of the guest-visible disk, read-only: directly for raw, via ``qemu-img dd`` else."""
    if disk.format == "raw":
        with disk.path.open("rb") as f:
            f.seek(offset)
            return f.read(length)
    # A raw driver with offset/size over the image reads exactly the range (qemu-img dd's
    # skip= refuses offsets past the first MiB on QEMU 7.2). Commas in options are doubled.
    # The range is widened to whole sectors, which the raw driver requires.
    first = offset // SECTOR * SECTOR
    size = (offset + length + SECTOR - 1) // SECTOR * SECTOR - first
    path = str(disk.path.resolve()).replace(",", ",,")
    opts = f"driver=raw,offset={first},size={size},file.driver={disk.format}," \
           f"file.file.filename={path}"
    with tempfile.TemporaryDirectory(prefix="sage-image-read-") as tmp:
        out = Path(tmp) / "range.raw"
        run(["qemu-img", "convert", "--image-opts", opts, "-O", "raw", out], timeout=120)
        return out.read_bytes()[offset - first:offset - first + length]


def list_partitions(disk: DiskInfo) -> tuple[Partition, ...]:
    """Partitions from the MBR or GPT; a disk that is one bare file system is partition 0."""
    head = read_bytes(disk, 0, 34 * SECTOR)
    if head[SECTOR:SECTOR + 8] == GPT_SIGNATURE:
        spans = _gpt_spans(disk, head)
    elif head[510:512] == b"\x55\xaa":
        spans = _mbr_spans(head)
    else:
        spans = [(0, 0, disk.virtual_size)]
    return tuple(Partition(index=i, offset=o, size=s, label=_ext_label(disk, o))
                 for i, o, s in spans)


def find_root(disk: DiskInfo) -> Partition:
    """The root file system: labelled cloudimg-rootfs (DIB's label), else the only ext one."""
    parts = list_partitions(disk)
    ext = [p for p in parts if p.label is not None]
    for part in ext:
        if part.label == ROOT_LABEL:
            return part
    if len(ext) == 1:
        return ext[0]
    if not parts or not ext:
        raise UsageError(f"{disk.path}: not a disk image (no partition table and no Linux file "
                         "system found)", hint="pass a built image: OUT/ or OUT/NAME.qcow2")
    raise BootTestError(f"{disk.path}: several ext file systems and none labelled {ROOT_LABEL}")


def _mbr_spans(head: bytes) -> list[tuple[int, int, int]]:
    spans = []
    for i in range(4):
        entry = head[446 + 16 * i: 446 + 16 * (i + 1)]
        ptype = entry[4]
        start, sectors = struct.unpack_from("<II", entry, 8)
        if ptype and sectors and ptype not in (0x05, 0x0F, 0x85):  # skip extended containers
            spans.append((i + 1, start * SECTOR, sectors * SECTOR))
    return spans


def _gpt_spans(disk: DiskInfo, head: bytes) -> list[tuple[int, int, int]]:
    hdr = head[SECTOR:2 * SECTOR]
    entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
    table = read_bytes(disk, entries_lba * SECTOR, count * size)
    spans = []
    for i in range(count):
        entry = table[i * size:(i + 1) * size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        spans.append((i + 1, first * SECTOR, (last - first + 1) * SECTOR))
    return spans


def _ext_label(disk: DiskInfo, offset: int) -> str | None:
    sb = read_bytes(disk, offset + 1024, 136)
    if len(sb) < 136 or struct.unpack_from("<H", sb, 56)[0] != EXT_MAGIC:
        return None
    return sb[120:136].split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class KernelFiles:
    kernel: Path
    initrd: Path
    version: str


def extract_kernel(raw: Path, root: Partition, dest: Path) -> KernelFiles:
    """Copy the newest /boot/vmlinuz-* and its initrd out of a raw image (read-only debugfs)."""
    fs = f"{raw}?offset={root.offset}"
    listing = _debugfs(fs, "ls -l /boot")
    versions = sorted(set(re.findall(r"\bvmlinuz-(\S+)", listing)), key=_version_key)
    if not versions:
        raise BootTestError(f"{raw}: no kernel in the image (/boot has no vmlinuz-*)",
                            hint="the build did not install a kernel; or try --firmware")
    version = versions[-1]
    if f"initrd.img-{version}" not in listing:
        raise BootTestError(f"{raw}: kernel {version} has no /boot/initrd.img-{version}")
    files = KernelFiles(kernel=dest / "vmlinuz", initrd=dest / "initrd.img", version=version)
    _debugfs(fs, f"dump /boot/vmlinuz-{version} {files.kernel}")
    _debugfs(fs, f"dump /boot/initrd.img-{version} {files.initrd}")
    if not files.kernel.is_file() or files.kernel.stat().st_size == 0:
        raise BootTestError(f"{raw}: could not read /boot/vmlinuz-{version} from the image")
    return files


def dump_file(raw: Path, root: Partition, path: str, dest: Path) -> None:
    """Copy one file out of the image's root file system (read-only)."""
    _debugfs(f"{raw}?offset={root.offset}", f"dump {path} {dest}")


def copy_partition(disk: DiskInfo, part: Partition, dest: Path) -> None:
    """Write one partition of a disk image (any format QEMU reads) to a sparse raw file."""
    opts = (f"driver=raw,offset={part.offset},size={part.size},"
            f"file.driver={disk.format},file.file.filename={disk.path}")
    run(["qemu-img", "convert", "-O", "raw", "--image-opts", opts, dest], timeout=300)


def replay_journal(fs: Path) -> None:
    """Apply an ext4 file system's journal to it (a scratch copy of a VM's root, stopped).

    debugfs reads without replaying it, and a guest stopped mid-flight has its latest changes
    (a log written in the last minute) committed to the journal but not yet to their place.
    A bare file system, not a disk: e2fsck loses `?offset=` when it re-opens after replaying.
    """
    # Exit 1: errors corrected; 0: replayed or nothing to do; above that: not ext4, or worse.
    proc = run(["e2fsck", "-y", "-E", "journal_only", fs], timeout=120, check=False)
    if proc.returncode > 1:
        lines = (proc.stderr + proc.stdout).strip().splitlines()
        raise BootTestError(f"e2fsck cannot replay the journal of {fs}: "
                            f"{lines[-1] if lines else f'exit {proc.returncode}'}")


def _debugfs(fs: str, request: str) -> str:
    # debugfs opens read-only without -w; -R runs one request and exits.
    proc = run(["debugfs", "-R", request, fs], timeout=120, check=False)
    if proc.returncode != 0 or "Bad magic number" in proc.stderr:
        raise BootTestError(f"debugfs cannot read {fs}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def _version_key(version: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", version)]


def _check_detail(stdout: str, stderr: str) -> str:
    try:
        report = json.loads(stdout)
        return f"{report.get('corruptions', '?')} corruption(s), " \
               f"{report.get('check-errors', 0)} check error(s)"
    except ValueError:
        return (stderr.strip().splitlines() or ["qemu-img check failed"])[-1]


def _last(exc: CommandError) -> str:
    lines = exc.output_tail.strip().splitlines()
    return lines[-1] if lines else exc.message
