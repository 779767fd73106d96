#!/usr/bin/env python3
"""Benchmark: wall time of `base` and `sage` builds (cold and warm cache), time per phase, and
image sizes (qcow2 zlib, qcow2 zstd, raw). Run as root from the repository:

    .venv/bin/python bench/build.py [--release bookworm] [--out /var/tmp/sage-bench]

Cold = an empty cache folder (sources, debootstrap tarball, apt archive all fetched);
warm = the same build again with that cache. Sources are the stand-ins (this machine cannot
reach GitHub), which does not change the timing of anything but the tiny source fetch.
Prints a Markdown table for docs/benchmarks.md and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sage_image.outfolder import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def build(variant: str, release: str, out: Path, cache: Path) -> dict:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "sage_image.cli", "build", "--release", release,
                    "--variant", variant, "--allow-stand-ins", "--out", str(out),
                    "--cache", str(cache)], check=True, cwd=ROOT,
                   stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    manifest = read_manifest(out)
    return {"wall": round(wall, 1), "phases": manifest.phases,
            "sizes": {fmt: f.size for fmt, f in manifest.files.items()},
            "raw_path": str(out / manifest.files["raw"].path)}


def zstd_size(raw: str, dest: Path) -> tuple[int, float]:
    start = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o",
                    "compression_type=zstd", raw, str(dest)], check=True)
    seconds = time.monotonic() - start
    size = dest.stat().st_size
    dest.unlink()
    return size, round(seconds, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="bookworm")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/sage-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    cache = args.out / "cache"
    results: dict[str, dict] = {}
    for variant in ("base", "sage"):
        for temperature in ("cold", "warm"):
            if temperature == "cold":
                shutil.rmtree(cache / "dib", ignore_errors=True)  # apt archive + debootstrap
            key = f"{variant}-{temperature}"
            results[key] = build(variant, args.release, args.out / key, cache)
            print(f"{key}: {results[key]['wall']} s", file=sys.stderr)
        size, seconds = zstd_size(results[f"{variant}-warm"]["raw_path"],
                                  args.out / "zstd.qcow2")
        results[f"{variant}-warm"]["sizes"]["qcow2-zstd"] = size
        results[f"{variant}-warm"]["zstd_seconds"] = seconds
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def markdown(results: dict[str, dict]) -> str:
    mib = 2**20
    lines = ["| build | wall (s) | " + " | ".join(PHASES) + " |",
             "|---|---:|" + "---:|" * len(PHASES)]
    for key, r in results.items():
        cells = [str(round(r["phases"].get(p, 0.0), 1)) for p in PHASES]
        lines.append(f"| {key} | {r['wall']} | " + " | ".join(cells) + " |")
    lines += ["", "| image | qcow2 zlib (MiB) | qcow2 zstd (MiB) | raw (MiB) |", "|---|---:|---:|---:|"]
    for variant in ("base", "sage"):
        sizes = results[f"{variant}-warm"]["sizes"]
        lines.append(f"| {variant} | {sizes['qcow2'] / mib:.0f} | {sizes['qcow2-zstd'] / mib:.0f}"
                     f" | {sizes['raw'] / mib:.0f} |")
    return "\n".join(lines)


PHASES = ("preflight", "sources", "dib:root.d", "dib:pre-install.d", "dib:install.d",
          "dib:block-device", "dib:finalise.d", "formats")

if __name__ == "__main__":
    sys.exit(main())
