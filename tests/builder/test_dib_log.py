"""Reading diskimage-builder's output: phases, the failing step, the log tail and the shims."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sage_image.builder.dib import SUDO_SHIM, DibLog

LINES = [
    "2026-11-25 08:44:20.227 | Running hooks from /tmp/x/hooks/root.d",
    "2026-11-25 08:44:20.509 | dib-run-parts Running /tmp/x/hooks/root.d/08-debootstrap",
    "2026-11-25 08:45:38.560 | dib-run-parts Running /tmp/in_target.d/install.d/50-sage-docker",
    "2026-11-25 08:45:39.000 | E: Unable to locate package docker.io",
]


def test_phases_step_and_tail(tmp_path):
    clock = iter([0.0, 1.0, 5.0, 9.0]).__next__
    phases: list[str] = []
    log = DibLog(tmp_path / "build.log", phases.append, clock)
    for line in LINES:
        log.line(line)
    log.close()
    assert phases == ["dib:root.d", "dib:install.d", "dib:done"]
    assert log.step == "install.d/50-sage-docker"
    assert log.phases == {"dib:prepare": 1.0, "dib:root.d": 4.0, "dib:install.d": 4.0}
    assert log.tail[-1] == "E: Unable to locate package docker.io"  # timestamps stripped
    assert (tmp_path / "build.log").read_text().splitlines() == LINES  # the log keeps them


def run_sudo_shim(tmp_path: Path, *args: str) -> str:
    shim = tmp_path / "sudo"
    shim.write_text(SUDO_SHIM)
    shim.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "TMPDIR": "/leaked", "HOME": "/root"}
    return subprocess.run([str(shim), *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def test_sudo_shim_resets_the_environment_like_sudo(tmp_path):
    # A build-time TMPDIR leaking into the chroot broke package scripts: plain sudo drops it ...
    assert "TMPDIR" not in run_sudo_shim(tmp_path, "env")
    # ... sudo -E keeps it, and PATH (our shims) survives both.
    assert "TMPDIR=/leaked" in run_sudo_shim(tmp_path, "-E", "env")
    assert f"PATH={tmp_path}:" in run_sudo_shim(tmp_path, "env")
    assert run_sudo_shim(tmp_path, "--", "echo", "ok").strip() == "ok"
    assert "FOO=1" in run_sudo_shim(tmp_path, "FOO=1", "env")


# DIB 3.43's own lines for an arm64 build whose ESP mount failed (this machine's kernel has no
# vfat), from the post-install hooks to the exit: the block-device step logs through Python's
# logging, with two tracebacks (the logged one and the uncaught re-raise) and a rollback.
BLOCK_DEVICE_FAILURE = Path(__file__).with_name("fixtures") / "dib-block-device-failure.log"


def read_failure(tmp_path: Path) -> DibLog:
    clock = iter(float(i) for i in range(1000)).__next__
    phases: list[str] = []
    log = DibLog(tmp_path / "build.log", phases.append, clock)
    for line in BLOCK_DEVICE_FAILURE.read_text().splitlines():
        log.line(line)
    log.close()
    assert phases == ["dib:post-install.d", "dib:block-device", "dib:done"]
    return log


def test_a_block_device_failure_names_that_step_not_the_last_hook(tmp_path):
    log = read_failure(tmp_path)
    # Not post-install.d/95-package-uninstalls, the last hook that ran (and completed).
    assert log.step == "block-device/mount"
    assert log.where == "in the block-device step (mount)"


def test_a_block_device_failure_shows_its_own_last_lines(tmp_path):
    tail = list(read_failure(tmp_path).tail)
    text = "\n".join(tail)
    assert "Calling [sudo mount /dev/mapper/loop2p1 " in text  # what it ran ...
    errors = [line for line in tail if line.startswith("diskimage_builder.block_device.exception.")]
    assert errors and errors[-1].endswith("unknown filesystem type 'vfat'.")  # ... and why
    # Nothing from before the step (the hook, DIB's unmounting), and no traceback frames.
    assert "Nothing to uninstall" not in text and "Calculating image size" not in text
    assert '  File "' not in text and "node.create()" not in text and "^^^" not in text


def test_work_between_hooks_is_named_after_the_hook_that_completed(tmp_path):
    log = DibLog(tmp_path / "build.log", lambda phase: None, iter(range(100)).__next__)
    for line in BLOCK_DEVICE_FAILURE.read_text().splitlines()[:27]:  # up to "Calculating ..."
        log.line(line)
    log.close()
    assert log.where == "after post-install.d/95-package-uninstalls completed"
    tail = list(log.tail)
    assert tail[0].endswith("post-install.d/95-package-uninstalls") and "Nothing to install" not in tail
    assert tail[-1].startswith("Calculating image size")
