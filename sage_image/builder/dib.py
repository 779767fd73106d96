"""Running diskimage-builder: its environment, the shims it needs here, its log and phases.

DIB calls ``sudo`` for privileged steps even as root, ``kpartx``/``dmsetup`` for partitions and
``mount`` for their filesystems. A per-build ``bin/`` folder first on PATH answers those:
``sudo`` runs the command directly (we are root; it keeps PATH so DIB finds the other shims,
and like sudo it resets the environment unless given ``-E``), ``kpartx``/``dmsetup`` are
:mod:`.devmapper`, and ``mount``/``umount`` are :mod:`.fatmount` when a FAT partition must be
mounted on a kernel without vfat (the system's own otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..catalog.elements import element_dirs
from ..errors import BuildError
from ..runner import stream
from .plan import BuildPlan

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# sage-node's package (beside sage_image in this repository), installed by the sage element
NODE_SOURCE = Path(__file__).resolve().parents[2] / "sage_node"
HOOK_RE = re.compile(r"dib-run-parts Running \S*/([a-z-]+\.d)/(\S+)")
HOOK_DONE_RE = re.compile(r"dib-run-parts (\S+) completed$")
# The block-device step is DIB's Python package, not a hook: its logging lines name it
# (`INFO diskimage_builder.block_device.level3.mount [-] Mounting ...`), and the module that
# logged last before a failure (level3.mount) names the part that failed.
BLOCK_RE = re.compile(r"diskimage_builder\.block_device")
BLOCK_PART_RE = re.compile(r"diskimage_builder\.block_device\.level\d\.(\w+) ")
BLOCK_ROLLBACK_RE = re.compile(r"diskimage_builder\.block_device\S* \[-\] Create failed; rollback")
# A Python traceback frame (`  File "...", line N, in f`) and the source and caret lines under it.
FRAME_RE = re.compile(r'^  File ".*", line \d+')
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \| ")
LOG_TAIL = 30

SUDO_SHIM = """#!/bin/sh
# sage-image: we already run as root; run the command directly, resetting the environment
# like sudo does unless -E was given (PATH is kept so DIB finds the other shims).
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -E|--preserve-env|--preserve-env=*) keep=1; shift ;;
        -H|-n|-S) shift ;;
        --) shift; break ;;
        -*) echo "sage-image sudo shim: unsupported option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
