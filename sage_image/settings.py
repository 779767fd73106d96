"""A settings table (after mkosi's SETTINGS): each setting is declared once, as a field of a
frozen dataclass, and that declaration drives reading, checking, defaults and the reference.

    @dataclass(frozen=True, kw_only=True)
    class Site:
        name: str = mapping_key()
        cloud: str = setting(Text(), help="Its entry in clouds.yaml.")
        ntp: tuple[str, ...] = setting(ListOf(NTP), default=(), help="Its NTP servers.")

`read_settings(Site, raw, at)` checks the mapping's keys (a missing required one is an error at
the mapping's line, an unknown one at its own line with a did-you-mean), reads each field with
its parser (null or absent: the default), builds the object and runs its `validate(at)` hook,
where checks that involve several fields live. `reference(Catalog)` lists every setting for
`sage-image list --settings` and the generated docs.

Parsers are small objects that read one value, know their human form for the reference ("a
whole number", "a list of element names") and raise at the value's `file:line: dotted.key`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from types import MappingProxyType, SimpleNamespace
from typing import Any, TypeVar

from .errors import ConfigError
from .values import DURATION_DAYS, did_you_mean, parse_duration
from .yamlfile import Document, Where

T = TypeVar("T")
_SETTING = "sage_image.setting"
_MAPPING_KEY = "sage_image.mapping_key"


# -- declaring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One setting: its attribute, its key in the file, how it is read, its default, its help."""

    attr: str
    key: tuple[str, ...]  # ("prune", "keep") for a key nested in a mapping of its own
    parser: Parser
    default: Any  # MISSING: required
    help: str

    @property
    def required(self) -> bool:
        return self.default is MISSING


def setting(parser: Parser, *, default: Any = MISSING, help: str, key: str | None = None) -> Any:
    """Declare a dataclass field as a setting. `key`: its key in the file when that is not the
    field's name (dotted for a nested one, e.g. "prune.keep"). No default: the key is required."""
    meta = {_SETTING: (parser, help, key)}
    if isinstance(default, Mapping):
        frozen = MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


def mapping_key() -> Any:
    """Declare the field that holds the key an entry is written under (`sites: {CHI@UC: ...}`)."""
    return field(metadata={_MAPPING_KEY: True})


@cache
def settings_of(cls: type) -> tuple[Setting, ...]:
    out = []
    for f in fields(cls):
        if _SETTING not in f.metadata:
            continue
        if hasattr(At, f.name):
            raise TypeError(f"{cls.__name__}.{f.name}: the name is taken by settings.At")
        parser, help_text, key = f.metadata[_SETTING]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        out.append(Setting(f.name, tuple((key or f.name).split(".")), parser, default, help_text))
    return tuple(out)


def _mapping_key_of(cls: type) -> str | None:
    return next((f.name for f in fields(cls) if f.metadata.get(_MAPPING_KEY)), None)


# -- where a value is read ---------------------------------------------------------------------
class At:
    """A place in a document: where its errors point, and what is known when it is read.

    Hooks find a setting's place by attribute, never by spelling its key again:
    ``raise at.partitions[1].role.fail("...")`` points at ``layouts.x.partitions[1].role``.
    """

    __slots__ = ("doc", "where", "shape", "known", "siblings")

    def __init__(self, doc: Document, where: Where, shape: Parser, known: dict[Any, Any],
                 siblings: SimpleNamespace | None = None) -> None:
        self.doc = doc
        self.where = where
        self.shape = shape  # what is read here: attributes and [key] navigate it
        # what this read of the document knows: the top-level named sections read so far, by
        # the class of their entries (for Ref), and the options of each Choice that looked up
        # its own (known elements, check names), so they are looked up once per document
        self.known = known
        self.siblings = siblings or SimpleNamespace()  # fields read before this one

    def fail(self, message: str) -> ConfigError:
        return self.doc.fail(self.where, message)

    @property
    def dotted(self) -> str:
        return self.doc.dotted(self.where)

    @property
    def key(self) -> str:
        """The key this place is written under, as the file spells it."""
        return str(self.where[-1]) if self.where else ""

    def __getitem__(self, part: Any) -> At:
        item = getattr(self.shape, "item", None)
        if item is None:
            raise TypeError(f"{self.dotted}: not a list or mapping")
        return At(self.doc, self.where + (part,), item, self.known)

    def __getattr__(self, attr: str) -> At:
        """Only called for names that are not At's own: the settings of the class here."""
        if attr.startswith("_") or attr in At.__slots__ or not isinstance(self.shape, Section):
            raise AttributeError(attr)
        found = next((s for s in settings_of(self.shape.cls) if s.attr == attr), None)
        if found is None:
            raise AttributeError(f"{self.shape.cls.__name__} has no setting {attr!r}")
        return At(self.doc, self.where + found.key, found.parser, self.known)


