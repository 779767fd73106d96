"""The settings table and the YAML reader every configuration file goes through: one declaration
per setting reads it, checks it, defaults it and documents it; errors name file:line: key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sage_image.errors import ConfigError
from sage_image.settings import (
    At,
    ListOf,
    MapOf,
    Named,
    Ref,
    Text,
    Whole,
    mapping_key,
    read_document,
    reference,
    setting,
)
from sage_image.yamlfile import read_yaml


@dataclass(frozen=True, kw_only=True)
class Disk:
    name: str = mapping_key()
    size: int = setting(Whole(1), help="Its size.")


@dataclass(frozen=True, kw_only=True)
class Machine:
    disks: Mapping[str, Disk] = setting(Named(Disk), help="The disks.")
    boot: str = setting(Ref(Disk, "disk"), help="The disk it boots from.")
    tags: tuple[str, ...] = setting(ListOf(Text()), default=(), help="Free-form tags.")
    labels: Mapping[str, str] = setting(MapOf(Text()), default={}, help="Labels.")
    keep: int = setting(Whole(), key="prune.keep", default=2, help="How many to keep.")

    def validate(self, at: At) -> None:
        if self.disks[self.boot].size < 2:
            raise at.boot.fail(f"disk '{self.boot}' is too small to boot from")


GOOD = "disks:\n  a: {size: 4}\n  b: {size: 1}\nboot: a\n"


def load(tmp_path: Path, text: str) -> Machine:
    path = tmp_path / "machine.yaml"
    path.write_text(text)
    return read_document(Machine, read_yaml(path, what="machine"))


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.message


def test_one_declaration_reads_checks_and_defaults(tmp_path: Path) -> None:
    machine = load(tmp_path, GOOD + "labels: {x: 1}\n")
    assert machine.disks["a"] == Disk(name="a", size=4) and machine.boot == "a"
    assert machine.tags == () and machine.keep == 2 and dict(machine.labels) == {"x": "1"}
    # null means the default, as absent does; a nested key is read from its own mapping
    assert load(tmp_path, GOOD + "tags: null\nprune: {keep: 5}\n").keep == 5
    assert load(tmp_path, GOOD + "prune: null\n").keep == 2


@pytest.mark.parametrize("text,expected", [
    (GOOD + "tgas: [x]\n", "machine.yaml:5: tgas: unknown setting 'tgas' (did you mean 'tags'?)"),
    (GOOD.replace("boot: a\n", ""), "machine.yaml:1: (top level): missing required setting 'boot'"),
    (GOOD + "prune: {kep: 1}\n", "machine.yaml:5: prune.kep: unknown setting 'kep' (did you mean 'keep'?)"),
    (GOOD + "prune: [1]\n", "machine.yaml:5: prune: expected a mapping, got list"),
    (GOOD.replace("{size: 4}", "{size: 0}"), "machine.yaml:2: disks.a.size: expected a whole number >= 1, got 0"),
    (GOOD.replace("{size: 4}", "{}"), "machine.yaml:2: disks.a: missing required setting 'size'"),
    (GOOD.replace("boot: a", "boot: c"), "machine.yaml:4: boot: unknown disk 'c' (known: a, b)"),
    (GOOD.replace("boot: a", "boot: b"), "machine.yaml:4: boot: disk 'b' is too small to boot from"),
    (GOOD + "tags: [x, '']\n", "machine.yaml:5: tags[1]: expected a non-empty string, got ''"),
    ("disks: {}\nboot: a\n", "machine.yaml:1: disks: expected a non-empty mapping"),
])
def test_every_error_names_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == expected


def test_the_reference_lists_every_setting_once() -> None:
    rows = {r.key: r for r in reference(Machine)}
    assert list(rows) == ["disks", "disks.<name>.size", "boot", "tags", "labels", "prune.keep"]
    assert rows["boot"].takes == "a disk name" and rows["boot"].required
    assert rows["prune.keep"].default == "2" and rows["tags"].default == "[]"
    assert rows["disks.<name>.size"].takes == "a whole number >= 1"


def test_the_reader_keeps_every_line_and_both_index_styles(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a:\n  b:\n    - x\n    - {c: 1}\n")
    doc = read_yaml(path, what="file")
    assert doc.line(("a", "b", 1, "c")) == 4 and doc.line(("a", "nope")) == 1
    assert doc.fail(("a", "b", 1), "bad").message == "f.yaml:4: a.b[1]: bad"
    dots = read_yaml(path, what="file", shown=str(path), dot_indexes=True)
    assert dots.fail(("a", "b", 1), "bad").message == f"{path}:4: a.b.1: bad"


def test_unreadable_or_broken_yaml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read machine: No such file"):
        read_yaml(tmp_path / "nope.yaml", what="machine")
    (tmp_path / "bad.yaml").write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: not valid YAML"):
        read_yaml(tmp_path / "bad.yaml", what="machine")
