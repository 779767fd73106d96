"""The catalog: typed, frozen configuration parsed and validated in one place.

Every error names the file, the line and the setting, e.g.
``catalog.yaml:57: variants.sage.elements[2]: unknown element 'virtual-wagle' (did you mean 'sage'?)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import ConfigError
from .elements import known_elements

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
# What variants.*.checks may name: the test stage's check definitions, read here for their names
# only (boottest/checks/model.py validates the rest when `sage-image test` loads them), so a
# misspelt check fails at `list`/`plan`/`build`, not at `test`.
CHECKS_FILE = Path(__file__).resolve().parent.parent / "boottest" / "checks" / "checks.yaml"
FAMILIES = ("ubuntu", "debian")
DISK_FORMATS = ("qcow2", "raw")
# site_kinds.*.virt: what `systemd-detect-virt --vm` says where the kind runs (none = bare metal).
VIRT_KINDS = ("none", "vm")
NTP_SERVER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
COMPRESSIONS = ("zlib", "zstd")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
K8S_VERSION_RE = re.compile(r"^1\.\d{1,2}$")
# repo[:tag] where the tag is required, or repo@sha256:digest
IMAGE_PIN_RE = re.compile(r"^[a-z0-9./_-]+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
NAME_FIELDS = ("os", "arch_suffix", "release", "variant", "arch", "version")
# Top-level sections owned by later stages (publish, kubernetes ...); each is parsed below.
OPTIONAL_SECTIONS: tuple[str, ...] = ("kubernetes", "publish", "ci")
# `ci.actions`: owner/repo@ a full commit id or an exact vX.Y.Z tag (never @v4 or @main).
ACTION_PIN_RE = re.compile(r"^[\w.-]+/[\w.-]+@([0-9a-f]{40}|v\d+\.\d+\.\d+)$")
CI_ACTIONS = ("checkout", "cache", "upload-artifact", "download-artifact")


# Partition roles a layout may use, with what each is in a GPT (sgdisk code, type GUID that
# sfdisk/lsblk report) and in an MBR table (type byte); None: not possible in that table.
PARTITION_ROLES: Mapping[str, Mapping[str, tuple[str, str] | None]] = MappingProxyType({
    "esp": MappingProxyType({"gpt": ("EF00", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
                             "mbr": ("ef", "ef")}),
    "bios-boot": MappingProxyType({"gpt": ("EF02", "21686148-6449-6e6f-744e-656564454649"),
                                   "mbr": None}),
    "root": MappingProxyType({"gpt": ("8300", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
                              "mbr": ("83", "83")}),
})
PARTITION_LABELS = ("gpt", "mbr")
FILESYSTEMS = ("ext4", "xfs", "vfat")
LAYOUT_ELEMENTS = ("block-device-efi", "block-device-gpt", "block-device-mbr")
SIZE_RE = re.compile(r"^(\d+(MiB|GiB)|100%)$")


@dataclass(frozen=True)
class Partition:
    name: str
    role: str                  # a PARTITION_ROLES key
    size: str                  # 550MiB, 8MiB, 100% (the rest of the disk)
    fs: str | None = None      # None: no filesystem (the BIOS boot partition holds GRUB's core)
    mount: str | None = None


@dataclass(frozen=True)
class Layout:
    """A disk layout: the partition table diskimage-builder writes and the firmware it boots on."""

    name: str
    description: str
    element: str               # the DIB block-device element (tells the bootloader what to install)
    label: str                 # gpt / mbr
    firmware: tuple[str, ...]  # bios, uefi: every firmware the image boots with
    partitions: tuple[Partition, ...]

    @property
    def hw_firmware_type(self) -> str | None:
        """Glance's hw_firmware_type: only for an image that boots one way (a hybrid sets none)."""
        return self.firmware[0] if len(self.firmware) == 1 else None

    def type_id(self, role: str) -> str:
        """The partition type as sfdisk --json reports it (GUID for GPT, hex byte for MBR)."""
        entry = PARTITION_ROLES[role][self.label]
        return entry[1] if entry else ""


@dataclass(frozen=True)
class Arch:
    name: str
    dib_arch: str
    qemu_arch: str
    elements: tuple[str, ...]
    suffix: str
    layout: str = "mbr"


@dataclass(frozen=True)
class Release:
    name: str
    family: str
    element: str
    version: str
    arches: tuple[str, ...]
    mirrors: Mapping[str, str]
    security_mirror: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def os_label(self) -> str:
        """``Ubuntu22.04`` / ``Debian12``: the form Chameleon's image names use."""
        return f"{self.family.title()}{self.version}"


