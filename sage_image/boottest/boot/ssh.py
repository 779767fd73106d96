"""A throw-away SSH key and commands run in the guest as ``cc``.

The key lives in the test's private work directory (0700) and is deleted with it; only the public
half goes into the metadata. Host keys are not recorded anywhere: every guest is new.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...errors import CommandError
from ...runner import run

SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
    # Generous: a TCG guest busy with cloud-init can be slow to answer keep-alives.
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=8",
    # sntrup761 (first in the images' hardened list) costs seconds per login under TCG.
    "-o", "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org",
    "-F", "/dev/null",   # never pick up the operator's ~/.ssh/config
)


# The master holds one session open: with no session of cc's left, logind stops cc's systemd
# user manager (after 10 s) and the next command pays seconds to start it again under TCG.
HOLD_SESSION = "while sleep 3600; do :; done"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_line: str


@dataclass(frozen=True)
class SshTarget:
    port: int
    key: Path
    user: str = "cc"
    host: str = "127.0.0.1"
    # One authenticated connection shared by every check (a login costs seconds under TCG).
    control: Path | None = None

    def argv(self, *, user: str | None = None, extra: tuple[str, ...] = (),
             shared: bool = True) -> list[str]:
        mux = ("-o", f"ControlPath={self.control}", "-o", "ControlMaster=no") \
            if self.control and shared and user in (None, self.user) else \
            ("-o", "ControlPath=none")
        return ["ssh", *SSH_OPTIONS, *mux, *extra, "-i", str(self.key), "-p", str(self.port),
                f"{user or self.user}@{self.host}"]

    def command_line(self) -> str:
        """What to type to get a shell in the guest (--keep-running); names the key file only."""
        return shlex.join(self.argv())


@dataclass(frozen=True)
class Output:
    exit: int
    stdout: str
    stderr: str
    timed_out: bool = False


def generate_key(workdir: Path, comment: str) -> KeyPair:
    private = workdir / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", private],
        timeout=30)
    os.chmod(private, 0o600)
    return KeyPair(private=private, public_line=private.with_suffix(".pub").read_text().strip())


def ssh_run(target: SshTarget, command: str, *, timeout: float, user: str | None = None,
            extra: tuple[str, ...] = (), stdin: bytes | None = None,
            shared: bool = True) -> Output:
    """Run one shell command in the guest; never raises for the command's own failure.

    shared=False opens a connection of its own (probes of sshd's authentication must not ride
    on the already authenticated shared connection)."""
    argv = target.argv(user=user, extra=extra, shared=shared) + ["--", command]
    try:
        # Not runner.run: bytes in and out, and the guest command's failure or timeout is a result.
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return Output(exit=-1, stdout=_text(exc.stdout), stderr=_text(exc.stderr), timed_out=True)
    except FileNotFoundError as exc:
        raise CommandError("command not found: ssh", argv=argv, returncode=127,
                           hint="install openssh-client") from exc
    return Output(exit=proc.returncode, stdout=_text(proc.stdout), stderr=_text(proc.stderr))


def start_master(target: SshTarget, *, timeout: float) -> Output:
    """Log in once and keep the connection for later commands; exit 0 means cc logged in.

    ssh -f backgrounds itself after authentication and keeps the inherited stderr open, so
    stderr goes to a file, not a pipe (a pipe would never reach EOF while the master lives).
    """
    assert target.control is not None
    errors = target.control.with_suffix(".err")
    argv = ["ssh", *SSH_OPTIONS, "-o", f"ControlPath={target.control}", "-o", "ControlMaster=yes",
            "-o", "ControlPersist=yes", "-f", "-i", str(target.key), "-p", str(target.port),
            f"{target.user}@{target.host}", HOLD_SESSION]
    with errors.open("wb") as err:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=timeout)
            code, timed_out = proc.returncode, False
        except subprocess.TimeoutExpired:
            code, timed_out = -1, True
    return Output(exit=code, stdout="", stderr=errors.read_text(errors="replace"),
                  timed_out=timed_out)


def stop_master(target: SshTarget) -> None:
    """End the shared connection (it also ends by itself when QEMU goes away)."""
    if target.control is None or not target.control.exists():
        return
    with contextlib.suppress(CommandError):  # best effort: QEMU's exit ends it anyway
        run(["ssh", "-o", f"ControlPath={target.control}", "-O", "exit", "-p", str(target.port),
             f"{target.user}@{target.host}"], timeout=15, check=False)


def upload(target: SshTarget, local: Path, remote: str, *, timeout: float) -> Output:
    """Copy a file in over the SSH channel (no scp/sftp needed in the guest)."""
    quoted = shlex.quote(remote)
    return ssh_run(target, f"mkdir -p \"$(dirname {quoted})\" && cat > {quoted}",
                   timeout=timeout, stdin=local.read_bytes())


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
