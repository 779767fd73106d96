"""`test_image`: boot one image, run its checks, write its results - as a flat list of steps.

Library code: reports progress through `Events` callbacks and never prints. A failing check or a
guest that never comes up is a result (the report says why); bad input and images that cannot
be booted at all (not a disk image, corrupt qcow2, no kernel) raise before anything is started.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ...catalog.model import load_catalog
from ...errors import BootTestError
from ...outfolder import logs_folder
from ...runner import run
from ...waiting import poll_until
from ..boot import disk as disk_mod
from ..boot.configdrive import Metadata, write_drive
from ..boot.image import ImageUnderTest, resolve_image, verify_checksum
from ..boot.kvm import choose_accel
from ..boot.qemu import CONSOLE, QEMU_BINARY, Machine, VmSpec
from ..boot.ssh import SshTarget, generate_key, ssh_run, start_master, stop_master
from .identity import check_digest, current_tester
from .model import CheckDef, load_checks, render, select_checks
from .results import TestReport, save_results, write_junit
from .runner import GUEST_ASSET_DIR, CheckContext, CheckResult, run_checks

# Generous: on a quiet 2-core host a direct boot reaches SSH in well under a minute, but a
# loaded one (parallel builds) was measured at 250-330 s, and a limit only guards against hangs.
BOOT_TIMEOUT = {"direct": 600.0, "firmware": 1800.0}
# After cloud-init reports "finished" on the console, the key must work within this time.
KEY_GRACE = 30.0
GUEST_LOGS = ("/var/log/cloud-init.log", "/var/log/cloud-init-output.log")


@dataclass(frozen=True)
class TestRequest:
    path: Path
    checks: tuple[str, ...] = ()
    mode: str = "direct"                # direct (kernel+initrd) or firmware (bootloader)
    accel: str = "auto"
    metadata: str = "configdrive"       # or nocloud
    disk_format: str | None = None
    variant: str | None = None          # for a bare image file without manifest
    boot_timeout: float | None = None
    check_timeout: float | None = None  # overrides every check's own limit
    uefi: bool = False
    junit: Path | None = None
    catalog: Path | None = None
    definitions: Path | None = None     # the check definitions (default: the shipped checks.yaml)
    work_base: Path | None = None
    memory_mb: int = 2048

    __test__ = False


@dataclass(frozen=True)
class Events:
    """Progress callbacks for the CLI; all optional."""

    phase: Callable[[str], None] = lambda text: None
    check_started: Callable[[CheckDef], None] = lambda check: None
    check_done: Callable[[CheckResult], None] = lambda result: None
    # Called with the VM still running after the checks (--keep-running); returns to stop it.
    hold: Callable[[SshTarget], None] | None = field(default=None)


def test_image(request: TestRequest, events: Events = Events()) -> TestReport:
    events.phase("inspecting the image")
    image = resolve_image(request.path, disk_format=request.disk_format, variant=request.variant)
    checks = _checks_for(request, image)
    disk_mod.check_disk(image.disk)
    root = disk_mod.find_root(image.disk)
    sha512 = verify_checksum(image)
    started = _now()
    workdir = Path(tempfile.mkdtemp(prefix="sage-image-test-", dir=request.work_base))
    try:
        spec, target, meta = _prepare(request, image, root, workdir, events)
        with Machine(spec, workdir) as vm:
            events.phase(f"booting ({spec.mode}, {spec.accel}) - ssh on 127.0.0.1:{vm.port}")
            report = _boot_and_check(request, image, checks, vm, target, meta, workdir, events)
        report = replace(report, tested_sha512=sha512, started=started, finished=_now(),
                         restricted_by=publish_restrictions(request, image,
                                                            keep_running=events.hold is not None),
                         tester=current_tester(), digests={c.name: check_digest(c) for c in checks},
                         memory_mb=request.memory_mb)
        return _write(request, image, report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def publish_restrictions(request: TestRequest, image: ImageUnderTest, *,
                         keep_running: bool) -> tuple[str, ...]:
    """The options given that make the run not count for publishing (see TestReport)."""
    restricted = []
    if request.checks:
        restricted.append(f"--checks {','.join(request.checks)}")
    if keep_running:
        restricted.append("--keep-running")
    if request.variant and image.manifest and request.variant != image.manifest.variant:
        restricted.append(f"--variant {request.variant}")
    return tuple(restricted)


def _checks_for(request: TestRequest, image: ImageUnderTest) -> tuple[CheckDef, ...]:
    selected = select_checks(load_catalog(request.catalog), load_checks(request.definitions),
                             variant=image.variant, only=request.checks)
    if request.check_timeout:
        selected = tuple(replace(c, timeout=request.check_timeout) for c in selected)
    return selected


def _prepare(request: TestRequest, image: ImageUnderTest, root: disk_mod.Partition,
             workdir: Path, events: Events) -> tuple[VmSpec, SshTarget, Metadata]:
    kernel, initrd = image.kernel, image.initrd
    if request.mode == "direct" and (kernel is None or initrd is None):
        events.phase("reading the kernel out of the image")
        files = disk_mod.extract_kernel(_raw_copy(image, workdir), root, workdir)
        kernel, initrd = files.kernel, files.initrd
    accel = choose_accel(request.accel, qemu=QEMU_BINARY[image.qemu_arch],
                         qemu_arch=image.qemu_arch, kernel=kernel)
    instance = str(uuid.uuid4())
    hostname = f"sage-test-{instance[:8]}"
    key = generate_key(workdir, comment=f"sage-image-test-{instance}")
    mac = "52:54:00:" + ":".join(instance.replace("-", "")[i:i + 2] for i in (8, 10, 12))
    meta = Metadata(uuid=instance, hostname=hostname, public_key=key.public_line, mac=mac)
    seed = write_drive(request.metadata, meta, workdir)
    direct = request.mode == "direct"
    spec = VmSpec(
        disk=image.disk.path, disk_format=image.disk.format, qemu_arch=image.qemu_arch,
        accel=accel.accel, seed=seed, mac=mac, kernel=kernel if direct else None,
        initrd=initrd if direct else None, uefi=request.uefi, memory_mb=request.memory_mb,
        cmdline=" ".join((f"root={image.root}", "ro", f"console={CONSOLE[image.qemu_arch]}")
                         + image.kernel_args))
    return spec, SshTarget(port=0, key=key.private, control=workdir / "mux"), meta


def _raw_copy(image: ImageUnderTest, workdir: Path) -> Path:
    if image.disk.format == "raw":
        return image.disk.path
    raw = workdir / "image.raw"
    # Sparse conversion; the qcow2 itself is only read.
    run(["qemu-img", "convert", "-f", image.disk.format, "-O", "raw", image.disk.path, raw],
        timeout=600)
    return raw


def _boot_and_check(request: TestRequest, image: ImageUnderTest, checks: tuple[CheckDef, ...],
                    vm: Machine, target: SshTarget, meta: Metadata, workdir: Path,
                    events: Events) -> TestReport:
    target = replace(target, port=vm.port)
    try:
        return _boot_and_check_inner(request, image, checks, vm, target, workdir, meta, events)
    finally:
        stop_master(target)


def _boot_and_check_inner(request: TestRequest, image: ImageUnderTest,
                          checks: tuple[CheckDef, ...], vm: Machine, target: SshTarget,
                          workdir: Path, meta: Metadata, events: Events) -> TestReport:
    limit = request.boot_timeout or BOOT_TIMEOUT[vm.spec.mode]
    base = TestReport(name=image.name, tested_file=image.tested_file, tested_sha512="",
                      mode=vm.spec.mode, accel=vm.spec.accel, checks=(), boot_seconds=None,
                      started="", finished="")
    try:
        boot_seconds = wait_for_guest(vm, target, limit=limit, events=events)
    except BootTestError as exc:
        logs = _keep_logs(image, vm, None, workdir)
        return replace(base, error=exc.message, logs=logs,
                       checks=_not_run(checks, exc.message))
    firmware = booted_firmware(target)
    wanted = "uefi" if vm.spec.uefi or vm.spec.qemu_arch == "aarch64" else "bios"
    if vm.spec.mode == "firmware" and firmware != wanted:
        return replace(base, firmware=firmware, error=f"the guest booted with {firmware}, "
                       f"not {wanted}", logs=_keep_logs(image, vm, target, workdir,
                                                       may_stop=events.hold is None),
                       checks=_not_run(checks, f"booted with {firmware}"))
    events.phase(f"guest up in {boot_seconds:.0f} s; running {len(checks)} checks")
    ctx = CheckContext(target=target, manifest=image.manifest, values=_values(image, meta),
                       host_dir=workdir, qemu_arch=image.qemu_arch)
    results = []
    checks_start = time.monotonic()
    for result in run_checks(checks, ctx, on_start=events.check_started):
        results.append(result)
        events.check_done(result)
    report = replace(base, boot_seconds=round(boot_seconds, 1), checks=tuple(results),
                     firmware=firmware,
                     checks_seconds=round(time.monotonic() - checks_start, 1))
    if not report.passed:
        report = replace(report, logs=_keep_logs(image, vm, target, workdir,
                                                 may_stop=events.hold is None))
    if events.hold is not None:
        events.hold(target)
    return report


def wait_for_guest(vm: Machine, target: SshTarget, *, limit: float, events: Events) -> float:
    """Seconds until cc logs in with the key; BootTestError (naming the cause) otherwise."""
    start = time.monotonic()
    deadline = start + limit
    finished_at: list[float] = []  # when the console said cloud-init finished

    def logged_in() -> float | None:
        if not vm.alive():
            raise BootTestError(f"QEMU exited before the guest came up: {vm.qemu_error()}; "
                                f"last console line: {_last_console_line(vm)}")
        console = vm.serial_text()
        panic = re.search(r"Kernel panic[^\n]*", console)
        if panic:
            raise BootTestError(f"the guest kernel panicked: {panic.group(0).strip()}")
        events.phase(_boot_phase(console))
        probe = start_master(target, timeout=max(2.0, min(30.0, deadline - time.monotonic())))
        if probe.exit == 0:
            return time.monotonic() - start
        if "Cloud-init v." in console and " finished at " in console and not finished_at:
            finished_at.append(time.monotonic())
        if finished_at and "Permission denied" in probe.stderr \
                and time.monotonic() - finished_at[0] > KEY_GRACE:
            raise BootTestError("cloud-init finished but sshd refuses the metadata key for cc: "
                                f"{probe.stderr.strip().splitlines()[-1]}")
        return None

    seconds = poll_until(logged_in, timeout=limit, interval=1.0)
    if seconds is None:
        raise BootTestError(f"the guest did not accept SSH on 127.0.0.1:{target.port} within "
                            f"{limit:.0f} s; last console line: {_last_console_line(vm)}")
    return seconds


def booted_firmware(target: SshTarget) -> str | None:
    """bios or uefi, as the guest kernel saw it (/sys/firmware/efi exists only under UEFI)."""
    out = ssh_run(target, "if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi",
                  timeout=60)
    text = out.stdout.strip()
    return text if out.exit == 0 and text in ("bios", "uefi") else None


def _boot_phase(console: str) -> str:
    for marker, phase in ((" login:", "login prompt; waiting for ssh"),
                          ("Cloud-init v.", "cloud-init running"),
                          ("Linux version", "kernel booting"),
                          ("SeaBIOS", "firmware (BIOS)"), ("UEFI", "firmware (UEFI)")):
        if marker in console:
            return phase
    return "starting"


def _last_console_line(vm: Machine) -> str:
    lines = [ln.strip() for ln in vm.serial_text().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(the console printed nothing)"


def _values(image: ImageUnderTest, meta: Metadata) -> dict[str, str]:
    sources = image.manifest.sources.values() if image.manifest else ()
    paths = " ".join(f"'{s.path}'" for s in sources)
    return {"hostname": meta.hostname, "uuid": meta.uuid, "user": "cc",
            "key_comment": f"sage-image-test-{meta.uuid}", "asset_dir": GUEST_ASSET_DIR,
            "source_paths": paths, "console": CONSOLE[image.qemu_arch].split(",")[0]
            } | _manifest_values(image)


def _manifest_values(image: ImageUnderTest) -> dict[str, str]:
    """Placeholders taken from what the build recorded; a check naming one the manifest lacks
    keeps the literal {placeholder} and so fails."""
    cuda = image.manifest.properties.get("build-cuda-version") if image.manifest else None
    return {"cuda_version": str(cuda)} if cuda else {}


def _not_run(checks: tuple[CheckDef, ...], why: str) -> tuple[CheckResult, ...]:
    """The boot failed: ssh-login failed with the boot's reason, the others did not run."""
    results = []
    for check in checks:
        if check.name == "ssh-login":
            reason = render(check.reason, {"out": why})
        else:
            reason = "not run: the guest did not come up"
        results.append(CheckResult(check.name, False, 0.0, reason=reason))
    return tuple(results)


