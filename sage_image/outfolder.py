"""The build output folder: the typed contract between the stages (docs/manifest.md).

`sage-image build` writes manifest.json, `test` writes test-results.json and the test-logs
folder, `publish` writes published.json; later stages, the release report and the tests' own
fixtures read them. Each file is a frozen, versioned type defined here, with one writer and one
reader: a missing, mistyped or unknown field is a one-line error naming the file and the field,
never a default made up by a reader. The publish gate - may these bytes be published on this
test run? - lives here too, so that `publish`, `release` and the tests ask the same question.

The contract lives outside the stages because the flow is one-way (catalog -> builder ->
boottest -> publish -> release) and each stage may know only the ones before it - yet every
stage names these files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .errors import UsageError
from .folders import replace_atomically

MANIFEST = "manifest.json"
TEST_RESULTS = "test-results.json"
TEST_LOGS = "test-logs"
PUBLISHED = "published.json"

# The schema each file is written with; a reader accepts exactly this one (docs/manifest.md).
MANIFEST_SCHEMA = 2  # 2: node_python_packages
RESULTS_SCHEMA = 2  # 2: per-check definition digests and the tester's identity
PUBLISHED_SCHEMA = 1


class ContractError(UsageError):
    """A file of the output folder is missing, unreadable or not of its type."""


# -- where the files are -------------------------------------------------------------------------
def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def results_path(root: Path) -> Path:
    return Path(root) / TEST_RESULTS


def published_path(root: Path) -> Path:
    return Path(root) / PUBLISHED


def results_beside(image_file: Path) -> Path:
    """Where a test of a bare image file (no output folder) writes its results: IMAGE.test-results.json."""
    image_file = Path(image_file)
    return image_file.with_name(f"{image_file.name}.{TEST_RESULTS}")


def logs_folder(results: Path) -> Path:
    """The folder a test run keeps its logs in, next to its results: OUT/test-logs, or
    IMAGE.test-logs beside IMAGE.test-results.json."""
    results = Path(results)
    return results.with_name(results.name.removesuffix(TEST_RESULTS) + TEST_LOGS)


# -- the types -----------------------------------------------------------------------------------
class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every type written to the output folder: frozen, every field named on read."""


class SourceEntry(Record):
    url: str
    commit: str  # what is in the image
    pinned: str  # the catalog's commit
    path: str  # where it is in the image
    stand_in: bool  # a generated local stand-in replaced the unreachable upstream


class ImageFile(Record):
    path: str  # relative to the output folder
    disk_format: str
    size: int
    virtual_size: int
    sha256: str
    sha512: str
    md5: str
    compression: str | None = None  # qcow2 only
    # sha512 of another file of this build that `qemu-img compare` found to hold the same disk
    # (a qcow2 converted from the raw), so a test of either is a test of both.
    same_disk_as: str | None = None


class BootFiles(Record):
    kernel: str  # relative to the output folder
    initrd: str
    root: str  # the kernel's root= argument
    cmdline: str
    kernel_version: str | None


class LayerInfo(Record, rename={"from_": "from"}):
    only: bool  # a layer-only build: no image files
    from_: str | None  # the parent layer it started from
    saved: str | None  # the layer it saved


class PartitionEntry(Record):
    name: str
    role: str
    type: str
    size: str
    fs: str | None
    mount: str | None


class LayoutEntry(Record):
    name: str
    label: str
    firmware: tuple[str, ...]
    partitions: tuple[PartitionEntry, ...]


class NtpEntry(Record):
    servers: tuple[str, ...]
    pool: bool


class FirewallEntry(Record):
    virt: str
    enabled: bool


class SbomEntry(Record):
    path: str
    sha256: str
    spec: str


class ImageIdentity(Record):
    """Which image a build is: the manifest keys that name it (catalog keys, Glance os_*)."""

    name: str
    release: str
    variant: str
    arch: str
    family: str
    os_version: str


