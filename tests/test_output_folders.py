"""Every command that writes a folder (--out, --dir, --cache) or a file (--out FILE, --junit,
--save-layer) refuses one it cannot write with one line and exit 2 - no traceback, nothing left
behind (sage_image/folders.py). The options are read from the argparse parsers, so a new
output option fails here until it is listed with the arguments that reach its check."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sage_image import cli, seed_cli
from sage_image.errors import UsageError
from sage_image.folders import check_file, check_folder, make_folder, make_parent_folder, write_file

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


# -- every output option of every command, read from the parsers ---------------------------------
Command = tuple[str, ...]  # ("sage-image", "ci", "k8s"), ("create-image",)
MAINS: dict[str, Callable[[list[str]], int]] = {"sage-image": cli.main,
                                                "create-image": seed_cli.main}
PARSERS = {"sage-image": cli.build_parser, "create-image": seed_cli.parser}

# Path options that are read, never written, by any command that has them
INPUT_OPTIONS = {"--catalog", "--checks-file", "--admin-keys", "--from-layer", "--register-key", "--from-compose",
                 "path", "output_dir", "old", "new", "release_dir"}
# ... and those of one command: plan writes nothing; cache lists and prunes an existing cache;
# localcloud down reads the folder up wrote
INPUTS_OF = {("sage-image", "plan"): {"--out", "--save-layer"},
             ("sage-image", "cache"): {"--cache"},
             ("sage-image", "localcloud", "down"): {"--dir"}}

BUILD = ["--release", "bookworm", "--variant", "base"]
SELECTION = ["--releases", "bookworm", "--variants", "base"]
# (command, option) -> "folder" or "file", and the other arguments that reach the option's check
# ({tmp}: a fresh folder; nothing may appear in it)
OUTPUTS: dict[tuple[Command, str], tuple[str, list[str]]] = {
    (("sage-image", "build"), "--out"): ("folder", [*BUILD, "--cache", "{tmp}/cache"]),
    (("sage-image", "build"), "--cache"): ("folder", [*BUILD, "--out", "{tmp}/out"]),
    (("sage-image", "build"), "--save-layer"): (
        "file", [*BUILD, "--out", "{tmp}/out", "--cache", "{tmp}/cache"]),
    (("sage-image", "test"), "--junit"): ("file", ["{tmp}/image"]),
    (("sage-image", "vw", "k8s"), "--out"): ("folder", []),
    (("sage-image", "release"), "--out"): ("folder", [*SELECTION, "--cache", "{tmp}/cache"]),
    (("sage-image", "release"), "--cache"): ("folder", [*SELECTION, "--out", "{tmp}/out"]),
    (("sage-image", "ci", "github"), "--out"): ("file", SELECTION),
    (("sage-image", "ci", "k8s"), "--out"): ("folder", [*SELECTION, "--ref", REF]),
    (("sage-image", "report"), "--out"): ("folder", ["{tmp}/release"]),
    (("sage-image", "localcloud", "up"), "--dir"): ("folder", []),
    (("create-image",), "--out"): ("folder", [*BUILD, "--region", "CHI@UC"]),
}
NEEDS_ROOT = {"build", "create-image"}  # they refuse non-root users before looking at --out


def path_options(parser: argparse.ArgumentParser, command: Command) -> Iterator[tuple[Command, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from path_options(sub, (*command, name))
        elif action.type is Path:
            yield command, action.option_strings[0] if action.option_strings else action.dest


ALL_PATH_OPTIONS = sorted({o for prog, make in PARSERS.items() for o in path_options(make(), (prog,))})


def test_every_path_option_is_known_as_input_or_output() -> None:
    unknown = [f"{' '.join(c)} {o}" for c, o in ALL_PATH_OPTIONS
               if (c, o) not in OUTPUTS and o not in INPUT_OPTIONS | INPUTS_OF.get(c, set())]
    assert unknown == [], "add each to OUTPUTS (and make it refuse a bad path) or to the inputs"
    assert set(OUTPUTS) <= set(ALL_PATH_OPTIONS)  # no stale entry either


def bad_paths(kind: str, tmp_path: Path) -> list[tuple[str, str]]:
    """(path, what the one line says about it): a folder /proc refuses to hold, /proc itself or
    a file in it, and an existing entry of the wrong kind."""
    wrong_kind = tmp_path / "in-the-way"
    if kind == "folder":
        wrong_kind.write_text("a file\n")
        return [(UNDER_PROC, "cannot create folder /proc/sage-image-test: "),
                ("/proc", "cannot write in it: "),
                (str(wrong_kind), "exists and is not a folder")]
    wrong_kind.mkdir()
    return [(f"{UNDER_PROC}/file", "cannot create folder /proc/sage-image-test: "),
            ("/proc/sage-image-test.out", "cannot write in /proc: "),
            (str(wrong_kind), "is a folder, expected a file name")]


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("command, option", sorted(OUTPUTS), ids=lambda x: " ".join(x) if
                         isinstance(x, tuple) else x)
def test_every_output_option_refuses_a_bad_path_in_one_line(
        command: Command, option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if NEEDS_ROOT & set(command) and os.geteuid() != 0:
        pytest.skip("refuses non-root users before looking at its folders")
    kind, args = OUTPUTS[(command, option)]
    for path, problem in bad_paths(kind, tmp_path):
        before = snapshot(tmp_path)
        argv = [*command[1:], *(a.format(tmp=tmp_path) for a in args), option, path]
        assert MAINS[command[0]](argv) == 2, capsys.readouterr().err
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if ln.startswith("sage-image: error: ")]
        assert len(errors) == 1 and "Traceback" not in err, err
        assert errors[0].startswith(f"sage-image: error: {option} {path}: {problem}"), err
        assert snapshot(tmp_path) == before  # refused before anything was made
    assert not Path("/proc/sage-image-test").exists()


def test_check_file_and_write_file(tmp_path: Path) -> None:
    assert check_file(tmp_path / "new" / "x.yml", option="--out") == tmp_path / "new" / "x.yml"
    assert not (tmp_path / "new").exists()  # a check makes nothing
    written = write_file(tmp_path / "new" / "x.yml", "one\n", option="--out")
    assert written.read_text() == "one\n" and [p.name for p in written.parent.iterdir()] == ["x.yml"]
    with pytest.raises(UsageError, match=r"--junit /proc/j.xml: cannot write in /proc: "):
        check_file(Path("/proc/j.xml"), option="--junit")
    with pytest.raises(UsageError, match=r"--out /proc: cannot write in it: "):
        check_folder(Path("/proc"), option="--out")
