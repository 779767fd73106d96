"""Typed errors raised by library code; only the CLI turns them into messages and exit codes.

Exit codes (documented in README.md):
  0  success
  1  an operation failed (build, boot test, publish ...)
  2  bad input or a failed pre-flight check (nothing was started)
  130 interrupted (Ctrl-C / SIGTERM), after cleaning up
"""

from __future__ import annotations

from collections.abc import Sequence


class SageImageError(Exception):
    """Base of every error the CLI reports as one line (plus an optional hint)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SageImageError):
    """The request cannot be carried out as given (unknown name, forbidden combination)."""

    exit_code = 2


class ConfigError(UsageError):
    """The catalog (or another configuration file) is malformed."""


class PreflightError(UsageError):
    """A check before the long work failed (root, free disk, mirror)."""


class SourceError(UsageError):
    """An external source cannot be fetched at its pinned commit."""


class CommandError(SageImageError):
    """An external command failed; carries the command line and the tail of its output."""

    def __init__(self, message: str, *, argv: list[str], returncode: int, output_tail: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail


class BuildError(SageImageError):
    """diskimage-builder (or a step around it) failed."""

    def __init__(self, message: str, *, log_path: str | None = None, step: str | None = None,
                 log_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_path = log_path
        self.step = step
        self.log_tail = log_tail


class BootTestError(SageImageError):
    """A boot test could not boot the image or reach it (QEMU, kernel, SSH); names kept logs."""

    def __init__(self, message: str, *, logs: tuple[str, ...] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.logs = logs


class PublishError(SageImageError):
    """Publishing to one site (or reading what is published there) failed; `reason` is the
    message without the site. The subclasses say what failed; a failure no subclass names (a
    Glance error answer outside the steps below) is a PublishError itself."""

    def __init__(self, message: str, *, site: str, hint: str | None = None) -> None:
        super().__init__(f"{site}: {message}", hint=hint)
        self.site = site
        self.reason = message


class SiteUnreachable(PublishError):
    """The site did not answer: its Glance (or Keystone) refused the connection, timed out,
    failed TLS, or has no image endpoint in its service catalog."""


class AccessRefused(PublishError):
    """The site refused the credentials (401: wrong or expired) or what they may do there
    (403: the project's role and the site's policy)."""


class NameTaken(PublishError):
    """Another image took the production name while this build was being uploaded."""


class UploadFailed(PublishError):
    """Glance did not take the image's bytes (refused them, or the connection broke)."""


class VerifyFailed(PublishError):
    """What Glance stored is not the build: not active, or another sha512 or size."""


class RecordFailed(PublishError):
    """The site's object store did not keep the build's record or its `current` pointer
    (unreachable, refused, another build's record in the way, or an endpoint that is no
    Swift)."""


class RollbackIncomplete(PublishError):
    """A failed site could not be put back as it was: `problems` names what is left to undo."""

    def __init__(self, cause: PublishError, problems: Sequence[str]) -> None:
        super().__init__(f"{cause.reason}; ROLLBACK INCOMPLETE: {'; '.join(problems)}",
                         site=cause.site,
                         hint="undo what it names by hand (`sage-image images` lists the "
                              "site's images), then publish again")
        self.cause = cause
        self.problems = tuple(problems)


class Interrupted(SageImageError):
    """The user (or a supervisor) asked us to stop; everything was cleaned up."""

    exit_code = 130
