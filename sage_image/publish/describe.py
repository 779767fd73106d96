"""`sage-image describe OUTPUT_DIR`: the appliance description a Chameleon user reads.

Written from the build's own record (manifest.json) and, after publishing, published.json, so
what it says is what is in the image. Markdown for people, JSON for the appliance catalog.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..console import Console
from ..outfolder import Manifest, SitePublication, read_manifest, read_published

# Packages a Sage user asks about first, shown when the build recorded them.
KEY_PACKAGES = ("docker.io", "docker-ce", "docker-compose", "docker-compose-v2", "containerd",
                "cloud-init", "openssh-server", "python3", "git", "nvidia-driver", "nvidia-cuda-toolkit",
                "cuda-toolkit-12-4")
MAX_CHANGE_ROWS = 60  # the full list is in appliance.json and `sage-image diff`
COMMANDS = {
    "waggle-node": "`virtual-waggle up` / `down` / `logs` / `report` / `build DIR` / `run IMAGE`",
    "beehive-server": "`beehive-server deploy` (data in `$BEEHIVE_ROOT`, /var/lib/beehive)",
    "sage-ecr": "`sage-ecr start` / `stop` / `status` / `logs` (API on port 5000)",
    "edge-plugins": "example plugins, e.g. `virtual-waggle build /opt/edge-plugins/plugin-simple`",
    "cc-snapshot": "`sudo cc-snapshot` saves your instance as a new image",
}


def appliance_id_key(site: str) -> str:
    """CHI@UC -> chi_uc_appliance_id: the appliance catalog's per-site field names."""
    return site.lower().replace("@", "_").replace("-", "_") + "_appliance_id"


def describe(root: Path, m: Manifest) -> dict[str, Any]:
    image = m.identity
    published = read_published(root).sites
    sources = {name: {"url": s.url, "commit": s.commit, "path": s.path, "stand_in": s.stand_in}
               for name, s in m.sources.items()}
    packages = {k: v for k, v in m.packages.items() if k in KEY_PACKAGES}
    doc: dict[str, Any] = {
        "name": image.name,
        "description": (f"{image.family.title()} {image.os_version} ({image.arch}) with "
                        "Virtual Waggle, Beehive, the Sage Edge Code Repository and Docker "
                        "for the cc user." if image.variant != "base" else
                        f"Chameleon {image.family.title()} {image.os_version} base image."),
        "version": m.build_tag,
        "build": {k: m.properties[k] for k in (
            "build-tag", "build-timestamp", "build-repo", "build-repo-commit", "build-release",
            "build-variant", "build-arch")},
        "login": {"user": "cc", "how": "ssh cc@FLOATING_IP with the key pair chosen at launch"},
        "sources": sources,
        "stand_ins": list(m.stand_ins),
        "packages": packages,
        "sites": {site: {"image_id": p.image_id, "name": p.name}
                  for site, p in sorted(published.items())},
        "whats_new": whats_new(published),
        "keywords": ["sage", "waggle", "virtual-waggle", "beehive", "docker", image.family],
    }
    doc.update({appliance_id_key(site): p.image_id for site, p in published.items()})
    doc["documentation"] = render_markdown(doc)
    return doc


def whats_new(published: Mapping[str, SitePublication]) -> dict[str, Any]:
    """Per site: the changes against the image this build replaced there (publish records them
    in published.json), or that it is the first version there."""
    out: dict[str, Any] = {}
    for site, entry in sorted(published.items()):
        previous = entry.previous
        if previous is None:
            out[site] = {"first": True, "summary": "the first version at this site"}
        elif previous.changes is None:
            out[site] = {"replaced": previous.image_id,
                         "summary": previous.error or "changes unknown"}
        else:
            out[site] = {"replaced": previous.image_id, "replaced_version": previous.build_tag,
                         "summary": previous.changes["summary"],
                         "changes": previous.changes["changes"]}
    return out


