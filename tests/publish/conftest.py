"""Fixtures: real Glance sites (and one behind a real Keystone), real qcow2/raw builds.

The sites are session-scoped (starting them costs seconds); each test publishes its own image
name, so tests do not see each other's images. Servers are always stopped with SIGINT and the
temporary folders removed, also when a test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sage_image.builder.build import layout_manifest
from sage_image.catalog import load_catalog
from sage_image.cli import main
from sage_image.localcloud.cloud import LocalCloud, SiteSpec, start_cloud

SITES = ("CHI@UC", "CHI@TACC", "KVM@TACC")
# The checks a build's manifest records for its variant (the publish gate wants all of them).
VARIANT_CHECKS = ("ssh-login", "hostname", "sudo")
CLOUDS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}


# local_sites (three real Glance sites) is in tests/conftest.py, shared with the release run.


@pytest.fixture(scope="session")
def keystone_site() -> Iterator[LocalCloud]:
    """The three demo sites behind one real Keystone (a region each, each with its own Glance
    and object store); clouds.yaml has `chi-tacc` (application credential) and
    `chi-tacc-password` (password auth) for the same site, and so on for chi-uc and kvm-tacc.
    python-chi, which only speaks Keystone v3, reaches every one of them."""
    root = Path(tempfile.mkdtemp(prefix="sage-keystone-"))
    cloud = None
    try:
        cloud = start_cloud(root, [SiteSpec(c, keystone=True) for c in CLOUDS.values()])
        yield cloud
    finally:
        if cloud is not None:
            cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clouds_env(local_sites: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> LocalCloud:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(local_sites.clouds_yaml))
    for var in [v for v in os.environ if v.startswith("OS_") and v != "OS_CLIENT_CONFIG_FILE"]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(local_sites.root.parent)  # no stray ./clouds.yaml
    return local_sites


@pytest.fixture
def keystone_env(keystone_site: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> LocalCloud:
    for var in [v for v in os.environ if v.startswith("OS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(keystone_site.clouds_yaml))
    monkeypatch.chdir(keystone_site.root.parent)
    return keystone_site


def _hashes(path: Path) -> dict[str, str]:
    """sha256, sha512 and md5 in one pass over the file."""
    hashes = {algo: hashlib.new(algo) for algo in ("sha256", "sha512", "md5")}
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


@dataclass
class BuildFactory:
    """Writes a build output folder per docs/manifest.md with real qcow2 and raw images."""

    root: Path

    def __call__(self, name: str, *, timestamp: int = 1_700_000_000, size_mb: int = 4,
                 tested: bool | None = True, arch: str = "amd64", variant: str = "sage",
                 sites: tuple[str, ...] = SITES, formats: tuple[str, ...] = ("qcow2", "raw"),
                 same_disk: bool = True, virtual_mb: int | None = None) -> Path:
        """`same_disk`: record the qcow2 as the same disk as the raw, as a build does after
        `qemu-img compare` (False: a manifest without that proof). `virtual_mb`: the disk's
        virtual size, larger than the bytes written (a raw is sparse; the file keeps its
        length)."""
        out = self.root / f"{name}-{timestamp}-{uuid.uuid4().hex[:6]}"
        out.mkdir(parents=True)
        raw = out / f"{name}.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", raw,
                        f"{virtual_mb or size_mb}M"], check=True)
        with raw.open("r+b") as f:  # distinct content per build -> distinct checksums
            f.write(os.urandom(min(size_mb, 64) << 20))
        qcow2 = out / f"{name}.qcow2"
        if "qcow2" in formats:
            subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", raw, qcow2], check=True)
        files = {fmt: self._file(out, path, fmt) for fmt, path in (("qcow2", qcow2), ("raw", raw))
                 if fmt in formats}
        if same_disk and {"qcow2", "raw"} <= set(files):
            files["qcow2"]["same_disk_as"] = files["raw"]["sha512"]
        props = {"build-variant": variant, "build-distro": "debian", "build-release": "bookworm",
                 "build-arch": arch, "build-repo": "https://example.invalid/sage-image-builder",
                 "build-repo-commit": uuid.uuid4().hex * 1, "build-timestamp": str(timestamp),
                 "build-tag": f"sage-image-12-{timestamp}", "build-image-name": name,
                 "build-source-waggle-node": "09a85ed3", "build-stand-ins": ""}
        manifest = {"schema": 1, "name": name, "release": "bookworm", "variant": variant,
                    "arch": arch, "family": "debian", "os_version": "12",
                    "qemu_arch": "x86_64" if arch == "amd64" else "aarch64",
                    "elements": ["debian-minimal", "sage"], "sites": list(sites),
                    "sources": {"waggle-node": {"url": "https://github.com/waggle-sensor/waggle-node",
                                                "commit": "09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                                                "pinned": "09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                                                "stand_in": False, "path": "/opt/virtual-waggle"}},
                    "stand_ins": [], "dib_version": "3.43.0", "builder_version": "0.1.0",
                    "properties": props, "files": files,
                    "packages": {"docker.io": "20.10.24+dfsg1-1", "docker-compose": "1.29.2-3"},
                    "checks": list(VARIANT_CHECKS), "phases": {},
                    "created": "2023-11-14T22:13:20Z",
                    "layout": layout_manifest(load_catalog().layouts[
                        load_catalog().arches[arch].layout])}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if tested is not None:
            self.write_results(out, passed=tested)
        return out

    @staticmethod
    def _file(out: Path, path: Path, fmt: str) -> dict[str, object]:
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", path],
                                         check=True, capture_output=True, text=True).stdout)
        return {"path": path.name, "disk_format": fmt, "size": path.stat().st_size,
                "virtual_size": info["virtual-size"], **_hashes(path)}

    @staticmethod
    def write_results(out: Path, *, passed: bool, checks: tuple[str, ...] = VARIANT_CHECKS,
                      restricted_by: tuple[str, ...] = ()) -> None:
        """test-results.json as `sage-image test` writes it (a partial run: `checks` and
        `restricted_by` as given by --checks / --keep-running)."""
        manifest = json.loads((out / "manifest.json").read_text())
        # the test boots the raw when there is one (boot/image.py), else the qcow2
        tested = manifest["files"].get("raw") or manifest["files"]["qcow2"]
        results = {"schema": 1, "name": manifest["name"], "tested_file": tested["path"],
                   "tested_sha512": tested["sha512"],
                   "passed": passed, "qualifies_for_publish": passed and not restricted_by,
                   "restricted_by": list(restricted_by), "mode": "direct", "accel": "tcg",
                   # a failed run: ssh-login timed out (the others passed, to keep it short)
                   "checks": [{"name": name, "passed": passed or i > 0, "seconds": 1.0,
                               "reason": None if passed or i > 0 else "timed out"}
                              for i, name in enumerate(checks)],
                   "boot_seconds": 20.0, "started": "", "finished": ""}
        (out / "test-results.json").write_text(json.dumps(results))


@pytest.fixture(scope="session")
def build_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="sage-builds-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_build(build_root: Path) -> BuildFactory:
    return BuildFactory(build_root)


@pytest.fixture
def image_name() -> str:
    return f"Sage-Test-{uuid.uuid4().hex[:8]}"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """Run `sage-image ARGS` in this process (fast: openstacksdk is imported once)."""

    def run(*args: str) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict[str, str], timeout: float = 120) -> Run:
    proc = subprocess.run([sys.executable, "-m", "sage_image.cli", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.05):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