# The build-* properties every build records (Chameleon's tooling and later stages read them).
REQUIRED_PROPERTIES = ("build-image-name", "build-variant", "build-distro", "build-release",
                       "build-arch", "build-repo", "build-repo-commit", "build-timestamp",
                       "build-tag")


class Manifest(ImageIdentity):
    """manifest.json: what `sage-image build` built, from what, with checksums (the image's
    identity first)."""

    schema: int
    qemu_arch: str
    elements: tuple[str, ...]
    sites: tuple[str, ...]
    sources: dict[str, SourceEntry]
    stand_ins: tuple[str, ...]
    dib_version: str
    builder_version: str
    properties: dict[str, str]
    files: dict[str, ImageFile]
    boot: BootFiles
    layer: LayerInfo
    layout: LayoutEntry | None
    checks: tuple[str, ...]  # the variant's checks when it was built (the gate uses today's)
    packages: dict[str, str]
    package_arch: dict[str, str]
    python_packages: dict[str, str]
    node_python_packages: dict[str, str]  # sage-node's own venv ({} without one)
    phases: dict[str, float]
    ntp: NtpEntry
    firewall: dict[str, FirewallEntry]
    created: str
    sbom: SbomEntry | None

    def __post_init__(self) -> None:
        missing = [key for key in REQUIRED_PROPERTIES if key not in self.properties]
        if missing:
            raise ValueError(f"properties: missing {', '.join(missing)}")
        if not self.properties["build-timestamp"].isdigit():
            raise ValueError("properties: build-timestamp is not Unix seconds: "
                             f"{self.properties['build-timestamp']!r}")

    @property
    def identity(self) -> ImageIdentity:
        return ImageIdentity(**{f: getattr(self, f) for f in ImageIdentity.__struct_fields__})

    @property
    def build_tag(self) -> str:
        return self.properties["build-tag"]

    @property
    def build_timestamp(self) -> int:
        return int(self.properties["build-timestamp"])


class Tester(Record):
    """Which tester ran a test: the sage-image version and a digest of the boot-test code (a
    changed tester may check differently, so its results are not reused)."""

    version: str
    digest: str

    __test__ = False  # not a pytest test class, despite the name


class CheckRecord(Record):
    name: str
    passed: bool
    seconds: float
    reason: str | None  # the one-line failure reason
    digest: str  # of the check's definition as it ran (boottest/checks/model.py)


class TestResults(Record):
    """test-results.json: one `sage-image test` run, exactly what it ran on which bytes."""

    schema: int
    name: str
    tested_file: str
    tested_sha512: str
    passed: bool
    qualifies_for_publish: bool
    restricted_by: tuple[str, ...]
    mode: str
    accel: str
    firmware: str | None
    memory_mb: int  # the guest's memory
    tester: Tester
    checks: tuple[CheckRecord, ...]
    boot_seconds: float | None
    checks_seconds: float | None
    started: str
    finished: str
    error: str | None
    logs: tuple[str, ...]

    __test__ = False  # not a pytest test class, despite the name


class PreviousImage(Record):
    """The image a publish replaced at a site, and what changed against it."""

    image_id: str | None
    build_tag: str | None
    changes: dict[str, Any] | None = None  # the JSON of `sage-image diff`
    error: str | None = None  # why the changes are unknown


class SitePublication(Record):
    image_id: str
    name: str
    cloud: str
    status: str  # published / up to date
    time: str
    previous: PreviousImage | None  # None: the first version at the site


class Publications(Record):
    """published.json: per site, the image that is production and holds this build."""

    schema: int
    sites: dict[str, SitePublication]


# -- reading and writing -------------------------------------------------------------------------
T = TypeVar("T", bound=Record)
_WHERE = re.compile(r" - at `\$\.?(?P<field>[^`]*)`$")


