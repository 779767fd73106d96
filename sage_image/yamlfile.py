"""The one YAML reader for configuration files: the catalog, checks.yaml, compose files.

A `Document` keeps the line of every key and list item, so an error names the place to edit:
``catalog.yaml:57: variants.sage.elements[2]: unknown element 'virtual-wagle'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# A place in a document: mapping keys and list indexes from the top, e.g. ("sites", "CHI@UC", 0).
Where = tuple[Any, ...]
# libyaml's loader where PyYAML has it (its wheels do): the same documents, ~2.5x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    path: Path
    data: Any
    lines: Mapping[Where, int]
    shown: str  # how errors name the file: its name, or the path as the user gave it
    hint: str | None = None  # the hint of every error, unless one says otherwise
    dot_indexes: bool = False  # `after.0` (checks.yaml, compose files) instead of `elements[0]`

    def line(self, where: Where) -> int | None:
        """The line of `where`, or of the nearest enclosing place the file has."""
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines.get(where)

    def dotted(self, where: Where) -> str:
        text = ""
        for part in where:
            if isinstance(part, int) and not self.dot_indexes:
                text += f"[{part}]"
            else:
                text += f".{part}" if text else str(part)
        return text or "(top level)"

    def fail(self, where: Where, message: str, *, hint: str | None = None) -> ConfigError:
        """``file:line: dotted.key: message``, as an error to raise."""
        line = self.line(where)
        place = f"{self.shown}:{line}" if line else self.shown
        return ConfigError(f"{place}: {self.dotted(where)}: {message}", hint=hint or self.hint)


def read_yaml(path: Path | Traversable, *, what: str, shown: str | None = None,
              hint: str | None = None, dot_indexes: bool = False) -> Document:
    """Read and parse a YAML file (a path, or package data); ConfigError if either fails."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    file = Path(str(path))
    return parse_yaml(text, file, shown=shown or file.name, hint=hint, dot_indexes=dot_indexes)


def parse_yaml(text: str, path: Path, *, shown: str, hint: str | None = None,
               dot_indexes: bool = False) -> Document:
    try:
        node, data = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{place}: not valid YAML: {problem}", hint=hint) from exc
    lines: dict[Where, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return Document(path=path, data=data, lines=lines, shown=shown, hint=hint,
                    dot_indexes=dot_indexes)


def _load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for lines) and the data, from one parse."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _index_lines(node: yaml.Node, here: Where, out: dict[Where, int]) -> None:
    """Each key's line is where the key is written (a block mapping's value starts below it)."""
    out.setdefault(here, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[here + (key.value,)] = key.start_mark.line + 1
            _index_lines(value, here + (key.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, here + (i,), out)
