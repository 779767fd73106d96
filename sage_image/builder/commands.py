"""`sage-image plan` and `sage-image build`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

from ..catalog import load_catalog
from ..cli_common import add_catalog_flag, add_command, add_json_flag
from ..console import Console, Progress, format_seconds
from ..errors import BuildError
from ..outfolder import Manifest, manifest_path
from ..values import as_plain
from .build import LOG, BuildOptions, Reporter, build_image
from .cache import default_cache_root
from .plan import (
    ADMIN_UID,
    ADMIN_USER,
    BuildPlan,
    BuildRequest,
    parse_source_override,
    plan_build,
)
from .provenance import builder_commit

EXAMPLE_BUILD = "sage-image build --release bookworm --variant sage --out out/bookworm-sage"


def add_request_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", required=True, help="catalog release, e.g. bookworm, jammy")
    parser.add_argument("--variant", required=True, help="catalog variant: base, sage, gpu")
    parser.add_argument("--arch", default="amd64", help="amd64 (default) or arm64")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--site", action="append", default=[], metavar="SITE",
                        help="build for this site only (repeatable); default: every site")
    target.add_argument("--kvm", action="store_true", help="build for the KVM sites")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: out/RELEASE-VARIANT-ARCH)")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=URL[@COMMIT]",
                        help="fetch a source from elsewhere (a URL or a local git repository)")
    parser.add_argument("--compression", choices=("zlib", "zstd"), default=None,
                        help="qcow2 compression (zstd needs OpenStack Xena or newer)")
    parser.add_argument("--admin-user", nargs="?", const=ADMIN_USER, default=None, metavar="NAME",
                        help=f"add an admin user, uid/gid {ADMIN_UID} (default name "
                             f"{ADMIN_USER}; needs --admin-keys)")
    parser.add_argument("--admin-keys", type=Path, default=None, metavar="FILE",
                        help="SSH public keys for --admin-user")
    autologin = parser.add_mutually_exclusive_group()
    autologin.add_argument("--no-serial-autologin", dest="serial_autologin",
                           action="store_false", default=True,
                           help="no automatic login of cc on the serial consoles (default: on, "
                                "as Chameleon requires)")
    # Kept for old command lines: autologin is the default now.
    autologin.add_argument("--serial-autologin", dest="serial_autologin", action="store_true",
                           help=argparse.SUPPRESS)
    parser.add_argument("--from-layer", type=Path, default=None, metavar="FILE",
                        help="start from the parent variant's saved layer instead of debootstrap")
    parser.add_argument("--save-layer", type=Path, default=None, metavar="FILE",
                        help="save this build's root filesystem as a layer for child variants")
    parser.add_argument("--layer-only", action="store_true",
                        help="with --save-layer: make only the layer, no image files")
    parser.add_argument("--pip-index-url", default=None, metavar="URL",
                        help="Python package index for the image's pinned Python tools "
                             "(a mirror; default: the catalog's, PyPI)")
    add_catalog_flag(parser)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "plan", help="show what a build would do, without building",
                    example="sage-image plan --release jammy --variant gpu --json")
    add_request_flags(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_plan)

    p = add_command(sub, "build", help="build an image with diskimage-builder",
                    example=EXAMPLE_BUILD)
    add_request_flags(p)
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="cache for sources and diskimage-builder (default ~/.cache/sage-image)")
    p.add_argument("--allow-stand-ins", action="store_true",
                   help="when an upstream source is unreachable, build with a generated, "
                        "clearly labelled stand-in instead of failing")
    add_json_flag(p)
    p.set_defaults(func=cmd_build)


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    return BuildRequest(
        release=args.release, variant=args.variant, arch=args.arch, sites=tuple(args.site),
        kvm=args.kvm, out_dir=args.out,
        source_overrides=tuple(parse_source_override(s) for s in args.source),
        compression=args.compression, admin_user=args.admin_user, admin_keys=args.admin_keys,
        serial_autologin=args.serial_autologin, timestamp=int(time.time()),
        from_layer=args.from_layer, save_layer=args.save_layer, layer_only=args.layer_only,
        builder_commit=builder_commit(), pip_index_url=args.pip_index_url,
    )


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    plan = plan_build(load_catalog(args.catalog), request_from_args(args))
    if console.json_mode:
        plain = as_plain(plan)
        console.json(plain.pop("identity") | plain)  # flat, as the manifest names an image
        return 0
    image = plan.identity
    rows = [("image", image.name), ("release", f"{image.release} ({image.family} {image.os_version})"),
            ("arch", image.arch), ("sites", ", ".join(plan.sites)),
            ("formats", ", ".join(plan.formats) + f" (qcow2 compression {plan.compression})"),
            ("elements", " ".join(plan.elements)), ("mirror", plan.mirror),
            ("output", str(plan.out_dir)), ("checks", ", ".join(plan.checks))]
    if plan.layout:
        parts = ", ".join(f"{p.name} {p.size}" + (f" {p.fs} {p.mount}" if p.fs else "")
                          for p in plan.layout.partitions)
        rows.append(("layout", f"{plan.layout.name}: {plan.layout.label} ({parts}); boots "
                               f"{' + '.join(plan.layout.firmware)}"))
    if plan.python:
        rows.append(("python", f"{plan.python.venv} from {plan.python.lock} (Python "
                               f"{plan.python.python})" if plan.python.lock else
                     f"no Python lock for {plan.identity.release} in the catalog: the build refuses"))
    if plan.node_python:
        rows.append(("node python", f"{plan.node_python.venv} from {plan.node_python.lock}"
                     if plan.node_python.lock else
                     f"no node_python lock for {plan.identity.release}: the build refuses"))
    if plan.cuda:
        rows.append(("cuda", f"CUDA {plan.cuda.version}, NVIDIA driver {plan.cuda.driver}"
                             if plan.cuda.version else
                     f"no CUDA version for {plan.identity.release} in the catalog: the build refuses"))
    rows.append(("kernel cmdline", plan.boot_cmdline))
    rows += [(f"source {s.name}", f"{s.url} @ {s.commit or 'HEAD'} -> {s.path}")
             for s in plan.sources]
    rows += [(f"env {k}", v) for k, v in sorted(plan.env.items())]
    console.table(["", "plan"], rows)
    return 0


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    plan = plan_build(load_catalog(args.catalog), request_from_args(args))
    options = BuildOptions(cache_root=args.cache or default_cache_root(),
                           allow_stand_ins=args.allow_stand_ins)
    image = plan.identity
    label = f"{image.name} ({image.release}/{image.variant}/{image.arch})"
    with Progress(console, label) as progress:
        reporter = Reporter(phase=progress.set_phase, warn=lambda m: _loud_warning(console, m))
        try:
            manifest = build_image(plan, options, reporter)
        except BuildError as exc:
            _show_failure(console, exc)
            raise
        elapsed = progress.elapsed
    return report_build(console, plan, manifest, elapsed)


def _loud_warning(console: Console, message: str) -> None:
    banner = "*" * 78
    console.warn(f"\n{banner}\n{message}\n{banner}")


def _show_failure(console: Console, exc: BuildError) -> None:
    if exc.log_tail and not console.json_mode:
        console.info(f"--- last lines of {exc.log_path} ---\n{exc.log_tail}\n---")


def report_build(console: Console, plan: BuildPlan, manifest: Manifest, elapsed: float) -> int:
    out = plan.out_dir
    if console.json_mode:
        console.json({"ok": True, "out": str(out), "elapsed": round(elapsed, 1),
                      "manifest": msgspec.to_builtins(manifest)})
        return 0
    if not manifest.files:
        console.info(f"saved layer {plan.save_layer}")
    console.table(["FILE", "FORMAT", "SIZE", "SHA256"],
                  [(f.path, fmt, f"{f.size / 2**20:.0f} MiB", f.sha256[:16])
                   for fmt, f in manifest.files.items()])
    if manifest.stand_ins:
        console.warn(f"built with STAND-IN sources: {', '.join(manifest.stand_ins)}")
    sbom = f", SBOM {out / manifest.sbom.path}" if manifest.sbom else ""
    console.info(f"built {plan.identity.name} in {format_seconds(elapsed)}; manifest "
                 f"{manifest_path(out)}{sbom}, log {out / LOG}")
    return 0
