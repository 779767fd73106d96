"""One progress bar per site while sites publish in parallel.

On a terminal: a block of lines, redrawn twice a second. Otherwise (CI logs): a line per phase
change and per quarter of an upload. In --json mode: nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..console import Console, LiveDisplay, format_seconds

BAR = 24


@dataclass
class _Bar:
    phase: str = "waiting"
    done: int = 0
    total: int = 0
    quarter: int = -1


class SiteBars(LiveDisplay):
    interval = 0.5
    keep_last = True  # the final bars are each site's result

    def __init__(self, console: Console, sites: Sequence[str], totals: dict[str, int]) -> None:
        super().__init__(console)
        self.bars = {s: _Bar(total=totals.get(s, 0)) for s in sites}
        self.width = max((len(s) for s in sites), default=4)
        self._lock = threading.Lock()

    def update(self, site: str, phase: str, done: int) -> None:
        with self._lock:
            bar = self.bars[site]
            changed = phase != bar.phase
            bar.phase, bar.done = phase, done
            quarter = int(4 * done / bar.total) if bar.total else 0
            crossed = phase == "uploading" and quarter != bar.quarter
            bar.quarter = quarter
        if self.drawing:
            return
        if changed or crossed:
            self.console.info(f"[{format_seconds(time.monotonic() - self.start)}] "
                              f"{site}: {self._text(bar)}")

    def _text(self, bar: _Bar) -> str:
        if bar.phase != "uploading" or not bar.total:
            return bar.phase
        frac = min(1.0, bar.done / bar.total)
        elapsed = max(time.monotonic() - self.start, 1e-3)
        return (f"uploading [{'#' * int(BAR * frac):<{BAR}}] {100 * frac:3.0f}% "
                f"{bar.done / 1e6:.0f}/{bar.total / 1e6:.0f} MB {bar.done / 1e6 / elapsed:.0f} MB/s")

    def lines(self) -> list[str]:
        with self._lock:
            return [f"{s:<{self.width}}  {self._text(b)}" for s, b in self.bars.items()]
