"""A throw-away SSH key and commands run in the guest as ``cc``.

The key lives in the test's private work directory (0700) and is deleted with it; only the public
half goes into the metadata. Host keys are not recorded anywhere: every guest is new.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError
from ..runner import run

SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=3",
    "-F", "/dev/null",   # never pick up the operator's ~/.ssh/config
)


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

    def argv(self, *, user: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
        return ["ssh", *SSH_OPTIONS, *extra, "-i", str(self.key), "-p", str(self.port),
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
            extra: tuple[str, ...] = (), stdin: bytes | None = None) -> Output:
    """Run one shell command in the guest; never raises for the command's own failure."""
    argv = target.argv(user=user, extra=extra) + ["--", command]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return Output(exit=-1, stdout=_text(exc.stdout), stderr=_text(exc.stderr), timed_out=True)
    except FileNotFoundError as exc:
        raise CommandError("command not found: ssh", argv=argv, returncode=127,
                           hint="install openssh-client") from exc
    return Output(exit=proc.returncode, stdout=_text(proc.stdout), stderr=_text(proc.stderr))


def upload(target: SshTarget, local: Path, remote: str, *, timeout: float) -> Output:
    """Copy a file in over the SSH channel (no scp/sftp needed in the guest)."""
    quoted = shlex.quote(remote)
    return ssh_run(target, f"mkdir -p \"$(dirname {quoted})\" && cat > {quoted}",
                   timeout=timeout, stdin=local.read_bytes())


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
