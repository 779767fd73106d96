"""The catalog: typed, frozen configuration, each setting declared once (sage_image/settings.py).

A field's `setting(...)` is the whole definition of a catalog key: how it is read and checked,
its default, and its line in `sage-image list --settings` and docs/catalog-reference.md. Checks
that involve several fields are each class's `validate` hook. Sections are read in the order
the Catalog declares them, so a setting can name an entry of a section above it (Ref). Every
error names the file, the line and the setting, e.g.
``catalog.yaml:57: variants.sage.elements[2]: unknown element 'virtual-wagle' (did you mean 'sage'?)``.

Adding a setting is adding one field to its class, e.g. in Variant:

    min_ram: int = setting(Whole(1), default=4, help="RAM (GiB) an instance needs.")

(no default: the key is required; `key="a.b"` when the key differs from the attribute or sits
in a mapping of its own), then the value in catalog.yaml if it is not the default, and
`sage-image list --settings --markdown > docs/catalog-reference.md`. A new section is a class
of such fields and a `setting(Section(Cls), ...)` (or `Named(Cls)`) field where it belongs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..settings import (
    EVERY,
    At,
    Choice,
    Duration,
    Exactly,
    Flag,
    ListOf,
    MapOf,
    Named,
    Parser,
    Ref,
    Section,
    Template,
    Text,
    Whole,
    mapping_key,
    read_document,
    setting,
)
from ..values import did_you_mean, parse_duration
from ..yamlfile import Document, read_yaml
from .elements import known_elements

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
# The check definitions of the test stage, read from its package's data for the names a variant
# may list (boottest/checks/model.py validates the rest when `sage-image test` loads them), so a
# misspelt check fails at `list`/`plan`/`build`, not at `test`.
CHECK_DEFINITIONS = ("sage_image.boottest.checks", "checks.yaml")

FAMILIES = ("ubuntu", "debian")
DISK_FORMATS = ("qcow2", "raw")
# What `systemd-detect-virt --vm` says where a site kind runs (none = bare metal).
VIRT_KINDS = ("none", "vm")
COMPRESSIONS = ("zlib", "zstd")
VISIBILITIES = ("public", "community", "shared", "private")
FIRMWARE = ("bios", "uefi")
NTP_SERVER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
K8S_VERSION_RE = re.compile(r"^1\.\d{1,2}$")
# repo[:tag] where the tag is required, or repo@sha256:digest
IMAGE_PIN_RE = re.compile(r"^[a-z0-9./_-]+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")
QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
# Owner/repo@ a full commit id or an exact vX.Y.Z tag (never @v4 or @main).
ACTION_PIN_RE = re.compile(r"^[\w.-]+/[\w.-]+@([0-9a-f]{40}|v\d+\.\d+\.\d+)$")
CI_ACTIONS = ("checkout", "cache", "upload-artifact", "download-artifact")
# The fields of an image name template, and of the name a replaced production image gets: the
# production name, the replaced image's build date (YYYYMMDD), its build-timestamp, build-tag
# and short source commit.
NAME_FIELDS = ("os", "arch_suffix", "release", "variant", "arch", "version")
BACKDATE_FIELDS = ("name", "date", "timestamp", "tag", "commit")

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
SUFFIX_RE = re.compile(r"^[A-Za-z0-9-]*$")
CONSOLE_RE = re.compile(r"^tty[A-Za-z0-9]+(,\d+)?$")
# Image metadata (SCS scs-0102-v2, SovereignCloudStack/standards; Glance's "useful image
# properties"): the values the standard allows. `oldgeneric` is not a variant's purpose: publish
# gives it to a replaced `generic` image.
OS_PURPOSES = ("generic", "minimal", "k8snode", "gpu", "network", "custom")
REPLACE_FREQUENCIES = ("yearly", "quarterly", "monthly", "weekly", "daily", "critical_bug", "never")
DISK_BUSES = ("virtio", "scsi")
RNG_MODELS = ("virtio",)
HYPERVISOR_TYPES = ("qemu", "kvm", "xen", "hyper-v", "esxi")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UUID_VALIDITY_RE = re.compile(r"^(none|notice|forever|last-[1-9]\d*|\d{4}-\d{2}-\d{2})$")
# `publish.metadata.image_source` / `image_description` fields: build-repo, build-repo-commit,
# build-tag, the image's name, variant, release and arch.
METADATA_FIELDS = ("repo", "commit", "tag", "name", "variant", "release", "arch")
# Properties publish sets itself (publish/metadata.py): `publish.properties` may not name them.
MANAGED_PROPERTIES = (
    "architecture", "hw_architecture", "os_distro", "os_version", "os_purpose", "os_admin_user",
    "hw_disk_bus", "hw_rng_model", "hw_firmware_type", "hypervisor_type", "image_build_date",
    "image_source", "image_description", "image_original_user", "replace_frequency",
    "provided_until", "uuid_validity", "hotfix_hours", "min_disk", "min_ram", "os_hidden")
SWIFT_CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_definitions() -> Traversable:
    """The test stage's checks.yaml, as its package's data."""
    package, name = CHECK_DEFINITIONS
    try:
        return files(package) / name
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot read check definitions: no package {package}") from exc


def known_checks(source: Path | Traversable | None = None) -> tuple[str, ...]:
    """The check names the test stage defines; ConfigError when they cannot be read (a catalog
    is never accepted with its checks unchecked)."""
    return _check_names(source or check_definitions())


@lru_cache(maxsize=8)
def _check_names(source: Path | Traversable) -> tuple[str, ...]:
    doc = read_yaml(source, what="check definitions")
    defined = doc.data.get("checks") if isinstance(doc.data, dict) else None
    if not isinstance(defined, dict) or not defined:
        raise doc.fail(("checks",), "expected a mapping of check definitions")
    return tuple(str(name) for name in defined)


# -- the kinds of value the catalog takes --------------------------------------------------------
ELEMENT = Choice(known_elements, "element", plural="element names",
                 human="an element name (this package's or diskimage-builder's)")
CHECK = Choice(known_checks, "check", plural="check names",
               human="a check name (defined in the test stage's checks.yaml)")
URL = Text("an http(s) URL", plural="http(s) URLs", valid=r"^https?://[^\s/]+")
COMMIT = Text("a full 40-character commit id", valid=COMMIT_RE.match,
              error="pin a full 40-character commit id, got {value!r}")
IMAGE_PATH = Text("an absolute path in the image",
                  valid=lambda text: text.startswith("/") and ".." not in text.split("/"))
MAJOR_MINOR = Text("MAJOR.MINOR", valid=r"^\d+\.\d+$")
QUANTITY = Text("a Kubernetes quantity like 100m or 128Mi", valid=QUANTITY_RE.match)
IMAGE_PIN = Text("an image pinned by a tag other than latest, or a digest",
                 plural="pinned images",
                 valid=lambda ref: bool(IMAGE_PIN_RE.match(ref)) and not ref.endswith(":latest"),
                 error="pin by a tag other than latest, or a digest; got {value!r}")


class RelativeFile(Parser):
    """A file named relative to the catalog's folder (or absolute)."""

    human = "a file path, relative to the catalog"

    def parse(self, value: Any, at: At) -> Path:
        return at.doc.path.parent / Text().parse(value, at)


