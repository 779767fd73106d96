"""`sage-image publish`, `images`, `prune`, `describe`: the command-line side of publishing."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..catalog.model import VISIBILITIES, load_catalog
from ..cli_common import (
    add_catalog_flag,
    add_checks_file_flag,
    add_command,
    add_json_flag,
    comma_list,
    duration_days,
)
from ..console import Console
from . import describe, lifecycle
from . import publish as pub


def add_site_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sites", type=comma_list, metavar="SITE,SITE",
                       help="catalog sites, e.g. CHI@UC,CHI@TACC,KVM@TACC")
    group.add_argument("--all-sites", action="store_true", help="every site in the catalog")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "publish", help="upload a tested image to every site, backdating the old one",
        description="Upload the build in OUTPUT_DIR to each site in parallel under a temporary "
                    "private name, verify Glance's sha512, backdate the current production "
                    "image and promote the new one; any failure rolls that site back.",
        example="sage-image publish out/sage-bookworm-amd64 --sites CHI@UC,KVM@TACC --dry-run")
    p.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    add_site_flags(p)
    p.add_argument("--visibility", choices=VISIBILITIES,
                   help="visibility of the promoted image (default: the catalog's publish.visibility)")
    p.add_argument("--untested", action="store_true",
                   help="publish without passing 'sage-image test' results (marks the image)")
    p.add_argument("--dry-run", action="store_true", help="show what each site would do, change nothing")
    add_catalog_flag(p)
    add_checks_file_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_publish)

    p = add_command(sub, "images", help="every version of every catalog image at every site",
                    example="sage-image images Sage-VirtualWaggle-Debian12 --sites CHI@UC,KVM@TACC")
    p.add_argument("name", nargs="?", metavar="NAME", help="one production image name")
    add_site_flags(p)
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=lifecycle.cmd_images)

    p = add_command(sub, "prune", help="hide, then delete, old backdated images",
                    description="Hide backdated images replaced longer ago than --hide-after and "
                                "delete those replaced longer ago than --delete-after; never the "
                                "production image, never one a server uses, never the newest "
                                "--keep. The plan is always printed first.",
                    example="sage-image prune --hide-after 12mo --delete-after 18mo --keep 2 "
                            "--dry-run")
    p.add_argument("name", nargs="?", metavar="NAME", help="one production image name")
    add_site_flags(p)
    p.add_argument("--hide-after", type=duration_days, metavar="AGE",
                   help="e.g. 12mo, 26w, 365d (default: catalog publish.prune.hide_after)")
    p.add_argument("--delete-after", type=duration_days, metavar="AGE",
                   help="default: catalog publish.prune.delete_after")
    p.add_argument("--keep", type=int, metavar="N", help="backdated versions always kept")
    p.add_argument("--dry-run", action="store_true", help="show the plan only")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=lifecycle.cmd_prune)

    p = add_command(sub, "describe", help="write the appliance description (Markdown + JSON)",
                    example="sage-image describe out/sage-bookworm-amd64 --json")
    p.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    add_json_flag(p)
    p.set_defaults(func=describe.cmd_describe)


def cmd_publish(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    request = pub.PublishRequest(output_dir=args.output_dir, sites=args.sites,
                                 all_sites=args.all_sites, visibility=args.visibility,
                                 untested=args.untested, dry_run=args.dry_run,
                                 definitions=args.checks_file)
    prepared = pub.prepare(catalog, request)
    output = prepared.output
    planned = pub.plan_all(catalog, request, prepared)
    if not console.json_mode:
        pub.show_plans(console, output, planned)
    if args.dry_run:
        if console.json_mode:
            console.json({"dry_run": True, "name": output.identity.name, "sites": [
                {"site": p.target.name, "steps": p.plan.describe() if p.plan else [],
                 "action": p.plan.action.value if p.plan else "failed", "error": p.reason}
                for p in planned]})
        return 0 if all(p.plan for p in planned) else 1
    results = pub.apply_all(console, planned)
    pub.record(output, planned, results)
    if console.json_mode:
        console.json(pub.result_json(output, results))
    else:
        console.table(["SITE", "RESULT", "IMAGE ID", "TIME", "MB/s"], pub.result_rows(results))
    return 0 if all(r.ok for r in results) else 1
