"""Partition mappings without device-mapper, and the sweep that leaves nothing behind.

diskimage-builder maps the partitions of its loop device with ``kpartx`` and expects them at
``/dev/mapper/loopNpM``. Containers and micro-VMs often have no device-mapper (no
``/dev/mapper/control``), and ``losetup -P`` does not make ``loopNpM`` nodes there either. A
loop device with ``--offset``/``--sizelimit`` over the *image file* works as a partition, so the
``kpartx`` and ``dmsetup`` that DIB finds first on its PATH are this module:

    python -m sage_image.builder.devmapper kpartx -av /dev/loop3
    python -m sage_image.builder.devmapper dmsetup remove loop3p1

Each mapping is recorded in ``$SAGE_IMAGE_DM_STATE`` (one file per mapping, naming its loop
device) so that :func:`sweep` can undo exactly what this build made, even after DIB was killed.
The partition loop devices are backed by the image file, not by ``/dev/loopN``: over a loop
device DIB's ``fstrim`` fails ("the discard operation is not supported").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Not through runner.py: this is a tiny shim process DIB runs as kpartx/dmsetup (stdlib only),
# whose failures must read like the real tools' (their stderr and exit status), not ours.
MAPPER_DIR = Path("/dev/mapper")
STATE_ENV = "SAGE_IMAGE_DM_STATE"


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes


def _losetup(*args: str) -> str:
    return subprocess.run(["losetup", *args], check=True, text=True,
                          capture_output=True).stdout.strip()


def read_partitions(disk: str) -> list[Partition]:
    table = json.loads(subprocess.run(["sfdisk", "--json", disk], check=True, text=True,
                                      capture_output=True).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    parts = []
    for entry in table.get("partitions", []):
        number = int(entry["node"].rsplit("p", 1)[-1].lstrip("abcdefghijklmnopqrstuvwxyz/"))
        parts.append(Partition(number, int(entry["start"]) * sector, int(entry["size"]) * sector))
    return parts


def backing_file(loop_device: str) -> str:
    name = Path(loop_device).name
    return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()


def _state_dir() -> Path | None:
    value = os.environ.get(STATE_ENV)
    return Path(value) if value else None


def _record(state: Path | None, name: str, device: str) -> None:
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        (state / name).write_text(device)


def add_mappings(disk: str, state: Path | None) -> list[str]:
    """kpartx -a: one offset loop device per partition, linked as /dev/mapper/<disk>pN."""
    source = backing_file(disk)
    MAPPER_DIR.mkdir(exist_ok=True)
    lines = []
    for part in read_partitions(disk):
        name = f"{Path(disk).name}p{part.number}"
        link = MAPPER_DIR / name
        if link.is_symlink():  # kpartx -u: already mapped
            continue
        device = _losetup("--find", "--show", "--offset", str(part.start),
                          "--sizelimit", str(part.size), source)
        _record(state, name, device)
        link.symlink_to(device)
        lines.append(f"add map {name} (via {device}): 0 {part.size // 512} linear {disk} "
                     f"{part.start // 512}")
    return lines


def remove_mapping(name: str, state: Path | None) -> None:
    """dmsetup remove NAME: drop the link and detach its loop device."""
    link = MAPPER_DIR / name
    device = os.readlink(link) if link.is_symlink() else None
    recorded = state / name if state else None
    if device is None and recorded and recorded.exists():
        device = recorded.read_text().strip()
    if link.is_symlink():
        link.unlink()
    if device:
        subprocess.run(["losetup", "-d", device], capture_output=True)
    if recorded and recorded.exists():
        recorded.unlink()


def delete_mappings(disk: str, state: Path | None) -> None:
    """kpartx -d: remove every mapping of this disk."""
    prefix = f"{Path(disk).name}p"
    names = {p.name for p in MAPPER_DIR.glob(prefix + "*")} if MAPPER_DIR.is_dir() else set()
    if state and state.is_dir():
        names |= {p.name for p in state.glob(prefix + "*")}
    for name in sorted(names):
        if name[len(prefix):].isdigit():
            remove_mapping(name, state)


def kpartx(argv: list[str]) -> int:
    flags = "".join(a.lstrip("-") for a in argv if a.startswith("-"))
    disks = [a for a in argv if not a.startswith("-")]
    if len(disks) != 1:
        print("sage-image kpartx: expected one device", file=sys.stderr)
        return 1
    if "d" in flags:
        delete_mappings(disks[0], _state_dir())
        return 0
    if "a" in flags or "u" in flags:
        for line in add_mappings(disks[0], _state_dir()):
            if "v" in flags:
                print(line)
        return 0
    print(f"sage-image kpartx: unsupported options {argv}", file=sys.stderr)
    return 1


def dmsetup(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if args[:1] == ["mknodes"]:
        return 0  # our links exist as soon as they are made
    if args[:1] == ["remove"] and len(args) == 2:
        remove_mapping(args[1], _state_dir())
        return 0
    print(f"sage-image dmsetup: unsupported arguments {argv}", file=sys.stderr)
    return 1


# -- leaving nothing behind --------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    """Mount points below root, deepest first (the order to unmount them)."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    points = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(prefix) or point == prefix[:-1]:
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def loops_backed_by(root: Path) -> list[str]:
    """Loop devices whose backing file lies below root."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    for entry in Path("/sys/block").glob("loop*"):
        backing = entry / "loop" / "backing_file"
        try:
            target = backing.read_text().strip()
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(f"/dev/{entry.name}")
    return found


def sweep(workdir: Path, state: Path) -> list[str]:
    """Undo every mount, partition mapping and loop device this build made. Returns what it did."""
    done = []
    for point in mounts_under(workdir):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
        done.append(f"unmounted {point}")
    if state.is_dir():
        for recorded in sorted(state.iterdir()):
            remove_mapping(recorded.name, state)
            done.append(f"removed mapping {recorded.name}")
    for device in loops_backed_by(workdir):
        subprocess.run(["losetup", "-d", device], capture_output=True)
        done.append(f"detached {device}")
    try:
        MAPPER_DIR.rmdir()  # only if empty: we may have created it, others may use it
    except OSError:
        pass
    return done


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m sage_image.builder.devmapper kpartx|dmsetup ARGS", file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    try:
        if tool == "kpartx":
            return kpartx(args)
        if tool == "dmsetup":
            return dmsetup(args)
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as exc:
        print(f"sage-image {tool}: {exc}", file=sys.stderr)
        return 1
    print(f"sage-image devmapper: unknown tool {tool}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