# -- disk layouts ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Partition:
    name: str = setting(Text(), help="The partition's label.")
    role: str = setting(
        Choice(tuple(PARTITION_ROLES), "partition role"),
        help="What it is: esp (the EFI system partition), bios-boot (GRUB's core for BIOS on "
             "GPT) or root.")
    size: str = setting(
        Text("a size like 550MiB, 2GiB or 100%", valid=SIZE_RE.match),
        help="Its size; 100% (the rest of the disk) for the last one only.")
    fs: str | None = setting(
        Choice(FILESYSTEMS, "filesystem"), default=None,
        help="Its file system, set together with the mount point; unset: none (the BIOS boot "
             "partition holds GRUB's core).")
    mount: str | None = setting(
        Text("an absolute path", valid=r"^/"), default=None,
        help="Where it is mounted; exactly one partition is mounted at /.")

    def validate(self, at: At) -> None:
        if (self.fs is None) != (self.mount is None):
            raise at.fail(f"a partition has both '{at.fs.key}' and '{at.mount.key}', or neither")


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A disk layout: the partition table diskimage-builder writes and the firmware it boots on."""

    name: str = mapping_key()
    description: str = setting(Text(), help="What the layout is and where it is used.")
    element: str = setting(
        Choice(LAYOUT_ELEMENTS, "block-device element"),
        help="The diskimage-builder block-device element (it tells the bootloader step what to "
             "install).")
    label: str = setting(Choice(PARTITION_LABELS, "partition table"),
                         help="The partition table.")
    firmware: tuple[str, ...] = setting(
        ListOf(Choice(FIRMWARE, "firmware", plural="firmware kinds (bios, uefi)")),
        help="Every firmware the image boots with; publish sets hw_firmware_type only for a "
             "single one.")
    partitions: tuple[Partition, ...] = setting(
        ListOf(Section(Partition), non_empty=True), help="The partitions, in disk order.")

    @property
    def hw_firmware_type(self) -> str | None:
        """Glance's hw_firmware_type: only for an image that boots one way (a hybrid sets none)."""
        return self.firmware[0] if len(self.firmware) == 1 else None

    def type_id(self, role: str) -> str:
        """The partition type as sfdisk --json reports it (GUID for GPT, hex byte for MBR)."""
        entry = PARTITION_ROLES[role][self.label]
        return entry[1] if entry else ""

    def validate(self, at: At) -> None:
        for i, part in enumerate(self.partitions):
            if PARTITION_ROLES[part.role][self.label] is None:
                raise at.partitions[i].role.fail(
                    f"a {part.role} partition cannot be in an {self.label} table")
        if [p.mount for p in self.partitions].count("/") != 1:
            raise at.partitions.fail("exactly one partition must be mounted at /")
        if any(p.size == "100%" for p in self.partitions[:-1]):
            raise at.partitions.fail("only the last partition may take 100%")
        roles = {p.role for p in self.partitions}
        for firmware, needed in (("bios", "bios-boot"), ("uefi", "esp")):
            # an MBR disk boots BIOS from its boot sector, without a partition for it
            if firmware in self.firmware and needed not in roles \
                    and not (firmware == "bios" and self.label == "mbr"):
                raise at.firmware.fail(f"{firmware} boot needs a '{needed}' partition")


