"""`sage-image list`: the catalog as a table or JSON, or the reference of its settings."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli_common import add_catalog_flag, add_command, add_json_flag
from ..console import Console
from ..errors import UsageError
from ..values import as_plain
from .model import Catalog, load_catalog
from .reference import as_json, as_markdown, as_text, settings_rows


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "list", help="show the catalog: every image it defines and where it goes",
                    example="sage-image list --json | jq '.images[].name'\n"
                            "  sage-image list --settings          # every catalog setting")
    add_catalog_flag(p)
    add_json_flag(p)
    p.add_argument("--settings", action="store_true",
                   help="instead: the reference of every catalog setting (its type, default "
                        "and meaning), made from the catalog's settings table")
    p.add_argument("--markdown", action="store_true",
                   help="with --settings: as Markdown (docs/catalog-reference.md is this)")
    p.set_defaults(func=cmd_list)


def catalog_images(catalog: Catalog) -> list[dict[str, Any]]:
    """Every (release, variant, arch) the catalog allows, with its name and sites."""
    images = []
    for release in catalog.releases.values():
        for variant in catalog.variants:
            for arch in catalog.variant_arches(variant):
                if arch not in release.arches:
                    continue
                images.append({
                    "name": catalog.image_name(release=release.name, variant=variant, arch=arch),
                    "release": release.name, "variant": variant, "arch": arch,
                    "sites": [s.name for s in catalog.sites.values() if arch in s.arches],
                })
    return images


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    if args.markdown and not args.settings:
        raise UsageError("--markdown goes with --settings")
    if args.settings:
        return show_settings(console, markdown=args.markdown)
    catalog = load_catalog(args.catalog)
    images = catalog_images(catalog)
    if console.json_mode:
        console.json({
            "catalog": str(catalog.path), "images": images,
            "releases": as_plain(catalog.releases), "variants": as_plain(catalog.variants),
            "sites": {k: as_plain(v) | {"disk_format": catalog.site_kinds[v.kind].disk_format}
                      for k, v in catalog.sites.items()},
            "sources": as_plain(catalog.sources),
        })
        return 0
    console.table(["IMAGE", "RELEASE", "VARIANT", "ARCH", "SITES"],
                  [(i["name"], i["release"], i["variant"], i["arch"], ",".join(i["sites"]))
                   for i in images])
    console.result("")
    console.table(["SITE", "KIND", "FORMAT", "ARCHES", "CLOUD"],
                  [(s.name, s.kind, catalog.site_kinds[s.kind].disk_format, ",".join(s.arches),
                    s.cloud) for s in catalog.sites.values()])
    console.result("")
    console.table(["SOURCE", "COMMIT", "URL"],
                  [(s.name, s.commit[:12], s.url) for s in catalog.sources.values()])
    return 0


def show_settings(console: Console, *, markdown: bool) -> int:
    rows = settings_rows()
    if console.json_mode:
        console.json({"settings": as_json(rows)})
    else:
        console.result(as_markdown(rows).rstrip("\n") if markdown else as_text(rows))
    return 0
