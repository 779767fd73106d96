"""What the user sees: one-line messages, tables, JSON, and a live progress line.

Library code never prints; commands get a Console and decide what to show.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


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


class Progress:
    """A live 'phase + elapsed' line: redrawn every second on a terminal, one line per phase
    change otherwise (CI logs), silent in --json mode."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.start = time.monotonic()
        self.phase = "starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.console.live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            print("\r\033[K", end="", file=self.console.err, flush=True)

    def set_phase(self, phase: str) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if not self.console.live and not self.console.json_mode and not self.console.quiet:
            self.console.info(f"[{format_seconds(self.elapsed)}] {self.label}: {phase}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            print(f"\r\033[K{self.label}  {self.phase}  {format_seconds(self.elapsed)}",
                  end="", file=self.console.err, flush=True)
