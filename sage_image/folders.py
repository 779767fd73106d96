"""Creating the folders and files commands write (--out, --dir, --cache, --junit, ...): the one
place that turns the operating system's refusal into a one-line UsageError instead of a
traceback, before the work starts where it can."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def check_folder(path: Path, *, option: str) -> Path:
    """Refuse a path that cannot become a folder we write in: it, or the nearest existing folder
    above it, is a file; or that folder refuses a new entry (/proc, a read-only mount, no
    permission). Leaves nothing behind, so pre-flight checks can use it: the one probe entry
    it makes is removed at once."""
    path = Path(path)
    problem = _folder_problem(path, path)
    if problem:
        raise UsageError(f"{option} {path}: {problem}",
                         hint=f"give {option} a new or existing folder you can write to")
    return path


def check_file(file: Path, *, option: str) -> Path:
    """The same for an output file: not a folder, and its folder can be made and written in."""
    file = Path(file)
    problem = "is a folder, expected a file name" if file.is_dir() else \
        _folder_problem(file, file.parent)
    if problem:
        raise UsageError(f"{option} {file}: {problem}",
                         hint=f"give {option} a file name in a folder you can write to")
    return file


def make_folder(path: Path, *, option: str) -> Path:
    """Create ``path`` (and its parents) unless it is already a folder; return it.

    ``option`` names the flag the user gave it with, so the message points at the input to
    change.
    """
    path = check_folder(path, option=option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # exc.filename is the folder that could not be made (/proc/x), maybe not `path` itself.
        where = f" {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        raise UsageError(f"{option} {path}: cannot create folder{where}: {exc.strerror or exc}",
                         hint=f"give {option} a folder you can write to") from exc
    return path


def make_parent_folder(file: Path, *, option: str) -> Path:
    """For an output file: refuse a folder in its place and create the folder it goes in."""
    file = check_file(file, option=option)
    make_folder(file.parent, option=option)
    return file


def write_file(file: Path, text: str, *, option: str) -> Path:
    """Write an output file the user named, atomically: a reader sees the old file or the new
    one, never half of one (a temporary file in the same folder, then renamed over it)."""
    file = make_parent_folder(file, option=option)
    try:
        return replace_atomically(file, text.encode())
    except OSError as exc:
        raise UsageError(f"{option} {file}: cannot write: {exc.strerror or exc}",
                         hint=f"give {option} a file name in a folder you can write to") from exc


def replace_atomically(file: Path, data: bytes) -> Path:
    """Write `file` so that a reader sees the old file or the new one, never half of one: a
    temporary file in the same folder (a rename cannot cross file systems there), named by the
    process so two writers never share one, then renamed over it - and removed on any failure."""
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return file


def _folder_problem(target: Path, folder: Path) -> str | None:
    """Why `folder` (target itself, or the folder of target, a file) cannot be written in, or
    None. Messages name the first folder that is in the way."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return ("exists and is not a folder" if probe == target
                else f"is inside {probe}, which exists and is not a folder")
    refusal = _cannot_write_in(probe)
    if refusal is None:
        return None
    if probe == folder:
        where = "cannot write in it" if probe == target else f"cannot write in {probe}"
    else:
        first = probe / folder.relative_to(probe).parts[0]
        where = "cannot create folder" + ("" if first == target else f" {first}")
    return f"{where}: {refusal.strerror or refusal}"


def _cannot_write_in(folder: Path) -> OSError | None:
    """Try: a folder may look writable (root passes every permission check) and still refuse
    a new entry - /proc, a read-only mount."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sage-image-probe-", dir=folder))
    except OSError as exc:
        return exc
    return None
