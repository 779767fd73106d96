"""The production image at a site, as `sage-image diff --site` compares with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog.model import Catalog
from ..errors import PublishError, UsageError
from .apply import _reason
from .clouds import connect, resolve_targets, select_sites
from .record import summary_from_properties
from .site import SiteImage, list_images


def production_image(images: Sequence[SiteImage], name: str) -> SiteImage | None:
    """The active image holding the production name (publish keeps exactly one)."""
    holders = sorted((i for i in images if i.name == name and i.status == "active"),
                     key=lambda i: i.id)
    return holders[0] if holders else None


def production_summary(catalog: Catalog, site: str, name: str) -> tuple[dict[str, Any], str]:
    """(the summary publish recorded on production image `name` at `site`, a label for it)."""
    target = resolve_targets(catalog, select_sites(catalog, [site], all_sites=False))[0]
    try:
        images = list_images(connect(target))
    except UsageError:
        raise
    except Exception as exc:
        raise PublishError(f"cannot list images: {_reason(exc)}", site=site) from exc
    image = production_image(images, name)
    if image is None:
        raise UsageError(f"{site}: no production image named '{name}'",
                         hint="publish it first, or compare two builds: sage-image diff A B")
    where = f"{site}: {image.id}"
    return summary_from_properties(image.properties, where=f"{site} image {image.id}"), where
