"""The scheduler, with real child processes: order, parallelism, failures, interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from sage_image.release.scheduler import Job, Scheduler


def sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


def test_jobs_run_after_what_they_need(tmp_path):
    order = tmp_path / "order"
    jobs = [Job("b", sh(f"echo b >> {order}"), needs=("a",)),
            Job("a", sh(f"sleep 0.3; echo a >> {order}")),
            Job("c", sh(f"echo c >> {order}"), needs=("b",), heavy=False)]
    states = Scheduler(jobs, max_heavy=2, log_dir=tmp_path / "logs").run()
    assert order.read_text().split() == ["a", "b", "c"]
    assert {s.status for s in states.values()} == {"ok"}


def test_independent_jobs_run_in_parallel_up_to_the_limit(tmp_path):
    marker = tmp_path / "running"
    script = (f"echo x >> {marker}; sleep 0.6; n=$(wc -l < {marker}); "
              f"echo $n >> {tmp_path}/peak")
    jobs = [Job(f"j{i}", sh(script)) for i in range(4)]
    Scheduler(jobs, max_heavy=2, log_dir=tmp_path / "logs").run()
    peaks = [int(x) for x in (tmp_path / "peak").read_text().split()]
    assert max(peaks) >= 2  # two ran side by side ...
    started = time.monotonic()
    Scheduler([Job(f"k{i}", sh("sleep 0.4")) for i in range(3)], max_heavy=1,
              log_dir=tmp_path / "l2").run()
    assert time.monotonic() - started >= 1.2  # ... and never more than the limit


def test_a_failure_stops_only_what_depends_on_it(tmp_path):
    jobs = [Job("base", sh("echo 'sage-image: error: mirror down' >&2; exit 1")),
            Job("sage", sh("true"), needs=("base",)),
            Job("publish", sh("true"), needs=("sage",), heavy=False),
            Job("other", sh("true"))]
    states = Scheduler(jobs, max_heavy=2, log_dir=tmp_path / "logs").run()
    assert states["base"].status == "failed"
    assert states["base"].reason == "sage-image: error: mirror down"
    assert states["sage"].status == "skipped" and "needs base, which failed" in states["sage"].reason
    assert states["publish"].status == "skipped"
    assert states["other"].status == "ok"


def test_a_failed_boot_test_names_its_failed_checks(tmp_path):
    report = ('{"error": null, "checks": [{"name": "cloud-init", "passed": true, "reason": null},'
              ' {"name": "ssh-audit", "passed": false, "reason": "ssh-audit is not installed"}]}')
    script = f"echo '{report}'; echo '[04:10] test out: check boot-units' >&2; exit 1"
    states = Scheduler([Job("test:x", sh(script))], max_heavy=1, log_dir=tmp_path / "logs").run()
    assert states["test:x"].reason == "1 of 2 checks failed: ssh-audit: ssh-audit is not installed"


def test_cached_jobs_do_not_run(tmp_path):
    jobs = [Job("a", sh(f"touch {tmp_path}/ran"), cached="layer exists"),
            Job("b", sh("true"), needs=("a",))]
    states = Scheduler(jobs, max_heavy=1, log_dir=tmp_path / "logs").run()
    assert states["a"].status == "cached" and not (tmp_path / "ran").exists()
    assert states["b"].status == "ok"


def test_json_result_of_a_job_is_kept(tmp_path):
    states = Scheduler([Job("a", sh('echo \'{"ok": true, "id": "abc"}\''))], max_heavy=1,
                       log_dir=tmp_path / "logs").run()
    assert states["a"].result == {"ok": True, "id": "abc"}


def test_unknown_dependency_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs unknown jobs"):
        Scheduler([Job("a", sh("true"), needs=("nope",))], max_heavy=1, log_dir=tmp_path)


def test_interrupt_terminates_running_jobs_and_lets_them_clean_up(tmp_path):
    cleaned = tmp_path / "cleaned"
    script = f"trap 'touch {cleaned}; exit 143' TERM; sleep 30 & wait"
    scheduler = Scheduler([Job("long", sh(script)), Job("after", sh("true"), needs=("long",))],
                          max_heavy=1, log_dir=tmp_path / "logs")
    # Ctrl-C's KeyboardInterrupt, also when the suite was started in the background (a
    # non-interactive shell's `cmd &` leaves SIGINT ignored, and Python keeps it so)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.8, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            scheduler.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cleaned.exists()
    assert scheduler.states["long"].status == "failed" and scheduler.states["long"].reason == "interrupted"
    assert scheduler.states["after"].status == "skipped"


def test_the_live_display_sees_what_a_running_job_is_doing(tmp_path):
    seen: set[str] = set()
    job = Job("build", sh("echo '[00:01] image (bookworm/sage/amd64): dib:install.d' >&2; sleep 1"))
    scheduler = Scheduler([job], max_heavy=1, log_dir=tmp_path / "logs",
                          on_tick=lambda states: seen.add(scheduler.last_line("build"))
                          if states["build"].status == "running" else None)
    scheduler.run()
    assert "[00:01] image (bookworm/sage/amd64): dib:install.d" in seen


def test_a_cached_result_is_redone_when_what_it_needs_was_redone(tmp_path):
    jobs = [Job("build", sh("true")),  # rebuilt in this run ...
            Job("test", sh(f"touch {tmp_path}/tested"), needs=("build",), cached="passed before")]
    states = Scheduler(jobs, max_heavy=1, log_dir=tmp_path / "logs").run()
    assert states["test"].status == "ok" and (tmp_path / "tested").exists()  # ... so tested again
