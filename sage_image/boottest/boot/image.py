"""The image under test: a build output folder (manifest.json) or a bare image file.

Reads only what the build wrote (docs/manifest.md); never re-plans from the catalog.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ... import outfolder
from ...errors import BootTestError, UsageError
from ...outfolder import Manifest
from .disk import DiskInfo, inspect_disk

# raw first: a compressed qcow2 makes QEMU inflate every block the guest reads (CPU that TCG
# needs); both hold the same bytes and publish accepts a pass for either.
FORMAT_PREFERENCE = ("raw", "qcow2")
DEFAULT_ROOT = "LABEL=cloudimg-rootfs"


@dataclass(frozen=True)
class ImageUnderTest:
    disk: DiskInfo
    out_dir: Path | None          # the build output folder, when there is one
    manifest: Manifest | None     # None for a bare file
    name: str
    variant: str
    qemu_arch: str
    tested_file: str              # relative to out_dir (or the file name)
    kernel: Path | None           # copied out by the build (boot/vmlinuz), if present
    initrd: Path | None
    root: str                     # the kernel's root= argument
    results_path: Path
    # The build's own kernel arguments beyond root/ro/console (the manifest's boot.cmdline, e.g.
    # the gpu variant's pci=realloc=off): a direct kernel boot passes them as GRUB would.
    kernel_args: tuple[str, ...] = ()


def kernel_args(cmdline: str) -> tuple[str, ...]:
    """The arguments of a manifest's boot.cmdline the boot test does not set itself."""
    return tuple(a for a in cmdline.split()
                 if a != "ro" and not a.startswith(("root=", "console=")))


def resolve_image(path: Path, *, disk_format: str | None = None, variant: str | None = None,
                  qemu_arch: str = "x86_64") -> ImageUnderTest:
    path = Path(path)
    if path.is_dir():
        return _from_output_dir(path, disk_format, variant)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder",
                         hint=f"pass a build output folder (with {outfolder.MANIFEST}) or an image file")
    if outfolder.manifest_path(path.parent).is_file():
        manifest = _read_manifest(path.parent)
        for fmt, entry in manifest.files.items():
            if Path(entry.path).name == path.name:
                return _from_output_dir(path.parent, disk_format or fmt, variant)
    return ImageUnderTest(
        disk=inspect_disk(path), out_dir=None, manifest=None, name=path.stem,
        variant=variant or "base", qemu_arch=qemu_arch, tested_file=path.name, kernel=None,
        initrd=None, root=DEFAULT_ROOT,
        results_path=outfolder.results_beside(path))


def _from_output_dir(out: Path, disk_format: str | None, variant: str | None) -> ImageUnderTest:
    manifest = _read_manifest(out)
    files = manifest.files
    choices = [disk_format] if disk_format else [f for f in FORMAT_PREFERENCE if f in files]
    if not choices or choices[0] not in files:
        raise UsageError(f"{outfolder.manifest_path(out)} lists no {disk_format or 'qcow2 or raw'} image "
                         f"(it has: {', '.join(files) or 'none'})")
    entry = files[choices[0]]
    kernel = out / manifest.boot.kernel
    initrd = out / manifest.boot.initrd
    return ImageUnderTest(
        disk=inspect_disk(out / entry.path), out_dir=out, manifest=manifest, name=manifest.name,
        variant=variant or manifest.variant, qemu_arch=manifest.qemu_arch,
        tested_file=entry.path, kernel=kernel if kernel.is_file() else None,
        initrd=initrd if initrd.is_file() else None, root=manifest.boot.root,
        results_path=outfolder.results_path(out), kernel_args=kernel_args(manifest.boot.cmdline))


def _read_manifest(out: Path) -> Manifest:
    if not outfolder.manifest_path(out).is_file():
        raise UsageError(f"{out}: no {outfolder.MANIFEST} - not a build output folder",
                         hint="pass the folder `sage-image build --out` wrote, or an image file")
    return outfolder.read_manifest(out)


def verify_checksum(image: ImageUnderTest) -> str:
    """sha512 of the tested file; it must match the manifest (a changed file needs a rebuild)."""
    digest = hashlib.sha512()
    with image.disk.path.open("rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    files = image.manifest.files.values() if image.manifest else ()
    for entry in files:
        if entry.path == image.tested_file and entry.sha512 != actual:
            raise BootTestError(f"{image.disk.path}: sha512 differs from {outfolder.MANIFEST} - the "
                                "file changed after the build", hint="rebuild the image")
    return actual
