"""Hash-pinned Python requirements ("locks"): read, write and summarise them.

A lock lists every package a virtualenv gets - top-level and transitive - as ``name==version``
with the sha256 of each file pip may pick for it (a wheel per arch, or one sdist), so
``pip install --require-hashes --no-deps -r LOCK`` installs exactly it or fails.
``scripts/python-lock`` writes them; the build installs them and the manifest records them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

ENTRY_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH_RE = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class LockEntry:
    name: str  # canonical (PEP 503): lowercase, runs of -_. as one -
    version: str
    hashes: tuple[str, ...]  # sha256 hex of every acceptable file


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> tuple[LockEntry, ...]:
    """The entries of a lock file; ConfigError naming the line when one has no hash."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read Python lock: {exc.strerror}",
                          hint="make it with scripts/python-lock") from exc
    entries: list[LockEntry] = []
    for number, line in _logical_lines(text):
        match = ENTRY_RE.match(line)
        hashes = tuple(HASH_RE.findall(line))
        if not match or not hashes:
            raise ConfigError(f"{path.name}:{number}: expected 'name==version --hash=sha256:...'"
                              f", got {line[:60]!r}", hint="regenerate it with scripts/python-lock")
        entries.append(LockEntry(canonical(match.group(1)), match.group(2), hashes))
    return tuple(entries)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined at trailing backslashes, comments and blanks dropped, with line numbers."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            out.append((start, pending.strip()))
        pending = ""
    return out


def render_lock(entries: tuple[LockEntry, ...], header: str) -> str:
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    for entry in sorted(entries, key=lambda e: e.name):
        hashes = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(entry.hashes))
        lines.append(f"{entry.name}=={entry.version} \\\n{hashes}")
    return "\n".join(lines) + "\n"


def lock_versions(path: Path) -> dict[str, str]:
    """canonical name -> version of every package the lock installs."""
    return {e.name: e.version for e in parse_lock(path)}


def lock_digest(path: Path) -> str:
    """``sha256:<hex>`` of the lock file: one provenance value that pins every package."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
