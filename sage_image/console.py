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
    def __init__(self, *, json_mode: bool = False, stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = stream or sys.stdout
        self.err = sys.stderr
        self.live = self.err.isatty() and not json_mode

    def info(self, message: str) -> None:
        """Human progress and notes go to stderr so stdout stays clean for results / JSON."""
        if not self.quiet:
            print(message, file=self.err, flush=True)

    def warn(self, message: str) -> None:
        print(f"WARNING: {message}", file=self.err, flush=True)

    def result(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self.out, flush=True)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.result(format_table(headers, rows))


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
    """Something redrawn on a terminal every `interval` seconds while work goes on (never in
    CI logs, --json or --quiet); subclasses say what to draw and how to finish."""

    interval = 1.0

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        if self.console.live and not self.console.quiet:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.finish()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def drawing(self) -> bool:
        """True when line-by-line progress messages are not wanted: a terminal shows the live
        display instead, or --json/--quiet asked for silence (unless a supervising
        `sage-image release` asked its jobs for progress lines on stderr)."""
        lines_wanted = os.environ.get(PROGRESS_LINES_ENV) == "1"
        return self.console.live or self.console.quiet or (self.console.json_mode
                                                            and not lines_wanted)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    def draw(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


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

    def draw(self) -> None:
        print(f"\r\033[K{self.label}  {self.phase}  {format_seconds(self.elapsed)}",
              end="", file=self.console.err, flush=True)

    def finish(self) -> None:
        print("\r\033[K", end="", file=self.console.err, flush=True)
