#!/usr/bin/env python3
"""Benchmark `sage-image test`: boot-to-all-checks-passed for a built image.

Runs the real command (no mocks) and reports, per run: the wall time of the whole command, the
time from QEMU start to SSH (boot), the checks' wall time (they run concurrently: from SSH up to
the last result), and boot + checks ("boot to all checks passed"). The 1-minute load average is
recorded too: on a shared 2-core machine, TCG speed depends on what else runs.

usage: .venv/bin/python bench/boot_test.py OUT_DIR [--runs N] [--firmware-runs N]
                                           [--uefi-runs N] [--checks A,B] [--accel tcg]
                                           [--markdown]
example: .venv/bin/python bench/boot_test.py /work/images/bookworm-sage --runs 2 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(out: Path, *, firmware: bool, accel: str, boot_timeout: float, uefi: bool = False,
             checks: str = "", memory_mb: int | None = None) -> dict:
    # A hard-linked copy: results go there, the shared build folder is left alone.
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        copy = Path(tmp) / out.name
        shutil.copytree(out, copy, copy_function=os.link,
                        ignore=shutil.ignore_patterns("test-results.json", "test-logs"))
        argv = [sys.executable, "-m", "sage_image.cli", "test", str(copy), "--json",
                "--accel", accel, "--boot-timeout", str(boot_timeout)]
        argv += ["--firmware"] if firmware else []
        argv += ["--uefi"] if uefi else []
        argv += ["--checks", checks] if checks else []
        argv += ["--memory", str(memory_mb)] if memory_mb else []
        load = os.getloadavg()[0]
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
        wall = time.monotonic() - start
    report = json.loads(proc.stdout)
    checks = report.get("checks_seconds")
    if checks is None:  # results written before checks ran concurrently
        checks = sum(c["seconds"] for c in report["checks"])
    boot = report["boot_seconds"] or 0.0
    mode = report["mode"] + (" (UEFI)" if uefi else " (SeaBIOS)" if firmware else "")
    return {"mode": mode, "accel": report["accel"], "passed": report["passed"],
            "wall_s": round(wall, 1), "boot_s": boot, "checks_s": round(checks, 1),
            "boot_to_checks_passed_s": round(boot + checks, 1), "load_1min": round(load, 2),
            "slowest": sorted(((c["seconds"], c["name"]) for c in report["checks"]),
                              reverse=True)[:3],
            "failed": [c["name"] for c in report["checks"] if not c["passed"]],
            "error": report.get("error")}


def markdown(rows: list[dict]) -> str:
    lines = ["| mode | accel | passed | boot to SSH (s) | checks (s) | boot to all checks passed "
             "(s) | command wall (s) | load (1 min) | slowest checks |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        slow = ", ".join(f"{n} {s:.0f}s" for s, n in r["slowest"])
        lines.append(f"| {r['mode']} | {r['accel']} | {r['passed']} | {r['boot_s']} | "
                     f"{r['checks_s']} | **{r['boot_to_checks_passed_s']}** | {r['wall_s']} | "
                     f"{r['load_1min']} | {slow} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a build output folder (manifest.json)")
    parser.add_argument("--runs", type=int, default=1, help="direct-boot runs (default 1)")
    parser.add_argument("--firmware-runs", type=int, default=1,
                        help="SeaBIOS boot runs (default 1; each takes minutes under TCG)")
    parser.add_argument("--uefi-runs", type=int, default=0, help="OVMF boot runs (default 0)")
    parser.add_argument("--checks", default="", help="only these checks (default: all)")
    parser.add_argument("--accel", default="tcg", choices=("tcg", "kvm", "auto"))
    parser.add_argument("--boot-timeout", type=float, default=2400,
                        help="per boot (default 2400 s: a loaded machine slows TCG a lot)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    common = {"accel": args.accel, "boot_timeout": args.boot_timeout, "checks": args.checks}
    rows = [run_once(args.out, firmware=False, **common) for _ in range(args.runs)]
    rows += [run_once(args.out, firmware=True, **common) for _ in range(args.firmware_runs)]
    rows += [run_once(args.out, firmware=True, uefi=True, **common) for _ in range(args.uefi_runs)]
    print(markdown(rows) if args.markdown else json.dumps(rows, indent=2))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
