"""What the user sees: one-line messages, tables, JSON, and a live progress line.

Library code never prints; commands get a Console and decide what to show.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

# Set by `sage-image release` for its jobs: progress lines on stderr even with --json.
PROGRESS_LINES_ENV = "SAGE_IMAGE_PROGRESS_LINES"


class Console:
    """Where every message goes. On a terminal it also owns the one live region (a block of
    lines redrawn in place by a LiveDisplay): a message printed while it is shown first erases
    it, so no caller ever writes a terminal control sequence itself."""

    def __init__(self, *, json_mode: bool = False, stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = stream or sys.stdout
        self.err = sys.stderr
        self.live = self.err.isatty() and not json_mode
        self._lock = threading.RLock()
        self._shown = 0  # lines of the live region on screen, just above the cursor

    def info(self, message: str) -> None:
        """Human progress and notes go to stderr so stdout stays clean for results / JSON."""
        if not self.quiet:
            self._print(message)

    def warn(self, message: str) -> None:
        self._print(f"WARNING: {message}")

    def result(self, text: str) -> None:
        with self._lock:
            self._erase()
            print(text, file=self.out, flush=True)

    def json(self, data: Any) -> None:
        self.result(json.dumps(data, indent=2, sort_keys=True, default=str))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.result(format_table(headers, rows))

    def show(self, lines: Sequence[str]) -> None:
        """Redraw the live region (a terminal's only): these lines replace the ones shown."""
        with self._lock:
            self._erase()
            if lines:
                print("".join(f"{line}\n" for line in lines), end="", file=self.err, flush=True)
            self._shown = len(lines)

    def keep(self) -> None:
        """Leave the live region on screen as it is; later output goes below it."""
        with self._lock:
            self._shown = 0

    def _print(self, message: str) -> None:
        with self._lock:
            self._erase()
            print(message, file=self.err, flush=True)

    def _erase(self) -> None:
        if self._shown:  # to the start of the region's first line, then clear to the end
            print(f"\033[{self._shown}F\033[J", end="", file=self.err, flush=True)
            self._shown = 0


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


class LiveDisplay:
    """Something shown while work goes on: on a terminal, lines redrawn every `interval`
    seconds in the console's live region; in logs (CI), a subclass prints a line per change,
    and every `log_every` seconds its lines when it sets that; nothing with --json or --quiet.
    Subclasses say what the lines are."""

    interval = 1.0
    log_every: float | None = None  # logs only: print the lines this often (a heartbeat)
    keep_last = False  # leave the last drawing on screen (a result), else erase it

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        period = self.interval if self.console.live else self.log_every
        if period and not self.console.quiet and not self.silent:
            self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.console.live and not self.console.quiet:
            if self.keep_last:
                self.console.show(self.lines())
                self.console.keep()
            else:
                self.console.show([])

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def silent(self) -> bool:
        """--json (unless a supervising `sage-image release` asked its jobs for progress lines
        on stderr) or --quiet: no progress at all."""
        lines_wanted = os.environ.get(PROGRESS_LINES_ENV) == "1"
        return self.console.quiet or (self.console.json_mode and not lines_wanted)

    @property
    def drawing(self) -> bool:
        """True when line-by-line progress messages are not wanted: a terminal shows the live
        display instead, or there is to be no progress at all."""
        return self.console.live or self.silent

    def _loop(self, period: float) -> None:
        while not self._stop.wait(period):
            if self.console.live:
                self.console.show(self.lines())
            else:
                for line in self.lines():
                    self.console.info(line)

    def lines(self) -> list[str]:
        raise NotImplementedError


class Progress(LiveDisplay):
    """A live 'phase + elapsed' line: redrawn every second on a terminal, one line per phase
    change otherwise (CI logs), silent in --json mode."""

    def __init__(self, console: Console, label: str) -> None:
        super().__init__(console)
        self.label = label
        self.phase = "starting"

    def set_phase(self, phase: str) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if not self.drawing:
            self.console.info(f"[{format_seconds(self.elapsed)}] {self.label}: {phase}")

    def lines(self) -> list[str]:
        return [f"{self.label}  {self.phase}  {format_seconds(self.elapsed)}"]
