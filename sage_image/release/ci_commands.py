"""What `sage-image ci github|k8s` and `sage-image report` do (their flags: commands.py).

Generation is pure (ci/github.py, ci/k8s_jobs.py, report.py); this module reads inputs, checks
what was generated against the plan, and writes files.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from .. import __version__
from ..builder.provenance import builder_commit
from ..catalog.model import load_catalog
from ..console import Console
from ..errors import SageImageError, UsageError
from ..folders import check_folder, write_file
from ..k8s import render
from . import report
from .ci import github, k8s_jobs
from .ci.common import plan_graph, secret_names
from .selection import selection_from_args

DEFAULT_WORKFLOW = Path(".github/workflows/sage-image-release.yml")
K8S_MARKER = ".sage-image-ci-k8s"


def _command_line(args: argparse.Namespace, *extra: str) -> str:
    """The command that regenerates this output (from the parsed flags, not sys.argv)."""
    argv = ["sage-image", "ci", args.ci_command]
    for flag in ("releases", "variants", "arches", "sites"):
        if getattr(args, flag):
            argv += [f"--{flag}", ",".join(getattr(args, flag))]
    if args.catalog:
        argv += ["--catalog", str(args.catalog)]
    return shlex.join(argv + list(extra))


def _check_graph(found: dict[str, tuple[str, ...]], plan_graph: dict[str, tuple[str, ...]]) -> None:
    """A bug of ours, never bad input: refuse to write CI that would run another graph."""
    if found != plan_graph:
        diff = sorted(set(found.items()) ^ set(plan_graph.items()))
        raise SageImageError(f"generated job graph differs from the release plan: {diff[:3]}")


def cmd_github(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    plan = selection_from_args(args).plan(catalog, publish=True)
    workflow = github.github_workflow(catalog, plan)
    _check_graph(github.workflow_graph(workflow), plan_graph(plan))
    text = github.render_workflow(workflow, _command_line(args))
    if str(args.out) == "-":
        sys.stdout.write(text)
        return 0
    write_file(args.out, text, option="--out")
    secrets = sorted({n for p in plan.publishes for n in secret_names(p.site)})
    if console.json_mode:
        console.json({"ok": True, "out": str(args.out), "jobs": len(workflow["jobs"]),
                      "secrets": secrets})
        return 0
    console.result(f"wrote {args.out}: {len(workflow['jobs'])} jobs "
                   f"({len(plan.images)} builds, {len(plan.publishes)} publishes)")
    console.info("repository secrets it reads: " + ", ".join(secrets))
    return 0


def _default_ref() -> str:
    ref = builder_commit()
    if ref == "unknown":
        raise UsageError("cannot tell this checkout's commit; give --ref COMMIT")
    return ref


def cmd_k8s(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    plan = selection_from_args(args).plan(catalog, publish=args.publish)
    options = k8s_jobs.K8sOptions(
        run=k8s_jobs.check_run(args.run or time.strftime("%Y%m%d-%H%M%S", time.gmtime())),
        ref=args.ref or _default_ref(), repo=args.repo or catalog.builder.repo,
        namespace=k8s_jobs.dns_name(args.namespace), storage_class=args.storage_class,
        clouds_secret=args.clouds_secret)
    objects = k8s_jobs.k8s_objects(catalog, plan, options)
    _check_graph(k8s_jobs.k8s_graph(objects), plan_graph(plan))
    extra = ["--publish"] if args.publish else []
    files = k8s_jobs.k8s_files(objects, _command_line(args, *extra, "--run", options.run,
                                                      "--ref", options.ref))
    render.write_tree(args.out, files, marker=K8S_MARKER, command="sage-image ci k8s")
    jobs = [o["metadata"]["name"] for o in objects if o["kind"] == "Job"]
    if console.json_mode:
        console.json({"ok": True, "out": str(args.out), "run": options.run, "ref": options.ref,
                      "namespace": options.namespace, "jobs": jobs})
        return 0
    console.result(f"wrote {args.out}: {len(jobs)} Jobs, run {options.run}, ref {options.ref[:12]}")
    console.info(f"start it with: kubectl apply -k {args.out}")
    if plan.publishes:
        console.info(f"publish pods read the Secret {options.clouds_secret} (key clouds.yaml) in "
                     f"namespace {options.namespace}; create it before they start")
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    out = check_folder(args.out or args.release_dir, option="--out")  # refused before reading
    catalog = load_catalog(args.catalog)
    formats = {name: catalog.site_kinds[site.kind].disk_format
               for name, site in catalog.sites.items()}
    data = report.load_release(args.release_dir)
    try:
        result = report.build_report(data, formats)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"{args.release_dir / report.RELEASE_FILE}: unexpected content "
                         f"({type(exc).__name__}: {exc})") from exc
    page = report.render_html(result, generator=f"written by sage-image {__version__} report")
    write_file(out / "report.html", page, option="--out")
    write_file(out / "report.json", json.dumps(report.report_json(result), indent=2) + "\n",
               option="--out")
    if console.json_mode:
        console.json({"ok": True, "html": str(out / "report.html"),
                      "json": str(out / "report.json"), "failed_jobs": result.failed})
        return 0
    console.result(f"wrote {out / 'report.html'} and report.json "
                   f"({len(result.rows)} images, {len(result.sites)} sites, "
                   f"{result.failed} failed job(s))")
    return 0
