"""`sage-image images` (every version at every site) and `sage-image prune` (hide, then delete).

plan_prune() is pure; the commands gather each site's images in parallel and apply the plan.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..catalog.commands import catalog_images
from ..catalog.model import Catalog, load_catalog
from ..console import Console
from ..errors import PublishError, UsageError
from .clouds import (
    SiteTarget,
    compute_endpoint,
    connect,
    known_clouds,
    resolve_targets,
    select_sites,
)
from .failures import contain
from .plan import PROP_BACKDATED_AT, TEMP_MARK, _parse_created
from .site import SiteImage, delete_image, images_in_use, list_images, patch_image

if TYPE_CHECKING:
    from openstack.connection import Connection

LEFTOVER_AGE = timedelta(days=1)  # a temporary upload older than this belongs to a dead run


@dataclass(frozen=True)
class SiteImages:
    target: SiteTarget
    images: tuple[SiteImage, ...]
    error: str = ""


def family_of(image: SiteImage, names: Collection[str]) -> str | None:
    """The production name an image belongs to (by name or by its build-image-name)."""
    if image.name in names:
        return image.name
    owner = image.properties.get("build-image-name")
    if owner in names:
        return owner
    base = image.name.split(TEMP_MARK)[0]
    return base if TEMP_MARK in image.name and base in names else None


def role_of(image: SiteImage, family: str) -> str:
    if TEMP_MARK in image.name:
        return "leftover upload"
    if image.name == family:
        return "production"
    return "backdated (hidden)" if image.hidden else "backdated"


# -- gathering ------------------------------------------------------------------------------

def targets_for(catalog: Catalog, args: argparse.Namespace) -> list[SiteTarget]:
    """Explicit --sites must all be configured; by default, every site clouds.yaml knows."""
    sites = select_sites(catalog, args.sites, all_sites=args.all_sites)
    if not args.sites and not args.all_sites:
        known = known_clouds()
        sites = [s for s in sites if s.cloud in known] or sites[:0]
        if not sites:
            raise UsageError("no catalog site has a cloud in clouds.yaml",
                             hint="see docs/publishing.md (credentials)")
    return resolve_targets(catalog, sites)


def gather(targets: Sequence[SiteTarget]) -> list[SiteImages]:
    def one(target: SiteTarget) -> SiteImages:
        images = contain(target.name, lambda: tuple(list_images(connect(target))),
                         doing="cannot list images")
        if isinstance(images, PublishError):
            return SiteImages(target, (), images.reason)
        return SiteImages(target, images)

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        return list(pool.map(one, targets))


def wanted_names(catalog: Catalog, name: str | None) -> set[str]:
    names = {i["name"] for i in catalog_images(catalog)}
    if name is None:
        return names
    return {name}


# -- images ---------------------------------------------------------------------------------

def image_rows(gathered: Sequence[SiteImages], names: Collection[str]) -> list[dict[str, object]]:
    rows = []
    for site in gathered:
        for image in site.images:
            family = family_of(image, names)
            if family is None:
                continue
            stamp = image.build_timestamp
            rows.append({
                "name": family, "site": site.target.name, "image": image.name, "id": image.id,
                "role": role_of(image, family), "build_tag": image.properties.get("build-tag"),
                "built": (datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
                          if stamp is not None else None),
                "commit": image.properties.get("build-repo-commit"),
                "sha512": image.sha512, "disk_format": site.target.disk_format,
                "visibility": image.visibility})
    rows.sort(key=lambda r: (r["name"], r["role"] != "production", str(r["built"]), r["site"]),
              reverse=False)
    return rows


def agreement(rows: Sequence[dict[str, object]], sites: Sequence[str]) -> dict[str, dict]:
    """Per production name: do all sites run the same build, with one checksum per format?"""
    result = {}
    for name in sorted({str(r["name"]) for r in rows}):
        prod = {str(r["site"]): r for r in rows if r["name"] == name and r["role"] == "production"}
        tags = {s: (prod[s]["build_tag"] if s in prod else None) for s in sites}
        by_format: dict[str, set[object]] = {}
        for r in prod.values():
            by_format.setdefault(str(r["disk_format"]), set()).add(r["sha512"])
        agree = len(set(tags.values())) == 1 and None not in tags.values() and all(
            len(v) == 1 for v in by_format.values())
        result[name] = {"agree": agree, "production_build_tags": tags}
    return result


def cmd_images(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    gathered = gather(targets_for(catalog, args))
    rows = image_rows(gathered, wanted_names(catalog, args.name))
    sites = [g.target.name for g in gathered if not g.error]
    agree = agreement(rows, sites)
    errors = {g.target.name: g.error for g in gathered if g.error}
    if console.json_mode:
        console.json({"images": rows, "agreement": agree, "errors": errors})
        return 1 if errors else 0
    console.table(["NAME", "SITE", "ROLE", "IMAGE", "BUILT (UTC)", "COMMIT", "SHA512", "ID"],
                  [(r["image"] if r["role"] != "production" else r["name"], r["site"], r["role"],
                    r["build_tag"] or "-", r["built"] or "-", str(r["commit"] or "-")[:10],
                    str(r["sha512"] or "-")[:12], r["id"]) for r in rows])
    for name, a in agree.items():
        if a["agree"]:
            tag = next(iter(a["production_build_tags"].values()))
            console.result(f"{name}: the sites agree ({tag})")
        else:
            tags = ", ".join(f"{s}={t or 'none'}" for s, t in a["production_build_tags"].items())
            console.result(f"{name}: the sites DIFFER ({tags})")
    for site, error in errors.items():
        console.warn(f"{site}: {error}")
    return 1 if errors else 0


# -- prune ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PruneRule:
    hide_after: timedelta
    delete_after: timedelta
    keep: int


@dataclass(frozen=True)
class PruneAction:
    site: str
    image: SiteImage
    action: str  # hide / delete / keep
    reason: str


def replaced_at(image: SiteImage) -> datetime:
    """When an image stopped being production (publish records it), else its upload time."""
    text = image.properties.get(PROP_BACKDATED_AT)
    return _parse_created(text) if text else _parse_created(image.created_at)


def plan_prune(site: str, images: Sequence[SiteImage], names: Collection[str], *,
               rule: PruneRule, now: datetime, in_use: Collection[str],
               in_use_known: bool) -> list[PruneAction]:
    """Never the production image; never an image a server uses; the newest `keep` backdated
    versions of each name stay whatever their age."""
    actions = []
    families: dict[str, list[SiteImage]] = {}
    for image in images:
        family = family_of(image, names)
        if family is not None and image.name != family:
            families.setdefault(family, []).append(image)
    for family in sorted(families):
        old = [i for i in families[family] if TEMP_MARK not in i.name]
        old.sort(key=lambda i: (i.build_timestamp or 0, i.created_at), reverse=True)
        for rank, image in enumerate(old):
            actions.append(_prune_one(site, image, rank, rule, now, in_use, in_use_known))
        for temp in (i for i in families[family] if TEMP_MARK in i.name):
            age = now - _parse_created(temp.created_at)
            actions.append(PruneAction(site, temp, "delete" if age > LEFTOVER_AGE else "keep",
                                       f"leftover upload, {_days(age)} old"))
    return actions


def _prune_one(site: str, image: SiteImage, rank: int, rule: PruneRule, now: datetime,
               in_use: Collection[str], in_use_known: bool) -> PruneAction:
    age = now - replaced_at(image)
    old = f"replaced {_days(age)} ago"

    def keep(reason: str) -> PruneAction:
        return PruneAction(site, image, "keep", reason)

    if rank < rule.keep:
        return keep(f"{old}; one of the newest {rule.keep}")
    if image.id in in_use:
        return keep(f"{old}; in use by a server")
    if image.protected:
        return keep(f"{old}; protected")
    if age >= rule.delete_after:
        if not in_use_known:
            return keep(f"{old}; cannot ask Nova whether a server uses it")
        return PruneAction(site, image, "delete", old)
    if age >= rule.hide_after and not image.hidden:
        return PruneAction(site, image, "hide", old)
    return keep(old + ("; hidden" if image.hidden else ""))


def _days(delta: timedelta) -> str:
    return f"{max(delta.days, 0)}d"


def cmd_prune(args: argparse.Namespace, console: Console) -> int:
    catalog = load_catalog(args.catalog)
    policy = catalog.publish
    rule = PruneRule(hide_after=timedelta(days=args.hide_after or policy.hide_after_days),
                     delete_after=timedelta(days=args.delete_after or policy.delete_after_days),
                     keep=policy.keep if args.keep is None else args.keep)
    if rule.delete_after < rule.hide_after:
        raise UsageError("--delete-after must not be shorter than --hide-after")
    names = wanted_names(catalog, args.name)
    now = datetime.now(timezone.utc)
    plans, errors = [], {}
    for site in gather(targets_for(catalog, args)):
        if site.error:
            errors[site.target.name] = site.error
            continue
        plans.append((site.target, _site_prune(site, names, rule, now)))
    actions = [a for _, (acts, _) in plans for a in acts]
    notes = [f"{t.name}: {note}" for t, (_, note) in plans if note]
    if not console.json_mode:
        console.result("plan (dry run):" if args.dry_run else "plan:")
        console.table(["SITE", "IMAGE", "ID", "ACTION", "WHY"],
                      [(a.site, a.image.name, a.image.id, a.action, a.reason) for a in actions])
        for note in notes:
            console.info(note)
    done = [] if args.dry_run else _apply_prune([t for t, _ in plans], actions, errors)
    if console.json_mode:
        console.json({"dry_run": args.dry_run, "notes": notes, "errors": errors,
                      "actions": [{"site": a.site, "image": a.image.name, "id": a.image.id,
                                   "action": a.action, "reason": a.reason} for a in actions],
                      "done": done})
    else:
        for line in done:
            console.result(line)
        for site, error in errors.items():
            console.warn(f"{site}: {error}")
    return 1 if errors else 0


def _site_prune(site: SiteImages, names: Collection[str], rule: PruneRule,
                now: datetime) -> tuple[list[PruneAction], str]:
    candidates = [i.id for i in site.images if family_of(i, names) not in (None, i.name)]
    note, in_use, known = "", set(), True
    if candidates:
        conn = connect(site.target)
        if compute_endpoint(conn):
            servers = contain(site.target.name, lambda: images_in_use(conn, candidates))
            if isinstance(servers, PublishError):
                known, note = False, f"cannot list servers ({servers.reason}): nothing is deleted"
            else:
                in_use = servers
        else:
            note = "no compute endpoint: no server can use its images"
    return plan_prune(site.target.name, site.images, names, rule=rule, now=now, in_use=in_use,
                      in_use_known=known), note


def _apply_prune(targets: Sequence[SiteTarget], actions: Sequence[PruneAction],
                 errors: dict[str, str]) -> list[str]:
    conns = {t.name: connect(t) for t in targets}
    done = []
    for a in actions:
        if a.action == "keep":
            continue
        outcome = contain(a.site, lambda a=a: _carry_out(conns[a.site], a),
                          doing=f"{a.action} {a.image.id} failed")
        if isinstance(outcome, PublishError):
            errors[a.site] = outcome.reason
        else:
            done.append(f"{a.site}: {a.action} {a.image.name} ({a.image.id}): done")
    return done


def _carry_out(conn: Connection, action: PruneAction) -> None:
    if action.action == "hide":
        patch_image(conn, action.image, hidden=True)
    else:
        delete_image(conn, action.image.id)
