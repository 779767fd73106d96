"""After diskimage-builder: disk formats, checksums, the package list and manifest.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..runner import run
from .plan import BuildPlan

CHUNK = 4 * 1024 * 1024


def convert_formats(raw: Path, plan: BuildPlan, out_dir: Path) -> dict[str, Path]:
    """Write the image in each format its target sites want; the raw file is consumed."""
    produced: dict[str, Path] = {}
    if "qcow2" in plan.formats:
        qcow2 = out_dir / f"{plan.name}.qcow2"
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c",
             "-o", f"compression_type={plan.compression}", raw, qcow2.with_suffix(".part")])
        qcow2.with_suffix(".part").rename(qcow2)
        produced["qcow2"] = qcow2
    if "raw" in plan.formats:
        target = out_dir / f"{plan.name}.raw"
        shutil.move(raw, target)  # same filesystem: a rename; else a (sparse-unaware) copy
        produced["raw"] = target
    return produced


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


def describe_file(path: Path, disk_format: str, plan: BuildPlan, out_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path.relative_to(out_dir)), "disk_format": disk_format,
                             "size": path.stat().st_size,
                             "virtual_size": virtual_size(path, disk_format)}
    if disk_format == "qcow2":
        entry["compression"] = plan.compression
    entry.update(file_digests(path))
    return entry


def describe_files(files: dict[str, Path], plan: BuildPlan, out_dir: Path) -> dict[str, Any]:
    """Every format at once: hashing releases the GIL, so two files hash on two cores."""
    with ThreadPoolExecutor(max_workers=max(1, len(files))) as pool:
        futures = {fmt: pool.submit(describe_file, path, fmt, plan, out_dir)
                   for fmt, path in files.items()}
        return {fmt: future.result() for fmt, future in futures.items()}


def installed_packages(dpkg_status: Path) -> dict[str, str]:
    """name -> version of every installed package, from a dpkg status database."""
    packages: dict[str, str] = {}
    for stanza in dpkg_status.read_text(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and not line.startswith(" "):
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = fields.get("Version", "")
    return dict(sorted(packages.items()))


def write_json(path: Path, data: Any) -> None:
    """Atomically: a reader never sees half a manifest."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(part, path)
