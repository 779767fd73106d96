"""Pure planning of a release: the catalog matrix as a graph of builds, tests and publishes.

One build per release x variant x arch - never one per site: a site that wants raw gets the
same build converted. A variant builds on the layer of its parent variant (same release and
arch), so a parent that was not asked for is still built, as a layer only. The graph is the
schedule: a job starts as soon as what it needs exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..builder.plan import parse_source_override
from ..catalog import Catalog
from ..catalog.elements import element_dirs
from ..catalog.model import PythonEnv
from ..errors import UsageError
from ..values import as_plain, did_you_mean


@dataclass(frozen=True)
class ImageJob:
    key: str  # release-variant-arch
    release: str
    variant: str
    arch: str
    name: str
    sites: tuple[str, ...]  # where it is published (empty for a layer-only build)
    parent: str | None  # key of the job whose layer this build starts from
    layer_key: str  # hash of everything that goes into this job's root filesystem
    requested: bool  # False: built only as a layer for a requested child
    sources: tuple[str, ...] = ()  # the external sources its variant chain uses

    @property
    def build_id(self) -> str:
        return f"build:{self.key}"

    @property
    def test_id(self) -> str:
        return f"test:{self.key}"


@dataclass(frozen=True)
class PublishJob:
    image: str  # ImageJob.key
    site: str

    @property
    def id(self) -> str:
        return f"publish:{self.image}@{self.site}"


@dataclass(frozen=True)
class ReleasePlan:
    images: tuple[ImageJob, ...]
    publishes: tuple[PublishJob, ...]

    def image(self, key: str) -> ImageJob:
        return next(i for i in self.images if i.key == key)

    def graph(self) -> dict[str, tuple[str, ...]]:
        """job id -> the job ids it waits for (build -> parent build; test -> build;
        publish -> test of that image)."""
        graph: dict[str, tuple[str, ...]] = {}
        for image in self.images:
            graph[image.build_id] = (f"build:{image.parent}",) if image.parent else ()
            if image.requested:
                graph[image.test_id] = (image.build_id,)
        for job in self.publishes:
            graph[job.id] = (f"test:{job.image}",)
        return graph


@dataclass(frozen=True)
class SourceInputs:
    """What else decides a layer's content besides the catalog: source overrides
    (``--source NAME=URL@COMMIT``) and whether stand-ins may replace unreachable sources."""

    overrides: tuple[str, ...] = ()
    stand_ins: bool = False

    def for_source(self, name: str) -> str | None:
        """What identifies an overridden source's content: its pinned commit when the override
        names one (where it was fetched from does not matter), else the location itself."""
        for text in self.overrides:
            override = parse_source_override(text)
            if override.name == name:
                return override.commit or override.url
        return None


def plan_release(catalog: Catalog, *, releases: tuple[str, ...] = (),
                 variants: tuple[str, ...] = (), arches: tuple[str, ...] = (),
                 sites: tuple[str, ...] = (), publish: bool = False,
                 inputs: SourceInputs = SourceInputs()) -> ReleasePlan:
    """Expand the selection (empty = everything in the catalog) into jobs."""
    releases = _check(releases, catalog.releases, "release")
    variants = _check(variants, catalog.variants, "variant")
    arches = _check(arches, catalog.arches, "arch")
    sites = _check(sites, catalog.sites, "site")
    wanted = [(r, v, a) for r in releases for v in variants for a in arches
              if a in catalog.releases[r].arches and a in catalog.variant_arches(v)]
    if not wanted:
        raise UsageError("the selection contains no image the catalog allows")
    jobs: dict[str, ImageJob] = {}
    for release, variant, arch in wanted:
        _add_job(catalog, jobs, release, variant, arch, sites, inputs, requested=True)
    images = tuple(sorted(jobs.values(), key=lambda j: (j.release, j.arch, _depth(catalog, j))))
    publishes = tuple(PublishJob(i.key, s) for i in images if i.requested and publish
                      for s in i.sites)
    return ReleasePlan(images=images, publishes=publishes)


def _check(values: tuple[str, ...], known, what: str) -> tuple[str, ...]:
    for value in values:
        if value not in known:
            raise UsageError(f"unknown {what} '{value}'{did_you_mean(value, known)}"
                             f" (valid: {', '.join(known)})")
    return tuple(values) or tuple(known)


def _add_job(catalog: Catalog, jobs: dict[str, ImageJob], release: str, variant: str,
             arch: str, sites: tuple[str, ...], inputs: SourceInputs, *,
             requested: bool) -> ImageJob:
    key = f"{release}-{variant}-{arch}"
    if key in jobs:
        if requested and not jobs[key].requested:
            jobs[key] = _job(catalog, jobs, release, variant, arch, sites, inputs, requested=True)
        return jobs[key]
    jobs[key] = _job(catalog, jobs, release, variant, arch, sites, inputs, requested=requested)
    return jobs[key]


def _job(catalog: Catalog, jobs: dict[str, ImageJob], release: str, variant: str, arch: str,
         sites: tuple[str, ...], inputs: SourceInputs, *, requested: bool) -> ImageJob:
    parent_variant = catalog.variants[variant].parent
    parent = (_add_job(catalog, jobs, release, parent_variant, arch, sites, inputs,
                       requested=False) if parent_variant else None)
    carried = tuple(s for s in sites if arch in catalog.sites[s].arches) if requested else ()
    return ImageJob(
        key=f"{release}-{variant}-{arch}", release=release, variant=variant, arch=arch,
        name=catalog.image_name(release=release, variant=variant, arch=arch), sites=carried,
        parent=parent.key if parent else None,
        layer_key=layer_key(catalog, release, variant, arch, parent.layer_key if parent else "",
                            inputs=inputs),
        requested=requested, sources=catalog.variant_sources(variant))


def _depth(catalog: Catalog, job: ImageJob) -> int:
    return len(catalog.variant_chain(job.variant))


def layer_key(catalog: Catalog, release: str, variant: str, arch: str, parent_key: str, *,
              inputs: SourceInputs = SourceInputs()) -> str:
    """A hash of everything that goes into a variant's layer: the release (element, mirror,
    settings), the arch, the variant's own elements (their files), its sources' commits, and
    the parent's layer - so a change to `sage` rebuilds only `sage` and above, a change to the
    base rebuilds everything."""
    own = catalog.variants[variant]
    data = {
        "release": as_plain(catalog.releases[release]), "arch": as_plain(catalog.arches[arch]),
        "elements": {e: _element_digest(e) for e in own.elements},
        "sources": {s: inputs.for_source(s) or catalog.sources[s].commit for s in own.sources},
        "stand_ins": inputs.stand_ins,
        "cuda": as_plain(own.cuda) if own.cuda else None, "parent": parent_key,
    }
    if own.python:  # only then: the keys of variants without Python tools stay as they were
        data["python"] = _python_digest(own.python, release)
    if own.node_python:
        data["node_python"] = _python_digest(own.node_python, release)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _python_digest(env: PythonEnv, release: str) -> str | None:
    """The variant's own Python lock for the release (its bytes decide what pip installs)."""
    lock = env.locks.get(release)
    if lock is None:
        return None
    return hashlib.sha256(_read(lock.file) if lock.file.is_file() else b"").hexdigest()[:16]


def _element_digest(name: str) -> str:
    digest = hashlib.sha256()
    for folder in element_dirs():
        root = folder / name
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(root)).encode() + _read(path))
            break
    return digest.hexdigest()[:16]


def _read(path: Path) -> bytes:
    return path.read_bytes() + oct(path.stat().st_mode & 0o777).encode()