def _keep_logs(image: ImageUnderTest, vm: Machine, target: SshTarget | None,
               workdir: Path, *, may_stop: bool = True) -> tuple[str, ...]:
    """Copy the serial console log and the guest's cloud-init logs next to the results."""
    dest = logs_folder(image.results_path)
    dest.mkdir(parents=True, exist_ok=True)
    kept = []
    missing = []
    for log in GUEST_LOGS:
        text = _guest_file(target, log) if target else None
        if text is None:
            missing.append(log)
            continue
        path = dest / Path(log).name
        path.write_text(text)
        kept.append(str(path))
    # SSH is down or refuses cc (the failure being reported, often): read the disk instead -
    # unless the VM is to be held for someone to log in.
    if missing and may_stop:
        kept += _logs_from_overlay(vm, dest, workdir, tuple(missing))
    if vm.serial_log.exists():  # last: it also shows whether the guest synced for that read
        kept.insert(0, str(shutil.copy(vm.serial_log, dest / "serial.log")))
    return tuple(kept)


def _guest_file(target: SshTarget, path: str) -> str | None:
    out = ssh_run(target, f"sudo -n cat {path} 2>/dev/null || cat {path}", timeout=30)
    return out.stdout if out.exit == 0 else None


def _logs_from_overlay(vm: Machine, dest: Path, workdir: Path,
                       logs: tuple[str, ...]) -> list[str]:
    """No SSH: stop the VM and read the logs out of its overlay (debugfs, on a scratch copy).

    The guest is asked to write its page cache first, and the copy's journal is replayed: without
    both, a log the guest wrote in its last half-minute is not on the disk yet (seen: a
    cloud-init.log missing now and then).
    """
    vm.sync_guest()
    vm.kill()
    fs = workdir / "overlay-root.raw"
    try:
        info = disk_mod.inspect_disk(vm.overlay)
        root = disk_mod.find_root(info)
        disk_mod.copy_partition(info, root, fs)
        disk_mod.replay_journal(fs)
        kept = []
        for log in logs:
            target = dest / Path(log).name
            disk_mod.dump_file(fs, replace(root, offset=0), log, target)
            if target.is_file() and target.stat().st_size:
                kept.append(str(target))
        return kept
    except Exception:  # noqa: BLE001 - best effort: the serial log is already kept
        return []
    finally:
        fs.unlink(missing_ok=True)


def _write(request: TestRequest, image: ImageUnderTest, report: TestReport) -> TestReport:
    save_results(report, image.results_path)
    if request.junit:
        write_junit(report, request.junit)
    return report


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
