"""Error paths with real qemu-img and QEMU on tiny images: each gives a clear error, no hang,
and leaves no QEMU process and no work directory behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_image.cli import main
from sage_image.outfolder import read_results

SAGE_IMAGE = [sys.executable, "-m", "sage_image.cli"]


@pytest.fixture
def workbase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work directories (overlays, keys, QEMU) go here, so leftovers are easy to find."""
    base = tmp_path / "work"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.setenv("TMPDIR", str(base))
    yield base
    assert _qemu_under(base) == [], "a QEMU process outlived its test"
    assert [p.name for p in base.iterdir() if p.name.startswith("sage-image-test-")] == []


def _qemu_under(base: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(base) in line]


def test_not_a_disk_image_is_bad_input(tiny, workbase: Path, capsys) -> None:
    assert main(["test", str(tiny("not-a-disk"))]) == 2
    assert "not a disk image" in capsys.readouterr().err


def test_missing_path_is_bad_input(tmp_path: Path, workbase: Path, capsys) -> None:
    assert main(["test", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_output_folder_without_manifest(tmp_path: Path, workbase: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    assert main(["test", str(tmp_path / "out")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_corrupt_qcow2_is_refused_before_booting(tiny, workbase: Path, capsys) -> None:
    assert main(["test", str(tiny("corrupt-qcow2"))]) == 1
    assert "qcow2 image is corrupt" in capsys.readouterr().err


def test_image_without_kernel(tiny, workbase: Path, capsys) -> None:
    assert main(["test", str(tiny("no-kernel-qcow2"))]) == 1
    err = capsys.readouterr().err
    assert "no kernel in the image (/boot has no vmlinuz-*)" in err and "--firmware" in err


def test_kernel_qemu_cannot_load(tiny, workbase: Path, capsys) -> None:
    start = time.monotonic()
    assert main(["test", str(tiny("bad-kernel")), "--accel", "tcg"]) == 1
    assert "QEMU did not start" in capsys.readouterr().err
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("memory", ["64", "2000000"])
def test_memory_out_of_range_is_bad_input(tiny, workbase: Path, capsys, memory: str) -> None:
    assert main(["test", str(tiny("unbootable")), "--memory", memory]) == 2
    err = capsys.readouterr().err
    assert f"--memory {memory}: expected MiB from 128 to 1048576" in err and "Traceback" not in err


def test_unknown_check_name(tiny, workbase: Path, capsys) -> None:
    assert main(["test", str(tiny("unbootable")), "--checks", "hostnme"]) == 2
    assert "unknown check 'hostnme' (did you mean 'hostname'?)" in capsys.readouterr().err


def test_guest_that_never_comes_up_times_out_and_keeps_the_console(tiny, workbase: Path,
                                                                   tmp_path: Path,
                                                                   capsys) -> None:
    image = tmp_path / "never.raw"
    image.write_bytes(tiny("unbootable").read_bytes())
    junit = tmp_path / "junit.xml"
    start = time.monotonic()
    code = main(["test", str(image), "--firmware", "--accel", "tcg", "--boot-timeout", "6",
                 "--junit", str(junit)])
    assert code == 1 and time.monotonic() - start < 60
    captured = capsys.readouterr()
    assert "did not accept SSH on 127.0.0.1:" in captured.err and "within 6 s" in captured.err
    results = read_results(tmp_path / "never.raw.test-results.json")
    assert results.passed is False and results.mode == "firmware"
    assert "did not accept SSH" in results.error
    login = next(c for c in results.checks if c.name == "ssh-login")
    assert "did not accept SSH" in login.reason
    serial = tmp_path / "never.raw.test-logs" / "serial.log"
    # SeaBIOS writes to the (absent) screen, so the console log may be empty - but it is kept.
    assert str(serial) in results.logs and serial.is_file()
    assert "last console line: (the console printed nothing)" in results.error
    assert 'errors="1"' in junit.read_text()


def test_sigterm_kills_qemu_and_cleans_up(tiny, workbase: Path, tmp_path: Path) -> None:
    image = tmp_path / "slow.raw"
    image.write_bytes(tiny("unbootable").read_bytes())
    env = dict(os.environ, TMPDIR=str(workbase))
    proc = subprocess.Popen([*SAGE_IMAGE, "test", str(image), "--firmware", "--accel", "tcg",
                             "--boot-timeout", "300"], env=env, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while not _qemu_under(workbase) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _qemu_under(workbase), "QEMU never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err


def test_parallel_tests_use_separate_ports_and_overlays(tiny, workbase: Path,
                                                        tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(workbase))
    procs = []
    for i in range(2):
        image = tmp_path / f"p{i}.raw"
        image.write_bytes(tiny("unbootable").read_bytes())
        procs.append(subprocess.Popen(
            [*SAGE_IMAGE, "test", str(image), "--firmware", "--accel", "tcg", "--json",
             "--boot-timeout", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    ports = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        report = json.loads(out)
        ports.add(report["error"].split("127.0.0.1:")[1].split()[0])
    assert len(ports) == 2


def test_a_run_with_chosen_checks_says_it_does_not_qualify_for_publishing(
        tiny, workbase: Path, tmp_path: Path, capsys) -> None:
    image = tmp_path / "partial.raw"
    image.write_bytes(tiny("unbootable").read_bytes())
    code = main(["test", str(image), "--checks", "ssh-login", "--firmware", "--accel", "tcg",
                 "--boot-timeout", "4"])
    assert code == 1
    err = capsys.readouterr().err
    assert "this run does not qualify for publishing (--checks ssh-login)" in err
    results = read_results(tmp_path / "partial.raw.test-results.json")
    assert results.qualifies_for_publish is False
    assert results.restricted_by == ("--checks ssh-login",)
