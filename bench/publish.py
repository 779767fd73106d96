#!/usr/bin/env python3
"""Benchmark `sage-image publish` against three real local Glance sites.

Measures, in one run and for the same image bytes: publish to one site, publish to three sites
in parallel, a plain `curl -T` upload to one site (the throughput ceiling), and a no-op
re-publish to three sites (target: under 5 s).

    .venv/bin/python bench/publish.py [--size-mb 512] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sage_image.localcloud.cloud import DEMO_CLOUDS, SiteSpec, start_cloud
from sage_image.outfolder import read_manifest

# builds are written with the tests' contract helpers (tests/contract.py), from the checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import contract  # noqa: E402

SECTION = "## Publish"


def make_build(root: Path, name: str, size_mb: int) -> Path:
    """A build output folder (docs/manifest.md, the tests' contract types) whose raw and qcow2
    files are random bytes: incompressible, so every site stores and hashes the full size."""
    out = root / name
    out.mkdir()
    raw = out / f"{name}.raw"
    with raw.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    qcow2 = out / f"{name}.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, qcow2], check=True)
    files = {fmt: contract.image_file(path, fmt, virtual_size=raw.stat().st_size)
             for fmt, path in (("qcow2", qcow2), ("raw", raw))}
    stamp = int(time.time())
    contract.write_build(out, contract.manifest(
        name, files=files, properties={"build-timestamp": str(stamp), "build-tag": f"bench-{stamp}"}))
    return out


def rename_build(src: Path, name: str) -> Path:
    """The same bytes under another production name (hard links: no copy)."""
    dst = src.parent / name
    dst.mkdir()
    manifest = read_manifest(src)
    for f in manifest.files.values():
        os.link(src / f.path, dst / f.path)
    contract.write_build(dst, contract.replace(
        manifest, name=name, properties=manifest.properties | {"build-image-name": name}))
    return dst


def publish(out: Path, sites: str, env: dict[str, str]) -> tuple[float, dict]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sage_image.cli", "publish", str(out),
                           "--sites", sites, "--untested", "--json"],
                          env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"publish failed: {proc.stderr}\n{proc.stdout}")
    return elapsed, json.loads(proc.stdout)


def curl_upload(url: str, path: Path) -> float:
    req = urllib.request.Request(f"{url}/v2/images", method="POST", data=json.dumps(
        {"name": "curl-bench", "disk_format": "raw", "container_format": "bare"}).encode(),
        headers={"Content-Type": "application/json"})
    image_id = json.load(urllib.request.urlopen(req))["id"]
    start = time.monotonic()
    subprocess.run(["curl", "-sSf", "-T", str(path), "-H", "Content-Type: application/octet-stream",
                    f"{url}/v2/images/{image_id}/file"], check=True)
    return time.monotonic() - start


def run(size_mb: int) -> dict[str, object]:
    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="sage-bench-"))
    cloud = None
    try:
        cloud = start_cloud(root / "sites", [SiteSpec(c) for c in DEMO_CLOUDS])
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml)}
        env = {k: v for k, v in env.items() if not k.startswith("OS_") or k.endswith("FILE")}
        one = make_build(root, "Bench-One", size_mb)
        three = rename_build(one, "Bench-Three")
        mb = size_mb * 1.048576
        curl_s = curl_upload(cloud.url("kvm-tacc"), one / "Bench-One.raw")
        one_s, one_json = publish(one, "KVM@TACC", env)
        three_s, three_json = publish(three, "CHI@UC,CHI@TACC,KVM@TACC", env)
        noop_s, noop_json = publish(three, "CHI@UC,CHI@TACC,KVM@TACC", env)
        assert {s["status"] for s in noop_json["sites"]} == {"up to date"}
        return {"load": load, "size_mb": round(mb), "curl_s": curl_s, "curl_mbps": mb / curl_s,
                "one_s": one_s, "one_mbps": one_json["sites"][0]["mb_per_s"],
                "three_s": three_s,
                "three_mbps": {s["site"]: s["mb_per_s"] for s in three_json["sites"]},
                "noop_s": noop_s}
    finally:
        if cloud is not None:
            cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(r: dict) -> str:
    per_site = ", ".join(f"{s} {v:.0f}" for s, v in r["three_mbps"].items())
    total = 3 * r["size_mb"] / r["three_s"]
    return "\n".join([
        SECTION, "",
        f"`bench/publish.py --size-mb {round(r['size_mb'] / 1.048576)}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')} (load "
        f"average {r['load']:.1f} at the start: other work shared the machine): three real "
        "local Glance sites (one gunicorn process each, file store, SQLite), random (incompressible) "
        f"image bytes, {r['size_mb']} MB per site, and their object store (one local Swift). "
        "Times are wall-clock for the whole `sage-image publish` command (Python start-up, "
        "listing, plan, record, upload, verify, promote).",
        "", "| measurement | time | throughput |", "|---|---|---|",
        f"| plain `curl -T` upload to one site | {r['curl_s']:.1f} s | {r['curl_mbps']:.0f} MB/s |",
        f"| publish to one site (KVM@TACC, raw) | {r['one_s']:.1f} s | "
        f"{r['one_mbps']:.0f} MB/s upload |",
        f"| publish to three sites in parallel | {r['three_s']:.1f} s | {per_site} MB/s per site, "
        f"{total:.0f} MB/s in total |",
        f"| no-op re-publish to three sites (target < 5 s) | {r['noop_s']:.1f} s | nothing sent |",
        "", "The server hashes md5 + sha512 while it writes, so on two cores three parallel "
        "uploads share the CPU with the three Glance workers: the three-site time is bounded by "
        "the machine, not by the client.", ""])


def write_section(path: Path, text: str) -> None:
    """Replace only the Publish section of the shared benchmarks file."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--write", type=Path, help="update the Publish section of this file")
    args = parser.parse_args()
    text = report(run(args.size_mb))
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
