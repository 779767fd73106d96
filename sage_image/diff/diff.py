"""What changed between two builds: a pure function of two manifests (docs/manifest.md).

Either side may be a manifest read back from a site's object store, where publish keeps each
build's record (publish/record.py): both sides are the contract's typed `Manifest`.

Debian versions are ordered with python-debian's `version_compare` (dpkg's algorithm in pure
Python: epochs, `~`, revisions) - not string order, where 1.10 < 1.9. It needs neither the
system's python3-apt (not in a virtualenv) nor a dpkg subprocess per package (hundreds per
diff), and works on a build host that is not Debian. Python versions use packaging's PEP 440
order, falling back to "changed" for versions it cannot parse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from debian.debian_support import version_compare
from packaging.version import InvalidVersion, Version

from ..errors import UsageError
from ..outfolder import (
    MANIFEST,
    ImageIdentity,
    Manifest,
    SourceEntry,
    manifest_path,
    read_manifest,
)

# Sections, in the order the table shows them.
SECTIONS = ("image", "element", "check", "size", "source", "package", "python")
# Single-valued facts compared as "changed": the image's identity, then what built it;
# kernel is the image's vmlinuz version.
FIELDS = (*ImageIdentity.__struct_fields__, "kernel", "builder_version", "dib_version")


def _value(m: Manifest, field: str) -> str | None:
    return m.boot.kernel_version if field == "kernel" else getattr(m, field)


@dataclass(frozen=True)
class Change:
    section: str  # one of SECTIONS
    name: str
    kind: str  # added | removed | upgraded | downgraded | changed | re-pinned | moved | ...
    old: str | None = None
    new: str | None = None


@dataclass(frozen=True)
class ManifestDiff:
    old: str  # labels: what each side is (a path, or "CHI@UC: <image id>")
    new: str
    changes: tuple[Change, ...]

    @property
    def differs(self) -> bool:
        return bool(self.changes)

    def of(self, section: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.section == section)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.changes:
            kinds = out.setdefault(c.section, {})
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return out

    def summary(self) -> str:
        """One line: 'packages: 12 added, 3 upgraded; source: 1 re-pinned; kernel changed'."""
        if not self.changes:
            return "no changes"
        nouns = {"package": "package", "python": "Python package", "source": "source",
                 "element": "element", "check": "check"}
        parts = []
        for section, kinds in self.counts().items():
            if section in ("image", "size"):
                parts.append(", ".join(f"{c.name} {c.kind}" for c in self.of(section)))
                continue
            n = sum(kinds.values())
            noun = nouns[section] + ("s" if n != 1 else "")
            parts.append(f"{noun}: " + ", ".join(f"{v} {k}" for k, v in kinds.items()))
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "differs": self.differs,
                "summary": self.summary(), "counts": self.counts(),
                "changes": {s: [_plain(c) for c in self.of(s)] for s in SECTIONS if self.of(s)}}


def _plain(change: Change) -> dict[str, Any]:
    return {k: v for k, v in asdict(change).items() if k != "section"}


def diff_manifests(old: Manifest, new: Manifest, *, old_label: str = "A",
                   new_label: str = "B") -> ManifestDiff:
    changes = [*_fields(old, new), *_sets("element", old.elements, new.elements),
               *_sets("check", old.checks, new.checks), *_sizes(old, new),
               *_sources(old.sources, new.sources),
               *_versions("package", old.packages, new.packages, _debian_order),
               *_versions("python", old.python_packages, new.python_packages, _python_order),
               *_versions("node python", old.node_python_packages, new.node_python_packages,
                          _python_order)]
    return ManifestDiff(old=old_label, new=new_label, changes=tuple(changes))


def _fields(old: Manifest, new: Manifest) -> list[Change]:
    out = []
    for field in FIELDS:
        a, b = _value(old, field), _value(new, field)
        if a != b and not (a is None or b is None):
            out.append(Change("image", field, "changed", str(a), str(b)))
    return out


def _sets(section: str, a: tuple[str, ...], b: tuple[str, ...]) -> list[Change]:
    return ([Change(section, x, "added", None, x) for x in b if x not in a]
            + [Change(section, x, "removed", x, None) for x in a if x not in b])


def _sizes(old: Manifest, new: Manifest) -> list[Change]:
    a = {fmt: f.size for fmt, f in old.files.items()}
    b = {fmt: f.size for fmt, f in new.files.items()}
    out = []
    for fmt in sorted(set(a) | set(b)):
        sa, sb = a.get(fmt), b.get(fmt)
        if sa == sb:
            continue
        kind = ("added" if sa is None else "removed" if sb is None
                else "grew" if sb > sa else "shrank")
        out.append(Change("size", fmt, kind, None if sa is None else str(sa),
                          None if sb is None else str(sb)))
    return out


def _sources(old: Mapping[str, SourceEntry], new: Mapping[str, SourceEntry]) -> list[Change]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None:
            out.append(Change("source", name, "added", None, _pin(b)))
        elif b is None:
            out.append(Change("source", name, "removed", _pin(a), None))
        else:
            out.extend(_source_change(name, a, b))
    return out


def _pin(source: SourceEntry) -> str:
    stand_in = " (stand-in)" if source.stand_in else ""
    return f"{source.commit}{stand_in} {source.url}".strip()


def _source_change(name: str, a: SourceEntry, b: SourceEntry) -> list[Change]:
    out = []
    if a.commit != b.commit:
        out.append(Change("source", name, "re-pinned", a.commit, b.commit))
    if a.url != b.url:
        out.append(Change("source", name, "moved", a.url, b.url))
    if a.stand_in != b.stand_in:
        out.append(Change("source", name, "now a stand-in" if b.stand_in else "now real",
                          str(a.stand_in).lower(), str(b.stand_in).lower()))
    return out


def _debian_order(a: str, b: str) -> int:
    return version_compare(a, b)


def _python_order(a: str, b: str) -> int:
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return 0  # unordered: reported as "changed"
    return (va > vb) - (va < vb)


def _versions(section: str, old: Mapping[str, str], new: Mapping[str, str],
              order: Callable[[str, str], int]) -> list[Change]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            out.append(Change(section, name, "added", None, b))
        elif b is None:
            out.append(Change(section, name, "removed", a, None))
        else:
            cmp = order(b, a)
            kind = "upgraded" if cmp > 0 else "downgraded" if cmp < 0 else "changed"
            out.append(Change(section, name, kind, a, b))
    return out


# -- reading a side ------------------------------------------------------------------------------
def load_manifest(path: Path) -> tuple[Manifest, Path]:
    """A build output folder or a manifest.json -> (its manifest, the file)."""
    file = manifest_path(path) if path.is_dir() else path
    if not file.exists():
        what = f"no {MANIFEST} in" if path.is_dir() else "not found:"
        raise UsageError(f"{what} {path}",
                         hint=f"give a folder 'sage-image build' wrote, or its {MANIFEST}")
    return read_manifest(file), file
