"""Checks made before a build starts: each failure is a PreflightError (exit 2), in seconds."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import PreflightError
from .dib import NODE_SOURCE
from .plan import BuildPlan

REQUIRED_TOOLS = ("qemu-img", "debootstrap", "sfdisk", "losetup", "mount", "git", "sgdisk")
MIRROR_TIMEOUT = 15.0
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# platform.machine() spellings of each QEMU arch (macOS and some kernels say arm64).
MACHINES = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64")}
ENABLE_EMULATION = ("run scripts/setup as root (it installs qemu-user-static and binfmt-support "
                    "and mounts binfmt_misc), or build on a native {arch} machine")


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
                f"{folder}: {free_gb:.1f} GiB free, the {plan.identity.variant} image needs "
                f"{plan.min_free_gb} GiB", hint="free some space or use --out / --cache elsewhere")


def check_mirror(plan: BuildPlan) -> None:
    """The distribution mirror must serve this release's Release file."""
    url = f"{plan.mirror.rstrip('/')}/dists/{plan.identity.release}/Release"
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
    raise PreflightError(f"mirror {plan.mirror} does not serve {plan.identity.release} ({problem})",
                         hint=f"check the network, or set releases.{plan.identity.release}.mirrors in the "
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
    """A variant with Python tools (or sage-node's venv) installs them only from a hash-pinned
    lock for its release; sage-node's venv also needs sage-node's source."""
    variant, release = plan.identity.variant, plan.identity.release
    for key, python in (("python", plan.python), ("node_python", plan.node_python)):
        if python is None:
            continue
        if python.lock is None:
            raise PreflightError(
                f"variant {variant} has no {'Python' if key == 'python' else key} lock for "
                f"release {release}",
                hint=f"add variants.{variant}.{key}.locks.{release} to the catalog and "
                     "run scripts/python-lock")
        if not python.lock.is_file():
            raise PreflightError(f"Python lock {python.lock} is missing",
                                 hint=f"run scripts/python-lock --release {release}")
    if plan.node_python and not (NODE_SOURCE / "pyproject.toml").is_file():
        raise PreflightError(f"sage-node's source {NODE_SOURCE} is missing",
                             hint="build from a checkout of sage-image-builder")


def check_cuda(plan: BuildPlan) -> None:
    """A gpu image is built only for a release whose CUDA version the catalog states."""
    variant, release = plan.identity.variant, plan.identity.release
    if plan.cuda is not None and plan.cuda.version is None:
        raise PreflightError(
            f"variant {variant} has no CUDA version for release {release} in the "
            "catalog", hint=f"add variants.{variant}.cuda.releases.{release} "
                            "(version, driver) to the catalog, from the release's packages")


def check_emulation(plan: BuildPlan, *, binfmt_dir: Path = BINFMT_MISC,
                    machine: str | None = None) -> None:
    """A foreign-arch build runs every package script under qemu-user: the kernel must hand
    the arch's binaries to it (a binfmt_misc entry with the F flag, so it works in a chroot)."""
    host = machine or platform.machine()
    if host in MACHINES.get(plan.qemu_arch, (plan.qemu_arch,)):
        return
    hint = ENABLE_EMULATION.format(arch=plan.identity.arch)
    what = f"an {plan.identity.arch} build on this {host} machine needs qemu-user emulation"
    if not (binfmt_dir / "register").exists():
        raise PreflightError(f"{what}, but binfmt_misc is not mounted at {binfmt_dir}",
                             hint=hint + f"; as root: mount -t binfmt_misc binfmt_misc {binfmt_dir}")
    entry = binfmt_dir / f"qemu-{plan.qemu_arch}"
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        raise PreflightError(f"{what}, but {entry} is not registered",
                             hint=hint + f"; as root: update-binfmts --enable qemu-{plan.qemu_arch}"
                             ) from None
    if not lines or lines[0].strip() != "enabled":
        raise PreflightError(f"{what}, but {entry} is disabled",
                             hint=f"as root: update-binfmts --enable qemu-{plan.qemu_arch}")
    flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
    if "F" not in flags:
        raise PreflightError(f"{what}, but {entry} lacks the F flag (its interpreter is not "
                             "found inside the build's chroot)",
                             hint="install qemu-user-static (it registers with F) instead of "
                                  "qemu-user's dynamic binfmt entries")
