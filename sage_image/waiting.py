"""The one wait: poll something until it answers, with one monotonic deadline.

Every loop in sage-image that waits for the world (a process to exit, a server to answer, a
guest to write a line, a Glance image to become active) is a `poll_until`: the probe says done
(a value), not yet (None or False), or fails early (it raises, with its own typed error). A
time-out is not an exception here - the caller knows what was being waited for and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.2,
               backoff: float = 1.0, max_interval: float = 30.0,
               clock: Callable[[], float] | None = None,
               sleep: Callable[[float], None] | None = None) -> T | None:
    """probe() until it returns something other than None or False, or `timeout` seconds have
    passed (None). The probe runs at least once; between tries the wait grows by `backoff`
    (1: fixed) up to `max_interval`, and never sleeps past the deadline."""
    clock, sleep = clock or time.monotonic, sleep or time.sleep  # looked up now: tests patch them
    deadline = clock() + timeout
    wait = interval
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(wait, left))
        wait = min(wait * backoff, max_interval)
