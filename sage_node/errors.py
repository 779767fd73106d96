"""Typed errors raised by library code; only the CLI turns them into one line and an exit code.

Exit codes: 0 success, 1 an operation failed (a part did not start, a plugin failed to
launch), 2 bad input (a bad option, config file, sage.yaml or app folder; nothing was started),
130 interrupted (after cleaning up). `sage-node run` exits with the plugin's own code.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the CLI reports as one line (plus an optional hint)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(NodeError):
    """The request cannot be carried out as given."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file, or a file the node reads (/etc/waggle/*), is malformed."""


class CommandError(NodeError):
    """An external command failed; carries the command line and the tail of its output."""

    def __init__(self, message: str, *, argv: list[str], returncode: int, output_tail: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail


class PartError(NodeError):
    """A part of the node (broker, cache, data-sharing service, data API) failed to start."""

    def __init__(self, part: str, message: str, *, log: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(f"{part}: {message}" + (f" (log: {log})" if log else ""), hint=hint)
        self.part = part
        self.log = log


class NotRunningError(NodeError):
    """The command needs the node up (`sage-node up`)."""

    def __init__(self) -> None:
        super().__init__("the node is not up", hint="start it: sage-node up")


class PluginError(NodeError):
    """A plugin could not be built, started, found or removed."""
