"""Run a graph of jobs as child processes: a job starts as soon as everything it needs is done.

No waits with timeouts: readiness is the graph. A failure stops only what depends on it; the
rest finishes. Each job is a ``sage-image`` command in its own process group, so an interrupt
sends it SIGTERM and it cleans up after itself (mounts, loop devices, VMs, temporary Glance
images) before the release ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL = 0.2
STOP_GRACE = 180.0  # a build's clean-up (unmount, detach) must be allowed to finish

PENDING, RUNNING, OK, FAILED, SKIPPED, CACHED = (
    "pending", "running", "ok", "failed", "skipped", "cached")
DONE = (OK, CACHED)


@dataclass(frozen=True)
class Job:
    id: str
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()
    heavy: bool = True  # builds and boot tests count against --jobs; uploads do not
    cached: str | None = None  # a reason this job need not run (its result already exists)
    note: str | None = None  # why it runs although a result exists ("re-testing: ...")


@dataclass
class JobState:
    status: str = PENDING
    started: float | None = None
    seconds: float | None = None
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "seconds": self.seconds, "reason": self.reason,
                "cached": self.status == CACHED, "result": self.result}


class Scheduler:
    def __init__(self, jobs: list[Job], *, max_heavy: int, log_dir: Path,
                 on_change: Callable[[str, JobState], None] = lambda job, state: None,
                 env: dict[str, str] | None = None, max_light: int = 8,
                 on_tick: Callable[[dict[str, JobState]], None] = lambda states: None) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.states = {job.id: JobState() for job in jobs}
        self.max_heavy, self.max_light = max(1, max_heavy), max_light
        self.log_dir = log_dir
        self.on_change = on_change
        self.env = env
        self.on_tick = on_tick
        for job in jobs:
            missing = [n for n in job.needs if n not in self.jobs]
            if missing:
                raise ValueError(f"job {job.id} needs unknown jobs {missing}")

    def run(self) -> dict[str, JobState]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            while self._step():
                time.sleep(POLL)
        except BaseException:
            self.stop_all()
            raise
        return self.states

    def _step(self) -> bool:
        self._reap()
        self._skip_blocked()
        self._start_ready()
        self.on_tick(self.states)
        return any(s.status in (PENDING, RUNNING) for s in self.states.values())

    def last_line(self, job_id: str) -> str:
        """The last progress line a running job wrote (its phase), for the live display."""
        log = self.log_dir / _file_name(job_id)
        try:
            with open(log.with_suffix(".log"), "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 512))
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _ready(self, job: Job) -> bool:
        return all(self.states[n].status in DONE for n in job.needs)

    def _start_ready(self) -> None:
        for job_id, state in self.states.items():
            job = self.jobs[job_id]
            if state.status != PENDING or not self._ready(job):
                continue
            # A result is only reusable if nothing it depends on was redone in this run.
            if job.cached and all(self.states[n].status == CACHED for n in job.needs):
                self._set(job_id, CACHED, reason=job.cached, seconds=0.0)
            elif self._running(heavy=job.heavy) < (self.max_heavy if job.heavy else self.max_light):
                self._start(job)

    def _running(self, *, heavy: bool) -> int:
        return sum(1 for i, s in self.states.items()
                   if s.status == RUNNING and self.jobs[i].heavy == heavy)

    def _start(self, job: Job) -> None:
        state = self.states[job.id]
        base = self.log_dir / _file_name(job.id)
        with open(base.with_suffix(".out"), "wb") as out, open(base.with_suffix(".log"), "wb") as err:
            # Not runner.py: long-lived jobs whose lifetime the scheduler manages (signals, reaping).
            state.process = subprocess.Popen(job.argv, stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL, env=self.env,
                                             start_new_session=True)
        state.started = time.monotonic()
        self._set(job.id, RUNNING)

    def _reap(self) -> None:
        for job_id, state in self.states.items():
            if state.status != RUNNING or state.process is None:
                continue
            code = state.process.poll()
            if code is None:
                continue
            seconds = round(time.monotonic() - (state.started or time.monotonic()), 1)
            result, reason = self._outcome(job_id, code)
            state.result = result
            self._set(job_id, OK if code == 0 else FAILED, seconds=seconds,
                      reason=None if code == 0 else reason)

    def _outcome(self, job_id: str, code: int) -> tuple[dict[str, Any], str]:
        base = self.log_dir / _file_name(job_id)
        try:
            result = json.loads(base.with_suffix(".out").read_text() or "{}")
        except (OSError, ValueError):
            result = {}
        if not isinstance(result, dict):
            result = {"value": result}
        reason = (result.get("error") or _failed_checks(result)
                  or _last_error_line(base.with_suffix(".log")))
        return result, reason or f"exit {code}"

    def _skip_blocked(self) -> None:
        changed = True
        while changed:
            changed = False
            for job_id, state in self.states.items():
                if state.status != PENDING:
                    continue
                blocked = [n for n in self.jobs[job_id].needs
                           if self.states[n].status in (FAILED, SKIPPED)]
                if blocked:
                    self._set(job_id, SKIPPED, reason=f"needs {blocked[0]}, which "
                                                      f"{self.states[blocked[0]].status}")
                    changed = True

    def _set(self, job_id: str, status: str, *, reason: str | None = None,
             seconds: float | None = None) -> None:
        state = self.states[job_id]
        state.status, state.reason = status, reason
        if seconds is not None:
            state.seconds = seconds
        self.on_change(job_id, state)

    def stop_all(self) -> None:
        """SIGTERM every running job's process group and wait for its clean-up."""
        running = [s for s in self.states.values() if s.status == RUNNING and s.process]
        for state in running:
            _signal_group(state.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for state in running:
            assert state.process is not None
            try:
                state.process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(state.process, signal.SIGKILL)
                state.process.wait()
            state.status, state.reason = FAILED, "interrupted"
        for state in self.states.values():
            if state.status == PENDING:
                state.status, state.reason = SKIPPED, "interrupted"


def _signal_group(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _file_name(job_id: str) -> str:
    return job_id.replace(":", "_").replace("@", "_at_") + ".x"


def _failed_checks(result: dict[str, Any]) -> str | None:
    """A boot test's report (`sage-image test --json`): the checks that failed, and why - not
    its last progress line, which names whatever check ran last."""
    checks = result.get("checks")
    failed = [c for c in checks if isinstance(c, dict) and not c.get("passed")] \
        if isinstance(checks, list) else []
    if not failed:
        return None
    shown = "; ".join(f"{c.get('name')}: {c.get('reason')}" for c in failed[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"{len(failed)} of {len(checks)} checks failed: {shown}{more}"


def _last_error_line(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [None])[-1]