# -- what images are built for and from --------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Arch:
    name: str = mapping_key()
    dib_arch: str = setting(Text(), help="The arch as diskimage-builder names it (ARCH).")
    qemu_arch: str = setting(Text(), help="The arch as QEMU names it (qemu-system-ARCH).")
    elements: tuple[str, ...] = setting(
        ListOf(ELEMENT), help="Elements every image of this arch gets (a block-device element "
                              "comes from the layout instead).")
    suffix: str = setting(
        Text("letters, digits and '-' (or \"\")", valid=SUFFIX_RE.match, empty=True),
        help="Appended to image names ({arch_suffix}), e.g. -ARM64; may be empty.")
    layout: str = setting(Ref(Layout, "layout"), help="Its disk layout.")
    console: str = setting(
        Text("a serial console like ttyS0,115200", valid=CONSOLE_RE.match),
        help="The kernel's serial console on this arch (GRUB's, as diskimage-builder's "
             "bootloader sets it per arch); the manifest records it.")

    def validate(self, at: At) -> None:
        for i, element in enumerate(self.elements):
            if element in LAYOUT_ELEMENTS:
                raise at.elements[i].fail(f"'{element}' comes from the layout; name a layout "
                                          f"in {at.layout.dotted} instead")


ARCH = Ref(Arch, "arch")


