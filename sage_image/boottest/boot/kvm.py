"""Choose the accelerator: KVM only when it really boots a guest here, else TCG.

``/dev/kvm`` existing proves little: on this kind of host the module is ``kvm_pvm`` and a stock
Debian kernel hangs under it after "Loading initial ramdisk". So the probe boots the image's own
kernel without a root disk: a kernel that works panics with "VFS: Unable to mount root" within
seconds; one that hangs runs into the probe's time limit. The verdict is cached per host kernel,
KVM module and guest kernel, so only the first test on a machine pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROBE_SECONDS = 15.0
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
BOOTED_MARKERS = ("Unable to mount root", "Kernel panic")


@dataclass(frozen=True)
class AccelChoice:
    accel: str           # "kvm" or "tcg"
    why: str             # one line for the log: why this accelerator


def choose_accel(requested: str, *, qemu: str, qemu_arch: str, kernel: Path | None,
                 cache_dir: Path | None = None) -> AccelChoice:
    """requested is auto, kvm or tcg; auto probes (once per host and kernel) before using KVM."""
    if requested in ("kvm", "tcg"):
        return AccelChoice(requested, "requested with --accel")
    if HOST_ARCH.get(platform.machine()) != qemu_arch:
        return AccelChoice("tcg", f"guest is {qemu_arch}, host is {platform.machine()}")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("tcg", "/dev/kvm is not usable")
    if kernel is None:
        return AccelChoice("tcg", "no kernel to probe KVM with")
    cache = (cache_dir or default_cache_dir()) / "kvm-probe.json"
    key = _probe_key(kernel, qemu)
    verdicts = _read_cache(cache)
    if key not in verdicts:
        verdicts[key] = probe_kvm(qemu=qemu, kernel=kernel)
        _write_cache(cache, verdicts)
    if verdicts[key]:
        return AccelChoice("kvm", "KVM probe booted the image's kernel")
    return AccelChoice("tcg", "KVM probe: the image's kernel does not boot under KVM here")


def probe_kvm(*, qemu: str, kernel: Path, seconds: float = PROBE_SECONDS) -> bool:
    """True when the kernel boots under KVM far enough to look for its root file system."""
    argv = [qemu, "-accel", "kvm", "-m", "256", "-nodefaults", "-no-user-config",
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 loglevel=4"]
    try:
        # Not runner.run: a timeout is the expected "no", and the serial output may not be UTF-8.
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        return False  # subprocess.run killed QEMU already
    except FileNotFoundError:
        return False
    return any(marker in proc.stdout for marker in BOOTED_MARKERS)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sage-image"


def _probe_key(kernel: Path, qemu: str) -> str:
    digest = hashlib.sha256()
    with kernel.open("rb") as f:
        digest.update(f.read())
    try:
        modules = "".join(line for line in Path("/proc/modules").read_text().splitlines(True)
                          if line.startswith("kvm"))
    except OSError:
        modules = ""
    digest.update(f"{platform.release()}|{modules}|{qemu}".encode())
    return digest.hexdigest()


def _read_cache(path: Path) -> dict[str, bool]:
    try:
        data = json.loads(path.read_text())
        return {str(k): bool(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_cache(path: Path, verdicts: dict[str, bool]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(verdicts, indent=1))
        tmp.replace(path)  # atomic: parallel tests never read half a file
    except OSError:
        pass  # a cache we cannot write only costs another probe next time
