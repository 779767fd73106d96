"""`sage-image release` (the whole matrix), `cache` (layers, sources, slots), `ci github|k8s`
and `report`: every release-stage sub-command and its flags (ci/report handlers: ci_commands.py).
"""

from __future__ import annotations

import argparse
import fcntl
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from ..builder.cache import default_cache_root
from ..catalog import load_catalog
from ..cli_common import (
    add_catalog_flag,
    add_checks_file_flag,
    add_command,
    add_json_flag,
    comma_list,
)
from ..console import Console, LiveDisplay, format_seconds
from ..errors import UsageError
from ..values import as_plain
from . import ci_commands
from .plan import ReleasePlan, SourceInputs, plan_release
from .run import ReleaseOptions, default_jobs, fetch_release_sources, release_jobs, run_release
from .scheduler import JobState, Scheduler
from .selection import add_selection_flags

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")
EXAMPLE = ("sage-image release --releases bookworm --variants base,sage "
           "--sites CHI@UC,CHI@TACC,KVM@TACC --publish")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "release", example=EXAMPLE,
                    help="build, test and publish the catalog matrix (one build per image, "
                         "layered, in parallel)")
    p.add_argument("--releases", type=comma_list, default=(), help="comma-separated (default: all)")
    p.add_argument("--variants", type=comma_list, default=(), help="comma-separated (default: all)")
    p.add_argument("--arches", type=comma_list, default=(HOST_ARCH,),
                   help=f"comma-separated (default: this machine's, {HOST_ARCH})")
    p.add_argument("--sites", type=comma_list, default=(), help="comma-separated (default: all)")
    p.add_argument("--jobs", type=int, default=None,
                   help="builds/boot tests at once (default: from cores, free memory and disk)")
    p.add_argument("--publish", action="store_true", help="publish each tested image")
    p.add_argument("--no-test", action="store_true", help="skip boot tests (publishes --untested)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, do nothing")
    p.add_argument("--out", type=Path, default=Path("out/release"), metavar="DIR")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR")
    p.add_argument("--allow-stand-ins", action="store_true",
                   help="build with labelled stand-ins for unreachable upstream sources")
    p.add_argument("--source", action="append", default=[], metavar="NAME=URL[@COMMIT]")
    p.add_argument("--pip-index-url", default=None, metavar="URL",
                   help="Python package index for every build (a mirror; default: PyPI)")
    add_catalog_flag(p)
    add_checks_file_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_release)

    p = add_command(sub, "cache", help="list or prune build caches (layers, sources, DIB slots)",
                    example="sage-image cache prune --older-than 30")
    p.add_argument("action", choices=("list", "prune"))
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="prune: only entries not used for this many days (default: all)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR")
    add_json_flag(p)
    p.set_defaults(func=cmd_cache)

    group = add_command(sub, "ci", help="generate CI that runs the release plan elsewhere",
                        example="sage-image ci github --variants base,sage")
    verbs = group.add_subparsers(dest="ci_command", metavar="COMMAND")
    verbs.required = True

    p = add_command(verbs, "github", help="write a GitHub Actions workflow running the release plan",
                    description="Write a GitHub Actions workflow with one job per build, test and "
                                "publish of the release plan, their needs: exactly the plan's "
                                "dependencies (docs/release.md).",
                    example="sage-image ci github --releases bookworm --variants base,sage "
                            "--out .github/workflows/sage-image-release.yml")
    add_selection_flags(p)
    p.add_argument("--out", type=Path, default=ci_commands.DEFAULT_WORKFLOW, metavar="FILE",
                   help=f"workflow file to write ('-' for stdout; default {ci_commands.DEFAULT_WORKFLOW})")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=ci_commands.cmd_github)

    p = add_command(verbs, "k8s", help="write Kubernetes Jobs running the release plan",
                    description="Write a kustomize directory: a namespace, a shared cache volume "
                                "and one Job per image (build, then test) and per publish; a Job "
                                "waits on the volume for what it needs (docs/release.md).",
                    example="sage-image ci k8s --variants base,sage --publish --out release-k8s")
    add_selection_flags(p)
    p.add_argument("--publish", action="store_true", help="also publish every tested image")
    p.add_argument("--out", type=Path, default=Path("release-k8s"), metavar="DIR",
                   help="directory to write (default ./release-k8s; replaced if ours)")
    p.add_argument("--run", default=None, metavar="ID",
                   help="names this run's Jobs and folder on the volume (default: UTC time)")
    p.add_argument("--ref", default=None, metavar="COMMIT",
                   help="sage-image-builder commit the pods check out (default: this checkout's)")
    p.add_argument("--repo", default=None, metavar="URL",
                   help="repository to check out (default: the catalog's builder.repo)")
    p.add_argument("--namespace", default="sage-image", metavar="NS", help="default sage-image")
    p.add_argument("--storage-class", default=None, metavar="NAME",
                   help="StorageClass of the cache volume (ReadWriteMany; default: the cluster's)")
    p.add_argument("--clouds-secret", default="sage-image-clouds", metavar="NAME",
                   help="Secret with key clouds.yaml the publish pods use (not generated)")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=ci_commands.cmd_k8s)

    p = add_command(sub, "report", help="write the release report (HTML page + JSON)",
                    description="Read RELEASE_DIR (written by `sage-image release`) and write "
                                "report.html (opens offline in any browser) and report.json.",
                    example="sage-image report out/release --out out/release")
    p.add_argument("release_dir", type=Path, metavar="RELEASE_DIR")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where report.html and report.json go (default: RELEASE_DIR)")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=ci_commands.cmd_report)


