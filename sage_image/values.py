"""Small value helpers every stage shares: name suggestions, durations, plain (JSON) forms.

A leaf module (standard library only), so the lowest modules (cli_common, yamlfile, settings)
can use it without importing a stage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DURATION_RE = re.compile(r"^(\d+)(d|w|mo|y)$")
DURATION_DAYS = {"d": 1, "w": 7, "mo": 30, "y": 365}


def did_you_mean(value: str, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_duration(text: str) -> int:
    """`30d`, `6w`, `12mo`, `2y` -> days; ValueError on anything else."""
    match = DURATION_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"expected a duration like 30d, 6w, 12mo or 2y, got {text!r}")
    return int(match.group(1)) * DURATION_DAYS[match.group(2)]


def as_plain(value: Any) -> Any:
    """Dataclasses, records and read-only mappings as plain dicts/lists (for JSON output)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "__struct_fields__"):  # the output folder's records (msgspec)
        return {k: as_plain(getattr(value, k)) for k in value.__struct_fields__}
    if isinstance(value, Mapping):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