def read_record(path: Path, kind: type[T], *, schema: int) -> T:
    """A file of the output folder as its type; ContractError naming the file and the field."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ContractError(f"{path}: not found",
                            hint=f"give the folder 'sage-image build' wrote (it has {MANIFEST})"
                            ) from exc
    except OSError as exc:
        raise ContractError(f"{path}: cannot read: {exc.strerror}") from exc
    return decode_record(data, kind, schema=schema, where=str(path))


def decode_record(data: bytes, kind: type[T], *, schema: int, where: str) -> T:
    """The same for bytes read elsewhere (a manifest kept in an object store); `where` names
    them in errors."""
    try:
        found = msgspec.json.decode(data, type=_Schema).schema
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"{where}: {_problem(exc)}", hint="see docs/manifest.md") from exc
    if found != schema:
        raise ContractError(f"{where}: schema {found} (this sage-image reads {schema})",
                            hint="written by another sage-image version: run the stage that "
                                 "writes it again")
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"{where}: {_problem(exc)}", hint="see docs/manifest.md") from exc


class _Schema(msgspec.Struct):
    schema: int


def _problem(exc: Exception) -> str:
    """msgspec's message as `field: problem` ("files[...].size: expected `int`, got `str`")."""
    text = str(exc)
    match = _WHERE.search(text)
    problem = text[:match.start()] if match else text
    problem = problem[:1].lower() + problem[1:]
    if match and match.group("field"):
        return f"{match.group('field')}: {problem}"
    if problem.startswith("object missing required field"):
        return f"{problem.split('`')[1]}: missing"
    if problem.startswith("object contains unknown field"):
        return f"{problem.split('`')[1]}: unknown field"
    return problem


def write_record(path: Path, record: Record) -> Path:
    """Write one of the contract's files atomically (see write_json): fields in their order,
    mapping keys sorted."""
    text = msgspec.json.format(msgspec.json.encode(record, order="deterministic"), indent=2)
    return replace_atomically(Path(path), text + b"\n")


