"""The one way this project turns Kubernetes objects into a kustomize tree on disk.

`dump` is the only YAML dumper for manifests, `kustomization` the only kustomization builder,
`resources` the only requests/limits block; `folder_files` lays objects out as one file each
plus their kustomization.yaml, and `write_tree` puts a tree on disk, replacing one it wrote
before and refusing any other folder that is not empty. Everything but `write_tree` is pure.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from ..errors import UsageError
from ..folders import make_folder

Obj = dict[str, Any]
KUSTOMIZATION = "kustomization.yaml"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"

try:  # libyaml makes dumping N=50 nodes ~10x faster; the pure-Python emitter gives equal text
    _Base: type[yaml.SafeDumper] = yaml.CSafeDumper  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Base = yaml.SafeDumper


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """Safe dumping, with multi-line strings (pod scripts) as literal blocks that read as
    written instead of one quoted line of \\n escapes."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    """Keys in the order the generator wrote them, block style, long values never folded (a
    wrapped command line or URL is harder to read and to grep)."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


class Resources(Protocol):
    """Requests and limits of one container (the catalog's KubeResources)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


def resources(r: Resources) -> Obj:
    return {"requests": {"cpu": r.cpu_request, "memory": r.memory_request},
            "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit}}


def kustomization(resources: Iterable[str], **fields: Any) -> Obj:
    """A Kustomization listing `resources` (files or folders), then any other fields
    (secretGenerator, ...) in the order given."""
    return {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": list(resources),
            **fields}


def object_file(obj: Obj) -> str:
    """`Job` named `image-x` -> `job-image-x.yaml`: unique per kind and name in one namespace."""
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def folder_files(objects: Iterable[Obj], *, header: str = "",
                 subfolder: Callable[[Obj], str] = lambda obj: "") -> dict[str, str]:
    """Relative path -> text: the kustomization.yaml, then one file per object (under
    `subfolder(obj)`, e.g. "jobs/") in the order given, each file starting with `header`."""
    by_file = {f"{subfolder(obj)}{object_file(obj)}": obj for obj in objects}
    return {KUSTOMIZATION: header + dump(kustomization(by_file)),
            **{rel: header + dump(obj) for rel, obj in by_file.items()}}


def write_tree(out: Path, files: Mapping[str, str], *, marker: str, command: str,
               option: str = "--out") -> list[Path]:
    """Write `files` (relative path -> text) under `out`; return the paths written.

    A folder holding `marker` was written by `command` before and is emptied first, so nothing
    of an earlier, larger tree is left to be applied; any other folder that is not empty is
    refused - a user's files are never deleted.
    """
    _clear_own_tree(out, marker=marker, command=command, option=option)
    written = []
    try:
        # The marker first: a tree left half-written (disk full) is still ours to replace.
        (out / marker).write_text(f"written by {command}; the whole folder is replaced\n")
        for rel, text in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    except OSError as exc:  # a full disk, a quota: the folder itself was fine
        raise UsageError(f"{option} {out}: cannot write {exc.filename or 'a file'}: "
                         f"{exc.strerror or exc}", hint=f"give {option} a folder with room") from exc
    return written


def _clear_own_tree(out: Path, *, marker: str, command: str, option: str) -> None:
    make_folder(out, option=option)  # refuses a file in its place, or a folder it cannot make
    entries = list(out.iterdir())
    if entries and not (out / marker).exists():
        raise UsageError(f"{option} {out}: folder is not empty and was not written by "
                         f"`{command}`", hint=f"give {option} a new or empty folder")
    for entry in entries:  # the folder itself stays (it may be a mount point or a link)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
