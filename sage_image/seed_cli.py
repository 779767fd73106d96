"""`create-image`: the seed tool's command line, kept working on top of `sage-image build`.

    create-image --release bionic --variant sage --region CHI@UC [--kvm]

ends with ``Image built in PATH`` (Chameleon's CI parses that line). Releases may be given as
the seed's code names; ``--region`` is a catalog site.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .builder.build import BuildOptions, Reporter, build_image
from .builder.cache import default_cache_root
from .builder.plan import BuildRequest, parse_source_override, plan_build
from .builder.provenance import builder_commit
from .catalog import load_catalog
from .cli import install_sigterm_handler, report_error
from .console import Console, Progress
from .errors import Interrupted, SageImageError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="create-image", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a Chameleon-Sage image (compatibility front end of sage-image build).",
        epilog="example:\n  create-image --release bionic --variant sage --region CHI@UC")
    p.add_argument("--release", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--region", required=True, help="Chameleon site, e.g. CHI@UC")
    p.add_argument("--kvm", action="store_true", help="build for KVM (raw image)")
    p.add_argument("--arch", default="amd64")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--allow-stand-ins", action="store_true")
    p.add_argument("--debug", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console()
    install_sigterm_handler()
    try:
        catalog = load_catalog()
        sites: tuple[str, ...] = (args.region,)
        if args.kvm:
            kvm_sites = [s for s in catalog.sites.values()
                         if catalog.site_kinds[s.kind].disk_format == "raw"]
            # The seed's --kvm meant "the KVM cloud of this region's campus".
            sites = tuple(s.name for s in kvm_sites
                          if s.name.split("@")[-1] == args.region.split("@")[-1]) or \
                tuple(s.name for s in kvm_sites)
        request = BuildRequest(
            release=args.release, variant=args.variant, arch=args.arch, sites=sites,
            out_dir=args.out, source_overrides=tuple(parse_source_override(s)
                                                     for s in args.source),
            timestamp=int(time.time()), builder_commit=builder_commit())
        plan = plan_build(catalog, request)
        options = BuildOptions(cache_root=default_cache_root(),
                               allow_stand_ins=args.allow_stand_ins)
        with Progress(console, plan.identity.name) as progress:
            manifest = build_image(plan, options, Reporter(phase=progress.set_phase,
                                                           warn=console.warn))
    except KeyboardInterrupt:
        return report_error(Interrupted("interrupted; cleaned up"), console, debug=args.debug)
    except SageImageError as exc:
        return report_error(exc, console, debug=args.debug)
    image = next(iter(manifest.files.values())).path
    print(f"Image built in {(plan.out_dir / image).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
