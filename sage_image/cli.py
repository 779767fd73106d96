"""`sage-image`: the command line. The only place that turns errors into messages and exit codes.

Each stage package contributes its sub-commands through a ``register(subparsers)`` function;
a sub-command handler takes (args, console) and returns an exit code.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .boottest import commands as boottest_commands
from .builder import commands as builder_commands
from .catalog import commands as catalog_commands
from .cli_common import HelpFormatter
from .console import Console
from .diff import commands as diff_commands
from .errors import CommandError, Interrupted, SageImageError
from .localcloud import commands as localcloud_commands
from .publish import commands as publish_commands
from .release import commands as release_commands
from .vw import commands as vw_commands

# Stage modules that add sub-commands, in the order of the pipeline.
COMMAND_MODULES = (catalog_commands, builder_commands, boottest_commands, vw_commands,
                   publish_commands, diff_commands, release_commands, localcloud_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sage-image", formatter_class=HelpFormatter,
        description="Build, test and publish Chameleon images for Sage users.",
        epilog="example:\n  sage-image build --release bookworm --variant sage\n\n"
               "exit codes: 0 success, 1 operation failed, 2 bad input, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"sage-image {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="log every command line and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def install_sigterm_handler() -> None:
    """SIGTERM takes the same clean-up path as Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(name)s: %(message)s")
    console = Console(json_mode=getattr(args, "json", False))
    install_sigterm_handler()
    try:
        return int(args.func(args, console) or 0)
    except BrokenPipeError:
        # `sage-image list | head`: the reader went away; that is not an error of ours.
        sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        return report_error(Interrupted("interrupted; cleaned up"), console, debug=args.debug)
    except SageImageError as exc:
        return report_error(exc, console, debug=args.debug)


def report_error(exc: SageImageError, console: Console, *, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if console.json_mode:
        console.json({"ok": False, "error": exc.message, "hint": exc.hint,
                      "exit_code": exc.exit_code})
    print(f"sage-image: error: {exc.message}", file=sys.stderr)
    details = getattr(exc, "output_tail", "") if isinstance(exc, CommandError) else ""
    if details and debug:
        print(details, file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