@dataclass(frozen=True, kw_only=True)
class Release:
    name: str = mapping_key()
    family: str = setting(Choice(FAMILIES, "family"), help="The distribution.")
    element: str = setting(ELEMENT, help="The element that installs it (e.g. debian-minimal).")
    version: str = setting(
        Text(), help="Its version: {os} in image names is the family and this (Debian12).")
    arches: tuple[str, ...] = setting(ListOf(ARCH), help="The arches it is built for.")
    mirrors: Mapping[str, str] = setting(
        MapOf(URL, key=ARCH, required=lambda at: at.siblings.arches),
        help="Its package mirror per arch: one for each arch it is built for.")
    security_mirror: str | None = setting(URL, default=None,
                                          help="Its security updates mirror; unset: none.")
    env: Mapping[str, str] = setting(
        MapOf(Text()), default={},
        help="Environment variables diskimage-builder gets when it builds this release.")

    @property
    def os_label(self) -> str:
        """``Ubuntu22.04`` / ``Debian12``: the form Chameleon's image names use."""
        return f"{self.family.title()}{self.version}"


@dataclass(frozen=True, kw_only=True)
class Source:
    name: str = mapping_key()
    url: str = setting(Text(), help="The repository.")
    commit: str = setting(COMMIT, help="The commit it is pinned to.")
    path: str = setting(IMAGE_PATH, help="Where it goes in the image.")


# -- variants --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CudaRelease:
    """What a release's gpu image gets: on Debian the release's own packages decide it."""

    release: str = mapping_key()
    version: str = setting(
        MAJOR_MINOR, help="The CUDA toolkit version, e.g. 11.8: the build fails if the installed "
                          "toolkit differs.")
    driver: str = setting(Text("a driver branch number", valid=r"^\d+$"),
                          help="The NVIDIA driver branch, e.g. 535.")


@dataclass(frozen=True, kw_only=True)
class Cuda:
    releases: Mapping[str, CudaRelease] = setting(
        MapOf(Section(CudaRelease), key=Ref(Release, "release")),
        help="The CUDA version and NVIDIA driver branch per release; a release missing here is "
             "refused before building.")
    ubuntu_repo: str = setting(
        Text(), help="NVIDIA's repository for Ubuntu ({version_nodot}: the Ubuntu version "
                     "without its dot).")
    ubuntu_keyring: str = setting(Text(), help="The keyring package that pins that repository.")
    debian_packages: tuple[str, ...] = setting(
        ListOf(Text()), help="What Debian installs from non-free (nvidia-smi is only a "
                             "Recommends of nvidia-driver, so it is named).")


@dataclass(frozen=True, kw_only=True)
class PythonLock:
    """A release's hash-pinned requirements file (every package, wheels for each arch)."""

    release: str = mapping_key()
    python: str = setting(MAJOR_MINOR,
                          help="The release's own Python, e.g. 3.11: the venv is made with it.")
    glibc: str = setting(MAJOR_MINOR, help="Its C library version: which manylinux wheels fit.")
    file: Path = setting(RelativeFile(), help="The lock, written by scripts/python-lock.")


@dataclass(frozen=True, kw_only=True)
class PythonEnv:
    """A virtualenv of Python tools installed with ``pip --require-hashes`` from a lock."""

    venv: str = setting(IMAGE_PATH, help="Where the virtualenv goes in the image.")
    index_url: str = setting(
        Text(), help="The default package index (--pip-index-url overrides it).")
    requirements: tuple[str, ...] = setting(
        ListOf(Text()), help="What the locks are made from (top-level requirements only).")
    locks: Mapping[str, PythonLock] = setting(
        MapOf(Section(PythonLock), key=Ref(Release, "release")),
        help="A lock per release; a release without one builds no image of this variant.")


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str = mapping_key()
    description: str = setting(Text(), help="What the image is for.")
    parent: str | None = setting(
        Text("a variant name"), default=None,
        help="The variant it is built on: it inherits that one's elements, sources, checks, "
             "arches and Python environment; unset: built on the release.")
    elements: tuple[str, ...] = setting(
        ListOf(ELEMENT), help="Its own elements, after its parent's.")
    sources: tuple[str, ...] = setting(
        ListOf(Ref(Source, "source")), default=(),
        help="The sources its elements fetch, besides its parent's.")
    name_template: str = setting(
        Template("name template", NAME_FIELDS), key="name",
        help="The image name; {os} is Ubuntu22.04 / Debian12 (family and version), "
             "{arch_suffix} the arch's suffix.")
    min_free_gb: int = setting(
        Whole(), default=6, help="Free disk space (GiB) a build of it needs before it starts.")
    checks: tuple[str, ...] = setting(
        ListOf(CHECK), help="The boot-test checks its images must pass, besides its parent's.")
    arches: tuple[str, ...] | None = setting(
        ListOf(ARCH), default=None,
        help="The only arches it may be built for (the narrowest along its parents counts); "
             "unset: every arch.")
    cuda: Cuda | None = setting(Section(Cuda), default=None,
                                help="The NVIDIA driver and CUDA toolkit it installs.")
    python: PythonEnv | None = setting(
        Section(PythonEnv), default=None,
        help="Python tools in a virtualenv first on cc's PATH (the system Python stays "
             "untouched); a variant without one inherits its parent's.")
    node_python: PythonEnv | None = setting(
        Section(PythonEnv), default=None,
        help="sage-node's own virtualenv (its dependencies and the data-sharing service's "
             "pins), not on cc's PATH, installed from its own lock like `python`; a variant "
             "without one inherits its parent's.")
    image_extra_mb: int | None = setting(
        Whole(), default=None,
        help="More space (MiB) than the builder's for its root file system beyond its content; "
             "the largest along its parents counts. Unset: the builder's.")
    os_purpose: str = setting(
        Choice(OS_PURPOSES, "os_purpose"),
        help="The scs-0102-v2 purpose of its published images (Glance os_purpose); backdating "
             "makes a replaced generic image oldgeneric.")
    min_ram: int = setting(
        Whole(64, 1 << 20),
        help="The memory (MiB) it boots and passes its boot test with: Glance's min_ram, so "
             "Nova refuses a smaller flavor with a clear error.")


