"""One throw-away VM: a copy-on-write overlay over the image, QEMU, a serial log, a free port.

The image file is only ever QEMU's read-only backing file; every write goes to the overlay in the
test's work directory. ``Machine`` is a context manager: leaving it - normally, on an error, on a
timeout or on Ctrl-C/SIGTERM (turned into KeyboardInterrupt by the CLI) - kills QEMU's process
group and deletes the overlay. QEMU also gets SIGKILL from the kernel if this process dies
without a chance to clean up (PR_SET_PDEATHSIG), so no VM outlives its test.
"""

from __future__ import annotations

import ctypes
import json
import shlex
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ...errors import BootTestError
from ...runner import run, terminate_group
from ...waiting import poll_until

QEMU_BINARY = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64"}
CONSOLE = {"x86_64": "ttyS0,115200", "aarch64": "ttyAMA0,115200"}
# UEFI firmware from Debian's packages (qemu-efi-aarch64, ovmf), first one present wins.
UEFI_FIRMWARE = {
    "aarch64": ("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    "x86_64": ("/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd"),
}
PORT_RETRIES = 3
STARTUP_GRACE = 1.0    # QEMU reports a taken port or a bad option within this time
SYNC_WAIT = 10.0       # how long the guest gets to report it began an emergency sync
SYNC_SETTLE = 3.0      # and then to finish it (a few MiB of logs)


@dataclass(frozen=True)
class VmSpec:
    disk: Path
    disk_format: str
    qemu_arch: str
    accel: str                  # kvm or tcg
    seed: Path                  # config drive / NoCloud ISO
    mac: str
    kernel: Path | None = None  # direct boot when set, else through the image's firmware path
    initrd: Path | None = None
    cmdline: str = ""
    uefi: bool = False          # firmware mode: UEFI instead of SeaBIOS (always on aarch64)
    memory_mb: int = 2048
    cpus: int = 2

    @property
    def mode(self) -> str:
        return "direct" if self.kernel else "firmware"


def free_port() -> int:
    """A loopback port nobody listens on right now (QEMU may still lose a race: see start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def qemu_argv(spec: VmSpec, *, overlay: Path, serial_log: Path, port: int,
              qmp: str | None = None) -> list[str]:
    """The QEMU command line for one test VM (pure: easy to test and to print with --debug).

    ``qmp`` names an abstract Unix socket for QEMU's machine protocol (abstract: a test's work
    directory can be longer than a socket path may be, and nothing is left on disk).
    """
    argv = [QEMU_BINARY[spec.qemu_arch], "-name", "sage-image-test", "-nodefaults",
            "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
            "-m", str(spec.memory_mb), "-smp", str(spec.cpus),
            "-serial", f"file:{serial_log}"]
    if qmp:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off,abstract=on"]
    argv += _machine_args(spec)
    argv += ["-drive", f"if=none,id=root,file={overlay},format=qcow2,cache=unsafe",
             "-device", "virtio-blk-pci,drive=root,bootindex=1",
             "-drive", f"if=none,id=seed,file={spec.seed},format=raw,readonly=on",
             "-device", "virtio-blk-pci,drive=seed",
             "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
             "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac}",
             "-device", "virtio-rng-pci"]  # entropy: sshd and cloud-init must not wait for it
    if spec.kernel:
        argv += ["-kernel", str(spec.kernel), "-append", spec.cmdline]
        if spec.initrd:
            argv += ["-initrd", str(spec.initrd)]
    return argv


def _machine_args(spec: VmSpec) -> list[str]:
    accel = ["-accel", "kvm"] if spec.accel == "kvm" else ["-accel", "tcg,thread=multi"]
    if spec.qemu_arch == "aarch64":
        # Under TCG, max's architected pointer authentication (QARMA) costs more than anything
        # else the guest does; QEMU's own cheaper algorithm is what its docs advise for speed.
        # Pointer authentication stays on, so the guest runs the same code paths.
        cpu = "max" if spec.accel == "kvm" else "max,pauth-impdef=on"
        args = ["-machine", "virt", "-cpu", cpu, *accel]
        return args + (["-bios", uefi_firmware("aarch64")] if not spec.kernel else [])
    args = ["-machine", "pc", "-cpu", "max", *accel]
    if spec.uefi and not spec.kernel:
        args += ["-bios", uefi_firmware("x86_64")]
    return args


def uefi_firmware(qemu_arch: str) -> str:
    for path in UEFI_FIRMWARE[qemu_arch]:
        if Path(path).is_file():
            return path
    package = "qemu-efi-aarch64" if qemu_arch == "aarch64" else "ovmf"
    raise BootTestError(f"no UEFI firmware for {qemu_arch} (looked at "
                        f"{', '.join(UEFI_FIRMWARE[qemu_arch])})",
                        hint=f"apt-get install {package}")


class Machine:
    """A running test VM; use as a context manager so it is always stopped and removed."""

    def __init__(self, spec: VmSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.overlay = workdir / "overlay.qcow2"
        self.serial_log = workdir / "serial.log"
        self.qemu_log = workdir / "qemu.log"
        self.port = 0
        self.qmp_name = f"sage-image-qmp-{uuid.uuid4().hex}"
        self.argv: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Machine:
        try:
            self._create_overlay()
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _create_overlay(self) -> None:
        # Absolute backing path: the overlay lives elsewhere; the backing file is opened read-only.
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", self.spec.disk_format,
             "-b", self.spec.disk.resolve(), self.overlay], timeout=60)

    def _start(self) -> None:
        for _attempt in range(PORT_RETRIES):
            self.port = free_port()
            self.argv = qemu_argv(self.spec, overlay=self.overlay, serial_log=self.serial_log,
                                  port=self.port, qmp=self.qmp_name)
            with self.qemu_log.open("wb") as log:
                # Not runner.py: a long-lived VM whose lifetime Machine manages (terminate_group).
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             preexec_fn=_die_with_parent)
            if not self._failed_at_start():
                return
            if "host forwarding rule" not in self.qemu_output():
                raise BootTestError(f"QEMU did not start: {self.qemu_error()}",
                                    hint=f"command: {shlex.join(self.argv)}")
        raise BootTestError(f"QEMU could not forward a free port after {PORT_RETRIES} tries")

    def _failed_at_start(self) -> bool:
        return poll_until(lambda: not self.alive(), timeout=STARTUP_GRACE, interval=0.05) is True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def qemu_output(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def qemu_error(self) -> str:
        lines = [ln for ln in self.qemu_output().splitlines() if ln.strip()]
        code = self.proc.returncode if self.proc else None
        return lines[-1] if lines else f"exit code {code}"

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    def sync_guest(self) -> bool:
        """Ask the guest's kernel to write what it has not yet written (SysRq-S), without SSH.

        Before the overlay is read with the VM gone: a log written in the last half-minute is
        still in the guest's page cache otherwise. Only a PC has the PS/2 keyboard SysRq arrives
        on; Debian's default kernel.sysrq (438) allows sync. True when the guest saw the request.
        """
        if self.spec.qemu_arch != "x86_64" or not self.alive():
            return False
        keys = [{"type": "qcode", "data": key} for key in ("alt", "sysrq", "s")]
        try:
            self.qmp("send-key", {"keys": keys})
        except (OSError, ValueError):
            return False
        if not poll_until(lambda: "Emergency Sync" in self.serial_text(), timeout=SYNC_WAIT):
            return False
        time.sleep(SYNC_SETTLE)  # its "complete" line is below the console's log level
        return True

    def qmp(self, command: str, arguments: dict[str, object] | None = None) -> object:
        """Run one QMP command; OSError or ValueError when QEMU does not answer as QMP does."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect("\0" + self.qmp_name)
            stream = sock.makefile("rw", encoding="utf-8")
            _qmp_reply(stream)  # the greeting
            for name, args in (("qmp_capabilities", None), (command, arguments)):
                request: dict[str, object] = {"execute": name}
                if args:
                    request["arguments"] = args
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                reply = _qmp_reply(stream)
            return reply.get("return")

    def stop(self) -> None:
        """Kill QEMU and delete the overlay; safe to call twice."""
        self.kill()
        self.overlay.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill QEMU (its whole process group) but keep the overlay, e.g. to read logs from it."""
        if self.proc is not None and self.proc.poll() is None:
            terminate_group(self.proc, grace=5.0)  # type: ignore[arg-type]


def _qmp_reply(stream: TextIO) -> dict[str, object]:
    """The next reply on a QMP stream, skipping the asynchronous events in between."""
    while True:
        line = stream.readline()
        if not line:
            raise ValueError("QMP connection closed")
        message = json.loads(line)
        if "error" in message:
            raise ValueError(f"QMP error: {message['error'].get('desc', message['error'])}")
        if "event" not in message:
            return message


def _die_with_parent() -> None:
    # Runs in the child before exec: ask the kernel to SIGKILL QEMU when we die (Linux only).
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
