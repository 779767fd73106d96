"""The image under test: a build output folder (manifest.json) or a bare image file.

Reads only what the build wrote (docs/manifest.md); never re-plans from the catalog.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ... import outfolder
from ...errors import BootTestError, UsageError
from .disk import DiskInfo, inspect_disk

# raw first: a compressed qcow2 makes QEMU inflate every block the guest reads (CPU that TCG
# needs); both hold the same bytes and publish accepts a pass for either.
FORMAT_PREFERENCE = ("raw", "qcow2")
DEFAULT_ROOT = "LABEL=cloudimg-rootfs"


@dataclass(frozen=True)
class ImageUnderTest:
    disk: DiskInfo
    out_dir: Path | None          # the build output folder, when there is one
    manifest: Mapping[str, Any]   # empty for a bare file
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
        for fmt, entry in (manifest.get("files") or {}).items():
            if Path(str(entry.get("path", ""))).name == path.name:
                return _from_output_dir(path.parent, disk_format or fmt, variant)
    return ImageUnderTest(
        disk=inspect_disk(path), out_dir=None, manifest=MappingProxyType({}), name=path.stem,
        variant=variant or "base", qemu_arch=qemu_arch, tested_file=path.name, kernel=None,
        initrd=None, root=DEFAULT_ROOT,
        results_path=outfolder.results_beside(path))


def _from_output_dir(out: Path, disk_format: str | None, variant: str | None) -> ImageUnderTest:
    manifest = _read_manifest(out)
    files = manifest.get("files") or {}
    choices = [disk_format] if disk_format else [f for f in FORMAT_PREFERENCE if f in files]
    if not choices or choices[0] not in files:
        raise UsageError(f"{outfolder.manifest_path(out)} lists no {disk_format or 'qcow2 or raw'} image "
                         f"(it has: {', '.join(files) or 'none'})")
    entry = files[choices[0]]
    boot = manifest.get("boot") or {}
    kernel = out / str(boot.get("kernel", "boot/vmlinuz"))
    initrd = out / str(boot.get("initrd", "boot/initrd.img"))
    return ImageUnderTest(
        disk=inspect_disk(out / str(entry["path"])), out_dir=out,
        manifest=MappingProxyType(manifest), name=str(manifest.get("name", out.name)),
        variant=variant or str(manifest.get("variant", "base")),
        qemu_arch=str(manifest.get("qemu_arch", "x86_64")), tested_file=str(entry["path"]),
        kernel=kernel if kernel.is_file() else None,
        initrd=initrd if initrd.is_file() else None,
        root=str(boot.get("root") or DEFAULT_ROOT), results_path=outfolder.results_path(out),
        kernel_args=kernel_args(str(boot.get("cmdline") or "")))


def _read_manifest(out: Path) -> dict[str, Any]:
    path = outfolder.manifest_path(out)
    if not path.is_file():
        raise UsageError(f"{out}: no {outfolder.MANIFEST} - not a build output folder",
                         hint="pass the folder `sage-image build --out` wrote, or an image file")
    data = outfolder.read_json(path)
    if data.get("schema") != 1:
        raise UsageError(f"{path}: not a schema-1 manifest (docs/manifest.md)")
    return data


def verify_checksum(image: ImageUnderTest) -> str:
    """sha512 of the tested file; it must match the manifest (a changed file needs a rebuild)."""
    digest = hashlib.sha512()
    with image.disk.path.open("rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    for entry in (image.manifest.get("files") or {}).values():
        if entry.get("path") == image.tested_file and entry.get("sha512") not in (None, actual):
            raise BootTestError(f"{image.disk.path}: sha512 differs from {outfolder.MANIFEST} - the "
                                "file changed after the build", hint="rebuild the image")
    return actual
