"""The selection flags every release-level command shares: which part of the catalog matrix.

`sage-image release`, `ci github`, `ci k8s` take the same --releases/--variants/--arches/--sites,
so the plan a CI system runs is the plan `release` would run on this machine.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..catalog import Catalog
from ..cli_common import comma_list
from .plan import ReleasePlan, plan_release


@dataclass(frozen=True)
class Selection:
    """Empty tuples mean "everything in the catalog"."""

    releases: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()

    def plan(self, catalog: Catalog, *, publish: bool) -> ReleasePlan:
        return plan_release(catalog, releases=self.releases, variants=self.variants,
                            arches=self.arches, sites=self.sites, publish=publish)


def add_selection_flags(parser: argparse.ArgumentParser) -> None:
    for flag, example in (("releases", "bookworm,jammy"), ("variants", "base,sage"),
                          ("arches", "amd64"), ("sites", "CHI@UC,KVM@TACC")):
        parser.add_argument(f"--{flag}", type=comma_list, default=(), metavar="A,B",
                            help=f"catalog {flag}, comma-separated (e.g. {example}); default: all")


def selection_from_args(args: argparse.Namespace) -> Selection:
    return Selection(releases=args.releases, variants=args.variants, arches=args.arches,
                     sites=args.sites)