# -- where images go -------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SiteKind:
    name: str = mapping_key()
    elements: tuple[str, ...] = setting(ListOf(ELEMENT),
                                        help="Elements every image for this kind gets.")
    disk_format: str = setting(Choice(DISK_FORMATS, "disk format"),
                               help="The disk format its Glance gets.")
    virt: str = setting(
        Choice(VIRT_KINDS, "virt"),
        help="What `systemd-detect-virt --vm` says there: none (bare metal) or vm (any "
             "hypervisor). One image serves every kind; it decides at boot which it is on.")
    firewall: bool = setting(
        Flag(), help="The host firewall (inbound SSH only) is on at boot. Bare-metal sites "
                     "have no security groups; KVM sites do.")


@dataclass(frozen=True, kw_only=True)
class Site:
    name: str = mapping_key()
    kind: str = setting(Ref(SiteKind, "site kind"), help="What kind of site it is.")
    cloud: str = setting(Text(), help="Its entry in clouds.yaml.")
    arches: tuple[str, ...] = setting(ListOf(ARCH), help="The arches its machines have.")
    ntp: tuple[str, ...] = setting(
        ListOf(Text("a host name or address", plural="host names or addresses",
                    valid=NTP_SERVER_RE.match)), default=(),
        help="Its NTP servers for chrony (Chameleon's sites firewall public NTP); an image gets "
             "those of every site it targets. Empty: the distribution's pool.")


# -- the stages ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Builder:
    repo: str = setting(
        Text(), help="Recorded as build-repo on every image (Chameleon's own tooling reads it).")
    compression: str = setting(
        Choice(COMPRESSIONS, "compression"),
        help="qcow2 compression: zlib is readable by every Chameleon site; zstd needs "
             "OpenStack Xena or newer.")
    image_size_gb: int | None = setting(
        Whole(1), default=None,
        help="A fixed image size (GiB); unset: diskimage-builder sizes the image to its "
             "content, plus the extra space below.")
    build_tag: str = setting(
        Text(), help="build-tag as Chameleon's tooling expects it: a stable prefix plus the "
                     "build time ({version}, {timestamp}).")
    cloud_init_datasources: str = setting(
        Text(), help="cloud-init's data sources: Chameleon delivers metadata by config drive "
                     "or the OpenStack metadata service; NoCloud lets a boot test (or a user) "
                     "seed an instance without OpenStack.")
    image_extra_mb: int = setting(
        Whole(), default=512,
        help="Space (MiB) added to the root file system beyond its content (cloud-init grows "
             "the root at boot); the file system's own overhead comes out of it. A variant may "
             "ask for more.")


