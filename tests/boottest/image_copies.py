"""Copies of a built image for the slow boot tests: hard-linked ones to boot as they are (the
results land in the copy), and ones to break on purpose - the raw file copied (sparse), the
boot files hard-linked, the root file system read and edited with debugfs, no second build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sage_image.boottest.boot.disk import find_root, inspect_disk
from sage_image.outfolder import Manifest, read_manifest
from tests import contract


def linked_copy(built: Path, dest: Path) -> Path:
    """The build folder with its files hard-linked (the image is only read): the firmware
    test's results land here, not over the release's own test-results.json."""
    dest.mkdir(parents=True)
    for entry in built.iterdir():
        if entry.is_file() and entry.name not in ("test-results.json", "junit.xml"):
            os.link(entry, dest / entry.name)
    (dest / "boot").mkdir()
    for entry in (built / "boot").iterdir():
        os.link(entry, dest / "boot" / entry.name)
    return dest


def copy_for_breaking(built: Path, dest: Path) -> tuple[Path, Manifest]:
    """A raw copy of the build's disk to edit, and its manifest; `write_broken` writes the
    manifest back once the copy is broken."""
    manifest = read_manifest(built)
    dest.mkdir(parents=True)
    shutil.copytree(built / "boot", dest / "boot", copy_function=os.link)
    files = manifest.files
    if "raw" in files:
        raw = files["raw"].path
        subprocess.run(["cp", "--sparse=always", str(built / raw), str(dest / raw)], check=True)
    else:  # a bare-metal-only build: make the raw copy debugfs can edit
        raw = str(Path(files["qcow2"].path).with_suffix(".raw"))
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(built / files["qcow2"].path),
                        str(dest / raw)], check=True)
    return dest / raw, manifest


def write_broken(raw: Path, manifest: Manifest, **changes: Any) -> Path:
    """The broken copy's manifest: it lists only the copy (other bytes, so its own checksums),
    with `changes` to the build's record; returns the copy's output folder."""
    out = raw.parent
    contract.write_build(out, contract.replace(
        manifest, files={"raw": contract.image_file(raw, "raw", root=out)}, **changes))
    return out


def edit_root(raw: Path, work: Path, files: dict[str, tuple[str, int] | None],
              mkdirs: tuple[str, ...] = (), symlinks: dict[str, str] | None = None) -> None:
    """Write (content, mode) or delete (None) files in the image's root fs with debugfs -w;
    make `symlinks` (path -> target) after them."""
    root = find_root(inspect_disk(raw))
    commands = [f"mkdir {d}" for d in mkdirs]
    for i, (path, spec) in enumerate(files.items()):
        commands.append(f"rm {path}")
        if spec is not None:
            local = work / f"file{i}"
            local.write_text(spec[0])
            local.chmod(spec[1])
            commands.append(f"write {local} {path}")
    commands += [f"symlink {path} {target}" for path, target in (symlinks or {}).items()]
    script = work / "debugfs.cmds"
    script.write_text("\n".join(commands) + "\n")
    subprocess.run(["debugfs", "-w", "-f", str(script), f"{raw}?offset={root.offset}"],
                   check=True, capture_output=True)


def read_root(raw: Path, path: str) -> str:
    root = find_root(inspect_disk(raw))
    return subprocess.run(["debugfs", "-R", f"cat {path}", f"{raw}?offset={root.offset}"],
                          check=True, capture_output=True, text=True).stdout


def list_root(raw: Path, path: str) -> list[str]:
    """The names in a folder of the image's root fs (empty when it does not exist)."""
    root = find_root(inspect_disk(raw))
    listing = subprocess.run(["debugfs", "-R", f"ls -p {path}", f"{raw}?offset={root.offset}"],
                             check=True, capture_output=True, text=True).stdout
    # -p: /inode/mode/uid/gid/name/size/ per entry
    names = [line.split("/")[5] for line in listing.splitlines() if line.count("/") >= 6]
    return [n for n in names if n not in (".", "..")]
