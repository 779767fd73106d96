"""`sage-image publish`: plan every site, show the plans, apply them in parallel."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..boottest.checks.model import load_checks
from ..catalog.model import Catalog
from ..console import Console
from ..diff.diff import diff_manifests
from ..errors import PublishError, UsageError
from ..outfolder import (
    Manifest,
    PreviousImage,
    SitePublication,
    read_published,
    write_published,
)
from . import store
from .apply import SiteResult, apply_plan, failed
from .clouds import SiteTarget, connect, resolve_targets, select_sites
from .failures import contain
from .metadata import ImageMetadata, check_values, image_metadata
from .output import BuildOutput, load_output
from .plan import Action, SitePlan, image_properties, plan_site
from .progress import SiteBars
from .record import Record, manifest_from_record, read_record, record_location
from .site import SiteImage, list_images

if TYPE_CHECKING:
    from openstack.connection import Connection


@dataclass(frozen=True)
class PublishRequest:
    output_dir: Path
    sites: tuple[str, ...] | None
    all_sites: bool
    visibility: str | None
    untested: bool
    dry_run: bool
    definitions: Path | None = None  # check definitions the gate asks about (default: shipped)


@dataclass(frozen=True)
class Planned:
    target: SiteTarget
    plan: SitePlan | None
    conn: Connection | None
    error: PublishError | None = None

    @property
    def reason(self) -> str:
        return self.error.reason if self.error else ""


@dataclass(frozen=True)
class Prepared:
    """The build and what publish will write for it, checked before any site is contacted."""

    output: BuildOutput
    targets: list[SiteTarget]
    record: Record
    metadata: dict[str, ImageMetadata]  # per site that takes a format the build has


def prepare(catalog: Catalog, request: PublishRequest) -> Prepared:
    """Everything that can be checked before any site is contacted (bad input -> exit 2)."""
    output, targets = _gate(catalog, request)
    record = read_record(output, catalog.publish.container)
    metadata = {t.name: image_metadata(output, catalog, file=output.files[t.disk_format],
                                       site_kind=t.kind)
                for t in targets if t.disk_format in output.files}
    for site, meta in metadata.items():
        check_values(image_properties(output, catalog.publish, meta, record, untested=False),
                     where=f"{output.identity.name} at {site}")
    return Prepared(output, targets, record, metadata)


def _gate(catalog: Catalog, request: PublishRequest) -> tuple[BuildOutput, list[SiteTarget]]:
    output = load_output(request.output_dir, catalog=catalog,
                         definitions=load_checks(request.definitions))
    default = output.manifest.sites
    sites = select_sites(catalog, request.sites, all_sites=request.all_sites, default=default)
    if not request.untested:
        # Every site gets tested bytes, or none is contacted (nor its credentials read).
        refused = [(s.name, why) for s in sites
                   if (why := output.test.refusal(catalog.site_kinds[s.kind].disk_format))]
        if refused:
            where = "" if not output.test.passed else f" to {refused[0][0]}"
            raise UsageError(f"refusing to publish {output.identity.name}{where}: {refused[0][1]}",
                             hint="pass --untested to publish anyway (the image is then "
                                  "marked sage-image-untested=true)")
    return output, resolve_targets(catalog, sites)


def plan_all(catalog: Catalog, request: PublishRequest, prepared: Prepared) -> list[Planned]:
    visibility = request.visibility or catalog.publish.visibility

    def one(target: SiteTarget) -> Planned:
        listed = contain(target.name, lambda: _listed(target), doing="cannot list images")
        if isinstance(listed, PublishError):  # an unreachable site fails alone; the others go on
            return Planned(target, None, None, listed)
        conn, images = listed
        return Planned(target, plan_site(
            target, prepared.output, images, policy=catalog.publish,
            metadata=prepared.metadata.get(target.name), record=prepared.record,
            visibility=visibility, untested=request.untested), conn)

    with ThreadPoolExecutor(max_workers=max(1, len(prepared.targets))) as pool:
        return list(pool.map(one, prepared.targets))


def _listed(target: SiteTarget) -> tuple[Connection, list[SiteImage]]:
    conn = connect(target)
    return conn, list_images(conn)


def show_plans(console: Console, output: BuildOutput, planned: Sequence[Planned]) -> None:
    console.info(f"plan for {output.identity.name} ({output.build_tag}):")
    for p in planned:
        steps = p.plan.describe() if p.plan else [f"failed: {p.reason}"]
        console.info(f"  {p.target.name} ({p.target.cloud}, {p.target.disk_format}):")
        for step in steps:
            console.info(f"    - {step}")


def apply_all(console: Console, planned: Sequence[Planned]) -> list[SiteResult]:
    """Apply every plan in its own thread. Ctrl-C / SIGTERM sets `cancel`: uploads stop, each
    site rolls back, then the interrupt propagates."""
    cancel = threading.Event()
    totals = {p.target.name: p.plan.file.size for p in planned
              if p.plan and p.plan.file and p.plan.action is Action.PUBLISH}
    with SiteBars(console, [p.target.name for p in planned], totals) as bars, \
            ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
        futures: list[Future[SiteResult]] = [pool.submit(_apply_one, p, bars, cancel)
                                             for p in planned]
        try:
            while not all(f.done() for f in futures):
                wait(futures, timeout=0.2)
        except KeyboardInterrupt:
            cancel.set()
            wait(futures)  # every site rolls back before we leave
            raise
    return [f.result() for f in futures]


def _apply_one(p: Planned, bars: SiteBars, cancel: threading.Event) -> SiteResult:
    if p.plan is None or p.conn is None:
        assert p.error is not None
        bars.update(p.target.name, "failed", 0)
        return failed(p.error)
    result = apply_plan(p.conn, p.plan, cancel=cancel,
                        report=lambda phase, done: bars.update(p.target.name, phase, done))
    bars.update(p.target.name, result.status, 0)
    return result


def record(output: BuildOutput, planned: Sequence[Planned], results: Sequence[SiteResult]) -> None:
    """OUT/published.json: where this build is production now, and what changed against the
    image it replaced there (read by `describe` and the release report)."""
    by_site = {p.target.name: p for p in planned}
    earlier = read_published(output.root).sites
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = {}
    for r in results:
        if not r.image_id or r.status not in ("published", "up to date"):
            continue
        if r.status == "published":
            planned = by_site[r.site]
            assert planned.plan is not None and planned.conn is not None  # it was published
            previous = previous_entry(output, planned.plan.current, r.site, planned.conn)
        else:  # unchanged: what was new still is
            previous = earlier[r.site].previous if r.site in earlier else None
        entries[r.site] = SitePublication(
            image_id=r.image_id, name=output.identity.name, cloud=by_site[r.site].target.cloud,
            status=r.status, time=now, previous=previous)
    if entries:
        write_published(output.root, entries)


def previous_entry(output: BuildOutput, replaced: SiteImage | None, site: str,
                   conn: Connection) -> PreviousImage | None:
    """The image this publish replaced and the changes since it; None: the first version."""
    if replaced is None:
        return None
    build_tag = replaced.properties.get("build-tag")
    # a record that is lost or changed, or a store that is unreachable: the publish itself
    # succeeded, and what is new is unknown
    old = contain(site, lambda: record_manifest(conn, replaced, where=f"{site} image {replaced.id}"),
                  doing="cannot read its record")
    if isinstance(old, PublishError):
        return PreviousImage(image_id=replaced.id, build_tag=build_tag, error=old.reason)
    changes = diff_manifests(old, output.manifest, old_label=f"{site}: {replaced.id}",
                             new_label=output.identity.name).as_json()
    return PreviousImage(image_id=replaced.id, build_tag=build_tag, changes=changes)


def result_rows(results: Sequence[SiteResult]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        speed = f"{r.mb_per_s:.0f}" if r.mb_per_s else "-"
        result = r.status + (f": {r.reason}" if r.reason and r.status != "up to date" else "")
        rows.append((r.site, result, r.image_id or "-", f"{r.seconds:.1f}s", speed))
    return rows


def result_json(output: BuildOutput, results: Sequence[SiteResult]) -> dict[str, object]:
    return {"ok": all(r.ok for r in results), "name": output.identity.name, "build_tag": output.build_tag,
            "sites": [{"site": r.site, "status": r.status, "reason": r.reason,
                       "image_id": r.image_id, "seconds": round(r.seconds, 3),
                       "mb_per_s": round(r.mb_per_s, 1) if r.mb_per_s else None,
                       "backdated": r.backdated} for r in results]}


def record_manifest(conn: Connection, image: SiteImage, *, where: str) -> Manifest:
    """The manifest the record of `image` (at the site `conn` talks to) holds, checked against
    the image's sha256 (RecordError when it has none, the store lacks it, or it differs)."""
    container, name = record_location(image.properties, where=where)
    return manifest_from_record(store.read(conn, container, name), image.properties, where=where)
