"""After diskimage-builder: disk formats, checksums, the package lists the manifest records."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from ..errors import BuildError
from ..outfolder import ImageFile
from ..runner import run
from .plan import BuildPlan
from .pythonlock import canonical

CHUNK = 4 * 1024 * 1024


def produce_files(raw: Path, plan: BuildPlan, out_dir: Path) -> dict[str, ImageFile]:
    """Write the image in each format its target sites want, described with checksums.

    The raw file is hashed on one core while qemu-img compresses the qcow2 on the other:
    both read the same bytes, so the page cache serves the second reader. When both formats
    are written, the qcow2 is proved to hold the raw's disk (`qemu-img compare`) and records
    it as `same_disk_as` the raw's sha512: the boot test boots the raw, bare-metal sites get
    the qcow2, and publish accepts a test of one for the other only with that proof."""
    raw_target = out_dir / f"{plan.identity.name}.raw" if "raw" in plan.formats else None
    if raw_target:
        move_sparse(raw, raw_target)
    source = raw_target or raw
    with ThreadPoolExecutor(max_workers=3) as pool:
        raw_entry = pool.submit(describe_file, raw_target, "raw", plan, out_dir) if raw_target \
            else None
        qcow2_entry = same = None
        if "qcow2" in plan.formats:
            qcow2 = convert_qcow2(source, plan, out_dir)
            qcow2_entry = pool.submit(describe_file, qcow2, "qcow2", plan, out_dir)
            if raw_target:
                same = pool.submit(prove_same_disk, raw_target, qcow2)
        described = {}
        if qcow2_entry:
            described["qcow2"] = qcow2_entry.result()
        if raw_entry:
            described["raw"] = raw_entry.result()
        if same:
            same.result()
            _check_sizes_match(described)
            described["qcow2"] = msgspec.structs.replace(
                described["qcow2"], same_disk_as=described["raw"].sha512)
    if not raw_target:
        raw.unlink(missing_ok=True)
    return described


def prove_same_disk(raw: Path, qcow2: Path) -> None:
    """BuildError unless the guest sees the same bytes in both (qemu-img compare: 0 = same,
    1 = different, 2 = could not tell)."""
    proc = run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow2], check=False)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"{qcow2.name} does not hold the same disk as {raw.name}: {detail[0]}",
                         hint="the conversion went wrong; rebuild (and check free disk space)")


def _check_sizes_match(described: dict[str, ImageFile]) -> None:
    # compare alone accepts a larger image whose extra part reads as zeros; a disk is its size too
    sizes = {fmt: entry.virtual_size for fmt, entry in described.items()}
    if len(set(sizes.values())) > 1:
        raise BuildError(f"the image files differ in virtual size: {sizes}")


def convert_qcow2(source: Path, plan: BuildPlan, out_dir: Path) -> Path:
    qcow2 = out_dir / f"{plan.identity.name}.qcow2"
    part = out_dir / f"{plan.identity.name}.qcow2.part"
    # -W/-m: several coroutines, so qemu's compression threads can use every core.
    run(["qemu-img", "convert", "-W", "-m", "4", "-f", "raw", "-O", "qcow2", "-c",
         "-o", f"compression_type={plan.compression}", source, part])
    part.rename(qcow2)
    return qcow2


def move_sparse(source: Path, target: Path) -> None:
    """A rename; across filesystems a copy that keeps the holes (a raw image is mostly holes)."""
    try:
        os.rename(source, target)
    except OSError:
        run(["cp", "--sparse=always", source, target])
        source.unlink()


def file_digests(path: Path) -> dict[str, str]:
    """sha256, sha512 and md5 in one read (Glance reports sha512 and md5; users use sha256)."""
    hashes = {"sha256": hashlib.sha256(), "sha512": hashlib.sha512(), "md5": hashlib.md5()}
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def virtual_size(path: Path, disk_format: str) -> int:
    info = json.loads(run(["qemu-img", "info", "--output=json", "-f", disk_format,
                           path]).stdout)
    return int(info["virtual-size"])


def describe_file(path: Path, disk_format: str, plan: BuildPlan, out_dir: Path) -> ImageFile:
    return ImageFile(path=str(path.relative_to(out_dir)), disk_format=disk_format,
                     size=path.stat().st_size, virtual_size=virtual_size(path, disk_format),
                     compression=plan.compression if disk_format == "qcow2" else None,
                     **file_digests(path))


def installed_packages(dpkg_status: Path) -> dict[str, str]:
    """name -> version of every installed package, from a dpkg status database."""
    return {name: version for name, (version, _) in _installed(dpkg_status).items()}


def package_architectures(dpkg_status: Path) -> dict[str, str]:
    """name -> architecture (amd64, all ...) of every installed package (for the SBOM's purls)."""
    return {name: arch for name, (_, arch) in _installed(dpkg_status).items()}


def _installed(dpkg_status: Path) -> dict[str, tuple[str, str]]:
    packages: dict[str, tuple[str, str]] = {}
    for stanza in dpkg_status.read_text(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and not line.startswith(" "):
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = (fields.get("Version", ""),
                                           fields.get("Architecture", ""))
    return dict(sorted(packages.items()))


def installed_python_packages(listing: Path) -> dict[str, str]:
    """canonical name -> version of every package in the image's venv (``name==version``
    lines the build-artifacts element wrote); empty when the image has no venv."""
    if not listing.is_file():
        return {}
    packages = {}
    for line in listing.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name:
            packages[canonical(name)] = version
    return dict(sorted(packages.items()))
