"""The catalog of releases, variants, arches, sites and pinned sources (catalog.yaml)."""

from .model import (
    DEFAULT_CATALOG,
    Arch,
    Builder,
    Catalog,
    Release,
    Site,
    SiteKind,
    Source,
    Variant,
    load_catalog,
)

__all__ = ["DEFAULT_CATALOG", "Arch", "Builder", "Catalog", "Release", "Site", "SiteKind",
           "Source", "Variant", "load_catalog"]
