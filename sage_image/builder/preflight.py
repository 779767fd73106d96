"""Checks made before a build starts: each failure is a PreflightError (exit 2), in seconds."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import PreflightError
from .plan import BuildPlan

REQUIRED_TOOLS = ("qemu-img", "debootstrap", "sfdisk", "losetup", "mount", "git", "sgdisk")
MIRROR_TIMEOUT = 15.0


def check_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError("sage-image build must run as root (diskimage-builder needs loop "
                             "devices, mounts and chroot)", hint="run it as root, e.g. sudo -E")


def check_tools() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if not _which(tool)]
    dib = Path(sys.executable).parent / "disk-image-create"
    if not dib.exists() and not shutil.which("disk-image-create"):
        missing.append("disk-image-create")
    if missing:
        raise PreflightError(f"missing tools: {', '.join(missing)}",
                             hint="run scripts/setup to install them")


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def check_free_disk(plan: BuildPlan, *folders: Path) -> None:
    for folder in folders:
        probe = folder
        while not probe.exists():
            probe = probe.parent
        free_gb = shutil.disk_usage(probe).free / 2**30
        if free_gb < plan.min_free_gb:
            raise PreflightError(
                f"{folder}: {free_gb:.1f} GiB free, the {plan.variant} image needs "
                f"{plan.min_free_gb} GiB", hint="free some space or use --out / --cache elsewhere")


def check_mirror(plan: BuildPlan) -> None:
    """The distribution mirror must serve this release's Release file."""
    url = f"{plan.mirror.rstrip('/')}/dists/{plan.release}/Release"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_TIMEOUT) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise PreflightError(f"mirror {plan.mirror} does not serve {plan.release} ({problem})",
                         hint=f"check the network, or set releases.{plan.release}.mirrors in the "
                              "catalog to a reachable mirror")


def check_loop_devices() -> None:
    if not Path("/dev/loop-control").exists() and not list(Path("/dev").glob("loop[0-9]*")):
        raise PreflightError("no loop devices on this machine (diskimage-builder needs them)",
                             hint="load the loop module (modprobe loop) or run in a VM")


def check_layer(plan: BuildPlan) -> None:
    if plan.from_layer and not Path(plan.from_layer).is_file():
        raise PreflightError(f"--from-layer {plan.from_layer}: no such layer file",
                             hint="build the parent variant with --save-layer first")
    if plan.save_layer and not Path(plan.save_layer).parent.is_dir():
        raise PreflightError(f"--save-layer {plan.save_layer}: its folder does not exist")


def check_python_lock(plan: BuildPlan) -> None:
    """A variant with Python tools installs them only from a hash-pinned lock for its release."""
    if plan.python is None:
        return
    if plan.python.lock is None:
        raise PreflightError(
            f"variant {plan.variant} has no Python lock for release {plan.release}",
            hint=f"add variants.{plan.variant}.python.locks.{plan.release} to the catalog and "
                 "run scripts/python-lock")
    if not plan.python.lock.is_file():
        raise PreflightError(f"Python lock {plan.python.lock} is missing",
                             hint=f"run scripts/python-lock --release {plan.release}")


def check_cuda(plan: BuildPlan) -> None:
    """A gpu image is built only for a release whose CUDA version the catalog states."""
    if plan.cuda is not None and plan.cuda.version is None:
        raise PreflightError(
            f"variant {plan.variant} has no CUDA version for release {plan.release} in the "
            "catalog", hint=f"add variants.{plan.variant}.cuda.releases.{plan.release} "
                            "(version, driver) to the catalog, from the release's packages")
