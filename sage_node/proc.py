"""Processes: the one wrapper for short commands, and the node's long-running parts.

A part runs detached (its own session, so its process group holds everything it starts) and
is known by its pid *and* its start time from /proc, so that a recycled pid is never signalled.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError

log = logging.getLogger("sage_node.proc")


def run(argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, check: bool = True, timeout: float | None = 60.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; a failure is a CommandError with its output's tail."""
    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(args, env=dict(env) if env is not None else None, cwd=cwd,
                              text=True, capture_output=True, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {args[0]}", argv=args, returncode=127) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]} timed out after {timeout:.0f}s", argv=args,
                           returncode=-1) from exc
    if check and proc.returncode != 0:
        raise failed(proc)
    return proc


def failed(proc: subprocess.CompletedProcess[str]) -> CommandError:
    """The error for a command `run` ran that exited non-zero (for callers that use check=False
    to let some failures through)."""
    args = [str(a) for a in proc.args]
    output = (proc.stderr or "") + (proc.stdout or "")
    # the message is the last line of what it said on stderr, where there is any: `docker
    # inspect` of a missing name ends its stdout with the "]" of the objects it did find
    said = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
    last = said[-1:] or [ln for ln in output.splitlines() if ln.strip()][-1:] or ["no output"]
    return CommandError(f"{os.path.basename(args[0])} failed (exit {proc.returncode}): {last[0]}",
                        argv=args, returncode=proc.returncode, output_tail=output[-2000:])


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, None if there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int   # /proc/<pid>/stat starttime

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] not in ("Z", "X")

    def as_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Proc:
        return cls(pid=int(data["pid"]), start=int(data["start"]))  # type: ignore[call-overload]


def spawn(argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], log_path: Path,
          cwd: Path | None = None) -> tuple[Proc, subprocess.Popen[bytes]]:
    """Start a detached process writing to ``log_path``; raise CommandError if it cannot start."""
    args = [os.fspath(a) for a in argv]
    log.debug("spawn: %s", shlex.join(args))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        try:
            popen = subprocess.Popen(args, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError as exc:
            raise CommandError(f"cannot start {args[0]}: {exc.strerror}", argv=args,
                               returncode=127) from exc
    stat = _stat(popen.pid)
    return Proc(popen.pid, stat[1] if stat else 0), popen


def stop(proc: Proc, *, timeout: float) -> bool:
    """SIGTERM the process group, SIGKILL what is left after ``timeout``; True once it is gone."""
    if proc.alive():
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    # What is left of the group (the leader, or children it left behind) is killed one by one:
    # a process id is only signalled while a member of the group still holds it.
    for pid in [proc.pid] if proc.alive() else []:
        _signal(pid, signal.SIGKILL)
    for pid in group_members(proc.pid):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (proc.alive() or group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not proc.alive() and not group_members(proc.pid)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(popen: subprocess.Popen[bytes] | None) -> None:
    """Collect a child started by this process (so it is not left a zombie while we run)."""
    if popen is not None:
        popen.poll()
