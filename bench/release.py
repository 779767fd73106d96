#!/usr/bin/env python3
"""Benchmark: the seed's way (one build per site, then one upload per site, one after another)
against `sage-image release` (one layered build, a boot test, parallel publishing), in one run.

    .venv/bin/python bench/release.py [--out /var/tmp/sage-bench-release]

Starts three real local Glance sites (sage-image localcloud). Sources are the stand-ins (this
machine cannot reach GitHub). Measured, in this order:
  seed-style   for CHI@UC, CHI@TACC, KVM@TACC: `sage-image build --site SITE` (a full build
               each, no layers - what `create-image.py --region` did), then for each site one
               upload the way `glance image-create --file` does it (create, then PUT the bytes)
  cold         `sage-image release --variants sage --sites ... --publish` with an empty cache
  warm base    the same after the sage image changed (its output removed), the base layer kept
The layered-build ratio (sage build on a base layer vs the same build from scratch) comes out
of the same run. Prints Markdown for docs/benchmarks.md and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from sage_image.outfolder import read_manifest, read_results

ROOT = Path(__file__).resolve().parents[1]
SAGE_IMAGE = [sys.executable, "-m", "sage_image.cli"]
SITES = ("CHI@UC", "CHI@TACC", "KVM@TACC")
CLOUDS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return round(time.monotonic() - start, 1)


def glance_cli_upload(endpoint: str, name: str, path: Path, disk_format: str) -> None:
    """What `glance image-create --file` does: POST the record, then PUT the bytes."""
    body = json.dumps({"name": name, "disk_format": disk_format, "container_format": "bare"})
    request = urllib.request.Request(f"{endpoint}/v2/images", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        image_id = json.loads(response.read())["id"]
    with open(path, "rb") as handle:
        put = urllib.request.Request(f"{endpoint}/v2/images/{image_id}/file", data=handle,
                                     method="PUT", headers={
                                         "Content-Type": "application/octet-stream",
                                         "Content-Length": str(path.stat().st_size)})
        urllib.request.urlopen(put).close()


def endpoints(clouds_yaml: Path) -> dict[str, str]:
    clouds = yaml.safe_load(clouds_yaml.read_text())["clouds"]
    return {site: clouds[cloud]["auth"]["endpoint"].rstrip("/") for site, cloud in CLOUDS.items()}


def seed_style(out: Path, env: dict[str, str], urls: dict[str, str]) -> dict[str, float]:
    cache = out / "seed-cache"
    times: dict[str, float] = {}
    for site in SITES:
        times[f"build {site}"] = timed([*SAGE_IMAGE, "build", "--release", "bookworm",
                                        "--variant", "sage", "--site", site, "--allow-stand-ins",
                                        "--out", str(out / "seed" / site), "--cache", str(cache)],
                                       env)
    for site in SITES:
        manifest = read_manifest(out / "seed" / site)
        fmt, entry = next(iter(manifest.files.items()))
        start = time.monotonic()
        glance_cli_upload(urls[site], f"seed-{manifest.name}", out / "seed" / site / entry.path, fmt)
        times[f"upload {site}"] = round(time.monotonic() - start, 1)
    return times


def release(out: Path, env: dict[str, str], cache: Path) -> tuple[float, dict]:
    seconds = timed([*SAGE_IMAGE, "release", "--releases", "bookworm", "--variants", "sage",
                     "--sites", ",".join(SITES), "--publish", "--allow-stand-ins",
                     "--out", str(out / "release"), "--cache", str(cache)], env)
    jobs = json.loads((out / "release" / "release.json").read_text())["jobs"]
    return seconds, {job: record["seconds"] for job, record in jobs.items()}


def boot_test_numbers(out: Path) -> dict:
    """The release's boot test of the sage image: boot to SSH and the checks' wall time."""
    results = read_results(out / "release" / "bookworm-sage-amd64" / "test-results.json")
    assert results is not None, "the release did not test the sage image"
    return {"boot": results.boot_seconds, "checks": results.checks_seconds,
            "passed": sum(c.passed for c in results.checks), "of": len(results.checks)}


def build_numbers(out: Path, env: dict[str, str], cache: Path) -> dict:
    """Per-phase times and sizes of the builds this run made, plus one full base build (warm)
    and the sage image as zstd qcow2 - the numbers of docs/benchmarks.md "Build"."""
    timed([*SAGE_IMAGE, "build", "--release", "bookworm", "--variant", "base",
           "--allow-stand-ins", "--out", str(out / "base-warm"), "--cache", str(cache)], env)
    folders = {"sage from scratch, cold (seed CHI@UC)": out / "seed" / "CHI@UC",
               "sage from scratch, warm (seed CHI@TACC)": out / "seed" / "CHI@TACC",
               "sage on the base layer (release, warm base)": out / "release" / "bookworm-sage-amd64",
               "base, full image, warm": out / "base-warm"}
    numbers = {}
    for label, folder in folders.items():
        manifest = read_manifest(folder)
        numbers[label] = {"phases": manifest.phases,
                          "sizes": {f: e.size for f, e in manifest.files.items()}}
    sage = folders["sage on the base layer (release, warm base)"]
    raw = next(sage.glob("*.raw"))
    start = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o",
                    "compression_type=zstd", str(raw), str(out / "zstd.qcow2")], check=True)
    numbers["zstd"] = {"seconds": round(time.monotonic() - start, 1),
                       "size": (out / "zstd.qcow2").stat().st_size}
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/sage-bench-release"))
    args = parser.parse_args()
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run([*SAGE_IMAGE, "localcloud", "up", "--dir", str(out / "sites")], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    env = os.environ | {"OS_CLIENT_CONFIG_FILE": str(out / "sites" / "clouds.yaml")}
    partial: dict = {}

    def keep(**values: object) -> None:  # results survive an interrupted run
        partial.update(values)
        (out / "results.json").write_text(json.dumps(partial, indent=2))

    try:
        urls = endpoints(out / "sites" / "clouds.yaml")
        seed = seed_style(out, env, urls)
        keep(seed=seed)
        cache = out / "release-cache"
        cold, cold_jobs = release(out, env, cache)
        keep(cold=cold, cold_jobs=cold_jobs, cold_test=boot_test_numbers(out))
        shutil.rmtree(out / "release" / "bookworm-sage-amd64")  # the sage image changed ...
        warm, warm_jobs = release(out, env, cache)  # ... the base layer did not
        keep(warm=warm, warm_jobs=warm_jobs, warm_test=boot_test_numbers(out))
        builds = build_numbers(out, env, cache)
    finally:
        subprocess.run([*SAGE_IMAGE, "localcloud", "down", "--dir", str(out / "sites")],
                       cwd=ROOT, stdout=subprocess.DEVNULL)
    seed_total = round(sum(seed.values()), 1)
    results = partial | {"seed_total": seed_total, "builds": builds}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def markdown(r: dict) -> str:
    scratch = r["seed"]["build CHI@UC"]
    layered = r["warm_jobs"]["build:bookworm-sage-amd64"]
    lines = [
        "| run | wall (s) | vs seed-style |", "|---|---:|---:|",
        f"| seed-style: 3 builds + 3 sequential uploads | {r['seed_total']} | 1.0x |",
        "| `sage-image release` cold (base layer + sage + test + 3 parallel publishes) | "
        f"{r['cold']} | {r['seed_total'] / r['cold']:.1f}x |",
        f"| `sage-image release` warm base | {r['warm']} | {r['seed_total'] / r['warm']:.1f}x |",
        "", f"Layered build: sage on the base layer {layered} s vs sage from scratch {scratch} s "
        f"({100 * layered / scratch:.0f}%).", "",
        "| step | seconds |", "|---|---:|",
    ]
    lines += [f"| seed {k} | {v} |" for k, v in r["seed"].items()]
    lines += [f"| cold {k} | {v} |" for k, v in r["cold_jobs"].items()]
    lines += [f"| warm {k} | {v} |" for k, v in r["warm_jobs"].items()]
    lines += ["", "| release | boot to SSH (s) | checks, wall (s) | passed |", "|---|---:|---:|---|"]
    lines += [f"| {run} | {t['boot']} | {t['checks']} | {t['passed']} of {t['of']} |"
              for run, t in (("cold", r["cold_test"]), ("warm", r["warm_test"]))]
    return "\n".join(lines) + "\n\n" + build_markdown(r["builds"])


PHASES = ("sources", "dib:root.d", "dib:pre-install.d", "dib:install.d", "dib:block-device",
          "dib:finalise.d", "formats")


def build_markdown(builds: dict) -> str:
    mib = 2**20
    lines = ["| build | total (s) | " + " | ".join(PHASES) + " | qcow2 zlib (MiB) | raw (MiB) |",
             "|---|---:|" + "---:|" * (len(PHASES) + 2)]
    for label, b in builds.items():
        if label == "zstd":
            continue
        total = round(sum(b["phases"].values()), 1)
        cells = [str(round(b["phases"].get(p, 0.0), 1)) for p in PHASES]
        lines.append(f"| {label} | {total} | " + " | ".join(cells) +
                     f" | {b['sizes'].get('qcow2', 0) / mib:.0f} | {b['sizes'].get('raw', 0) / mib:.0f} |")
    z = builds["zstd"]
    lines.append(f"\nThe sage image as zstd qcow2: {z['size'] / mib:.0f} MiB ({z['seconds']} s to convert).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