def _whats_new_lines(news: Mapping[str, Any]) -> list[str]:
    if not news:
        return ["Not published yet: `sage-image diff OUT --site SITE` compares this build with "
                "the image users run there now."]
    lines: list[str] = []
    tables: dict[str, tuple[str, list[str]]] = {}
    for site, new in news.items():
        against = (f" (against `{new['replaced']}`, {new.get('replaced_version') or 'unknown version'})"
                   if new.get("replaced") else "")
        lines.append(f"- **{site}**{against}: {new['summary']}")
        rows = [f"| {section} | {c['name']} | {c['kind']} | {c.get('old') or ''} | "
                f"{c.get('new') or ''} |"
                for section, changes in (new.get("changes") or {}).items() for c in changes]
        if rows:
            key = "\n".join(rows)  # sites that got the same change list share one table
            tables.setdefault(key, ("", []))[1].append(site)
    for key, (_, sites) in tables.items():
        rows = key.split("\n")
        shown = rows[:MAX_CHANGE_ROWS]
        lines += ["", f"Changes at {', '.join(sites)}:", "",
                  "| what | name | change | old | new |", "|---|---|---|---|---|", *shown]
        if len(rows) > len(shown):
            lines.append(f"\n... and {len(rows) - len(shown)} more (`sage-image diff`).")
    return lines


def render_markdown(doc: Mapping[str, Any]) -> str:
    lines = [f"# {doc['name']}", "", doc["description"], "",
             f"Build `{doc['version']}` from {doc['build'].get('build-repo')} at commit "
             f"`{str(doc['build'].get('build-repo-commit'))[:12]}`.", "",
             "## Log in", "",
             "Launch an instance from this image with your key pair, attach a floating IP, then "
             "`ssh cc@FLOATING_IP`. `cc` has passwordless sudo.", "",
             "## Docker without sudo", "",
             "`cc` is in the `docker` group: `docker run --rm hello-world` and `docker-compose` "
             "work without sudo (the socket stays `root:docker 0660`).", "",
             "## Virtual Waggle, Beehive and the ECR", ""]
    for name, source in doc["sources"].items():
        what = COMMANDS.get(name, "")
        stand = " (a stand-in: the upstream was unreachable at build time)" \
            if source["stand_in"] else ""
        lines.append(f"- **{name}** in `{source['path']}`{stand}: {what}".rstrip(": "))
    lines += ["", "Register a Virtual Waggle node with a local Beehive: start Beehive "
              "(`beehive-server deploy`), set `WAGGLE_BEEHIVE_HOST=172.17.0.1`, copy "
              "`$BEEHIVE_ROOT/ssh_keys/beehive-registration-key` to "
              "`/opt/virtual-waggle/private/register.pem`, then `virtual-waggle up`.", "",
              "## Versions", "", "| source | commit | repository |", "|---|---|---|"]
    lines += [f"| {n} | `{s['commit']}` | {s['url']} |" for n, s in doc["sources"].items()]
    if doc["packages"]:
        lines += ["", "| package | version |", "|---|---|"]
        lines += [f"| {p} | {v} |" for p, v in sorted(doc["packages"].items())]
    lines += ["", "## What's new", "", *_whats_new_lines(doc.get("whats_new") or {})]
    lines += ["", "## Where", ""]
    if doc["sites"]:
        lines += ["| site | image ID |", "|---|---|"]
        lines += [f"| {s} | `{p['image_id']}` |" for s, p in doc["sites"].items()]
    else:
        lines.append("Not published yet (run `sage-image publish`).")
    return "\n".join(lines) + "\n"


def cmd_describe(args: argparse.Namespace, console: Console) -> int:
    root = args.output_dir
    doc = describe(root, read_manifest(root))
    md_path, json_path = root / "appliance.md", root / "appliance.json"
    md_path.write_text(doc["documentation"])
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    if console.json_mode:
        console.json(doc)
    else:
        console.result(doc["documentation"])
        console.info(f"wrote {md_path} and {json_path}")
    return 0
