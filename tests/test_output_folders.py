"""Every command that writes a folder (--out, --dir) refuses one it cannot create with one line
and exit 2 - no traceback - through the real command line (sage_image/folders.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.errors import UsageError
from sage_image.folders import check_folder, make_folder, make_parent_folder

SAGE_IMAGE = [sys.executable, "-m", "sage_image.cli"]
REF = "0123456789abcdef0123456789abcdef01234567"
UNDER_PROC = "/proc/sage-image-test/out"  # /proc refuses new folders, even to root


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAGE_IMAGE, *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("sage-image: error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Error:" not in result.stderr, result.stderr  # no FileExistsError: ... either


@pytest.mark.parametrize("argv", [
    ["vw", "k8s", "--nodes", "1", "--out", UNDER_PROC],
    ["ci", "github", "--releases", "bookworm", "--variants", "base",
     "--out", f"{UNDER_PROC}/release.yml"],
    ["ci", "k8s", "--releases", "bookworm", "--variants", "base", "--ref", REF,
     "--out", UNDER_PROC],
    ["localcloud", "up", "--dir", UNDER_PROC],
], ids=["vw-k8s", "ci-github", "ci-k8s", "localcloud-up"])
def test_a_folder_that_cannot_be_created_is_one_line(argv: list[str]) -> None:
    flag = argv[-2]
    assert_one_line_error(run_cli(*argv), f"{flag} /proc/sage-image-test")
    assert not Path("/proc/sage-image-test").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="build refuses non-root before looking at --out")
def test_build_out_naming_an_existing_file_is_one_line(tmp_path: Path) -> None:
    existing = tmp_path / "not-a-folder"
    existing.write_text("a file\n")
    result = run_cli("build", "--release", "bookworm", "--variant", "base", "--out",
                     str(existing), "--cache", str(tmp_path / "cache"))
    assert_one_line_error(result, f"--out {existing}: exists and is not a folder")
    assert existing.read_text() == "a file\n"
    assert not (tmp_path / "cache").exists()  # refused before anything was started


def test_ci_github_out_naming_a_folder_is_one_line(tmp_path: Path) -> None:
    result = run_cli("ci", "github", "--releases", "bookworm", "--variants", "base",
                     "--out", str(tmp_path))
    assert_one_line_error(result, f"--out {tmp_path}: is a folder, expected a file name")


def test_make_folder(tmp_path: Path) -> None:
    made = make_folder(tmp_path / "a" / "b", option="--out")
    assert made.is_dir() and make_folder(made, option="--out") == made  # idempotent
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r"--out .*/f: exists and is not a folder"):
        make_folder(tmp_path / "f", option="--out")
    with pytest.raises(UsageError, match=r"--dir .*/f/sub: is inside .*/f, which exists and is not"):
        check_folder(tmp_path / "f" / "sub", option="--dir")
    with pytest.raises(UsageError, match=r"--out /proc/x/y: cannot create folder /proc/x: "):
        make_folder(Path("/proc/x/y"), option="--out")
    with pytest.raises(UsageError, match="is a folder, expected a file name"):
        make_parent_folder(tmp_path / "a", option="--out")
