"""FAT partitions on a kernel that cannot mount FAT: the ``mount``/``umount`` DIB finds first.

diskimage-builder mounts the EFI system partition at /boot/efi (``mount DEVICE DIR``), copies the
image's /boot/efi into it, installs GRUB there and unmounts it. Containers and micro-VMs often
have no ``vfat`` in /proc/filesystems (and no module to load), so that mount fails. When - and
only when - the kernel lacks vfat and the device holds a FAT filesystem, this module mounts a
*tmpfs* at DIR instead, with the FAT device as its source, and on ``umount`` writes the tmpfs's
contents into the FAT filesystem with mtools (``mcopy``), which needs no kernel support.

The tmpfs source matters: ``grub-install --target=x86_64-efi`` finds the device of its EFI
directory in /proc/self/mountinfo (the mount's source field) and then reads that device with
GRUB's own FAT driver, so it sees the real, freshly made FAT partition and accepts it, and
writes its files into the directory like into any mounted filesystem. A kernel that can mount
vfat gets the real mount; both give an ESP with the same files (``mdir``/``fsck.vfat -n``).

    python -m sage_image.builder.fatmount mount /dev/mapper/loop0p1 /tmp/.../mnt/boot/efi
    python -m sage_image.builder.fatmount umount /tmp/.../mnt/boot/efi
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Tests point this at a copy without vfat to take the mtools path on any kernel.
FILESYSTEMS_ENV = "SAGE_IMAGE_PROC_FILESYSTEMS"
# mtools refuses a FAT whose geometry it finds odd (a partition, not a floppy) without this.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


class FatError(Exception):
    pass


def real_tool(name: str) -> str:
    """The system's own mount/umount, never the shim that runs us."""
    found = shutil.which(name, path=SYSTEM_PATH)
    if not found:
        raise FatError(f"{name} not found in {SYSTEM_PATH}")
    return found


def kernel_has_vfat() -> bool:
    path = Path(os.environ.get(FILESYSTEMS_ENV, "/proc/filesystems"))
    names = {line.split()[-1] for line in path.read_text().splitlines() if line.strip()}
    return "vfat" in names


def fs_type(device: str) -> str:
    out = subprocess.run(["blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", device],
                         text=True, capture_output=True)
    return out.stdout.strip()


def needs_emulation(device: str) -> bool:
    return Path(device).exists() and fs_type(device) == "vfat" and not kernel_has_vfat()


def _mtools(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **MTOOLS_ENV}
    result = subprocess.run(list(args), text=True, capture_output=True, env=env)
    if result.returncode != 0:
        raise FatError(f"{' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result


def fat_entries(device: str) -> list[tuple[str, bool]]:
    """(name, is a directory) for each entry in the FAT's root directory."""
    out = _mtools("mdir", "-b", "-i", device, "::/").stdout
    return [(line.strip().removeprefix("::/").rstrip("/"), line.strip().endswith("/"))
            for line in out.splitlines() if line.strip().startswith("::/")]


def mount_emulated(device: str, target: str) -> None:
    """tmpfs at target, its source the FAT device, filled with what the FAT holds already."""
    source = os.path.realpath(device)
    subprocess.run([real_tool("mount"), "-t", "tmpfs", "-o", "mode=0755", source, target],
                   check=True)
    try:
        if fat_entries(source):
            _mtools("mcopy", "-s", "-p", "-m", "-n", "-i", source, "::/*", target + "/")
    except FatError:
        subprocess.run([real_tool("umount"), target], capture_output=True)
        raise


def emulated_source(target: str) -> str | None:
    """The FAT device behind target if target is one of our tmpfs stand-ins, else None."""
    wanted = os.path.realpath(target)
    found = None
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            source, point, fstype = line.split()[:3]
            if point.replace("\\040", " ") == wanted:
                found = source if fstype == "tmpfs" and source.startswith("/") else None
    if found and Path(found).exists() and fs_type(found) == "vfat":
        return found
    return None


def write_back(device: str, target: str) -> None:
    """Make the FAT hold exactly target's tree: clear its root, then copy everything in."""
    for name, is_dir in fat_entries(device):
        _mtools("mdeltree" if is_dir else "mdel", "-i", device, f"::/{name}")
    names = sorted(os.listdir(target))
    if names:
        _mtools("mcopy", "-s", "-p", "-m", "-o", "-i", device,
                *[os.path.join(target, n) for n in names], "::/")


def mount(argv: list[str]) -> int:
    """`mount DEVICE DIR` of a FAT device without kernel vfat; anything else: the real mount."""
    if len(argv) == 2 and not argv[0].startswith("-") and needs_emulation(argv[0]):
        mount_emulated(argv[0], argv[1])
        return 0
    os.execv(real_tool("mount"), ["mount", *argv])
    return 1  # not reached


def umount(argv: list[str]) -> int:
    targets = [a for a in argv if not a.startswith("-")]
    lazy = any(a.startswith("-") and "l" in a.lstrip("-") for a in argv)
    if not lazy:  # a lazy umount is a cleanup after a failure: nothing to keep
        for target in targets:
            device = emulated_source(target)
            if device:
                write_back(device, target)
    os.execv(real_tool("umount"), ["umount", *argv])
    return 1  # not reached


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("mount", "umount"):
        print("usage: python -m sage_image.builder.fatmount mount|umount ARGS", file=sys.stderr)
        return 2
    try:
        return mount(argv[1:]) if argv[0] == "mount" else umount(argv[1:])
    except (OSError, subprocess.CalledProcessError, FatError) as exc:
        print(f"sage-image {argv[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