def read_document(cls: type[T], doc: Document, **fixed: Any) -> T:
    """The whole document as `cls`; `fixed`: its fields that are not settings."""
    return read_settings(cls, doc.data, At(doc, (), Section(cls), {}), **fixed)


def read_settings(cls: type[T], raw: Any, at: At, **fixed: Any) -> T:
    settings = settings_of(cls)
    _check_keys(raw, _key_tree(settings), at)
    values = SimpleNamespace(**fixed)
    for s in settings:
        here = At(at.doc, at.where + s.key, s.parser, at.known, values)
        value = _lookup(raw, s.key)
        if value is None and not s.required:
            value = s.default
        else:
            value = s.parser.parse(value, here)
        setattr(values, s.attr, value)
        if not at.where and isinstance(s.parser, MapOf) and isinstance(s.parser.item, Section):
            at.known[s.parser.item.cls] = value
    obj = cls(**vars(values))
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(At(at.doc, at.where, Section(cls), at.known))
    return obj


def _key_tree(settings: tuple[Setting, ...]) -> dict[str, Any]:
    """{key: Setting, group: {key: Setting}} for the keys a mapping may have."""
    tree: dict[str, Any] = {}
    for s in settings:
        node = tree
        for part in s.key[:-1]:
            node = node.setdefault(part, {})
        node[s.key[-1]] = s
    return tree


def _required(node: Setting | dict[str, Any]) -> bool:
    return node.required if isinstance(node, Setting) else any(map(_required, node.values()))


def _check_keys(raw: Any, tree: dict[str, Any], at: At) -> None:
    if not isinstance(raw, dict):
        raise at.fail(f"expected a mapping, got {type(raw).__name__}")
    for key, node in tree.items():
        if key not in raw and _required(node):
            raise at.fail(f"missing required setting '{key}'")
    for key in raw:
        if key not in tree:
            raise at.doc.fail(at.where + (key,),
                              f"unknown setting '{key}'{did_you_mean(str(key), tree)}")
    for key, node in tree.items():
        if isinstance(node, dict) and key in raw and (raw[key] is not None or _required(node)):
            _check_keys(raw[key], node, At(at.doc, at.where + (key,), at.shape, at.known))


