"""`sage-image test`: boot a built image in QEMU and run its acceptance checks."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..cli_common import (
    add_catalog_flag,
    add_checks_file_flag,
    add_command,
    add_json_flag,
    comma_list,
    positive_seconds,
)
from ..console import Console, Progress
from ..errors import UsageError
from ..folders import check_file
from .boot.configdrive import KINDS
from .boot.ssh import SshTarget
from .checks.results import TestReport, check_line, summary_table
from .checks.runner import CheckResult
from .checks.session import Events, TestRequest, test_image


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "test", help="boot a built image in QEMU and check it works for a Chameleon user",
        description="Boot the image (copy-on-write overlay; the image is never modified) with "
                    "an OpenStack config drive, log in as cc with a throw-away key, run the "
                    "variant's checks, and write test-results.json into the output folder "
                    "(publish refuses an image without a pass of every check of its variant: "
                    "a run with --checks or --keep-running does not count). Exit 0 only if "
                    "all pass.",
        example="sage-image test out/bookworm-sage --junit out/bookworm-sage/junit.xml")
    p.add_argument("path", type=Path, metavar="PATH_OR_OUTPUT_DIR",
                   help="a build output folder (manifest.json) or an image file")
    p.add_argument("--checks", type=comma_list, default=(), metavar="NAME,...",
                   help="run only these checks (default: the variant's checks from the catalog)")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the VM up after the checks and print the ssh command; Ctrl-C ends")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    p.add_argument("--firmware", action="store_true",
                   help="boot through the image's bootloader (BIOS/UEFI) instead of its kernel "
                        "directly; complete but slow under TCG (minutes)")
    p.add_argument("--uefi", action="store_true", help="with --firmware on x86_64: UEFI (OVMF)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM only if a probe boots the image's kernel under it (default)")
    p.add_argument("--metadata", choices=KINDS, default="configdrive",
                   help="how metadata reaches cloud-init (default: configdrive, as on Chameleon)")
    p.add_argument("--format", dest="disk_format", choices=("qcow2", "raw"),
                   help="which of the output folder's files to boot (default: raw, else qcow2)")
    p.add_argument("--variant", help="variant of a bare image file (default: base)")
    p.add_argument("--boot-timeout", type=positive_seconds, metavar="S",
                   help="hard limit for the guest to accept SSH (default: 600 direct, 1800 "
                        "firmware)")
    p.add_argument("--memory", type=int, default=2048, metavar="MIB",
                   help="the guest's memory (default 2048); the catalog's variants.*.min_ram "
                        "is the least an image passes every check with")
    p.add_argument("--check-timeout", type=positive_seconds, metavar="S",
                   help="hard limit per check (default: each check's own, usually 120)")
    add_catalog_flag(p)
    add_checks_file_flag(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace, console: Console) -> int:
    if args.uefi and not args.firmware:
        raise UsageError("--uefi only applies with --firmware")
    if not 128 <= args.memory <= 1 << 20:
        raise UsageError(f"--memory {args.memory}: expected MiB from 128 to 1048576")
    if args.junit:  # written after the boot test: refuse a place it cannot go before booting
        check_file(args.junit, option="--junit")
    request = TestRequest(
        path=args.path, checks=args.checks, mode="firmware" if args.firmware else "direct",
        accel=args.accel, metadata=args.metadata, disk_format=args.disk_format,
        variant=args.variant, boot_timeout=args.boot_timeout, check_timeout=args.check_timeout,
        uefi=args.uefi, junit=args.junit, catalog=args.catalog, definitions=args.checks_file,
        memory_mb=args.memory)
    with Progress(console, f"test {args.path}") as progress:
        events = Events(phase=progress.set_phase,
                        check_started=lambda c: progress.set_phase(f"check {c.name}"),
                        check_done=lambda r: _show_check(console, r),
                        hold=(lambda t: _hold(console, t)) if args.keep_running else None)
        report = test_image(request, events)
    _show_report(console, report, args)
    return 0 if report.passed else 1


def _show_check(console: Console, result: CheckResult) -> None:
    if not console.json_mode:
        console.info(check_line(result))


def _hold(console: Console, target: SshTarget) -> None:
    console.info(f"\nVM is running (--keep-running). Log in with:\n  {target.command_line()}\n"
                 "Press Ctrl-C to stop it and clean up.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.info("stopping the VM")


def _show_report(console: Console, report: TestReport, args: argparse.Namespace) -> None:
    if console.json_mode:
        console.json(report.to_dict())
        return
    console.result(summary_table(report))
    verdict = "PASSED" if report.passed else "FAILED"
    boot = f"boot {report.boot_seconds:.0f} s, " if report.boot_seconds is not None else ""
    mode = f"{report.mode} ({report.firmware})" if report.firmware else report.mode
    console.result(f"\n{report.name}: {verdict} ({boot}{mode}, {report.accel}; "
                   f"{len(report.checks) - len(report.failed())}/{len(report.checks)} checks "
                   "passed)")
    if report.error:
        console.warn(f"the guest could not be tested: {report.error}")
    if report.restricted_by:
        console.warn(f"this run does not qualify for publishing ({', '.join(report.restricted_by)})"
                     f": publish needs a pass of every check of the variant; run "
                     f"'sage-image test {args.path}' without those options")
    for log in report.logs:
        console.info(f"kept log: {log}")
    if args.junit:
        console.info(f"JUnit XML: {args.junit}")
