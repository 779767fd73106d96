"""Which sage-image made an image: the builder's own source commit."""

from __future__ import annotations

from pathlib import Path

from ..errors import CommandError
from ..runner import run


def builder_commit() -> str:
    """The sage-image source commit (build-repo-commit), when running from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        return run(["git", "-C", str(here), "rev-parse", "HEAD"], timeout=10).stdout.strip()
    except CommandError:
        return "unknown"