@dataclass(frozen=True, kw_only=True)
class KubeResources:
    """Requests and limits of one container (Kubernetes quantities, e.g. 100m, 128Mi)."""

    cpu_request: str = setting(QUANTITY, key="requests.cpu", help="CPU it is guaranteed.")
    memory_request: str = setting(QUANTITY, key="requests.memory",
                                  help="Memory it is guaranteed.")
    cpu_limit: str = setting(QUANTITY, key="limits.cpu", help="CPU it may use at most.")
    memory_limit: str = setting(QUANTITY, key="limits.memory",
                                help="Memory it may use at most.")


@dataclass(frozen=True, kw_only=True)
class Kubernetes:
    """`sage-image vw k8s`: versions to validate against, pinned images, default resources."""

    versions: tuple[str, ...] = setting(
        ListOf(Text("MAJOR.MINOR like 1.32", plural="versions (MAJOR.MINOR like 1.32)",
                    valid=K8S_VERSION_RE.match)),
        help="Kubernetes versions the generated manifests are schema-checked against.")
    image_registry: str = setting(
        Text(), help="Prepended to every image below; point it at your mirror "
                     "(--image-registry overrides it).")
    images: Mapping[str, str] = setting(
        MapOf(IMAGE_PIN, placeholder="component"),
        help="Virtual Waggle's images, each pinned (never latest).")
    resources: Mapping[str, KubeResources] = setting(
        MapOf(Section(KubeResources), required=("default",), placeholder="container"),
        help="Requests and limits per container; a container not named here gets default's.")
    job_backoff_limit: int = setting(
        Whole(0, 20), help="How often a failing shovel setup Job is retried before it is "
                           "marked failed.")
    volume_size: str = setting(
        QUANTITY, help="The size of each PersistentVolumeClaim (made only with "
                       "--storage-class).")

    def resources_for(self, container: str) -> KubeResources:
        return self.resources.get(container) or self.resources["default"]


@dataclass(frozen=True, kw_only=True)
class ImageMetadataPolicy:
    """`publish.metadata`: what every published image promises its users (scs-0102-v2)."""

    image_source: str = setting(
        Template("template", METADATA_FIELDS), default="{repo}/tree/{commit}",
        help="Where a user gets the sources of this exact build: {repo} (build-repo), {commit} "
             "(build-repo-commit), {tag} (build-tag), {name}, {variant}, {release}, {arch}.")
    image_description: str = setting(
        Template("template", METADATA_FIELDS), default="{repo}/blob/{commit}/README.md",
        help="Where the image's write-up is (the same fields).")
    image_original_user: str = setting(
        Text(), default="cc", help="The login user cloud-init gives the key to.")
    replace_frequency: str = setting(
        Choice(REPLACE_FREQUENCIES, "replace_frequency"), default="monthly",
        help="A promise: a new image under the same name at least this often.")
    provided_until: str = setting(
        Text("YYYY-MM-DD, none or notice",
             valid=lambda v: v in ("none", "notice") or DATE_RE.match(v) is not None),
        default="notice", help="Until when images of the name are provided.")
    uuid_validity: str = setting(
        Text("none, notice, forever, last-N or YYYY-MM-DD", valid=UUID_VALIDITY_RE.match),
        default="last-2",
        help="How long a replaced image stays bootable by its ID (last-N: the newest N "
             "replaced versions; N may not exceed publish.prune.keep).")
    hotfix_hours: int | None = setting(
        Whole(), default=None, help="Hours to a fix of a critical bug; unset: no promise.")
    hw_disk_bus: str = setting(Choice(DISK_BUSES, "hw_disk_bus"), default="virtio",
                               help="The disk bus the image expects (the boot test's).")
    hw_rng_model: str | None = setting(
        Choice(RNG_MODELS, "hw_rng_model"), default=None,
        help="The random number device it uses; unset: none is asked for.")
    site_kinds: Mapping[str, Mapping[str, str]] = setting(
        MapOf(MapOf(Text()), key=Ref(SiteKind, "site kind")), default={},
        help="Properties only one site kind's images get (hypervisor_type on KVM sites).")

    def validate(self, at: At) -> None:
        for kind, props in self.site_kinds.items():
            for key, value in props.items():
                if key == "hypervisor_type" and value not in HYPERVISOR_TYPES:
                    raise at.site_kinds[kind][key].fail(
                        f"unknown hypervisor_type '{value}'{did_you_mean(value, HYPERVISOR_TYPES)}"
                        f" (known: {', '.join(HYPERVISOR_TYPES)})")
                if key != "hypervisor_type" and key in MANAGED_PROPERTIES:
                    raise at.site_kinds[kind][key].fail(
                        f"'{key}' is the same at every site: set it in "
                        f"{at.dotted}, not per site kind")


