"""The command line: bad input is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.cli import build_parser, main

SAGE_IMAGE = [sys.executable, "-m", "sage_image.cli"]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAGE_IMAGE, *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


def assert_clean_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("sage-image: error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr


def test_every_command_help_has_an_example():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no API
    assert {"list", "plan", "build"} <= set(commands)
    for name, sub in commands.items():
        assert "example:" in sub.format_help(), name


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any(i["name"] == "Sage-VirtualWaggle-Debian12" for i in data["images"])


def test_plan_json(capsys):
    assert main(["plan", "--release", "bookworm", "--variant", "sage", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["name"] == "Sage-VirtualWaggle-Debian12" and "sage" in plan["elements"]


@pytest.mark.parametrize("args,expected", [
    (["plan", "--release", "bionc", "--variant", "sage"], "unknown release 'bionc'"),
    (["build", "--release", "jammy", "--variant", "sage", "--arch", "arm64", "--site", "CHI@NCAR"],
     "site CHI@NCAR has no arm64 nodes"),
    (["build", "--release", "bookworm", "--variant", "sage", "--source", "waggle-node"],
     "expected NAME=URL_OR_PATH"),
    (["list", "--catalog", "/nonexistent/catalog.yaml"], "cannot read catalog"),
])
def test_bad_input_is_one_line_exit_2(args, expected):
    assert_clean_error(run_cli(*args), expected)


def test_malformed_catalog_names_file_and_line(tmp_path):
    bad = tmp_path / "catalog.yaml"
    bad.write_text("schema: 1\nbuilder:\n  repo: [oops\n")
    assert_clean_error(run_cli("list", "--catalog", str(bad)), "catalog.yaml:")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")


@needs_root
def test_not_root_is_refused_before_anything_starts(tmp_path, capsys):
    # In-process with a dropped effective uid: the interpreter itself lives under /root.
    os.seteuid(65534)
    try:
        code = main(["build", "--release", "bookworm", "--variant", "base", "--out",
                     str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    finally:
        os.seteuid(0)
    assert code == 2
    assert "sage-image: error: sage-image build must run as root" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_root
def test_too_little_disk_is_refused(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    try:
        result = run_cli("build", "--release", "bookworm", "--variant", "base", "--out",
                         str(small / "out"), "--cache", str(tmp_path / "cache"))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert_clean_error(result, "GiB free, the base image needs 6 GiB")


@needs_root
def test_unreachable_mirror_is_refused(tmp_path):
    catalog = Path(__file__).parents[2] / "sage_image" / "catalog" / "catalog.yaml"
    text = catalog.read_text().replace('amd64: "http://deb.debian.org/debian"',
                                       'amd64: "http://127.0.0.1:9/debian"')
    (tmp_path / "catalog.yaml").write_text(text)
    result = run_cli("build", "--release", "bookworm", "--variant", "base", "--catalog",
                     str(tmp_path / "catalog.yaml"), "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache"))
    assert_clean_error(result, "mirror http://127.0.0.1:9/debian does not serve bookworm")


@needs_root
def test_unreachable_source_is_reported_before_the_build(tmp_path):
    result = run_cli("build", "--release", "bookworm", "--variant", "base",
                     "--source", f"cc-snapshot={tmp_path}/missing-repo@{'a' * 40}",
                     "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert_clean_error(result, "source cc-snapshot: cannot fetch")
    assert "hint: override it: --source cc-snapshot=" in result.stderr
    assert not (tmp_path / "out" / "build.log").exists()  # diskimage-builder never started


def test_seed_command_line_still_works_and_fails_cleanly():
    result = subprocess.run([sys.executable, "-m", "sage_image.seed_cli", "--release", "bionc",
                             "--variant", "sage", "--region", "CHI@UC"],
                            capture_output=True, text=True, timeout=60)
    assert_clean_error(result, "unknown release 'bionc'")
    help_text = subprocess.run([sys.executable, "-m", "sage_image.seed_cli", "--help"],
                               capture_output=True, text=True).stdout
    assert "--region" in help_text and "example:" in help_text


@pytest.mark.parametrize("flags,autologin,admin", [
    ([], True, None),
    (["--serial-autologin"], True, None),          # the old opt-in flag still parses
    (["--no-serial-autologin"], False, None),
    (["--admin-user", "--admin-keys", "k.pub"], True, "ccadmin"),
    (["--admin-user", "ops", "--admin-keys", "k.pub"], True, "ops"),
])
def test_serial_autologin_and_admin_user_flags(flags, autologin, admin):
    import argparse

    from sage_image.builder.commands import add_request_flags
    parser = argparse.ArgumentParser()
    add_request_flags(parser)
    args = parser.parse_args(["--release", "bookworm", "--variant", "base", *flags])
    assert args.serial_autologin is autologin and args.admin_user == admin
