"""`sage-image diff A B` and `sage-image diff OUT --site S`: what changed between two builds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_common import add_catalog_flag, add_command, add_json_flag
from ..console import Console
from ..errors import UsageError
from .diff import SECTIONS, ManifestDiff, diff_manifests, load_manifest

EXAMPLE = "sage-image diff out/release/bookworm-base-amd64 out/release/bookworm-sage-amd64"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "diff", help="what changed between two builds, or a build and production",
        description="Compare two build output folders (or manifest.json files): packages and "
                    "Python packages added, removed, upgraded or downgraded, sources re-pinned, "
                    "variant, elements, kernel, checks and size. With --site, compare OUT with "
                    "the production image at that site, from the record publish keeps in "
                    "the site's object store. "
                    "Exit 0 (also when they differ) unless --exit-code.",
        example=f"{EXAMPLE}\n  sage-image diff out/bookworm-sage --site CHI@UC --json")
    p.add_argument("old", type=Path, metavar="A", help="build output folder or manifest.json")
    p.add_argument("new", type=Path, metavar="B", nargs="?",
                   help="build output folder or manifest.json (omit with --site)")
    p.add_argument("--site", metavar="SITE", help="compare A with the production image at SITE")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when anything differs (like git diff --exit-code)")
    add_catalog_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace, console: Console) -> int:
    if (args.new is None) == (args.site is None):
        raise UsageError("give two builds (A B) or one build and --site SITE",
                         hint=f"e.g. {EXAMPLE}")
    if args.site:
        import hashlib

        from ..catalog import load_catalog
        from ..publish.production import production_manifest

        new, new_file = load_manifest(args.old)
        sha256 = hashlib.sha256(new_file.read_bytes()).hexdigest()
        old, label, note = production_manifest(load_catalog(args.catalog), args.site,
                                               new.name, local=(new, sha256))
        if note:
            console.warn(note)
        result = diff_manifests(old, new, old_label=label, new_label=str(new_file))
    else:
        old, old_file = load_manifest(args.old)
        new, new_file = load_manifest(args.new)
        result = diff_manifests(old, new, old_label=str(old_file), new_label=str(new_file))
    show_diff(console, result)
    return 1 if args.exit_code and result.differs else 0


def show_diff(console: Console, result: ManifestDiff) -> None:
    if console.json_mode:
        console.json(result.as_json())
        return
    console.result(f"--- {result.old}\n+++ {result.new}")
    if result.differs:
        console.table(["WHAT", "NAME", "CHANGE", "OLD", "NEW"], diff_rows(result))
    console.result(result.summary())


def diff_rows(result: ManifestDiff) -> list[tuple[Any, ...]]:
    order = {s: i for i, s in enumerate(SECTIONS)}
    return [(c.section, c.name, c.kind, c.old or "-", c.new or "-")
            for c in sorted(result.changes, key=lambda c: order[c.section])]
