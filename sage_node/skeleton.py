"""`sage-node new NAME`: a current app skeleton of our own, with the cookiecutter's rules for
names and versions (waggle-sensor/cookiecutter-sage-app hooks/pre_gen_project.py)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from .errors import UsageError

NAME_RULE = re.compile(r"^[a-z][a-z0-9-]+$")
VERSION_RULE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
NAME_ERROR = ("ERROR: Invalid name! Name must start with a letter and must only consist of "
              "lowercase letters, numbers and hyphens.")
VERSION_ERROR = "ERROR: Invalid version! Version must follow x.y.z semvar pattern."


def template_files() -> dict[str, tuple[str, bool]]:
    """Relative path -> (text, whether it is a template) of every skeleton file."""
    root = resources.files("sage_node.templates") / "app"
    found: dict[str, tuple[str, bool]] = {}

    def walk(node, prefix: str) -> None:  # type: ignore[no-untyped-def]
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found[f"{prefix}{child.name}".removesuffix(".tmpl")] = (
                    child.read_text(), child.name.endswith(".tmpl"))
    walk(root, "")
    return found


def new_app(name: str, *, parent: Path, version: str, base_image: str) -> Path:
    if not NAME_RULE.match(name):
        raise UsageError(NAME_ERROR)
    if not VERSION_RULE.match(version):
        raise UsageError(VERSION_ERROR)
    target = parent / name
    if target.exists():
        raise UsageError(f"{target} already exists")
    values = {"name": name, "version": version, "base_image": base_image}
    for relative, (text, is_template) in sorted(template_files().items()):
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values) if is_template else text)
    return target
