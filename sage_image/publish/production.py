"""The production image at a site and its record, as `sage-image diff --site` compares with."""

from __future__ import annotations

from collections.abc import Sequence

from ..catalog.model import Catalog
from ..errors import RecordFailed, UsageError
from ..outfolder import Manifest
from .clouds import connect, resolve_targets, select_sites
from .failures import translated
from .publish import record_manifest
from .record import PROP_MANIFEST_SHA, PROP_PACKAGES_SHA, RecordError, packages_digest
from .site import SiteImage, list_images


def production_image(images: Sequence[SiteImage], name: str) -> SiteImage | None:
    """The active image holding the production name (publish keeps exactly one)."""
    holders = sorted((i for i in images if i.name == name and i.status == "active"),
                     key=lambda i: i.id)
    return holders[0] if holders else None


def production_manifest(catalog: Catalog, site: str, name: str, *,
                        local: tuple[Manifest, str]) -> tuple[Manifest, str, str]:
    """(the manifest of production image `name` at `site`, read from its record in the site's
    object store; a label for it; a note, or ""). `local` is the build compared with it (its
    manifest and sha256): when the store has lost the record but the image says it is that very
    build, the build's own manifest stands in, and the note says so."""
    target = resolve_targets(catalog, select_sites(catalog, [site], all_sites=False))[0]
    conn = connect(target)
    with translated(site, "cannot list images"):
        images = list_images(conn, name=name)
    image = production_image(images, name)
    if image is None:
        raise UsageError(f"{site}: no production image named '{name}'",
                         hint="publish it first, or compare two builds: sage-image diff A B")
    where = f"{site} image {image.id}"
    try:
        with translated(site, f"cannot read the record of {image.id}", failed=RecordFailed,
                        unreachable=RecordFailed):
            return record_manifest(conn, image, where=where), f"{site}: {image.id}", ""
    except RecordError as exc:
        manifest, sha256 = local
        if image.properties.get(PROP_MANIFEST_SHA) == sha256:
            return manifest, f"{site}: {image.id}", f"{exc.message}; the image is this very build"
        packages = image.properties.get(PROP_PACKAGES_SHA)
        if packages is None:
            raise
        same = ("the same as" if packages == packages_digest(manifest.packages)
                else "not the same as")
        raise RecordError(f"{exc.message}; by its {PROP_PACKAGES_SHA} its package list is "
                          f"{same} this build's", hint=exc.hint) from exc