def write_json(path: Path, data: Any, *, sort_keys: bool = True) -> Path:
    """Write atomically: a reader (publish while a test finishes, a release report while a build
    runs) sees the old file or the new one, never half of one."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    return replace_atomically(Path(path), text.encode())


def read_manifest(root: Path) -> Manifest:
    """OUT/manifest.json (or a manifest.json file)."""
    path = Path(root)
    return read_record(manifest_path(path) if path.is_dir() else path, Manifest,
                       schema=MANIFEST_SCHEMA)


def decode_manifest(data: bytes, *, where: str) -> Manifest:
    """A manifest.json's bytes kept elsewhere (publish's record in an object store)."""
    return decode_record(data, Manifest, schema=MANIFEST_SCHEMA, where=where)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    return write_record(manifest_path(root), manifest)


def read_results(path: Path) -> TestResults | None:
    """A test-results.json, or None when there is none (the image has not been tested)."""
    return read_record(path, TestResults, schema=RESULTS_SCHEMA) if Path(path).exists() else None


def write_results(path: Path, results: TestResults) -> Path:
    return write_record(path, results)


def read_published(root: Path) -> Publications:
    """OUT/published.json; an empty record before the first publish."""
    path = published_path(root)
    if not path.exists():
        return Publications(schema=PUBLISHED_SCHEMA, sites={})
    return read_record(path, Publications, schema=PUBLISHED_SCHEMA)


def write_published(root: Path, sites: Mapping[str, SitePublication]) -> Path:
    """Merge per-site publications into OUT/published.json (read by `describe` and the release
    report): a re-run after a partial failure adds the sites it published."""
    try:
        known = dict(read_published(root).sites)
    except ContractError:  # a damaged record says nothing true: the sites published now replace it
        known = {}
    known.update(sites)
    return write_record(published_path(root), Publications(schema=PUBLISHED_SCHEMA, sites=known))


# -- the publish gate ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """What a test run must have run to count now: the tester, and per check of the variant the
    digest of its current definition (boottest/checks/identity.py makes one)."""

    tester: Tester
    checks: Mapping[str, str]  # name -> definition digest, in the catalog's order


@dataclass(frozen=True)
class TestStatus:
    """Whether `sage-image test` passed, in full, for these bytes - and which files they are."""

    passed: bool
    reason: str  # why publish refuses, or "" when it may go ahead
    # Why a run that exists does not count (so a release tests again), in a few words:
    # "checks changed: docker-run, firewall"; "" when it counts or there is no run.
    retest: str = ""
    # The formats whose file is the tested disk: the tested file itself, and any file the
    # build proved identical to it. Publishing another format is publishing untested bytes.
    formats: frozenset[str] = frozenset()

    __test__ = False

    def refusal(self, disk_format: str) -> str:
        """Why a site that takes `disk_format` must not get this build ('' if it may)."""
        if not self.passed:
            return self.reason
        if disk_format not in self.formats:
            return (f"the {disk_format} file is not the tested one, and the manifest does not "
                    f"record it as the same disk (tested: {', '.join(sorted(self.formats))})")
        return ""


def gate_status(root: Path, manifest: Manifest, expected: Expectation) -> TestStatus:
    """The gate for OUT's own test-results.json; an unreadable one is a refusal, not an error
    (the answer is the same: test again)."""
    path = results_path(root)
    rerun = f"sage-image test {root}"
    try:
        results = read_results(path)
    except ContractError as exc:
        return TestStatus(False, f"{exc.message}; run '{rerun}'",
                          retest="its results are unreadable")
    if results is None:
        return TestStatus(False, f"no {TEST_RESULTS} in {root} (run '{rerun}')")
    return publish_gate(results, where=str(path), manifest=manifest, expected=expected,
                        rerun=rerun)


def publish_gate(r: TestResults, *, where: str, manifest: Manifest, expected: Expectation,
                 rerun: str) -> TestStatus:
    """A full, passing run of every check the variant has now, as each is defined now, by this
    tester, on bytes that are this build's."""
    if r.name != manifest.name:
        return TestStatus(False, f"{where} is for {r.name!r}, not {manifest.name!r}",
                          retest=f"the results are for {r.name}")
    if r.tested_sha512 not in {f.sha512 for f in manifest.files.values()}:
        return TestStatus(False, f"{where} tested other bytes than this build (re-run the test)",
                          retest="the image changed since its test")
    if r.restricted_by:
        return TestStatus(False, f"the test run does not qualify for publishing "
                                 f"({', '.join(r.restricted_by)}); run '{rerun}'",
                          retest=f"the last test was partial ({', '.join(r.restricted_by)})")
    stale = stale_checks(r, expected)
    if stale:
        return TestStatus(False, f"the test run is out of date ({stale}); run '{rerun}'",
                          retest=stale)
    failed = [c.name for c in r.checks if not c.passed]
    if r.error is not None or failed or not r.checks:
        why = ", ".join(failed) or r.error or "no checks"
        return TestStatus(False, f"the boot test failed ({why})",
                          retest=f"the last test failed ({why})")
    return TestStatus(True, "", formats=frozenset(tested_formats(r.tested_sha512,
                                                                  manifest.files)))


def stale_checks(r: TestResults, expected: Expectation) -> str:
    """Why the run does not answer for the checks as they are now ('' if it does): one line,
    e.g. "checks changed: docker-run, firewall"."""
    if r.tester != expected.tester:
        return (f"the tester changed (ran: sage-image {r.tester.version} {r.tester.digest}, "
                f"now: {expected.tester.version} {expected.tester.digest})")
    ran = {c.name: c.digest for c in r.checks}
    added = [name for name in expected.checks if name not in ran]
    changed = [name for name, digest in expected.checks.items()
               if name in ran and ran[name] != digest]
    parts = ([f"checks changed: {', '.join(changed)}"] if changed else []) + \
        ([f"checks added: {', '.join(added)}"] if added else [])
    return "; ".join(parts)


def tested_formats(tested_sha512: str, files: Mapping[str, ImageFile]) -> set[str]:
    """The formats whose file is the tested disk: the tested file, and files recorded (in
    either direction) as the same disk as it."""
    shas = {tested_sha512}
    for f in files.values():
        if f.sha512 == tested_sha512 and f.same_disk_as:
            shas.add(f.same_disk_as)
    return {fmt for fmt, f in files.items() if f.sha512 in shas or f.same_disk_as in shas}
