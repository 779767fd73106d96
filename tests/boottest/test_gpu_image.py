"""Integration (slow, opt-in: `scripts/test -m gpu`): the bookworm CUDA image, built for real.

The gpu release (tests/conftest.py `gpu_release`) builds the sage layer on the base layer the
session's sage release saved, the gpu image on it (Debian's nvidia-driver with its DKMS module
for the image's kernel, nvidia-cuda-toolkit), and boot-tests it with every check in a VM that
has no NVIDIA GPU - as a Chameleon user's image must survive on a node without one. A copy then
has the driver module, nvidia-smi, the toolkit version and the CUDA kernel argument broken and
Debian's boot-time nvidia-drm load back, and each of those checks must fail with its reason. Opt-in: the build alone is longer than the 60 minutes
the default suite may take in all (docs/benchmarks.md, "The gpu (CUDA) image").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.boottest.checks.model import load_checks, select_checks
from sage_image.catalog.model import load_catalog
from sage_image.outfolder import read_manifest
from tests import contract
from tests.boottest.image_copies import (
    copy_for_breaking,
    edit_root,
    linked_copy,
    list_root,
    read_root,
    write_broken,
)

pytestmark = [pytest.mark.slow, pytest.mark.gpu]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "bookworm-gpu-amd64"
CUDA_ARG = "pci=realloc=off"


def sage_image(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sage_image.cli", *args], capture_output=True,
                          text=True, timeout=3600, cwd=REPO)


@pytest.fixture(scope="session")
def gpu_build(gpu_release) -> Path:
    return gpu_release.build_folder(IMAGE)


def _raw(build: Path) -> Path:
    return build / read_manifest(build).files["raw"].path


def test_gpu_image_passes_every_check_without_a_gpu(gpu_release, gpu_build: Path) -> None:
    test = gpu_release.record["jobs"][f"test:{IMAGE}"]
    assert test["status"] in ("ok", "cached"), test["reason"]
    results = contract.fresh_results(gpu_build)
    wanted = [c.name for c in select_checks(load_catalog(), load_checks(), variant="gpu")]
    assert [c.name for c in results.checks] == wanted
    failed = {c.name: c.reason for c in results.checks if not c.passed}
    assert failed == {}
    # no GPU in the VM: cloud-init still finished cleanly and no unit failed (boot-units)
    assert {"cloud-init", "boot-units", "nvidia-module"} <= set(wanted)
    manifest = read_manifest(gpu_build)
    assert manifest.properties["build-cuda-version"] == "11.8"  # bookworm's own toolkit
    assert CUDA_ARG in manifest.boot.cmdline.split()


def test_gpu_image_has_the_cuda_argument_in_grub_and_no_build_leftovers(gpu_build: Path) -> None:
    raw = _raw(gpu_build)
    linux_lines = [line for line in read_root(raw, "/boot/grub/grub.cfg").splitlines()
                   if line.strip().startswith("linux")]
    assert linux_lines and all(CUDA_ARG in line.split() for line in linux_lines)
    assert [n for n in list_root(raw, "/var/cache/apt/archives") if n.endswith(".deb")] == []
    for version in list_root(raw, "/var/lib/dkms/nvidia-current"):
        assert "build" not in list_root(raw, f"/var/lib/dkms/nvidia-current/{version}")


def test_gpu_image_boots_through_uefi_with_the_cuda_argument(gpu_build: Path,
                                                              tmp_path: Path) -> None:
    """GRUB's own command line (not the manifest's, which the direct boot uses) has it."""
    out = linked_copy(gpu_build, tmp_path / "out")
    proc = sage_image("test", str(out), "--firmware", "--uefi", "--json", "--accel", "tcg",
                      "--checks", "cloud-init,ssh-login,cmdline-pci-realloc,nvidia-module")
    report = json.loads(proc.stdout)
    failed = {c["name"]: c["reason"] for c in report["checks"] if not c["passed"]}
    assert proc.returncode == 0 and failed == {}, (failed, report.get("error"))
    assert report["firmware"] == "uefi"


GPU_FAILURES = {
    "cuda-nvcc": "nvcc does not report the catalog's CUDA 12.4: nvcc: NVIDIA (R) Cuda compiler "
                 "driver",
    "nvidia-module": "no nvidia kernel module for the running kernel: no nvidia module for "
                     "kernel ",
    "nvidia-smi": "nvidia-smi is not installed: no nvidia-smi on PATH",
    "cmdline-pci-realloc": "the kernel command line lacks pci=realloc=off (Chameleon's CUDA "
                           "images need it): ",
    "boot-units": "a systemd unit failed during boot: systemd-modules-load.service",
}


def test_broken_gpu_copy_fails_each_gpu_check(gpu_build: Path, tmp_path: Path) -> None:
    raw, manifest = copy_for_breaking(gpu_build, tmp_path / "out")
    kernel = manifest.boot.kernel_version
    dkms = f"/lib/modules/{kernel}/updates/dkms"
    modules = [n for n in list_root(raw, dkms) if n.startswith("nvidia")]
    assert any(n.startswith("nvidia-current.ko") for n in modules), modules
    edit_root(raw, tmp_path, {f"{dkms}/{name}": None for name in modules}        # nvidia-module
              | {"/usr/bin/nvidia-smi": None,                                    # nvidia-smi
                 # boot-units: Debian's boot-time nvidia-drm load without the build's GPU test
                 "/etc/modprobe.d/sage-nvidia-drm.conf": None})
    out = write_broken(
        raw, manifest,
        properties=manifest.properties | {"build-cuda-version": "12.4"},  # cuda-nvcc: wrong toolkit
        boot=contract.replace(manifest.boot, cmdline=" ".join(             # cmdline
            a for a in manifest.boot.cmdline.split() if a != CUDA_ARG)))
    proc = sage_image("test", str(out), "--json",
                      "--checks", ",".join(("ssh-login", *GPU_FAILURES)))
    assert proc.returncode == 1, proc.stderr
    reasons = {c["name"]: c["reason"] for c in json.loads(proc.stdout)["checks"]}
    assert reasons.pop("ssh-login") is None
    wrong = {name: reasons.get(name) for name, expected in GPU_FAILURES.items()
             if not (reasons.get(name) or "").startswith(expected)}
    assert wrong == {}, wrong
