"""What every stage's commands.py shares: sub-commands with an example, common flags, parsers.

A leaf module (argparse and values.parse_duration only), so each stage imports it at
module top and `cli.py` can import the stage command modules statically without a cycle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .values import parse_duration


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


def add_command(sub: argparse._SubParsersAction, name: str, *, help: str, example: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """Add a sub-command whose --help always ends with an example."""
    return sub.add_parser(name, help=help, description=description or help,
                          epilog=f"example:\n  {example}", formatter_class=HelpFormatter)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def add_catalog_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, default=None, metavar="FILE",
                        help="catalog YAML to use (default: the one shipped with sage-image)")


def add_checks_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checks-file", type=Path, default=None, metavar="FILE",
                        help="check definitions YAML to use (default: the checks.yaml shipped "
                             "with sage-image); a test result counts only for the definitions "
                             "it ran")


def comma_list(text: str) -> tuple[str, ...]:
    """`a,b, c` -> ('a', 'b', 'c'); an empty list is a mistake, not "everything"."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names, e.g. a,b")
    return names


def duration_days(text: str) -> int:
    """`30d`, `6w`, `12mo`, `2y` -> days, as an argparse type."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value