def cmd_release(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    plan = plan_release(catalog, releases=args.releases, variants=args.variants,
                        arches=args.arches, sites=args.sites, publish=args.publish,
                        inputs=SourceInputs(tuple(args.source), args.allow_stand_ins))
    cache = args.cache or default_cache_root()
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    options = ReleaseOptions(out_dir=args.out, cache_root=cache,
                             jobs=args.jobs or default_jobs(cache), publish=args.publish,
                             test=not args.no_test, allow_stand_ins=args.allow_stand_ins,
                             sources=tuple(args.source), catalog=args.catalog,
                             checks_file=args.checks_file, pip_index_url=args.pip_index_url)
    if args.dry_run:
        return show_plan(console, plan, options)
    fetch_release_sources(catalog, plan, options, warn=console.warn)
    for job in release_jobs(plan, options):
        if job.note and not console.json_mode:
            console.info(f"{job.id}: {job.note}")
    with Heartbeat(console) as heartbeat:
        states = run_release(plan, options, on_change=_live(console, heartbeat.start),
                             on_tick=heartbeat.update)
    started = heartbeat.start
    return summarize(console, plan, options, states, time.monotonic() - started)


def show_plan(console: Console, plan: ReleasePlan, options: ReleaseOptions) -> int:
    jobs = release_jobs(plan, options)
    if console.json_mode:
        console.json({"images": as_plain(plan.images), "publishes": as_plain(plan.publishes),
                      "graph": plan.graph(),
                      "jobs": {j.id: {"needs": list(j.needs), "cached": j.cached,
                                      "note": j.note} for j in jobs}})
        return 0
    console.table(["IMAGE", "NAME", "BUILDS ON", "SITES", "LAYER", "NOW"],
                  [(i.key, i.name, i.parent or "debootstrap",
                    ",".join(i.sites) or "(layer only)", i.layer_key,
                    _cached(jobs, i.build_id)) for i in plan.images])
    console.result(f"\n{len(jobs)} jobs, up to {options.jobs} builds/tests at once; "
                   f"{len(plan.publishes)} uploads")
    return 0


def _cached(jobs: list[Any], job_id: str) -> str:
    job = next(j for j in jobs if j.id == job_id)
    return f"cached ({job.cached})" if job.cached else "build"


def _live(console: Console, started: float):
    def show(job_id: str, state: JobState) -> None:
        if console.json_mode:
            return
        detail = f" ({state.reason})" if state.reason else ""
        took = f" in {format_seconds(state.seconds)}" if state.seconds else ""
        console.info(f"[{format_seconds(time.monotonic() - started)}] {job_id}: "
                     f"{state.status}{took}{detail}")
    return show


class Heartbeat(LiveDisplay):
    """What each running job is doing: redrawn each second on a terminal, a line every 30 s
    in logs - a build takes minutes and must not look stuck."""

    log_every = 30.0

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._running: list[str] = []

    def update(self, scheduler: Scheduler) -> None:
        """Called by the scheduler's loop: the jobs running now and their last progress line."""
        now = time.monotonic()
        self._running = [f"{job} {format_seconds(now - (s.started or now))} "
                         f"{_phase(scheduler.last_line(job))}".rstrip()
                         for job, s in scheduler.states.items() if s.status == "running"]

    def lines(self) -> list[str]:
        if not self._running:
            return []
        text = f"[{format_seconds(self.elapsed)}] running: " + "; ".join(self._running)
        return [text[:200] if self.console.live else text]


def _phase(line: str) -> str:
    """`[02:13] Sage-... (bookworm/sage/amd64): dib:install.d` -> `dib:install.d`."""
    return line.rsplit(": ", 1)[-1][:40] if line.startswith("[") else ""


def summarize(console: Console, plan: ReleasePlan, options: ReleaseOptions,
              states: dict[str, JobState], elapsed: float) -> int:
    failed = {j: s for j, s in states.items() if s.status not in ("ok", "cached")}
    if console.json_mode:
        console.json({"ok": not failed, "elapsed": round(elapsed, 1),
                      "release": str(options.out_dir / "release.json"),
                      "jobs": {j: s.as_dict() for j, s in states.items()}})
    else:
        console.table(["JOB", "RESULT", "TIME", "WHY"],
                      [(j, s.status, format_seconds(s.seconds or 0), s.reason or "")
                       for j, s in states.items()])
        console.info(f"release finished in {format_seconds(elapsed)}: "
                     f"{len(states) - len(failed)} of {len(states)} jobs done; "
                     f"details in {options.out_dir / 'release.json'}")
    return 1 if failed else 0


# -- caches --------------------------------------------------------------------------------------

def cache_entries(cache: Path) -> list[dict[str, Any]]:
    entries = []
    for kind, pattern in (("layer", "layers/*.tar.gz"), ("source", "git/*.git"),
                          ("stand-in", "standins/*"), ("dib-slot", "dib/slot-*")):
        for path in sorted(cache.glob(pattern)):
            if path.suffix == ".lock":
                continue
            entries.append({"kind": kind, "path": str(path), "size": _size(path),
                            "age_days": round((time.time() - path.stat().st_mtime) / 86400, 1)})
    return entries


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    cache = args.cache or default_cache_root()
    entries = cache_entries(cache)
    if args.action == "prune":
        entries = [e for e in entries if args.older_than is None or e["age_days"] >= args.older_than]
        for entry in entries:
            entry["removed"] = _remove_unless_in_use(Path(entry["path"]))
    if console.json_mode:
        console.json({"action": args.action, "entries": entries})
        return 0
    console.table(["KIND", "SIZE", "AGE (days)", "PATH"],
                  [(e["kind"], f"{e['size'] / 2**20:.0f} MiB", e["age_days"], e["path"])
                   for e in entries])
    if args.action == "prune":
        kept = [e["path"] for e in entries if not e["removed"]]
        console.info(f"pruned {len(entries) - len(kept)} entries"
                     + (f"; kept {len(kept)} in use by a running build: {', '.join(kept)}"
                        if kept else ""))
    return 0


def _remove_unless_in_use(path: Path) -> bool:
    """Remove a cache entry unless a running build holds its lock; True if removed."""
    lock = path.with_suffix(".lock")
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return True