@dataclass(frozen=True)
class CudaRelease:
    """What a release's gpu image gets: on Debian the release's own packages decide it."""

    release: str
    version: str  # MAJOR.MINOR, e.g. "11.8": the toolkit the build must find installed
    driver: str  # the NVIDIA driver branch, e.g. "535"


@dataclass(frozen=True)
class Cuda:
    releases: Mapping[str, CudaRelease]
    ubuntu_repo: str
    ubuntu_keyring: str
    debian_packages: tuple[str, ...]


@dataclass(frozen=True)
class PythonLock:
    """A release's hash-pinned requirements file (every package, wheels for each arch)."""

    release: str
    python: str  # the release's own Python, e.g. "3.11": the venv is made with it
    glibc: str  # its C library version: which manylinux wheels fit
    file: Path  # absolute; written by scripts/python-lock


@dataclass(frozen=True)
class PythonEnv:
    """A virtualenv of Python tools installed with ``pip --require-hashes`` from a lock."""

    venv: str  # absolute path in the image
    index_url: str  # default package index (``--pip-index-url`` overrides it)
    requirements: tuple[str, ...]  # what the locks are made from (top-level only)
    locks: Mapping[str, PythonLock]  # release -> lock


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    parent: str | None
    elements: tuple[str, ...]
    sources: tuple[str, ...]
    name_template: str
    min_free_gb: int
    checks: tuple[str, ...]
    arches: tuple[str, ...] | None = None
    cuda: Cuda | None = None
    python: PythonEnv | None = None
    # sage-node's own venv (its dependencies and the data-sharing service's pins): not on
    # cc's PATH, installed from its own lock like `python`
    node_python: PythonEnv | None = None
    image_extra_mb: int | None = None  # the builder's default when unset


@dataclass(frozen=True)
class SiteKind:
    name: str
    elements: tuple[str, ...]
    disk_format: str
    virt: str = "none"  # VIRT_KINDS: how an image knows at boot it runs on this kind
    firewall: bool = False  # host firewall on at boot (inbound SSH only)


@dataclass(frozen=True)
class Site:
    name: str
    kind: str
    cloud: str
    arches: tuple[str, ...]
    ntp: tuple[str, ...] = ()  # the site's NTP servers; empty: the distribution's pool


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    commit: str
    path: str  # absolute destination in the image


@dataclass(frozen=True)
class Builder:
    repo: str
    compression: str
    image_size_gb: int | None
    build_tag: str
    cloud_init_datasources: str
    image_extra_mb: int = 512


