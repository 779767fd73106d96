"""The one wrapper every external command goes through.

It logs the command line, builds the environment explicitly (tools speak English: see
tool_env), kills the child on any exception (including KeyboardInterrupt) and turns a failure
into a CommandError.

The few bypasses say why at their call; none reads a message a locale translates: ssh
(boottest/boot/ssh.py) prints English under any locale, strerror texts included (checked under
de_DE.UTF-8); the KVM probe reads the guest kernel's console; the DIB shims
(builder/fatmount.py, builder/devmapper.py) read values (blkid -o value, mdir -b, sfdisk
--json); the release scheduler and localcloud start sage-image's own processes and servers; and
stream() is only given DIB's explicit environment (LANG=C.UTF-8, nothing inherited).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import CommandError

log = logging.getLogger("sage_image.run")

TAIL_LINES = 25
# The code matches tools' English messages (git's "fatal:", strerror texts such as e2fsck's,
# "error:" lines). LC_ALL outranks a user's LC_ALL or LC_MESSAGES; LANGUAGE is dropped because GNU
# gettext prefers it even to LC_ALL (seen: ls in German under LC_ALL=C.UTF-8 with LANGUAGE=de).
# C.UTF-8, not C: file names and package descriptions stay UTF-8.
ENGLISH = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def tool_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with the English, UTF-8 locale."""
    merged = {k: v for k, v in (os.environ if env is None else env).items() if k != "LANGUAGE"}
    return merged | ENGLISH


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion and return its output (text)."""
    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args, env=tool_env(env), cwd=cwd, text=True,
            capture_output=capture, timeout=timeout, input=input,
            stdin=subprocess.DEVNULL if input is None else None,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {args[0]}", argv=args, returncode=127) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]} timed out after {timeout:.0f}s", argv=args,
                           returncode=-1) from exc
    if check and proc.returncode != 0:
        raise _failure(args, proc.returncode, (proc.stderr or "") + (proc.stdout or ""))
    return proc


def stream(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_line: Callable[[str], None],
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
) -> int:
    """Run a long command in its own process group, handing each output line to on_line.

    The environment is the caller's as given (DIB's is explicit and English already); only
    run() adds the English locale, since only its callers match messages.

    On any exception (Ctrl-C, SIGTERM turned into an exception, a bug in on_line) the whole
    process group is terminated, then killed, before the exception propagates.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("stream: %s", shlex.join(args))
    proc = subprocess.Popen(
        args, env=dict(env) if env is not None else None, cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, errors="backslashreplace",
    )
    try:
        if on_start is not None:
            on_start(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        terminate_group(proc)
        raise


def terminate_group(proc: subprocess.Popen[str], grace: float = 20.0) -> None:
    """SIGTERM the child's process group so its own cleanup traps run; SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _failure(args: list[str], returncode: int, output: str) -> CommandError:
    tail = "\n".join(deque(output.splitlines(), maxlen=TAIL_LINES))
    last = _most_telling_line(tail.splitlines())
    return CommandError(
        f"{Path(args[0]).name} failed (exit {returncode})" + (f": {last}" if last else ""),
        argv=args, returncode=returncode, output_tail=tail,
    )


def _most_telling_line(lines: list[str]) -> str:
    """The first line that says what went wrong (git's 'fatal:', apt's 'E:'), else the last."""
    for line in lines:
        if line.lower().startswith(("fatal:", "error:", "e: ")):
            return line.strip()
    return lines[-1].strip() if lines else ""
