"""The image's `beehive-server` command (elements/sage/static/usr/local/bin/beehive-server) on
the beehive-server stand-in, as an unprivileged user like cc: the configuration do.sh wants in
its checkout is made outside /opt, so the root-owned checkout is never written.

The stand-in's do.sh does what the pinned upstream do.sh (db9d1d6) does before any real work:
the same first lines, the beehive.conf copy, the exit codes; a twin shows the upstream layout
(no link) failing for an unprivileged user as the real do.sh did in a booted image."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_image.builder.sources import STANDIN_TEMPLATES

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "sage_image/elements/sage/static/usr/local/bin/beehive-server"
NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the command as another user")


@pytest.fixture
def image() -> Iterator[Path]:
    """/opt/beehive-server (root's, read-only to others) and BEEHIVE_ROOT (the user's), as the
    sage element lays them out, under a folder every user can enter."""
    top = Path(tempfile.mkdtemp(prefix="sage-beehive-"))
    try:
        top.chmod(0o755)
        checkout = top / "opt" / "beehive-server"
        shutil.copytree(STANDIN_TEMPLATES / "beehive-server", checkout)
        data = top / "var" / "lib" / "beehive"
        data.mkdir(parents=True)
        os.chown(data, NOBODY, NOBODY)
        for folder in (top / "opt", checkout, top / "var", top / "var" / "lib"):
            folder.chmod(0o755)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _as_user(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(top), "LANG": "C.UTF-8",
           "BEEHIVE_HOME": str(top / "opt" / "beehive-server"),
           "BEEHIVE_ROOT": str(top / "var" / "lib" / "beehive")}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "sh", str(WRAPPER), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _link_conf(top: Path) -> Path:
    conf = top / "var" / "lib" / "beehive" / "beehive.conf"
    (top / "opt" / "beehive-server" / "beehive.conf").symlink_to(conf)
    return conf


def test_config_works_for_a_user_and_keeps_the_configuration_out_of_opt(image: Path) -> None:
    conf = _link_conf(image)
    run = _as_user(image, "config")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        f"using beehive.conf.example ({conf})",
        "do.sh: Usage: do.sh (deploy|setup|cleanup|test)", "beehive-config-ok"]
    assert conf.read_text() == (image / "opt/beehive-server/beehive.conf.example").read_text()
    assert conf.stat().st_uid == NOBODY and conf.stat().st_mode & 0o007 == 0  # has passwords
    assert (image / "opt/beehive-server/beehive.conf").is_symlink()
    again = _as_user(image, "config")  # made once
    assert again.returncode == 0 and "using beehive.conf.example" not in again.stdout


def test_deploy_reads_the_configuration_with_bash(image: Path) -> None:
    """do.sh `source`s beehive.conf: under dash (Debian's sh) that is `source: not found`."""
    _link_conf(image)
    run = _as_user(image, "deploy")
    assert "source: not found" not in run.stderr
    assert "do.sh deploy: not available in this stand-in" in run.stderr and run.returncode == 1
    assert (image / "var/lib/beehive/ssh_keys").is_dir()


def test_without_the_link_do_sh_writes_into_the_checkout_and_fails_for_a_user(image: Path) -> None:
    run = _as_user(image, "config")
    assert run.returncode != 0
    assert "cannot write" in run.stdout or "Permission denied" in run.stdout + run.stderr
    assert not (image / "opt/beehive-server/beehive.conf").exists()


@pytest.mark.parametrize("env,first", [
    ({}, "Environment variable BEEHIVE_ROOT is not defined, using {checkout}/data/"),
    ({"BEEHIVE_ROOT": "{checkout}"}, "Your BEEHIVE_ROOT folder ({checkout}) seems to be a git "
                                     "repository."),
])
def test_the_stand_in_answers_as_the_pinned_do_sh(tmp_path: Path, env: dict[str, str],
                                                  first: str) -> None:
    checkout = tmp_path / "beehive-server"
    shutil.copytree(STANDIN_TEMPLATES / "beehive-server", checkout)
    (checkout / ".git").mkdir()
    values = {k: v.format(checkout=checkout) for k, v in env.items()}
    run = subprocess.run(["bash", "./do.sh"], cwd=checkout, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", **values})
    assert run.stdout.splitlines()[0].startswith(first.format(checkout=checkout))
    assert run.returncode == 1


def test_config_names_a_broken_do_sh_before_anything_else(image: Path) -> None:
    """Even where the user cannot make the configuration (not in the docker group), a do.sh
    that does not parse is what `config` reports."""
    _link_conf(image)
    (image / "opt/beehive-server/do.sh").write_text("case $1 in\n")
    (image / "var/lib/beehive").chmod(0o555)
    os.chown(image / "var/lib/beehive", 0, 0)
    run = _as_user(image, "config")
    assert run.returncode == 1 and run.stdout.splitlines()[-1] == "beehive-server: do.sh does not parse"