@dataclass(frozen=True)
class KubeResources:
    """Requests and limits of one container (Kubernetes quantities, e.g. 100m, 128Mi)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class Kubernetes:
    """`sage-image vw k8s`: versions to validate against, pinned images, default resources."""

    versions: tuple[str, ...]
    image_registry: str
    images: Mapping[str, str]
    resources: Mapping[str, KubeResources]
    job_backoff_limit: int
    volume_size: str

    def resources_for(self, container: str) -> KubeResources:
        return self.resources.get(container) or self.resources["default"]


# `publish.backdate` fields: the production name, the replaced image's build date (YYYYMMDD), its
# build-timestamp, build-tag and short source commit.
BACKDATE_FIELDS = ("name", "date", "timestamp", "tag", "commit")
VISIBILITIES = ("public", "community", "shared", "private")
FIRMWARE = ("bios", "uefi")
DURATION_RE = re.compile(r"^(\d+)(d|w|mo|y)$")
DURATION_DAYS = {"d": 1, "w": 7, "mo": 30, "y": 365}


def parse_duration(text: str) -> int:
    """`30d`, `6w`, `12mo`, `2y` -> days; ValueError on anything else."""
    match = DURATION_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"expected a duration like 30d, 6w, 12mo or 2y, got {text!r}")
    return int(match.group(1)) * DURATION_DAYS[match.group(2)]


@dataclass(frozen=True)
class Publish:
    """`sage-image publish` / `prune`: naming, visibility and lifecycle of published images."""

    backdate: str = "{name}-{date}"
    visibility: str = "public"
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    hide_after_days: int = 365
    delete_after_days: int = 548
    keep: int = 2


@dataclass(frozen=True)
class CI:
    """`sage-image ci github|k8s`: what the generated workflow and Jobs run on, all pinned."""

    container: str  # image of every build/test/publish job (GitHub job container, k8s pods)
    wait_image: str  # k8s init containers that wait on the shared volume
    runners: Mapping[str, str]  # arch -> GitHub runs-on label, a fixed version (never *-latest)
    actions: Mapping[str, str]  # CI_ACTIONS -> owner/repo@pin
    auth_urls: Mapping[str, str]  # site -> Keystone URL for the clouds.yaml CI writes
    resources: KubeResources  # each k8s build/test/publish container
    cache_size: str = "200Gi"  # the k8s shared cache volume
    retention_days: int = 3  # GitHub artifacts (images between jobs)


@dataclass(frozen=True)
class Catalog:
    path: Path
    builder: Builder
    arches: Mapping[str, Arch]
    releases: Mapping[str, Release]
    variants: Mapping[str, Variant]
    site_kinds: Mapping[str, SiteKind]
    sites: Mapping[str, Site]
    sources: Mapping[str, Source]
    layouts: Mapping[str, Layout] = field(default_factory=lambda: MappingProxyType({}))
    kubernetes: Kubernetes | None = None
    publish: Publish = field(default_factory=Publish)
    ci: CI | None = None

    def variant_chain(self, name: str) -> tuple[Variant, ...]:
        """The variant and its ancestors, the root (base) first."""
        chain: list[Variant] = []
        current: str | None = name
        while current is not None:
            variant = self.variants[current]
            chain.insert(0, variant)
            current = variant.parent
        return tuple(chain)

    def variant_elements(self, name: str) -> tuple[str, ...]:
        return tuple(e for v in self.variant_chain(name) for e in v.elements)

    def variant_sources(self, name: str) -> tuple[str, ...]:
        return tuple(s for v in self.variant_chain(name) for s in v.sources)

    def variant_checks(self, name: str) -> tuple[str, ...]:
        return tuple(c for v in self.variant_chain(name) for c in v.checks)

    def variant_python(self, name: str) -> PythonEnv | None:
        """The Python environment nearest along the variant's chain (gpu inherits sage's)."""
        found = None
        for v in self.variant_chain(name):
            found = v.python or found
        return found

    def variant_node_python(self, name: str) -> PythonEnv | None:
        """sage-node's venv, nearest along the chain (gpu inherits sage's)."""
        found = None
        for v in self.variant_chain(name):
            found = v.node_python or found
        return found

    def variant_image_extra_mb(self, name: str) -> int:
        """Space added to the root file system beyond its content: the largest along the chain
        (a variant that needs more keeps it for everything built on it)."""
        own = [v.image_extra_mb for v in self.variant_chain(name) if v.image_extra_mb is not None]
        return max([self.builder.image_extra_mb, *own])

    def variant_arches(self, name: str) -> tuple[str, ...]:
        """Arches a variant may be built for: the narrowest restriction along its chain."""
        allowed = tuple(self.arches)
        for v in self.variant_chain(name):
            if v.arches is not None:
                allowed = tuple(a for a in allowed if a in v.arches)
        return allowed

    def image_name(self, *, release: str, variant: str, arch: str) -> str:
        rel = self.releases[release]
        return self.variants[variant].name_template.format(
            os=rel.os_label, arch_suffix=self.arches[arch].suffix, release=release,
            variant=variant, arch=arch, version=rel.version,
        )


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog file; raise ConfigError naming file, line and setting."""
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read catalog: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return _Parser(path, lines).catalog(data)


