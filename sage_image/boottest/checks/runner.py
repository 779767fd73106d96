"""Run check definitions against a booted guest: one CheckResult per check, never an exception
for a check's own failure (a failing check is a result, not an error).

Checks run concurrently over the one shared SSH connection (under TCG a check is mostly waiting
for the slow guest, so overlapping them is what saves time); a check with `after` starts once
those checks have finished. Results always come back in the order the checks were given.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

from ...errors import BootTestError, CommandError
from ...outfolder import Manifest
from ...runner import run
from ...waiting import poll_until
from ..boot.ssh import Output, SshTarget, ssh_run, upload
from .assets import GUEST_SETUP, build_asset
from .compare import COMPARATORS
from .model import CheckDef, Expect, render

GUEST_ASSET_DIR = "/tmp/sage-image-test"
OUTPUT_KEPT = 4000   # characters of a check's output kept for JUnit's system-out
# Checks in flight at once. Each is one session on the shared connection, and sshd allows 10 per
# connection (MaxSessions; the master holds one); more would only queue for the guest's 2 vCPUs.
CHECK_WORKERS = 6


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    seconds: float
    reason: str | None = None
    output: str = ""


@dataclass
class CheckContext:
    """What checks need about the guest under test; `prepared` grows as assets are copied in."""

    target: SshTarget
    manifest: Manifest | None  # None for a bare image file: nothing to compare with
    values: Mapping[str, str]
    host_dir: Path
    qemu_arch: str
    # asset -> None once it is in the guest and set up, else why it could not be; each asset is
    # prepared once (under its own lock) for every check that uses it.
    prepared: dict[str, str | None] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_checks(checks: Iterable[CheckDef], ctx: CheckContext,
               on_start: Callable[[CheckDef], None] = lambda c: None,
               workers: int = CHECK_WORKERS) -> Iterator[CheckResult]:
    return run_concurrently(tuple(checks), lambda check: run_check(check, ctx),
                            on_start=on_start, workers=workers)


def run_concurrently(checks: Sequence[CheckDef], evaluate: Callable[[CheckDef], CheckResult], *,
                     on_start: Callable[[CheckDef], None] = lambda c: None,
                     workers: int = CHECK_WORKERS) -> Iterator[CheckResult]:
    """Yield evaluate(check) for each check, in the given order, while they run concurrently.

    Checks are queued by depth of `after` (those that wait for nothing first), so a worker only
    ever waits for a check that already started: no deadlock, and waiting checks do not hold
    workers while independent checks are still queued. on_start(check) is called when the
    results reach that check (one at a time, from the caller's thread).
    """
    selected = {c.name for c in checks}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="check") as pool:
        futures: dict[str, Future[CheckResult]] = {}
        for check in sorted(checks, key=lambda c: _depth(c, checks)):
            waits = [futures[n] for n in check.after if n in selected]
            futures[check.name] = pool.submit(_run_after, waits, evaluate, check)
        for check in checks:
            on_start(check)
            yield futures[check.name].result()


def _depth(check: CheckDef, checks: Sequence[CheckDef]) -> int:
    by_name = {c.name: c for c in checks}
    waits = [by_name[n] for n in check.after if n in by_name]
    return 1 + max((_depth(c, checks) for c in waits), default=-1)


def _run_after(waits: list[Future[CheckResult]], evaluate: Callable[[CheckDef], CheckResult],
               check: CheckDef) -> CheckResult:
    wait(waits)  # finished, passed or not: a check is judged on its own
    return evaluate(check)


def run_check(check: CheckDef, ctx: CheckContext) -> CheckResult:
    start = time.monotonic()
    try:
        problem, output = _evaluate(check, ctx)
    except BootTestError as exc:
        problem, output = exc.message, ""
    seconds = round(time.monotonic() - start, 2)
    if problem is None:
        return CheckResult(check.name, True, seconds, output=output[-OUTPUT_KEPT:])
    values = dict(ctx.values) | {"out": _one_line(problem)}
    return CheckResult(check.name, False, seconds, reason=_one_line(render(check.reason, values)),
                       output=output[-OUTPUT_KEPT:])


def _evaluate(check: CheckDef, ctx: CheckContext) -> tuple[str | None, str]:
    """(None, output) when the check passes, else (what went wrong, output)."""
    if check.probe == "sshd-auth":
        return probe_sshd_auth(ctx.target, timeout=check.timeout), ""
    if check.probe == "ssh-audit":
        return probe_ssh_audit(ctx.target, timeout=check.timeout)
    for asset in check.assets:
        _ensure_asset(asset, ctx, timeout=check.timeout)
    assert check.run is not None  # the loader guarantees run or probe
    out = ssh_run(ctx.target, render(check.run, ctx.values), timeout=check.timeout)
    text = out.stdout + out.stderr
    if out.timed_out:
        return f"timed out after {check.timeout:.0f} s", text
    if out.exit == 255 and not out.stdout:
        return f"ssh failed: {_one_line(out.stderr) or 'connection lost'}", text
    if check.compare:
        if out.exit != 0:
            return f"exit {out.exit}: {_one_line(text)}", text
        if ctx.manifest is None:
            return "a bare image file has no manifest to compare with", text
        return COMPARATORS[check.compare](out.stdout, ctx.manifest), text
    return expectation_problem(check.expect, out, ctx.values), text


def expectation_problem(expect: Expect, out: Output, values: Mapping[str, str]) -> str | None:
    shown = _one_line(out.stdout + "\n" + out.stderr) or "(no output)"
    if expect.exit is not None and out.exit != expect.exit:
        return f"{shown} (exit {out.exit})"
    if expect.stdout is not None and out.stdout.strip() != render(expect.stdout, values):
        return shown
    for text in expect.contains:
        if render(text, values) not in out.stdout:
            return shown
    for text in expect.lacks:
        if render(text, values) in out.stdout:
            return f"output has {render(text, values)!r}: {shown}"
    if expect.matches and not re.search(expect.matches, out.stdout):
        return shown
    return None


# sshd drops a new connection before the key exchange when it is busy (MaxStartups) - under
# software emulation that happens. It says nothing about authentication: try again.
TRANSIENT_SSH = ("kex_exchange_identification", "Connection closed by remote host",
                 "Connection reset by peer",
                 # a guest too busy to send its banner in time (seen on a host loaded 4x its cores)
                 "Connection timed out during banner exchange")


def _fresh_login(target: SshTarget, command: str, *, timeout: float, attempts: int = 4,
                 **kwargs: Any) -> Output:
    for attempt in range(attempts):
        out = ssh_run(target, command, timeout=timeout, shared=False, **kwargs)
        if out.exit != 255 or not any(t in out.stderr for t in TRANSIENT_SSH):
            return out
        time.sleep(2 * (attempt + 1))
    return out


def probe_sshd_auth(target: SshTarget, *, timeout: float) -> str | None:
    """Root login with the (valid) metadata key and password login must both be refused."""
    root = _fresh_login(target, "echo sage-root-ok", user="root", timeout=timeout)
    if "sage-root-ok" in root.stdout or root.exit != 255:
        return f"root login was accepted (exit {root.exit}: " \
               f"{_one_line(root.stdout + root.stderr) or 'no output'})"
    if "Permission denied" not in root.stderr:
        return f"root login: unexpected answer: {_one_line(root.stderr)}"
    pw = _fresh_login(target, "true", timeout=timeout,
                      extra=("-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=0",
                             "-o", "PreferredAuthentications=password,keyboard-interactive"))
    methods = re.search(r"Permission denied \(([^)]*)\)", pw.stderr)
    if methods is None:
        return f"password login: unexpected answer: {_one_line(pw.stderr) or pw.exit}"
    offered = set(methods.group(1).split(","))
    if offered & {"password", "keyboard-interactive"}:
        return f"password login is offered (methods: {methods.group(1)})"
    return None


TRANSIENT_AUDIT = ("did not receive banner", *TRANSIENT_SSH)
AUDIT_ITEM = re.compile(r"^\((\w+)\)\s+(\S+)")


def find_ssh_audit() -> str:
    """ssh-audit from PATH or beside this Python (a dependency: pip puts it in the same venv)."""
    found = shutil.which("ssh-audit") or shutil.which("ssh-audit", path=str(Path(sys.executable).parent))
    if found is None:
        raise BootTestError("ssh-audit is not installed on this host",
                            hint="pip install ssh-audit==3.9.0 (scripts/setup installs it)")
    return found


def probe_ssh_audit(target: SshTarget, *, timeout: float) -> tuple[str | None, str]:
    """ssh-audit against the guest's sshd: no line may be a [fail]. The connection-rate test is
    skipped: it floods sshd (MaxStartups), which says nothing about its configuration."""
    deadline = time.monotonic() + timeout
    tries: list[CompletedProcess[str]] = []

    def audited() -> str | None:
        tries.append(run([find_ssh_audit(), "--no-colors", "--skip-rate-test",
                          "--port", str(target.port), target.host], check=False,
                         timeout=max(deadline - time.monotonic(), 1)))
        text = tries[-1].stdout + tries[-1].stderr
        # A busy sshd (MaxStartups, concurrent checks) drops it before the banner: try again.
        return text if "(gen) banner" in text or not any(t in text for t in TRANSIENT_AUDIT) \
            else None

    try:
        poll_until(audited, timeout=timeout, interval=2.0, backoff=2.0)
    except CommandError as exc:
        return f"ssh-audit: {exc.message}", ""
    out = tries[-1]
    text = out.stdout + out.stderr
    # e.g. "(key) ecdsa-sha2-nistp256 (256-bit)  -- [fail] using elliptic curves that ..."
    fails = [" ".join(m.groups()) if (m := AUDIT_ITEM.match(ln)) else ln.strip()
             for ln in text.splitlines() if "[fail]" in ln]
    if fails:
        return f"ssh-audit reports [fail]: {'; '.join(dict.fromkeys(fails))}", text
    if "(gen) banner" not in text:
        return f"ssh-audit did not reach sshd: {_one_line(text) or out.returncode}", text
    return None, text


def _ensure_asset(name: str, ctx: CheckContext, *, timeout: float) -> None:
    """Copy the asset in and set it up once; every check using it fails if that failed."""
    with ctx.lock:
        lock = ctx.locks.setdefault(name, threading.Lock())
    with lock:
        if name not in ctx.prepared:
            ctx.prepared[name] = _prepare_asset(name, ctx, timeout=timeout)
    if ctx.prepared[name] is not None:
        raise BootTestError(str(ctx.prepared[name]))


def _prepare_asset(name: str, ctx: CheckContext, *, timeout: float) -> str | None:
    local = build_asset(name, ctx.host_dir, qemu_arch=ctx.qemu_arch)
    remote = f"{GUEST_ASSET_DIR}/{local.name}"
    out = upload(ctx.target, local, remote, timeout=timeout)
    if out.exit != 0:
        return f"could not copy {name} into the guest: {_one_line(out.stderr) or out.exit}"
    setup = GUEST_SETUP.get(name)
    if setup is None:
        return None
    out = ssh_run(ctx.target, setup.format(path=remote), timeout=timeout)
    if out.exit != 0:
        shown = _one_line(out.stdout + "\n" + out.stderr) or f"exit {out.exit}"
        return f"could not set up {name} in the guest: {shown}"
    return None


ERROR_LINE = re.compile(r"(?i)error|denied|not found|cannot|can't|failed|refused|no such")


def _one_line(text: str, limit: int = 200) -> str:
    """The line that says most: the first one that reads like an error, else the first."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.search(ln)]
    line = (errors or lines or [""])[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."
