"""Run check definitions against a booted guest: one CheckResult per check, never an exception
for a check's own failure (a failing check is a result, not an error)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import BootTestError
from ..boot.ssh import Output, SshTarget, ssh_run, upload
from .assets import build_asset
from .compare import COMPARATORS
from .model import CheckDef, Expect, render

GUEST_ASSET_DIR = "/tmp/sage-image-test"
OUTPUT_KEPT = 4000   # characters of a check's output kept for JUnit's system-out


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    seconds: float
    reason: str | None = None
    output: str = ""


@dataclass
class CheckContext:
    """What checks need about the guest under test; `uploaded` grows as assets are copied in."""

    target: SshTarget
    manifest: Mapping[str, Any]
    values: Mapping[str, str]
    host_dir: Path
    qemu_arch: str
    uploaded: set[str] = field(default_factory=set)


def run_checks(checks: Iterable[CheckDef], ctx: CheckContext,
               on_start: Callable[[CheckDef], None] = lambda c: None) -> Iterator[CheckResult]:
    for check in checks:
        on_start(check)
        yield run_check(check, ctx)


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
                 "Connection reset by peer")


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


def _ensure_asset(name: str, ctx: CheckContext, *, timeout: float) -> None:
    if name in ctx.uploaded:
        return
    local = build_asset(name, ctx.host_dir, qemu_arch=ctx.qemu_arch)
    out = upload(ctx.target, local, f"{GUEST_ASSET_DIR}/{local.name}", timeout=timeout)
    if out.exit != 0:
        raise BootTestError(f"could not copy {name} into the guest: "
                            f"{_one_line(out.stderr) or out.exit}")
    ctx.uploaded.add(name)


ERROR_LINE = re.compile(r"(?i)error|denied|not found|cannot|can't|failed|refused|no such")


def _one_line(text: str, limit: int = 200) -> str:
    """The line that says most: the first one that reads like an error, else the first."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ERROR_LINE.search(ln)]
    line = (errors or lines or [""])[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."
