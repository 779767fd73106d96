"""The one live display (sage_image/console.py): the console owns the terminal's live region, so
a message printed while it is shown erases it first; in logs the displays print lines instead;
with --json nothing. No other module writes a terminal control sequence."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from sage_image.console import Console, LiveDisplay, Progress

ERASE = re.compile(r"\x1b\[(\d+)F\x1b\[J")


def _console(*, live: bool, json_mode: bool = False) -> tuple[Console, io.StringIO]:
    console = Console(json_mode=json_mode, stream=io.StringIO())
    console.err = io.StringIO()
    console.live = live and not json_mode
    return console, console.err  # type: ignore[return-value]


def test_a_message_erases_the_live_region_first() -> None:
    console, err = _console(live=True)
    console.show(["site A  uploading", "site B  waiting"])
    console.info("a note")
    console.show(["site A  done"])
    assert err.getvalue() == ("site A  uploading\nsite B  waiting\n" "\x1b[2F\x1b[J" "a note\n"
                              "site A  done\n")


def test_a_kept_region_stays_on_screen() -> None:
    console, err = _console(live=True)
    console.show(["result"])
    console.keep()
    console.info("after")
    assert ERASE.search(err.getvalue()) is None


class _Ticker(LiveDisplay):
    interval = 0.01
    log_every = 0.01

    def lines(self) -> list[str]:
        return [f"tick {round(self.elapsed, 3)}"]


def test_a_display_redraws_on_a_terminal_and_leaves_nothing() -> None:
    console, err = _console(live=True)
    with _Ticker(console):
        time.sleep(0.1)
    text = err.getvalue()
    assert text.count("tick ") >= 2 and text.endswith("\x1b[J")  # erased at the end


def test_in_logs_a_heartbeat_prints_lines_and_json_prints_nothing() -> None:
    console, err = _console(live=False)
    with _Ticker(console):
        time.sleep(0.1)
    assert err.getvalue().count("tick ") >= 2 and "\x1b" not in err.getvalue()
    quiet, err = _console(live=False, json_mode=True)
    with _Ticker(quiet):
        time.sleep(0.05)
    assert err.getvalue() == ""


def test_progress_prints_a_line_per_phase_in_logs() -> None:
    console, err = _console(live=False)
    with Progress(console, "build x") as progress:
        progress.set_phase("dib:root.d")
        progress.set_phase("dib:root.d")
        progress.set_phase("formats")
    lines = err.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["build x: dib:root.d", "build x: formats"]


def test_only_the_console_writes_terminal_control_sequences() -> None:
    root = Path(__file__).resolve().parents[1] / "sage_image"
    writers = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if "\\033[" in p.read_text() and p.name != "console.py"]
    assert writers == []
