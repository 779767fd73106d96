"""Where sage-image keeps its caches (sources, diskimage-builder slots, layers)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_root() -> Path:
    env = os.environ.get("SAGE_IMAGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sage-image"