@dataclass(frozen=True, kw_only=True)
class Publish:
    """`sage-image publish` / `prune`: naming, visibility and lifecycle of published images."""

    backdate: str = setting(
        Template("scheme", BACKDATE_FIELDS, needs=("name",)), default="{name}-{date}",
        help="The name the replaced production image gets: {name} (the production name), "
             "{date} (YYYYMMDD of its build-timestamp), {timestamp}, {tag} (build-tag), "
             "{commit} (short). A name already taken at the site gets .1, .2 ... appended.")
    visibility: str = setting(Choice(VISIBILITIES, "visibility"), default="public",
                              help="The Glance visibility of published images.")
    properties: Mapping[str, str] = setting(
        MapOf(Text()), default={}, help="Extra Glance properties set on every published image.")
    hide_after_days: int = setting(
        Duration(), key="prune.hide_after", default=parse_duration("12mo"),
        help="Backdated images disappear from listings (os_hidden) this long after being "
             "replaced ...")
    delete_after_days: int = setting(
        Duration(), key="prune.delete_after", default=parse_duration("18mo"),
        help="... and are deleted this long after being replaced ...")
    keep: int = setting(Whole(), key="prune.keep", default=2,
                        help="... except the newest N backdated versions, whatever their age.")
    metadata: ImageMetadataPolicy = setting(
        Section(ImageMetadataPolicy), default=ImageMetadataPolicy(),
        help="The standard metadata every published image carries (docs/publishing.md).")
    container: str = setting(
        Text("a Swift container name (letters, digits, '.', '_', '-')",
             valid=SWIFT_CONTAINER_RE.match),
        default="sage-images",
        help="The container at each site's object store that keeps each build's manifest, SBOM "
             "and package list (versions/<build-tag>/) and a current/<name> pointer, as "
             "Chameleon's chameleon-supported-images does.")

    def validate(self, at: At) -> None:
        for key in self.properties:
            if key in MANAGED_PROPERTIES:
                raise at.properties[key].fail(
                    f"'{key}' is set by publish itself ({at.metadata.dotted}, variants.*."
                    "os_purpose/min_ram); remove it here")
        validity = self.metadata.uuid_validity
        if validity.startswith("last-") and int(validity[5:]) > self.keep:
            raise at.metadata.uuid_validity.fail(
                f"{validity} promises more replaced versions than prune keeps "
                f"({at.keep.dotted}: {self.keep})")


@dataclass(frozen=True, kw_only=True)
class CI:
    """`sage-image ci github|k8s`: what the generated workflow and Jobs run on, all pinned."""

    container: str = setting(
        IMAGE_PIN, help="The image of every build/test/publish job (GitHub's job container, "
                        "Kubernetes' pods); scripts/setup installs the rest into it.")
    wait_image: str = setting(
        IMAGE_PIN, help="Kubernetes init containers that wait for a parent's layer on the "
                        "shared volume.")
    runners: Mapping[str, str] = setting(
        MapOf(Text("a runner label with a fixed version", plural="runner labels",
                   valid=lambda label: not label.endswith("-latest"),
                   error="pin a runner version, not {value!r}"),
              key=ARCH, required=EVERY),
        help="The GitHub runner label per arch, a fixed version (never -latest): every job of "
             "an image runs on a native runner of its arch.")
    actions: Mapping[str, str] = setting(
        MapOf(Text("owner/repo@ a full commit id or vX.Y.Z", plural="pinned actions",
                   valid=ACTION_PIN_RE.match,
                   error="pin owner/repo@ a full commit id or vX.Y.Z, got {value!r}"),
              key=Choice(CI_ACTIONS, "action"), required=EVERY),
        help="The GitHub actions the workflow uses, each pinned.")
    auth_urls: Mapping[str, str] = setting(
        MapOf(URL, key=Ref(Site, "site")),
        help="Keystone of each site, for the clouds.yaml a publish job writes from repository "
             "secrets (<SITE>_APPLICATION_CREDENTIAL_ID / _SECRET).")
    resources: KubeResources = setting(
        Section(KubeResources), help="Each Kubernetes build/test/publish container.")
    cache_size: str = setting(
        QUANTITY, default="200Gi",
        help="The Kubernetes shared volume: layers, DIB caches and each run's images.")
    retention_days: int = setting(
        Whole(1, 90), default=3,
        help="How long GitHub keeps the artifacts that carry images from job to job.")


