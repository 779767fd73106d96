"""Built-in comparisons of what a check read in the guest with what the manifest says.

Each returns None when they agree, else a one-line description of the first differences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

SHOWN = 3  # differences named in the one-line reason; the rest are counted


def compare_provenance(output: str, manifest: Mapping[str, Any]) -> str | None:
    try:
        guest = json.loads(output)
    except ValueError:
        return f"not JSON: {_first_line(output)}"
    if not isinstance(guest, dict):
        return "not a JSON object"
    expected = {str(k): str(v) for k, v in (manifest.get("properties") or {}).items()}
    actual = {str(k): str(v) for k, v in guest.items()}
    diffs = [f"{k}: image {actual.get(k)!r} != manifest {expected.get(k)!r}"
             for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]
    return _summary(diffs)


def compare_packages(output: str, manifest: Mapping[str, Any]) -> str | None:
    guest: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split("|")
        # Only fully installed packages ("ii"); "rc" leftovers are not installed.
        if len(parts) == 3 and parts[0].strip() == "ii":
            guest[parts[1]] = parts[2]
    expected = {str(k): str(v) for k, v in (manifest.get("packages") or {}).items()}
    if not guest:
        return f"no package list from the guest: {_first_line(output)}"
    missing = sorted(set(expected) - set(guest))
    extra = sorted(set(guest) - set(expected))
    changed = sorted(k for k in set(expected) & set(guest) if expected[k] != guest[k])
    diffs = ([f"missing in image: {k} {expected[k]}" for k in missing]
             + [f"not in manifest: {k} {guest[k]}" for k in extra]
             + [f"{k}: image {guest[k]} != manifest {expected[k]}" for k in changed])
    return _summary(diffs)


def compare_source_commits(output: str, manifest: Mapping[str, Any]) -> str | None:
    found = dict(line.split("|", 1) for line in output.splitlines() if "|" in line)
    diffs = []
    for name, src in sorted(source_entries(manifest).items()):
        commit = found.get(src["path"], "missing")
        if commit == "missing":
            diffs.append(f"{name}: no git checkout at {src['path']}")
        elif commit != src["commit"]:
            diffs.append(f"{name}: {src['path']} is at {commit[:12]}, manifest says "
                         f"{src['commit'][:12]}")
    return _summary(diffs)


def source_entries(manifest: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The manifest's sources that have a path in the image (only those can be checked)."""
    return {name: {"path": str(s["path"]), "commit": str(s["commit"])}
            for name, s in (manifest.get("sources") or {}).items()
            if isinstance(s, dict) and s.get("path") and s.get("commit")}


COMPARATORS: dict[str, Callable[[str, Mapping[str, Any]], str | None]] = {
    "provenance": compare_provenance,
    "packages": compare_packages,
    "source-commits": compare_source_commits,
}


def _summary(diffs: list[str]) -> str | None:
    if not diffs:
        return None
    more = f" (and {len(diffs) - SHOWN} more)" if len(diffs) > SHOWN else ""
    return "; ".join(diffs[:SHOWN]) + more


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:160] if lines else "(no output)"
