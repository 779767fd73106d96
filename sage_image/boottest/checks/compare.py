"""Built-in comparisons of what a check read in the guest with what the manifest says.

Each returns None when they agree, else a one-line description of the first differences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from ...builder.pythonlock import canonical
from ...outfolder import Manifest

SHOWN = 3  # differences named in the one-line reason; the rest are counted


def compare_provenance(output: str, manifest: Manifest) -> str | None:
    try:
        guest = json.loads(output)
    except ValueError:
        return f"not JSON: {_first_line(output)}"
    if not isinstance(guest, dict):
        return "not a JSON object"
    expected = dict(manifest.properties)
    actual = {str(k): str(v) for k, v in guest.items()}
    diffs = [f"{k}: image {actual.get(k)!r} != manifest {expected.get(k)!r}"
             for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]
    return _summary(diffs)


def compare_packages(output: str, manifest: Manifest) -> str | None:
    """Debian packages ("ii|name|version") against manifest.packages and, when the image has a
    Python venv, its packages ("py|name|version") against manifest.python_packages, and
    sage-node's venv ("node|name|version") against manifest.node_python_packages."""
    debian: dict[str, str] = {}
    python: dict[str, str] = {}
    node: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split("|")
        if len(parts) != 3:
            continue
        # Only fully installed packages ("ii"); "rc" leftovers are not installed.
        if parts[0].strip() == "ii":
            debian[parts[1]] = parts[2]
        elif parts[0] == "py":
            python[canonical(parts[1])] = parts[2]
        elif parts[0] == "node":
            node[canonical(parts[1])] = parts[2]
    if not debian:
        return f"no package list from the guest: {_first_line(output)}"
    diffs = _package_diffs(debian, manifest.packages, "")
    diffs += _package_diffs(python, manifest.python_packages, "python ")
    diffs += _package_diffs(node, manifest.node_python_packages, "node python ")
    return _summary(diffs)


def _package_diffs(guest: dict[str, str], listed: Mapping[str, str], kind: str) -> list[str]:
    expected = dict(listed)
    if kind:
        expected = {canonical(k): v for k, v in expected.items()}
    missing = sorted(set(expected) - set(guest))
    extra = sorted(set(guest) - set(expected))
    changed = sorted(k for k in set(expected) & set(guest) if expected[k] != guest[k])
    return ([f"missing in image: {kind}{k} {expected[k]}" for k in missing]
            + [f"not in manifest: {kind}{k} {guest[k]}" for k in extra]
            + [f"{kind}{k}: image {guest[k]} != manifest {expected[k]}" for k in changed])


def compare_source_commits(output: str, manifest: Manifest) -> str | None:
    found = dict(line.split("|", 1) for line in output.splitlines() if "|" in line)
    diffs = []
    for name, src in sorted(manifest.sources.items()):
        commit = found.get(src.path, "missing")
        if commit == "missing":
            diffs.append(f"{name}: no git checkout at {src.path}")
        elif commit != src.commit:
            diffs.append(f"{name}: {src.path} is at {commit[:12]}, manifest says "
                         f"{src.commit[:12]}")
    return _summary(diffs)


def compare_ntp(output: str, manifest: Manifest) -> str | None:
    """chrony runs (timesyncd does not) with exactly the manifest's servers, and the
    distribution's pool only if the manifest says so. Lines: `chrony=STATE`,
    `timesyncd=STATE`, `tracking=ok|fail`, then `server HOST` / `pool HOST` as configured."""
    state = dict(ln.split("=", 1) for ln in output.splitlines() if "=" in ln)
    diffs = []
    if state.get("chrony") != "active":
        diffs.append(f"chrony is {state.get('chrony', 'missing')}")
    if state.get("timesyncd") == "active":
        diffs.append("systemd-timesyncd is active")
    if state.get("tracking") != "ok":
        diffs.append("chronyc cannot talk to chronyd")
    words = [ln.split() for ln in output.splitlines() if ln.startswith(("server ", "pool "))]
    servers = [w[1] for w in words if w[0] == "server"]
    pools = [w[1] for w in words if w[0] == "pool"]
    wanted = list(manifest.ntp.servers)
    if sorted(servers) != sorted(wanted):
        diffs.append(f"servers {' '.join(servers) or '(none)'} != manifest "
                     f"{' '.join(wanted) or '(none)'}")
    if bool(pools) != manifest.ntp.pool:
        diffs.append(f"pool {' '.join(pools) or '(none)'} but the manifest says pool="
                     f"{manifest.ntp.pool}".lower())
    return _summary(diffs)


# sfdisk --json names an MBR table "dos"; the catalog says "mbr".
SFDISK_LABELS = {"gpt": "gpt", "dos": "mbr"}
ROLE_NAMES = {"esp": "ESP", "bios-boot": "BIOS boot", "root": "root"}
# Short names for the types a layout uses (a check's reason is one line of <= 200 characters).
TYPE_NAMES = {"c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
              "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
              "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
              "ef": "EFI system", "83": "Linux"}
SIZE_UNITS = {"MiB": 2**20, "GiB": 2**30}


def compare_partitions(output: str, manifest: Manifest) -> str | None:
    """`sfdisk --json` of the boot disk vs the layout the manifest says the image was built
    with: the table's kind, then each partition's type and (when fixed) size, in order."""
    layout = manifest.layout
    if layout is None:
        return "the manifest records no disk layout"
    try:
        table = json.loads(output)["partitiontable"]
    except (ValueError, KeyError, TypeError):
        return f"no partition table from sfdisk: {_first_line(output)}"
    label = SFDISK_LABELS.get(str(table.get("label")), str(table.get("label")))
    if label != layout.label:
        return f"the disk is {label}, layout {layout.name} is {layout.label}"
    found = table.get("partitions") or []
    sector = int(table.get("sectorsize", 512))
    diffs = []
    for i, want in enumerate(layout.partitions):
        what = f"partition {i + 1} ({ROLE_NAMES.get(want.role, want.role)})"
        if i >= len(found):
            diffs.append(f"{what} is missing")
            continue
        kind = str(found[i].get("type", "")).lower().removeprefix("0x")
        if kind != want.type.lower():
            diffs.append(f"{what} is {_type_name(kind)}, {layout.name} wants "
                         f"{_type_name(want.type.lower())}")
        size = _fixed_size(want.size)
        if size and int(found[i].get("size", 0)) * sector != size:
            diffs.append(f"{what} is {int(found[i].get('size', 0)) * sector // 2**20} MiB, "
                         f"{layout.name} wants {want.size}")
    return _summary(diffs)


def _type_name(kind: str) -> str:
    return TYPE_NAMES.get(kind, kind[:8])


def _fixed_size(text: str) -> int | None:
    for unit, factor in SIZE_UNITS.items():
        if text.endswith(unit) and text[:-len(unit)].isdigit():
            return int(text[:-len(unit)]) * factor
    return None  # 100%: the root grows at first boot


COMPARATORS: dict[str, Callable[[str, Manifest], str | None]] = {
    "provenance": compare_provenance,
    "packages": compare_packages,
    "source-commits": compare_source_commits,
    "ntp": compare_ntp,
    "partitions": compare_partitions,
}


def _summary(diffs: list[str]) -> str | None:
    if not diffs:
        return None
    more = f" (and {len(diffs) - SHOWN} more)" if len(diffs) > SHOWN else ""
    return "; ".join(diffs[:SHOWN]) + more


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:160] if lines else "(no output)"