[ "$keep" = 1 ] && exec env "$@"
exec env -i PATH="$PATH" HOME=/root TERM="${TERM:-dumb}" ${LANG:+LANG=$LANG} "$@"
"""

DEVMAPPER_SHIM = """#!/bin/sh
# sage-image: partitions through loop devices (no device-mapper here); see devmapper.py.
export SAGE_IMAGE_DM_STATE='{state}'
exec '{python}' -m sage_image.builder.devmapper {tool} "$@"
"""

# Only `mount DEVICE DIR` (how DIB's block-device step mounts a partition) can need FAT
# emulation; every other mount (binds, proc, remounts) goes straight to the system's.
FATMOUNT_SHIM = """#!/bin/sh
# sage-image: FAT partitions on a kernel without vfat; see fatmount.py.
case "$#:$1" in
    2:/dev/*) exec '{python}' -m sage_image.builder.fatmount mount "$@" ;;
esac
exec '{real}' "$@"
"""

FATUMOUNT_SHIM = """#!/bin/sh
# sage-image: writes an emulated FAT mount back with mtools first; see fatmount.py.
grep -q ' tmpfs ' /proc/self/mounts 2>/dev/null || exec '{real}' "$@"
exec '{python}' -m sage_image.builder.fatmount umount "$@"
"""


@dataclass(frozen=True)
class BuildPaths:
    """Everything one build writes outside its output folder lives under ``work``."""

    work: Path
    dib_cache: Path

    @property
    def bin(self) -> Path:
        return self.work / "bin"

    @property
    def dm_state(self) -> Path:
        return self.work / "dm-state"

    @property
    def tmp(self) -> Path:
        return self.work / "tmp"

    @property
    def sources(self) -> Path:
        return self.work / "sources"

    @property
    def artifacts(self) -> Path:
        return self.work / "artifacts"

    @property
    def provenance(self) -> Path:
        return self.work / "provenance.json"

    @property
    def dib_pgid(self) -> Path:
        """DIB's process group, so a later build can stop it if this one was SIGKILLed."""
        return self.work / "dib.pgid"

    @property
    def layered_cache(self) -> Path:
        return self.work / "dib-cache"

    @property
    def image_base(self) -> Path:
        return self.work / "image" / "image"


def write_shims(paths: BuildPaths) -> None:
    paths.bin.mkdir(parents=True, exist_ok=True)
    shims = {"sudo": SUDO_SHIM}
    for tool in ("kpartx", "dmsetup"):
        shims[tool] = DEVMAPPER_SHIM.format(state=paths.dm_state, python=sys.executable,
                                            tool=tool)
    for tool, template in (("mount", FATMOUNT_SHIM), ("umount", FATUMOUNT_SHIM)):
        real = shutil.which(tool, path=SYSTEM_PATH) or f"/usr/bin/{tool}"
        shims[tool] = template.format(python=sys.executable, real=real)
    for name, text in shims.items():
        shim = paths.bin / name
        shim.write_text(text)
        shim.chmod(0o755)


def prepare_layered_cache(plan: BuildPlan, paths: BuildPaths) -> None:
    """A layered build starts from its parent's root instead of debootstrap: give DIB a cache
    folder whose debootstrap tarball is that layer and whose other entries (the shared apt
    archive ...) are the slot's."""
    if not plan.from_layer:
        return
    cache = paths.layered_cache
    cache.mkdir(parents=True, exist_ok=True)
    tarball = f"debootstrap-{plan.identity.family}-{plan.identity.release}-{plan.dib_arch}.tar.gz"
    (paths.dib_cache / "apt").mkdir(exist_ok=True)  # the archive must outlive this build
    for entry in paths.dib_cache.iterdir():
        if entry.name != tarball:
            (cache / entry.name).symlink_to(entry)
    (cache / tarball).symlink_to(Path(plan.from_layer).resolve())


def dib_environment(plan: BuildPlan, paths: BuildPaths) -> dict[str, str]:
    """An explicit environment: only what DIB needs, nothing inherited by accident."""
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{paths.bin}:{python_bin}:{SYSTEM_PATH}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(paths.tmp),
        "DIB_NO_TMPFS": "1",
        # Keep the bootstrapped root as a tarball in the (per-slot) cache: a warm build skips
        # debootstrap. `sage-image cache prune` (or deleting the slot) refreshes it.
        "DIB_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "DIB_IMAGE_CACHE": str(paths.layered_cache if plan.from_layer else paths.dib_cache),
        "ELEMENTS_PATH": ":".join(str(d) for d in element_dirs()),
        "SAGE_IMAGE_DM_STATE": str(paths.dm_state),
        "SAGE_IMAGE_SOURCES": str(paths.sources),
        "SAGE_IMAGE_ARTIFACTS": str(paths.artifacts),
        "SAGE_IMAGE_PROVENANCE": str(paths.provenance),
        # Our own host keys must never be copied into an image.
        "DIB_DEBUG_TRACE": "0",
    }
    for proxy in ("http_proxy", "https_proxy", "no_proxy"):
        if proxy in os.environ:
            env[proxy] = os.environ[proxy]
    if plan.save_layer:
        env["SAGE_IMAGE_LAYER_OUT"] = str(Path(plan.save_layer).resolve())
    if plan.python and plan.python.lock:
        env["SAGE_IMAGE_PYTHON_LOCK"] = str(plan.python.lock)
        env["SAGE_IMAGE_VENV"] = plan.python.venv  # build-artifacts lists its packages
    if plan.node_python and plan.node_python.lock:
        env["SAGE_IMAGE_NODE_PYTHON_LOCK"] = str(plan.node_python.lock)
        env["SAGE_IMAGE_NODE_VENV"] = plan.node_python.venv  # build-artifacts lists it too
        # sage-node itself: the package in this repository, installed into that venv
        env["SAGE_IMAGE_NODE_SOURCE"] = str(NODE_SOURCE)
    if (plan.python and plan.python.lock) or (plan.node_python and plan.node_python.lock):
        ca = host_ca_bundle()
        if ca:
            env["SAGE_IMAGE_PIP_CERT"] = str(ca)
    if plan.admin_keys:
        env["DIB_CC_ADMIN_KEYS"] = str(Path(plan.admin_keys).resolve())
    env.update(plan.env)
    return env


def host_ca_bundle() -> Path | None:
    """The CA certificates this machine trusts (``PIP_CERT``, else the system bundle), for pip
    in the chroot during the build only: a proxy or mirror this machine trusts is trusted
    there too, while the lock's hashes still decide what installs. Never copied into the image."""
    for candidate in (os.environ.get("PIP_CERT"), ssl.get_default_verify_paths().cafile,
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def dib_command(plan: BuildPlan, paths: BuildPaths) -> list[str]:
    return ["disk-image-create", "-a", plan.dib_arch, "-t", "raw", "--no-tmpfs",
            "-o", str(paths.image_base), *plan.elements]


class DibLog:
    """Writes DIB's output to the log file and tracks the phase and step it is in.

    A step is a hook (``install.d/50-sage-docker``), DIB's own work between hooks ("after"
    the hook that completed last) or the block-device step. ``tail`` holds the current step's
    own last lines - never an earlier step's - with traceback frames left out (the log has
    them), so a failure shows its error rather than the call stack or the previous hook.
    """

    def __init__(self, log_file: Path, on_phase: Callable[[str], None],
                 clock: Callable[[], float]) -> None:
        self.handle = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.on_phase = on_phase
        self.clock = clock
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.step = "starting"
        self.where = "before its first step"
        self.phase = "dib:prepare"
        self.phase_started = clock()
        self.phases: dict[str, float] = {}
        self._in_frame = False
        self._rolling_back = False

    def line(self, text: str) -> None:
        self.handle.write(text + "\n")
        message = TIMESTAMP_RE.sub("", text)
        hook = HOOK_RE.search(message)
        done = HOOK_DONE_RE.search(message)
        if hook:
            self._start_step(f"{hook.group(1)}/{hook.group(2)}")
            self._enter(f"dib:{hook.group(1)}")
        elif done and self.step.endswith("/" + done.group(1)):
            # DIB's own work follows (unmounting, sizing the image) until the next step
            self.where = f"after {self.step} completed"
        elif BLOCK_RE.search(message) and self.phase != "dib:prepare":
            self._block_device_line(message)
            self._enter("dib:block-device")
        self._keep(message)

    def _block_device_line(self, message: str) -> None:
        if not self.step.startswith("block-device"):
            self._start_step("block-device")
            self.where = "in the block-device step"
        if BLOCK_ROLLBACK_RE.search(message):
            self._rolling_back = True  # undo steps log too; they did not fail
        part = BLOCK_PART_RE.search(message)
        if part and not self._rolling_back:
            self.step = f"block-device/{part.group(1)}"
            self.where = f"in the block-device step ({part.group(1)})"

    def _start_step(self, step: str) -> None:
        self.step, self.where = step, f"in {step}"
        self.tail.clear()
        self._rolling_back = False

    def _keep(self, message: str) -> None:
        if FRAME_RE.match(message):
            self._in_frame = True
            return
        if self._in_frame and message.startswith("    "):
            return  # the frame's source line and caret marks
        self._in_frame = False
        self.tail.append(message)

    def _enter(self, phase: str) -> None:
        if phase == self.phase:
            return
        now = self.clock()
        self.phases[self.phase] = self.phases.get(self.phase, 0.0) + now - self.phase_started
        self.phase, self.phase_started = phase, now
        self.on_phase(phase)

    def close(self) -> None:
        self._enter("dib:done")
        self.phases.pop("dib:done", None)
        self.handle.close()


def run_dib(plan: BuildPlan, paths: BuildPaths, log_file: Path, *,
            on_phase: Callable[[str], None], clock: Callable[[], float]) -> dict[str, float]:
    """Run disk-image-create; return seconds per DIB phase, or raise BuildError."""
    log = DibLog(log_file, on_phase, clock)
    try:
        code = stream(dib_command(plan, paths), env=dib_environment(plan, paths),
                      cwd=paths.work, on_line=log.line,
                      on_start=lambda proc: paths.dib_pgid.write_text(str(proc.pid)))
    finally:
        log.close()
    if code != 0:
        raise BuildError(f"diskimage-builder failed {log.where} (exit {code})",
                         log_path=str(log_file), step=log.step, log_tail="\n".join(log.tail),
                         hint=f"the full log is {log_file}")
    return log.phases
