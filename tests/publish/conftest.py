"""Fixtures: real Glance sites (and one behind a real Keystone), real qcow2/raw builds.

The sites are session-scoped (starting them costs seconds); each test publishes its own image
name, so tests do not see each other's images. Servers are always stopped with SIGINT and the
temporary folders removed, also when a test fails.
"""

from __future__ import annotations

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

from sage_image.boottest.checks.model import load_checks
from sage_image.catalog import load_catalog
from sage_image.cli import main
from sage_image.localcloud.cloud import LocalCloud, SiteSpec, start_cloud
from sage_image.outfolder import read_manifest
from sage_image.publish.output import BuildOutput, load_output
from tests import contract

SITES = ("CHI@UC", "CHI@TACC", "KVM@TACC")
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


@dataclass
class BuildFactory:
    """Writes a build output folder (tests/contract.py's types) with real qcow2 and raw images."""

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
        files = {fmt: contract.image_file(path, fmt, virtual_size=(virtual_mb or size_mb) << 20)
                 for fmt, path in (("qcow2", qcow2), ("raw", raw)) if fmt in formats}
        if same_disk and {"qcow2", "raw"} <= set(files):
            files["qcow2"] = contract.replace(files["qcow2"], same_disk_as=files["raw"].sha512)
        props = {"build-variant": variant, "build-distro": "debian", "build-release": "bookworm",
                 "build-arch": arch, "build-repo": "https://example.invalid/sage-image-builder",
                 "build-repo-commit": uuid.uuid4().hex, "build-timestamp": str(timestamp),
                 "build-tag": f"sage-image-12-{timestamp}", "build-image-name": name,
                 "build-source-waggle-node": "09a85ed3", "build-stand-ins": ""}
        contract.write_build(out, contract.manifest(
            name, arch=arch, variant=variant, sites=sites, files=files, properties=props,
            elements=("debian-minimal", "sage"), created="2023-11-14T22:13:20Z"))
        if tested is not None:
            self.write_results(out, passed=tested)
        return out

    @staticmethod
    def write_results(out: Path, *, passed: bool, checks: tuple[str, ...] | None = None,
                      restricted_by: tuple[str, ...] = ()) -> None:
        """test-results.json as `sage-image test` writes it: a run of every check of the variant
        as defined today, or of `checks` (a partial run: --checks / --keep-running); a failed
        run is one where ssh-login timed out."""
        manifest = read_manifest(out)
        expected = contract.variant_checks(manifest.variant)
        ran = {n: d for n, d in expected.checks.items() if checks is None or n in checks}
        contract.write_test(out, contract.results(
            manifest, checks=ran, failed=() if passed else ("ssh-login",),
            restricted_by=restricted_by))


def build_output(out: Path) -> BuildOutput:
    """OUT as publish reads it (the gate asked about the shipped catalog's checks)."""
    return load_output(out, catalog=load_catalog(), definitions=load_checks())


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
