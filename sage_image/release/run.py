"""Carrying out a release plan: each job is a `sage-image` command run by the scheduler.

Builds of a variant start from their parent's layer (``cache/layers/<layer key>.tar.gz``); a
parent nobody asked for is built as a layer only. Results already present are not redone: a
layer that exists, an image whose build matches the plan, a test that passed on the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..boottest.checks.model import CheckDef, load_checks
from ..builder.plan import BuildRequest, parse_source_override, plan_build
from ..builder.sources import SourceCache, fetch_sources
from ..catalog.model import Catalog, load_catalog
from ..console import PROGRESS_LINES_ENV
from ..errors import UsageError
from ..folders import check_folder, make_folder
from ..outfolder import manifest_path
from ..publish.output import load_output
from ..values import as_plain
from .plan import ImageJob, ReleasePlan
from .scheduler import Job, JobState, Scheduler

SAGE_IMAGE = (sys.executable, "-m", "sage_image.cli")
RELEASE_KEY = ".release-key"  # in an image's output folder: which plan entry built it


@dataclass(frozen=True)
class ReleaseOptions:
    out_dir: Path
    cache_root: Path
    jobs: int
    publish: bool = False
    test: bool = True
    allow_stand_ins: bool = False
    sources: tuple[str, ...] = ()  # --source NAME=URL[@COMMIT], passed to every build
    catalog: Path | None = None
    checks_file: Path | None = None  # check definitions for the tests and publish's gate
    untested: bool = False
    pip_index_url: str | None = None  # passed to every build


def default_jobs(cache_root: Path) -> int:
    """Builds are CPU-, memory- and disk-hungry: one per 2 cores, 6 GiB free memory, 15 GiB
    free disk - whichever allows fewest - and at least one."""
    cores = os.cpu_count() or 1
    free_mem_gb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    probe = cache_root if cache_root.exists() else Path.home()
    free_disk_gb = shutil.disk_usage(probe).free / 2**30
    return max(1, min(cores // 2 or 1, int(free_mem_gb // 6), int(free_disk_gb // 15)))


LAYER_FILE = "layers/{layer_key}.tar.gz"  # relative to the cache root; CI uses the same


def layer_file(cache_root: Path, layer_key: str) -> Path:
    return cache_root / LAYER_FILE.format(layer_key=layer_key)


def build_args(plan: ReleasePlan, image: ImageJob, *, out: str, cache: str) -> list[str]:
    """The `sage-image build` arguments of one image job - the same locally and in CI."""
    args = ["build", "--release", image.release, "--variant", image.variant,
            "--arch", image.arch, "--out", out, "--cache", cache]
    for site in image.sites:
        args += ["--site", site]
    if image.parent:
        parent = plan.image(image.parent)
        args += ["--from-layer", f"{cache}/{LAYER_FILE.format(layer_key=parent.layer_key)}"]
    if any(i.parent == image.key for i in plan.images):
        args += ["--save-layer", f"{cache}/{LAYER_FILE.format(layer_key=image.layer_key)}"]
    if not image.requested:
        args.append("--layer-only")
    return args


def release_jobs(plan: ReleasePlan, options: ReleaseOptions) -> list[Job]:
    parents = {i.parent for i in plan.images if i.parent}
    catalog, definitions = load_catalog(options.catalog), load_checks(options.checks_file)
    jobs: list[Job] = []
    for image in plan.images:
        jobs.append(_build_job(plan, image, image.key in parents, options))
        if image.requested and options.test:
            jobs.append(_test_job(image, options, catalog, definitions))
    for publish in plan.publishes:
        needs = (f"test:{publish.image}",) if options.test else (f"build:{publish.image}",)
        argv = [*SAGE_IMAGE, "publish", str(options.out_dir / publish.image), "--sites",
                publish.site, "--json", *_catalog_args(options), *_checks_args(options)]
        if options.untested or not options.test:
            argv.append("--untested")
        jobs.append(Job(id=f"publish:{publish.image}@{publish.site}", argv=tuple(argv),
                        needs=needs, heavy=False))
    return jobs


def _catalog_args(options: ReleaseOptions) -> list[str]:
    return ["--catalog", str(options.catalog)] if options.catalog else []


def _checks_args(options: ReleaseOptions) -> list[str]:
    return ["--checks-file", str(options.checks_file)] if options.checks_file else []


def _build_job(plan: ReleasePlan, image: ImageJob, has_children: bool,
               options: ReleaseOptions) -> Job:
    argv = [*SAGE_IMAGE, *build_args(plan, image, out=str(options.out_dir / image.key),
                                     cache=str(options.cache_root)),
            "--json", *_catalog_args(options)]
    if options.allow_stand_ins:
        argv.append("--allow-stand-ins")
    if options.pip_index_url:
        argv += ["--pip-index-url", options.pip_index_url]
    for source in options.sources:
        if source.partition("=")[0] in image.sources:  # a build refuses sources it does not use
            argv += ["--source", source]
    needs = (f"build:{image.parent}",) if image.parent else ()
    return Job(id=image.build_id, argv=tuple(argv), needs=needs,
               cached=_build_cached(image, has_children, options))


def build_key(image: ImageJob) -> str:
    return f"{image.layer_key} {','.join(image.sites)}"


def _build_cached(image: ImageJob, has_children: bool, options: ReleaseOptions) -> str | None:
    layer = layer_file(options.cache_root, image.layer_key)
    if has_children and not layer.exists():
        return None
    if not image.requested:
        return f"layer {image.layer_key} exists"
    out = options.out_dir / image.key
    try:
        same = (out / RELEASE_KEY).read_text() == build_key(image)
    except OSError:
        return None
    return "built from the same inputs" if same and manifest_path(out).exists() else None


def _test_job(image: ImageJob, options: ReleaseOptions, catalog: Catalog,
              definitions: Mapping[str, CheckDef]) -> Job:
    out = options.out_dir / image.key
    argv = (*SAGE_IMAGE, "test", str(out), "--json", "--junit", str(out / "junit.xml"),
            *_catalog_args(options), *_checks_args(options))
    cached, note = reusable_test(out, catalog, definitions)
    return Job(id=image.test_id, argv=argv, needs=(image.build_id,), cached=cached, note=note)


def reusable_test(out: Path, catalog: Catalog, definitions: Mapping[str, CheckDef]
               ) -> tuple[str | None, str | None]:
    """(why the test need not run, why it runs again): a test is reused only if publish's gate
    accepts it - a full pass of these bytes, by this tester, of every check of the variant as
    defined now. A check added or changed since, or a new tester, means testing again."""
    try:
        output = load_output(out, catalog=catalog, definitions=definitions)
    except UsageError:  # no build yet, or a manifest we cannot read: test again
        return None, None
    if output.test.passed:
        return "passed on these exact bytes, with these checks", None
    return None, f"re-testing: {output.test.retest}" if output.test.retest else None


def fetch_release_sources(catalog: Catalog, plan: ReleasePlan, options: ReleaseOptions, *,
                          warn: Any) -> None:
    """Fetch, once and before any job starts, every source the builds that will run use.

    An unreachable upstream is then one error with its override (SourceError: exit 2, nothing
    started), not the same failure in every build job; the builds find them in the cache.
    """
    check_folder(options.out_dir, option="--out")  # bad input before the network
    check_folder(options.cache_root, option="--cache")
    jobs = {job.id: job for job in release_jobs(plan, options)}
    planned = {}
    for image in plan.images:
        if jobs[image.build_id].cached:
            continue
        overrides = tuple(parse_source_override(text) for text in options.sources
                          if text.partition("=")[0] in image.sources)
        request = BuildRequest(release=image.release, variant=image.variant, arch=image.arch,
                               source_overrides=overrides)
        planned.update({source.name: source for source in plan_build(catalog, request).sources})
    if planned:
        fetch_sources(tuple(planned.values()), SourceCache(options.cache_root),
                      allow_stand_ins=options.allow_stand_ins, warn=warn)


def run_release(plan: ReleasePlan, options: ReleaseOptions, *,
                on_change: Any = lambda job, state: None,
                on_tick: Any = lambda scheduler: None) -> dict[str, JobState]:
    make_folder(options.out_dir, option="--out")
    make_folder(options.cache_root / "layers", option="--cache")
    started = _now()
    scheduler = Scheduler(release_jobs(plan, options), max_heavy=options.jobs,
                          log_dir=options.out_dir / "logs",
                          on_change=lambda job, state: _on_change(plan, options, job, state,
                                                                  on_change),
                          env=os.environ | {PROGRESS_LINES_ENV: "1"},
                          on_tick=lambda states: on_tick(scheduler))
    try:
        states = scheduler.run()
    finally:
        write_release_json(plan, options, scheduler.states, started)
    return states


def _on_change(plan: ReleasePlan, options: ReleaseOptions, job_id: str, state: JobState,
               forward: Any) -> None:
    if job_id.startswith("build:") and state.status == "ok":
        image = plan.image(job_id.removeprefix("build:"))
        if image.requested:
            (options.out_dir / image.key / RELEASE_KEY).write_text(build_key(image))
    forward(job_id, state)


def write_release_json(plan: ReleasePlan, options: ReleaseOptions,
                       states: dict[str, JobState], started: str) -> Path:
    path = options.out_dir / "release.json"
    data = {"schema": 1, "started": started, "finished": _now(),
            "plan": {"images": as_plain(plan.images), "publishes": as_plain(plan.publishes)},
            "jobs": {job_id: _job_record(state) for job_id, state in states.items()}}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def _job_record(state: JobState) -> dict[str, Any]:
    record = state.as_dict()
    result = record.pop("result") or {}
    sites = result.get("sites") if isinstance(result.get("sites"), list) else []
    site = sites[0] if sites and isinstance(sites[0], dict) else {}
    record.update({"image_id": site.get("image_id"), "mb_per_s": site.get("mb_per_s"),
                   "result": site.get("status")})
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
