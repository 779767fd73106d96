"""The catalog's reference, made from its settings table: `sage-image list --settings` (text
or JSON) and docs/catalog-reference.md (`--markdown`), so the documentation cannot drift."""

from __future__ import annotations

import textwrap
from typing import Any

from ..settings import Row, reference
from .model import Catalog

DOC = "docs/catalog-reference.md"
REGENERATE = f"sage-image list --settings --markdown > {DOC}"


def settings_rows() -> list[Row]:
    return reference(Catalog)


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [{"key": r.key, "takes": r.takes, "required": r.required, "default": r.default,
             "help": r.help} for r in rows]


def as_text(rows: list[Row]) -> str:
    lines = []
    for r in rows:
        lines.append(f"{r.key}  ({r.takes}; {'required' if r.required else f'default: {r.default}'})")
        lines += textwrap.wrap(r.help, width=100, initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def as_markdown(rows: list[Row]) -> str:
    out = [
        "# Catalog reference",
        "",
        "<!-- Generated from the settings table in sage_image/catalog/model.py; do not edit.",
        f"     Regenerate: {REGENERATE} -->",
        "",
        "Every setting of the catalog (`sage_image/catalog/catalog.yaml`, or `--catalog FILE`).",
        "`sage-image list` checks a catalog: an error names the file, the line and the setting.",
        "A setting with a default may be left out (or set to `null`) to get the default.",
        "`<name>` stands for a name of your choosing, `[]` for each item of a list.",
        "The same reference: `sage-image list --settings [--json]`.",
    ]
    for top in (r for r in rows if "." not in r.key):
        out += ["", f"## `{top.key}`", "", f"{_cell(top.help)} Takes {_cell(top.takes)}; "
                f"{'required' if top.required else f'default: {_default(top)}'}."]
        nested = [r for r in rows if r.key.startswith(f"{top.key}.")]
        if nested:
            out += ["", "| Setting | Takes | Default | What it is |", "|---|---|---|---|"]
            out += [f"| `{r.key}` | {_cell(r.takes)} | {_default(r)} | {_cell(r.help)} |"
                    for r in nested]
    return "\n".join(out) + "\n"


def _default(row: Row) -> str:
    if row.required:
        return "required"
    return _cell(row.default or "") if row.default in ("unset", "the defaults below") \
        else f"`{row.default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
