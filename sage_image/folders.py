"""Creating the folders commands write into (--out, --dir, --cache): the one place that turns
the operating system's refusal into a one-line UsageError instead of a traceback."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError


def check_folder(path: Path, *, option: str) -> Path:
    """Refuse, without creating anything, a path that cannot become a folder: it, or the
    nearest existing folder above it, is a file. (Pre-flight checks use this; nothing is left
    behind when a later check fails.)"""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "exists" if probe == path else f"is inside {probe}, which exists"
        raise UsageError(f"{option} {path}: {what} and is not a folder",
                         hint=f"give {option} a new or existing folder")
    return path


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
    file = Path(file)
    if file.is_dir():
        raise UsageError(f"{option} {file}: is a folder, expected a file name")
    make_folder(file.parent, option=option)
    return file
