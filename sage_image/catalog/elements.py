"""Where diskimage-builder elements come from: this package's own and DIB's."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE_ELEMENTS = Path(__file__).resolve().parent.parent / "elements"


def dib_elements_dir() -> Path | None:
    spec = importlib.util.find_spec("diskimage_builder")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "elements"


def element_dirs() -> tuple[Path, ...]:
    """ELEMENTS_PATH for DIB: ours first so a same-named element of ours wins."""
    dib = dib_elements_dir()
    return (PACKAGE_ELEMENTS,) + ((dib,) if dib else ())


@lru_cache(maxsize=1)
def known_elements() -> frozenset[str]:
    names: set[str] = set()
    for folder in element_dirs():
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir())
    return frozenset(names)
