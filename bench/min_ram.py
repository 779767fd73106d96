#!/usr/bin/env python3
"""Measure a variant's min_ram: the smallest guest memory at which its whole boot test passes.

Boots a build with every check of its manifest at `--start` MiB (the boot test's own 2048 by
default, which the catalog's min_ram was set from), then `--step` MiB less
each time, until a boot test fails (or `--floor` is reached). The smallest memory that passed is
the measured min_ram (scs-0102-v2: enough to boot; here: enough for every check). Each row says
which checks failed and why the boot test stopped, so a failure from memory can be told from one
from a loaded machine (rerun that size).

usage: .venv/bin/python bench/min_ram.py OUT_DIR [--start MIB] [--step MIB] [--floor MIB]
                                         [--markdown]
example: .venv/bin/python bench/min_ram.py out/release/bookworm-base-amd64 --step 256 --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.boot_test import run_once  # noqa: E402
from sage_image.outfolder import read_manifest  # noqa: E402


def descend(out: Path, start: int, step: int, floor: int) -> list[dict]:
    manifest = read_manifest(out)
    rows, memory = [], start
    while memory >= floor:
        row = run_once(out, firmware=False, accel="tcg", boot_timeout=2400,
                       checks=",".join(manifest.checks), memory_mb=memory)
        rows.append({"memory_mb": memory, **row})
        print(f"{out.name} at {memory} MiB: passed {row['passed']}", file=sys.stderr)
        if not row["passed"]:
            break
        memory -= step
    return rows


def markdown(out: Path, rows: list[dict]) -> str:
    lines = [f"`{out.name}`", "", "| memory (MiB) | passed | boot + checks (s) | failed checks | "
             "error |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['memory_mb']} | {r['passed']} | {r['boot_to_checks_passed_s']} | "
                     f"{', '.join(r['failed']) or '-'} | {r['error'] or '-'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a build output folder (manifest.json)")
    parser.add_argument("--start", type=int, default=2048, help="first memory tried (default 2048)")
    parser.add_argument("--step", type=int, default=256, help="MiB less each boot (default 256)")
    parser.add_argument("--floor", type=int, default=256, help="lowest memory tried (default 256)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    rows = descend(args.out, args.start, args.step, args.floor)
    passed = [r["memory_mb"] for r in rows if r["passed"]]
    result = {"build": args.out.name, "min_ram_mb": min(passed) if passed else None, "runs": rows}
    print(markdown(args.out, rows) if args.markdown else json.dumps(result, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
