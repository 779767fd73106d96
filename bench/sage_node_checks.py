#!/usr/bin/env python3
"""Benchmark what sage-node adds to the sage image: its boot-test checks and its size.

Boots the same sage build alternately with every check of its manifest and with every check but
sage-node's (`sage-node-*`), `--runs` times each, interleaved so that both see the same machine,
and reports each run, the medians and their difference (the issue's budget: 40 s on the median of
three). With `--before DIR` (a sage build without sage-node), the sizes of both builds' files.

usage: .venv/bin/python bench/sage_node_checks.py OUT_DIR [--runs N] [--before DIR] [--markdown]
example: .venv/bin/python bench/sage_node_checks.py out/bookworm-sage-amd64 --runs 3 --markdown
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.boot_test import run_once  # noqa: E402
from sage_image.outfolder import read_manifest  # noqa: E402

NODE_PREFIX = "sage-node-"
MIB = 1024 * 1024


def check_sets(out: Path) -> dict[str, str]:
    checks = read_manifest(out).checks
    node = [c for c in checks if c.startswith(NODE_PREFIX)]
    if not node:
        raise SystemExit(f"{out}: no {NODE_PREFIX}* checks in its manifest (not a sage build?)")
    return {"with sage-node": ",".join(checks),
            "without sage-node": ",".join(c for c in checks if c not in node)}


def sizes(out: Path) -> dict[str, int]:
    """The image files' sizes, from the folder (a build from before sage-node has a manifest of
    an older schema, which the contract no longer reads)."""
    return {fmt: round(sum(f.stat().st_size for f in out.glob(f"*.{fmt}")) / MIB)
            for fmt in ("qcow2", "raw")}


def markdown(rows: list[dict], medians: dict[str, float], size_rows: dict[str, dict]) -> str:
    lines = ["| run | checks | passed | boot to SSH (s) | checks (s) | boot + checks (s) | "
             "load (1 min) | slowest |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        slow = ", ".join(f"{n} {s:.0f}s" for s, n in r["slowest"])
        lines.append(f"| {i} | {r['set']} | {r['passed']} | {r['boot_s']} | {r['checks_s']} | "
                     f"{r['boot_to_checks_passed_s']} | {r['load_1min']} | {slow} |")
    lines += ["", "| median boot + checks | s |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in medians.items()]
    if size_rows:
        lines += ["", "| build | " + " | ".join(f"{k} (MiB)" for k in next(iter(size_rows.values())))
                  + " |", "|---|" + "---|" * len(next(iter(size_rows.values())))]
        lines += [f"| {name} | " + " | ".join(str(v) for v in row.values()) + " |"
                  for name, row in size_rows.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a sage build output folder (manifest.json)")
    parser.add_argument("--runs", type=int, default=3, help="boots per check set (default 3)")
    parser.add_argument("--before", type=Path, help="a sage build without sage-node, for sizes")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    sets = check_sets(args.out)
    rows = []
    for _ in range(args.runs):
        for name, checks in sets.items():
            row = run_once(args.out, firmware=False, accel="tcg", boot_timeout=2400, checks=checks)
            rows.append({"set": name, **row})
            print(f"{name}: {row['boot_to_checks_passed_s']} s, passed {row['passed']}",
                  file=sys.stderr)
    medians = {name: statistics.median(r["boot_to_checks_passed_s"] for r in rows
                                       if r["set"] == name) for name in sets}
    medians["added by sage-node's checks"] = round(
        medians["with sage-node"] - medians["without sage-node"], 1)
    size_rows = ({"before sage-node": sizes(args.before), "with sage-node": sizes(args.out)}
                 if args.before else {})
    print(markdown(rows, medians, size_rows) if args.markdown
          else json.dumps({"runs": rows, "medians": medians, "sizes_mib": size_rows}, indent=2))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