def _lookup(raw: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key:
        if not isinstance(raw, dict):
            return None
        raw = raw.get(part)  # type: ignore[assignment]
    return raw


# -- parsers -----------------------------------------------------------------------------------
class Parser:
    """Reads one value. `human`/`plural`: what it takes, for the reference."""

    human = "a value"
    plural = "values"

    def parse(self, value: Any, at: At) -> Any:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        """A default as one would write it in the file."""
        if value is None:
            return "unset"
        if is_dataclass(value):
            return "the defaults below"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return "[" + ", ".join(map(str, value)) + "]"
        if isinstance(value, Mapping):
            return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
        return str(value)


class Text(Parser):
    """A non-empty string (a number is taken as its text); `valid`: a pattern or a test it must
    pass, else `error` (``{value!r}`` and ``{human}`` are filled in)."""

    def __init__(self, human: str = "a non-empty string", *, plural: str | None = None,
                 valid: str | Callable[[str], bool] | None = None,
                 error: str = "expected {human}, got {value!r}", empty: bool = False) -> None:
        self.human = human
        self.plural = plural or "strings"
        self.valid = re.compile(valid).match if isinstance(valid, str) else valid
        self.error = error
        self.empty = empty  # "" (or null) is allowed and read as ""

    def parse(self, value: Any, at: At) -> str:
        if self.empty and value in (None, ""):
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise at.fail(f"expected a non-empty string, got {value!r}")
        if self.valid is not None and not self.valid(value):
            raise at.fail(self.error.format(human=self.human, value=value))
        return value


class Whole(Parser):
    """A whole number from `lo` (to `hi`)."""

    plural = "whole numbers"

    def __init__(self, lo: int = 0, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.human = (f"a whole number from {lo} to {hi}" if hi is not None
                      else f"a whole number >= {lo}" if lo else "a whole number")

    def parse(self, value: Any, at: At) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.lo \
                or (self.hi is not None and value > self.hi):
            wanted = f"{self.lo}..{self.hi}" if self.hi is not None else self.human
            raise at.fail(f"expected {wanted}, got {value!r}")
        return value


class Flag(Parser):
    human = "true or false"

    def parse(self, value: Any, at: At) -> bool:
        if not isinstance(value, bool):
            raise at.fail(f"expected true or false, got {value!r}")
        return value


class Exactly(Parser):
    """One accepted value (a format version)."""

    def __init__(self, value: Any, *, error: str) -> None:
        self.value = value
        self.human = str(value)
        self.error = error

    def parse(self, value: Any, at: At) -> Any:
        if value != self.value or isinstance(value, bool):
            raise at.fail(self.error.format(value=value))
        return value


class Duration(Parser):
    """`30d`, `6w`, `12mo`, `2y`, read as days."""

    human = "a duration like 30d, 6w, 12mo or 2y"

    def parse(self, value: Any, at: At) -> int:
        try:
            return parse_duration(Text().parse(value, at))
        except ValueError as exc:
            raise at.fail(str(exc)) from exc

    def show(self, value: Any) -> str:
        for unit in ("y", "mo", "w"):
            if value % DURATION_DAYS[unit] == 0:
                return f"{value // DURATION_DAYS[unit]}{unit}"
        return f"{value}d"


class Template(Parser):
    """A str.format template that may use only `fields` (and must use those in `needs`)."""

    def __init__(self, what: str, fields: tuple[str, ...], *, needs: tuple[str, ...] = ()) -> None:
        self.what, self.fields, self.needs = what, fields, needs
        self.human = f"a {what} with the fields " + ", ".join(f"{{{f}}}" for f in fields)

    def parse(self, value: Any, at: At) -> str:
        text = Text().parse(value, at)
        try:
            text.format(**{f: "x" for f in self.fields})
        except (KeyError, IndexError, ValueError) as exc:
            raise at.fail(f"bad {self.what} {text!r}: unknown field {exc}"
                          f" (fields: {', '.join(self.fields)})") from exc
        for needed in self.needs:
            if f"{{{needed}}}" not in text:
                raise at.fail(f"the {self.what} must contain {{{needed}}}, got {text!r}")
        return text


class Choice(Parser):
    """One of a closed set of names: a tuple, or a function that gives them (known elements)."""

    def __init__(self, options: tuple[str, ...] | Callable[[], Collection[str]], what: str, *,
                 human: str | None = None, plural: str | None = None) -> None:
        self.options = options
        self.what = what
        listed = ", ".join(options) if isinstance(options, tuple) else ""
        self.human = human or f"one of {listed}"
        self.plural = plural or f"{what} names (each one of {listed})"

    def choices(self, at: At) -> Collection[str]:
        if isinstance(self.options, tuple):
            return self.options
        if self not in at.known:
            at.known[self] = sorted(self.options())
        return at.known[self]

    def parse(self, value: Any, at: At) -> str:
        text = Text().parse(value, at)
        choices = self.choices(at)
        if text not in choices:
            raise at.fail(f"unknown {self.what} '{text}'{did_you_mean(text, choices)}"
                          f" (known: {', '.join(choices)})")
        return text


class Ref(Choice):
    """The name of an entry of a named section read before this one (`arches`, `sites` ...),
    found by the class of its entries."""

    def __init__(self, cls: type, what: str) -> None:
        super().__init__((), what, human=f"a {what} name", plural=f"{what} names")
        self.cls = cls

    def choices(self, at: At) -> Collection[str]:
        return tuple(at.known[self.cls])


EVERY = "every"  # MapOf(required=EVERY): a key for each name the key parser knows


class ListOf(Parser):
    def __init__(self, item: Parser, *, non_empty: bool = False) -> None:
        self.item = item
        self.non_empty = non_empty
        self.placeholder = "[]"
        self.human = f"a {'non-empty ' if non_empty else ''}list of {item.plural}"

    def parse(self, value: Any, at: At) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise at.fail(f"expected a list, got {type(value).__name__}")
        if self.non_empty and not value:
            raise at.fail(f"expected a non-empty list of {self.item.plural}")
        return tuple(self.item.parse(v, at[i]) for i, v in enumerate(value))


class MapOf(Parser):
    """A mapping of names (read by `key`) to values (read by `item`). `required`: keys that
    must be there - a tuple, EVERY name the key parser knows, or a function of the place (for
    keys that depend on a field read before: ``lambda at: at.siblings.arches``)."""

    def __init__(self, item: Parser, *, key: Parser | None = None,
                 required: tuple[str, ...] | str | Callable[[At], Iterable[str]] = (),
                 non_empty: bool = False, placeholder: str | None = None) -> None:
        self.item = item
        what = placeholder or getattr(key, "what", "name")
        self.key = key or Text(f"a {what}", plural=f"{what} names" if placeholder else "names")
        self.required = required
        self.non_empty = non_empty
        self.placeholder = f"<{what.replace(' ', '_')}>"
        values = "the settings below" if isinstance(item, Section) else item.plural
        self.human = f"a mapping of {self.key.plural} to {values}"

    def required_keys(self, at: At) -> Iterable[str]:
        if self.required == EVERY:
            assert isinstance(self.key, Choice)
            return self.key.choices(at)
        if callable(self.required):
            return self.required(at)
        return self.required

    def parse(self, value: Any, at: At) -> Mapping[str, Any]:
        if not isinstance(value, dict) or (self.non_empty and not value):
            raise at.fail("expected a non-empty mapping" if self.non_empty
                          else f"expected a mapping, got {type(value).__name__}")
        for needed in self.required_keys(at):
            if needed not in value:
                raise at.fail(f"missing required setting '{needed}'")
        keys = {k: self.key.parse(k, at[k]) for k in value}
        return MappingProxyType({keys[k]: self.read_item(keys[k], v, at[k])
                                 for k, v in value.items()})

    def read_item(self, name: str, value: Any, at: At) -> Any:
        if isinstance(self.item, Section):
            return self.item.parse(value, at, key=name)
        return self.item.parse(value, at)


class Section(Parser):
    """A mapping read as a settings class (its settings are listed under it)."""

    def __init__(self, cls: type, *, human: str = "a mapping of the settings below",
                 plural: str = "mappings of the settings below") -> None:
        self.cls = cls
        self.human = human
        self.plural = plural

    def parse(self, value: Any, at: At, key: str | None = None) -> Any:
        name = _mapping_key_of(self.cls)
        fixed = {name: key} if name and key is not None else {}
        return read_settings(self.cls, value, at, **fixed)


class Named(MapOf):
    """A top-level section of named entries (`sites`, `variants` ...): a non-empty mapping of
    names to `cls`, whose names later settings refer to with Ref(cls)."""

    def __init__(self, cls: type) -> None:
        super().__init__(Section(cls), non_empty=True)


# -- the reference -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    key: str  # variants.<name>.cuda.releases.<release>.version
    takes: str
    required: bool
    default: str | None
    help: str


def reference(cls: type) -> list[Row]:
    """Every setting of `cls` and the sections under it, in declaration order."""
    return list(_rows(Section(cls), ""))


def _rows(shape: Parser, prefix: str) -> Iterator[Row]:
    if isinstance(shape, Section):
        for s in settings_of(shape.cls):
            key = ".".join(((prefix,) if prefix else ()) + s.key)
            yield Row(key, s.parser.human, s.required,
                      None if s.required else s.parser.show(s.default), s.help)
            yield from _rows(s.parser, key)
    elif isinstance(shape, (ListOf, MapOf)):
        sep = "" if isinstance(shape, ListOf) else "."
        yield from _rows(shape.item, f"{prefix}{sep}{shape.placeholder}")