def _index_lines(node: yaml.Node, here: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[here] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[here + (key.value,)] = key.start_mark.line + 1
            _index_lines(value, here + (key.value,), out)
            out[here + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, here + (i,), out)


def _dotted(where: tuple[Any, ...]) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@lru_cache(maxsize=1)
def known_checks() -> tuple[str, ...] | None:
    """Check names CHECKS_FILE defines; None if it is unreadable (`sage-image test` says why)."""
    try:
        data = yaml.safe_load(CHECKS_FILE.read_text())
    except (OSError, yaml.YAMLError):
        return None
    checks = data.get("checks") if isinstance(data, dict) else None
    return tuple(str(name) for name in checks) if isinstance(checks, dict) else None


def did_you_mean(value: str, choices: Iterator[str] | Mapping[str, Any] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Parser:
    """Turns the raw YAML into dataclasses; every check reports file:line: setting."""

    def __init__(self, path: Path, lines: dict[tuple[Any, ...], int]) -> None:
        self.path = path
        self.lines = lines

    # -- error helpers ---------------------------------------------------------------------
    def fail(self, where: tuple[Any, ...], message: str) -> ConfigError:
        probe = where
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        loc = f"{self.path.name}:{line}" if line else self.path.name
        return ConfigError(f"{loc}: {_dotted(where)}: {message}",
                           hint=f"edit {self.path} and run 'sage-image list' to check it")

    def mapping(self, value: Any, where: tuple[Any, ...], *, required: tuple[str, ...] = (),
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        for key in required:
            if key not in value:
                raise self.fail(where, f"missing required setting '{key}'")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                raise self.fail(where + (key,), f"unknown setting '{key}'{did_you_mean(str(key), allowed)}")
        return value

    def string(self, value: Any, where: tuple[Any, ...]) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def strings(self, value: Any, where: tuple[Any, ...]) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return tuple(self.string(v, where + (i,)) for i, v in enumerate(value))

    def choice(self, value: Any, where: tuple[Any, ...], choices: Any, what: str) -> str:
        text = self.string(value, where)
        if text not in choices:
            raise self.fail(where, f"unknown {what} '{text}'{did_you_mean(text, choices)}"
                                   f" (known: {', '.join(choices)})")
        return text

    def choices(self, value: Any, where: tuple[Any, ...], choices: Any, what: str) -> tuple[str, ...]:
        items = self.strings(value, where)
        for i, item in enumerate(items):
            self.choice(item, where + (i,), choices, what)
        return items

    def whole(self, value: Any, where: tuple[Any, ...]) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, f"expected a whole number, got {value!r}")
        return value

    def env(self, value: Any, where: tuple[Any, ...]) -> Mapping[str, str]:
        raw = self.mapping(value or {}, where, optional=tuple(value or {}))
        return MappingProxyType({str(k): self.string(v, where + (k,)) for k, v in raw.items()})

    # -- sections ----------------------------------------------------------------------------
    def catalog(self, data: Any) -> Catalog:
        top = self.mapping(data, (), required=("schema", "builder", "layouts", "arches",
                                               "releases", "variants", "site_kinds", "sites",
                                               "sources"),
                           optional=OPTIONAL_SECTIONS)
        if top["schema"] != 1:
            raise self.fail(("schema",), f"unsupported schema {top['schema']!r} (this tool reads 1)")
        elements = known_elements()
        layouts = {k: self.layout(k, v) for k, v in self.section(top, "layouts").items()}
        arches = {k: self.arch(k, v, elements, layouts) for k, v in self.mapping(
            top["arches"], ("arches",), optional=tuple(top["arches"] or {})).items()}
        sources = {k: self.source(k, v) for k, v in self.section(top, "sources").items()}
        releases = {k: self.release(k, v, arches, elements)
                    for k, v in self.section(top, "releases").items()}
        kinds = {k: self.site_kind(k, v, elements) for k, v in self.section(top, "site_kinds").items()}
        sites = {k: self.site(k, v, kinds, arches) for k, v in self.section(top, "sites").items()}
        variants = {k: self.variant(k, v, arches, sources, elements, known_checks(), releases)
                    for k, v in self.section(top, "variants").items()}
        self.check_parents(variants)
        return Catalog(
            path=self.path, builder=self.builder(top["builder"]),
            arches=MappingProxyType(arches), releases=MappingProxyType(releases),
            variants=MappingProxyType(variants), site_kinds=MappingProxyType(kinds),
            sites=MappingProxyType(sites), sources=MappingProxyType(sources),
            layouts=MappingProxyType(layouts),
            kubernetes=self.kubernetes(top["kubernetes"]) if "kubernetes" in top else None,
            publish=self.publish(top["publish"]) if "publish" in top else Publish(),
            ci=self.ci(top["ci"], sites, arches) if "ci" in top else None,
        )

    def section(self, top: dict[str, Any], name: str) -> dict[str, Any]:
        value = top[name]
        if not isinstance(value, dict) or not value:
            raise self.fail((name,), "expected a non-empty mapping")
        return value

    def builder(self, raw: Any) -> Builder:
        w = ("builder",)
        b = self.mapping(raw, w, required=("repo", "compression", "build_tag",
                                           "cloud_init_datasources"),
                         optional=("image_size_gb", "image_extra_mb"))
        size = b.get("image_size_gb")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise self.fail(w + ("image_size_gb",), f"expected a whole number of GiB, got {size!r}")
        return Builder(repo=self.string(b["repo"], w + ("repo",)),
                       compression=self.choice(b["compression"], w + ("compression",),
                                               COMPRESSIONS, "compression"),
                       image_size_gb=size, build_tag=self.string(b["build_tag"], w + ("build_tag",)),
                       cloud_init_datasources=self.string(b["cloud_init_datasources"],
                                                          w + ("cloud_init_datasources",)),
                       image_extra_mb=self.whole(b.get("image_extra_mb", 512),
                                                 w + ("image_extra_mb",)))

    def arch(self, name: str, raw: Any, elements: frozenset[str],
             layouts: dict[str, Layout]) -> Arch:
        w = ("arches", name)
        a = self.mapping(raw, w, required=("dib_arch", "qemu_arch", "elements", "suffix",
                                           "layout"))
        arch_elements = self.choices(a["elements"], w + ("elements",), elements, "element")
        for i, element in enumerate(arch_elements):
            if element in LAYOUT_ELEMENTS:
                raise self.fail(w + ("elements", i), f"'{element}' comes from the layout; "
                                                     "name a layout in arches.*.layout instead")
        return Arch(name=name, dib_arch=self.string(a["dib_arch"], w + ("dib_arch",)),
                    qemu_arch=self.string(a["qemu_arch"], w + ("qemu_arch",)),
                    elements=arch_elements, suffix=str(a["suffix"] or ""),
                    layout=self.choice(a["layout"], w + ("layout",), layouts, "layout"))

    def layout(self, name: str, raw: Any) -> Layout:
        w = ("layouts", name)
        lay = self.mapping(raw, w, required=("description", "element", "label", "firmware",
                                             "partitions"))
        label = self.choice(lay["label"], w + ("label",), PARTITION_LABELS, "partition table")
        if not isinstance(lay["partitions"], list) or not lay["partitions"]:
            raise self.fail(w + ("partitions",), "expected a non-empty list of partitions")
        parts = tuple(self.partition(p, w + ("partitions", i), label)
                      for i, p in enumerate(lay["partitions"]))
        if [p.mount for p in parts].count("/") != 1:
            raise self.fail(w + ("partitions",), "exactly one partition must be mounted at /")
        if any(p.size == "100%" for p in parts[:-1]):
            raise self.fail(w + ("partitions",), "only the last partition may take 100%")
        firmware = self.choices(lay["firmware"], w + ("firmware",), FIRMWARE, "firmware")
        roles = {p.role for p in parts}
        for i, needed in (("bios", "bios-boot"), ("uefi", "esp")):
            if i in firmware and needed not in roles and not (i == "bios" and label == "mbr"):
                raise self.fail(w + ("firmware",), f"{i} boot needs a '{needed}' partition")
        return Layout(name=name, description=self.string(lay["description"], w + ("description",)),
                      element=self.choice(lay["element"], w + ("element",), LAYOUT_ELEMENTS,
                                          "block-device element"),
                      label=label, firmware=firmware, partitions=parts)

    def partition(self, raw: Any, w: tuple[Any, ...], label: str) -> Partition:
        p = self.mapping(raw, w, required=("name", "role", "size"), optional=("fs", "mount"))
        role = self.choice(p["role"], w + ("role",), PARTITION_ROLES, "partition role")
        if PARTITION_ROLES[role][label] is None:
            raise self.fail(w + ("role",), f"a {role} partition cannot be in an {label} table")
        size = self.string(p["size"], w + ("size",))
        if not SIZE_RE.match(size):
            raise self.fail(w + ("size",), f"expected a size like 550MiB, 2GiB or 100%, got {size!r}")
        fs = self.choice(p["fs"], w + ("fs",), FILESYSTEMS, "filesystem") if "fs" in p else None
        mount = self.string(p["mount"], w + ("mount",)) if "mount" in p else None
        if (fs is None) != (mount is None):
            raise self.fail(w, "a partition has both 'fs' and 'mount', or neither")
        if mount is not None and not mount.startswith("/"):
            raise self.fail(w + ("mount",), f"expected an absolute path, got {mount!r}")
        return Partition(name=self.string(p["name"], w + ("name",)), role=role, size=size,
                         fs=fs, mount=mount)

    def release(self, name: str, raw: Any, arches: dict[str, Arch],
                elements: frozenset[str]) -> Release:
        w = ("releases", name)
        r = self.mapping(raw, w, required=("family", "element", "version", "arches", "mirrors"),
                         optional=("security_mirror", "env"))
        rel_arches = self.choices(r["arches"], w + ("arches",), arches, "arch")
        mirrors = self.mapping(r["mirrors"], w + ("mirrors",), required=rel_arches,
                               optional=tuple(arches))
        for arch, url in mirrors.items():
            if not re.match(r"^https?://", self.string(url, w + ("mirrors", arch))):
                raise self.fail(w + ("mirrors", arch), f"mirror must be an http(s) URL, got {url!r}")
        return Release(
            name=name, family=self.choice(r["family"], w + ("family",), FAMILIES, "family"),
            element=self.choice(r["element"], w + ("element",), elements, "element"),
            version=self.string(r["version"], w + ("version",)), arches=rel_arches,
            mirrors=MappingProxyType(dict(mirrors)),
            security_mirror=r.get("security_mirror"), env=self.env(r.get("env"), w + ("env",)),
        )

    def variant(self, name: str, raw: Any, arches: dict[str, Arch], sources: dict[str, Source],
                elements: frozenset[str], checks: tuple[str, ...] | None,
                releases: Mapping[str, Release]) -> Variant:
        w = ("variants", name)
        v = self.mapping(raw, w, required=("description", "elements", "name", "checks"),
                         optional=("parent", "sources", "min_free_gb", "arches", "cuda", "python",
                                   "node_python", "image_extra_mb"))
        template = self.string(v["name"], w + ("name",))
        try:
            template.format(**{f: "x" for f in NAME_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise self.fail(w + ("name",), f"bad name template {template!r}: unknown field {exc}"
                                           f" (fields: {', '.join(NAME_FIELDS)})") from exc
        return Variant(
            name=name, description=self.string(v["description"], w + ("description",)),
            parent=v.get("parent"),
            elements=self.choices(v["elements"], w + ("elements",), elements, "element"),
            sources=self.choices(v.get("sources", []), w + ("sources",), sources, "source"),
            name_template=template, min_free_gb=int(v.get("min_free_gb", 6)),
            checks=(self.choices(v["checks"], w + ("checks",), checks, "check")
                    if checks is not None else self.strings(v["checks"], w + ("checks",))),
            arches=(self.choices(v["arches"], w + ("arches",), arches, "arch")
                    if "arches" in v else None),
            cuda=self.cuda(v["cuda"], w + ("cuda",), releases) if "cuda" in v else None,
            python=self.python(v["python"], w + ("python",)) if "python" in v else None,
            node_python=(self.python(v["node_python"], w + ("node_python",))
                         if "node_python" in v else None),
            image_extra_mb=(self.whole(v["image_extra_mb"], w + ("image_extra_mb",))
                            if "image_extra_mb" in v else None),
        )

    def python(self, raw: Any, w: tuple[Any, ...]) -> PythonEnv:
        p = self.mapping(raw, w, required=("venv", "index_url", "requirements", "locks"))
        venv = self.string(p["venv"], w + ("venv",))
        if not venv.startswith("/") or ".." in venv.split("/"):
            raise self.fail(w + ("venv",), f"expected an absolute path in the image, got {venv!r}")
        locks = self.mapping(p["locks"], w + ("locks",), optional=tuple(p["locks"] or {}))
        return PythonEnv(
            venv=venv, index_url=self.string(p["index_url"], w + ("index_url",)),
            requirements=self.strings(p["requirements"], w + ("requirements",)),
            locks=MappingProxyType({r: self.python_lock(r, v, w + ("locks", r))
                                    for r, v in locks.items()}))

    def python_lock(self, release: str, raw: Any, w: tuple[Any, ...]) -> PythonLock:
        lock = self.mapping(raw, w, required=("python", "glibc", "file"))
        for key in ("python", "glibc"):
            if not re.match(r"^\d+\.\d+$", self.string(lock[key], w + (key,))):
                raise self.fail(w + (key,), f"expected MAJOR.MINOR, got {lock[key]!r}")
        return PythonLock(release=release, python=str(lock["python"]), glibc=str(lock["glibc"]),
                          file=self.path.parent / self.string(lock["file"], w + ("file",)))

    def cuda(self, raw: Any, w: tuple[Any, ...], releases: Mapping[str, Any]) -> Cuda:
        c = self.mapping(raw, w, required=("releases", "ubuntu_repo", "ubuntu_keyring",
                                           "debian_packages"))
        per = self.mapping(c["releases"], w + ("releases",), optional=tuple(c["releases"] or {}))
        for name in per:
            self.choice(name, w + ("releases", name), releases, "release")
        return Cuda(releases=MappingProxyType({
                        str(r): self.cuda_release(str(r), v, w + ("releases", r))
                        for r, v in per.items()}),
                    ubuntu_repo=self.string(c["ubuntu_repo"], w + ("ubuntu_repo",)),
                    ubuntu_keyring=self.string(c["ubuntu_keyring"], w + ("ubuntu_keyring",)),
                    debian_packages=self.strings(c["debian_packages"], w + ("debian_packages",)))

    def cuda_release(self, release: str, raw: Any, w: tuple[Any, ...]) -> CudaRelease:
        c = self.mapping(raw, w, required=("version", "driver"))
        for key, pattern, form in (("version", r"^\d+\.\d+$", "MAJOR.MINOR"),
                                   ("driver", r"^\d+$", "a driver branch number")):
            if not re.match(pattern, self.string(c[key], w + (key,))):
                raise self.fail(w + (key,), f"expected {form}, got {c[key]!r}")
        return CudaRelease(release=release, version=str(c["version"]), driver=str(c["driver"]))

    def check_parents(self, variants: dict[str, Variant]) -> None:
        for name, variant in variants.items():
            seen = {name}
            parent = variant.parent
            while parent is not None:
                if parent not in variants:
                    raise self.fail(("variants", name, "parent"),
                                    f"unknown variant '{parent}'{did_you_mean(parent, variants)}")
                if parent in seen:
                    raise self.fail(("variants", name, "parent"), "parents form a cycle")
                seen.add(parent)
                parent = variants[parent].parent

    def site_kind(self, name: str, raw: Any, elements: frozenset[str]) -> SiteKind:
        w = ("site_kinds", name)
        k = self.mapping(raw, w, required=("elements", "disk_format", "virt", "firewall"))
        if not isinstance(k["firewall"], bool):
            raise self.fail(w + ("firewall",), f"expected true or false, got {k['firewall']!r}")
        return SiteKind(name=name,
                        elements=self.choices(k["elements"], w + ("elements",), elements, "element"),
                        disk_format=self.choice(k["disk_format"], w + ("disk_format",),
                                                DISK_FORMATS, "disk format"),
                        virt=self.choice(k["virt"], w + ("virt",), VIRT_KINDS, "virt"),
                        firewall=k["firewall"])

    def site(self, name: str, raw: Any, kinds: dict[str, SiteKind], arches: dict[str, Arch]) -> Site:
        w = ("sites", name)
        s = self.mapping(raw, w, required=("kind", "cloud", "arches"), optional=("ntp",))
        ntp = self.strings(s.get("ntp") or [], w + ("ntp",))
        for i, server in enumerate(ntp):
            if not NTP_SERVER_RE.match(server):
                raise self.fail(w + ("ntp", i), f"expected a host name or address, got {server!r}")
        return Site(name=name, kind=self.choice(s["kind"], w + ("kind",), kinds, "site kind"),
                    cloud=self.string(s["cloud"], w + ("cloud",)),
                    arches=self.choices(s["arches"], w + ("arches",), arches, "arch"), ntp=ntp)

    def source(self, name: str, raw: Any) -> Source:
        w = ("sources", name)
        s = self.mapping(raw, w, required=("url", "commit", "path"))
        commit = self.string(s["commit"], w + ("commit",))
        if not COMMIT_RE.match(commit):
            raise self.fail(w + ("commit",), f"pin a full 40-character commit id, got {commit!r}")
        path = self.string(s["path"], w + ("path",))
        if not path.startswith("/") or ".." in path.split("/"):
            raise self.fail(w + ("path",), f"expected an absolute path in the image, got {path!r}")
        return Source(name=name, url=self.string(s["url"], w + ("url",)), commit=commit, path=path)

    def kubernetes(self, raw: Any) -> Kubernetes:
        w = ("kubernetes",)
        k = self.mapping(raw, w, required=("versions", "image_registry", "images", "resources",
                                           "job_backoff_limit", "volume_size"))
        versions = self.strings(k["versions"], w + ("versions",))
        for i, version in enumerate(versions):
            if not K8S_VERSION_RE.match(version):
                raise self.fail(w + ("versions", i),
                                f"expected MAJOR.MINOR like 1.32, got {version!r}")
        images = self.mapping(k["images"], w + ("images",), optional=tuple(k["images"] or {}))
        for name, ref in images.items():
            ref = self.string(ref, w + ("images", name))
            if not IMAGE_PIN_RE.match(ref) or ref.endswith(":latest"):
                raise self.fail(w + ("images", name),
                                f"pin by a tag other than latest, or a digest; got {ref!r}")
        res = self.mapping(k["resources"], w + ("resources",), required=("default",),
                           optional=tuple(k["resources"] or {}))
        backoff = k["job_backoff_limit"]
        if not isinstance(backoff, int) or isinstance(backoff, bool) or not 0 <= backoff <= 20:
            raise self.fail(w + ("job_backoff_limit",), f"expected 0..20, got {backoff!r}")
        return Kubernetes(
            versions=versions,
            image_registry=self.string(k["image_registry"], w + ("image_registry",)),
            images=MappingProxyType(dict(images)),
            resources=MappingProxyType({n: self.kube_resources(v, w + ("resources", n))
                                        for n, v in res.items()}),
            job_backoff_limit=backoff,
            volume_size=self.quantity(k["volume_size"], w + ("volume_size",)),
        )

    def kube_resources(self, raw: Any, w: tuple[Any, ...]) -> KubeResources:
        r = self.mapping(raw, w, required=("requests", "limits"))
        req = self.mapping(r["requests"], w + ("requests",), required=("cpu", "memory"))
        lim = self.mapping(r["limits"], w + ("limits",), required=("cpu", "memory"))
        return KubeResources(
            cpu_request=self.quantity(req["cpu"], w + ("requests", "cpu")),
            memory_request=self.quantity(req["memory"], w + ("requests", "memory")),
            cpu_limit=self.quantity(lim["cpu"], w + ("limits", "cpu")),
            memory_limit=self.quantity(lim["memory"], w + ("limits", "memory")))

    def quantity(self, value: Any, where: tuple[Any, ...]) -> str:
        text = self.string(value, where)
        if not QUANTITY_RE.match(text):
            raise self.fail(where,
                            f"expected a Kubernetes quantity like 100m or 128Mi, got {text!r}")
        return text


    def publish(self, raw: Any) -> Publish:
        w = ("publish",)
        p = self.mapping(raw, w, optional=("backdate", "visibility", "properties", "prune"))
        backdate = self.string(p.get("backdate", Publish.backdate), w + ("backdate",))
        try:
            backdate.format(**{f: "x" for f in BACKDATE_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise self.fail(w + ("backdate",), f"bad scheme {backdate!r}: unknown field {exc}"
                                               f" (fields: {', '.join(BACKDATE_FIELDS)})") from exc
        if "{name}" not in backdate:
            raise self.fail(w + ("backdate",),
                            f"the scheme must contain {{name}}, got {backdate!r}")
        prune = self.mapping(p.get("prune", {}), w + ("prune",),
                             optional=("hide_after", "delete_after", "keep"))
        keep = prune.get("keep", Publish.keep)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise self.fail(w + ("prune", "keep"), f"expected a whole number >= 0, got {keep!r}")
        return Publish(
            backdate=backdate,
            visibility=self.choice(p.get("visibility", "public"), w + ("visibility",),
                                   VISIBILITIES, "visibility"),
            properties=self.env(p.get("properties"), w + ("properties",)),
            hide_after_days=self.duration(prune.get("hide_after", "12mo"),
                                          w + ("prune", "hide_after")),
            delete_after_days=self.duration(prune.get("delete_after", "18mo"),
                                            w + ("prune", "delete_after")),
            keep=keep)

    def ci(self, raw: Any, sites: dict[str, Site], arches: Mapping[str, Arch]) -> CI:
        w = ("ci",)
        c = self.mapping(raw, w, required=("container", "wait_image", "runners", "actions",
                                           "auth_urls", "resources"),
                         optional=("cache_size", "retention_days"))
        for key in ("container", "wait_image"):
            self.image_pin(c[key], w + (key,))
        runners = self.mapping(c["runners"], w + ("runners",), required=tuple(arches))
        for arch, label in runners.items():
            if self.string(label, w + ("runners", arch)).endswith("-latest"):
                raise self.fail(w + ("runners", arch), f"pin a runner version, not {label!r}")
        actions = self.mapping(c["actions"], w + ("actions",), required=CI_ACTIONS)
        for name, ref in actions.items():
            if not ACTION_PIN_RE.match(self.string(ref, w + ("actions", name))):
                raise self.fail(w + ("actions", name),
                                f"pin owner/repo@ a full commit id or vX.Y.Z, got {ref!r}")
        urls = self.mapping(c["auth_urls"], w + ("auth_urls",), optional=tuple(sites))
        retention = c.get("retention_days", CI.retention_days)
        if not isinstance(retention, int) or isinstance(retention, bool) or not 1 <= retention <= 90:
            raise self.fail(w + ("retention_days",), f"expected 1..90, got {retention!r}")
        return CI(container=c["container"], wait_image=c["wait_image"],
                  runners=MappingProxyType({str(a): str(r) for a, r in runners.items()}),
                  actions=MappingProxyType(dict(actions)),
                  auth_urls=MappingProxyType({s: self.string(u, w + ("auth_urls", s))
                                              for s, u in urls.items()}),
                  resources=self.kube_resources(c["resources"], w + ("resources",)),
                  cache_size=self.quantity(c.get("cache_size", CI.cache_size), w + ("cache_size",)),
                  retention_days=retention)

    def image_pin(self, value: Any, where: tuple[Any, ...]) -> str:
        ref = self.string(value, where)
        if not IMAGE_PIN_RE.match(ref) or ref.endswith(":latest"):
            raise self.fail(where, f"pin by a tag other than latest, or a digest; got {ref!r}")
        return ref

    def duration(self, value: Any, where: tuple[Any, ...]) -> int:
        try:
            return parse_duration(self.string(value, where))
        except ValueError as exc:
            raise self.fail(where, str(exc)) from exc


def as_plain(value: Any) -> Any:
    """Dataclasses and read-only mappings as plain dicts/lists (for JSON output)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
