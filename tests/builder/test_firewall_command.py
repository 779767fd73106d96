"""`chameleon-firewall status` as docs/chameleon-conformance.md shows it: on cc's PATH
(/usr/local/bin) and truthful for a user who is not root. Only root may read the ruleset, so a
user's status asks sudo without a prompt - a stand-in `nft`/`sudo` pair on PATH plays the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "sage_image/elements/chameleon-common/static"
SCRIPT = STATIC / "usr/local/bin/chameleon-firewall"
NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the command as another user")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder another user can enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sage-firewall-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _status(tmp_path: Path, *, sudo: str, loaded: bool) -> str:
    """`chameleon-firewall status` as an unprivileged user on a bare-metal machine."""
    conf = tmp_path / "firewall.conf"
    conf.write_text("baremetal none on\nkvm vm off\n")
    script = tmp_path / "chameleon-firewall"
    script.write_text(SCRIPT.read_text().replace("/etc/chameleon/firewall.conf", str(conf)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # nft answers only root, as the kernel does (listing a table needs CAP_NET_ADMIN)
    (bin_dir / "nft").write_text('#!/bin/sh\n[ "$(id -u)" -eq 0 ] || exit 1\n'
                                 f'exit {0 if loaded else 1}\n')
    (bin_dir / "systemd-detect-virt").write_text("#!/bin/sh\necho none\nexit 1\n")
    # sudo -n: "granted" runs the command as if root (id -u says 0), "denied" refuses
    (bin_dir / "id").write_text('#!/bin/sh\n[ -n "$AS_ROOT" ] && { echo 0; exit; }\nexec /usr/bin/id "$@"\n')
    (bin_dir / "sudo").write_text("#!/bin/sh\n[ \"$1\" = -n ] && shift\n"
                                  + ('AS_ROOT=1 exec "$@"\n' if sudo == "granted" else "exit 1\n"))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    run = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          "bash", str(script), "status"], capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_command_is_on_every_user_s_path() -> None:
    assert SCRIPT.is_file() and not (STATIC / "usr/local/sbin").exists()


@pytest.mark.parametrize("sudo,loaded,answer", [
    ("granted", True, "loaded: yes"),
    ("granted", False, "loaded: no"),
    ("denied", True, "loaded: unknown (reading the ruleset needs root: sudo chameleon-firewall "
                     "status)"),
])
def test_a_user_s_status_is_truthful(shared_tmp: Path, sudo: str, loaded: bool,
                                     answer: str) -> None:
    out = _status(shared_tmp, sudo=sudo, loaded=loaded).splitlines()
    assert out == ["decision: baremetal on virt=none", answer]