# -- the catalog -----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Catalog:
    """Everything the builder knows. The sections are read in this order: each may name
    entries of the ones above it."""

    path: Path
    document: Document = field(repr=False, compare=False)  # for errors found after loading
    schema: int = setting(Exactly(1, error="unsupported schema {value!r} (this tool reads 1)"),
                          help="The catalog format's version.")
    builder: Builder = setting(Section(Builder), help="How every image is built.")
    layouts: Mapping[str, Layout] = setting(
        Named(Layout), help="Disk layouts: the partition table, the element that installs the "
                            "bootloader, the firmware an image boots with.")
    arches: Mapping[str, Arch] = setting(Named(Arch), help="The arches images are built for.")
    releases: Mapping[str, Release] = setting(
        Named(Release), help="The distribution releases images are built from.")
    site_kinds: Mapping[str, SiteKind] = setting(
        Named(SiteKind), help="Kinds of Chameleon site (bare metal, KVM).")
    sites: Mapping[str, Site] = setting(
        Named(Site), help="The Chameleon sites images are published to.")
    sources: Mapping[str, Source] = setting(
        Named(Source), help="Every repository an element fetches, pinned to a full commit id "
                            "(--source NAME=URL_OR_PATH[@COMMIT] overrides one).")
    variants: Mapping[str, Variant] = setting(
        Named(Variant), help="The images: each built for every release, on its parent's layer.")
    kubernetes: Kubernetes | None = setting(
        Section(Kubernetes), default=None,
        help="Virtual Waggle on Kubernetes (`sage-image vw k8s`, which needs it).")
    publish: Publish = setting(
        Section(Publish), default=Publish(),
        help="Naming, visibility and lifecycle of published images (`publish`, `images`, "
             "`prune`).")
    ci: CI | None = setting(
        Section(CI), default=None,
        help="What the generated CI runs on (`sage-image ci github|k8s`, which need it).")

    def validate(self, at: At) -> None:
        for name, variant in self.variants.items():
            seen = {name}
            parent = variant.parent
            while parent is not None:
                if parent not in self.variants:
                    raise at.variants[name].parent.fail(
                        f"unknown variant '{parent}'{did_you_mean(parent, self.variants)}")
                if parent in seen:
                    raise at.variants[name].parent.fail("parents form a cycle")
                seen.add(parent)
                parent = self.variants[parent].parent

    @property
    def where(self) -> At:
        """The catalog's top, to name a setting by attribute (`catalog.where.variants["sage"]
        .min_free_gb.dotted`) or fail at its line, without spelling its key again."""
        return At(self.document, (), Section(Catalog), {})

    def require_checks(self, defined: Collection[str], *, hint: str) -> None:
        """Every check a variant names is in `defined` (another set of definitions than the
        package's, e.g. --checks-file); ConfigError at the variant's line if not."""
        for variant in self.variants.values():
            for i, name in enumerate(variant.checks):
                if name not in defined:
                    error = self.where.variants[variant.name].checks[i].fail(
                        f"unknown check '{name}'{did_you_mean(name, defined)}")
                    raise ConfigError(error.message, hint=hint)

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
    doc = read_yaml(path, what="catalog",
                    hint=f"edit {path} and run 'sage-image list' to check it")
    return read_document(Catalog, doc, path=path, document=doc)
