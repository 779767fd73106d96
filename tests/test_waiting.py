"""The one wait helper (sage_image/waiting.py) with a fake clock: done, not yet, failing early,
the deadline, the back-off - and that no other module hand-rolls a deadline loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sage_image.waiting import poll_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_returns_the_first_answer() -> None:
    clock = Clock()
    answers = iter([None, False, "ready"])
    assert poll_until(lambda: next(answers), timeout=10, interval=1, clock=clock,
                      sleep=clock.sleep) == "ready"
    assert clock.sleeps == [1, 1]


def test_times_out_with_none_and_never_sleeps_past_the_deadline() -> None:
    clock = Clock()
    assert poll_until(lambda: None, timeout=10, interval=4, clock=clock, sleep=clock.sleep) is None
    assert clock.sleeps == [4, 4, 2] and clock.now == 110.0


def test_backs_off_up_to_a_limit() -> None:
    clock = Clock()
    poll_until(lambda: None, timeout=60, interval=2, backoff=2, max_interval=10, clock=clock,
               sleep=clock.sleep)
    assert clock.sleeps[:5] == [2, 4, 8, 10, 10]


def test_a_probe_fails_early_by_raising() -> None:
    def broken() -> None:
        raise RuntimeError("QEMU exited")

    with pytest.raises(RuntimeError, match="QEMU exited"):
        poll_until(broken, timeout=10)


def test_no_module_hand_rolls_a_deadline_loop() -> None:
    """`deadline` with a sleep in a loop is poll_until's job (a process wait with its own
    timeout, like Popen.wait, is not a loop)."""
    root = Path(__file__).resolve().parents[1] / "sage_image"
    loops = []
    for path in root.rglob("*.py"):
        if path.name == "waiting.py":
            continue
        text = path.read_text()
        for loop in re.findall(r"\n( *)while [^\n]*:\n((?:\1 [^\n]*\n|\n)+)", text):
            if "sleep(" in loop[1] and ("deadline" in loop[1] or "monotonic" in loop[1]):
                loops.append(str(path.relative_to(root)))
    assert loops == []
