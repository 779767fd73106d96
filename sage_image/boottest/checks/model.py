"""Check definitions (checks.yaml) as frozen dataclasses, validated on load, and selection.

Errors name the file, the line, the check and the setting, like the catalog's (one reader,
sage_image/yamlfile.py):
``checks.yaml:12: checks.docker-run.expect.contain: unknown setting (did you mean 'contains'?)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ...catalog.model import Catalog
from ...errors import UsageError
from ...values import did_you_mean
from ...yamlfile import Document, read_yaml

DEFAULT_CHECKS = Path(__file__).with_name("checks.yaml")
COMPARISONS = ("provenance", "packages", "source-commits", "ntp", "partitions")
PROBES = ("sshd-auth", "ssh-audit")
ASSETS = ("docker-busybox",)
DEFAULT_TIMEOUT = 120.0
# Placeholders a command or reason may use; other braces are left alone (shell, Go templates).
VARIABLES = ("hostname", "uuid", "user", "key_comment", "asset_dir", "source_paths", "out", "exit",
             "cuda_version", "console")
PLACEHOLDER = re.compile(r"\{(" + "|".join(VARIABLES) + r")\}")


@dataclass(frozen=True)
class Expect:
    exit: int | None = 0
    stdout: str | None = None
    contains: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    matches: str | None = None


@dataclass(frozen=True)
class CheckDef:
    name: str
    reason: str
    run: str | None = None
    expect: Expect = Expect()
    compare: str | None = None
    probe: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    assets: tuple[str, ...] = ()
    # Checks that must have finished (passed or failed) before this one starts; all others run
    # concurrently as soon as SSH answers.
    after: tuple[str, ...] = ()


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill the known {placeholders}; anything else in braces stays as written."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def load_checks(path: Path | None = None) -> Mapping[str, CheckDef]:
    path = Path(path) if path else DEFAULT_CHECKS
    doc = read_yaml(path, what="check definitions", hint=f"edit {path}", dot_indexes=True)
    top = _mapping(doc, (), doc.data, required=("schema", "checks"))
    if top["schema"] != 1:
        raise doc.fail(("schema",), f"unsupported schema {top['schema']!r} (this tool reads 1)")
    raw = _mapping(doc, ("checks",), top["checks"], optional=tuple(top["checks"] or {}))
    checks = {str(name): _check(doc, str(name), spec) for name, spec in raw.items()}
    _check_order(doc, checks)
    return MappingProxyType(checks)


def _check_order(doc: Document, checks: Mapping[str, CheckDef]) -> None:
    """Every `after` names a defined check, and no check waits (even indirectly) for itself."""
    for check in checks.values():
        for i, name in enumerate(check.after):
            if name not in checks:
                raise doc.fail(("checks", check.name, "after", i),
                               f"unknown check '{name}'{did_you_mean(name, tuple(checks))}")
    for check in checks.values():
        seen: set[str] = set()
        todo = list(check.after)
        while todo:
            name = todo.pop()
            if name == check.name:
                raise doc.fail(("checks", check.name, "after"),
                               "waits for itself (through 'after')")
            if name not in seen:
                seen.add(name)
                todo += checks[name].after


def _check(doc: Document, name: str, raw: Any) -> CheckDef:
    w = ("checks", name)
    c = _mapping(doc, w, raw, required=("reason",),
                 optional=("run", "expect", "compare", "probe", "timeout", "assets",
                           "after"))
    if ("probe" in c) == ("run" in c):
        raise doc.fail(w, "needs exactly one of 'run' (a command) or 'probe' (built-in)")
    if "compare" in c and "expect" in c:
        raise doc.fail(w, "'compare' and 'expect' exclude each other")
    for key, known in (("compare", COMPARISONS), ("probe", PROBES)):
        if key in c and c[key] not in known:
            hint = did_you_mean(str(c[key]), known)
            raise doc.fail(w + (key,),
                           f"unknown {key} '{c[key]}'{hint} (known: {', '.join(known)})")
    assets = tuple(c.get("assets") or ())
    for i, asset in enumerate(assets):
        if asset not in ASSETS:
            raise doc.fail(w + ("assets", i), f"unknown asset '{asset}'"
                                              f"{did_you_mean(str(asset), ASSETS)}")
    after = c.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise doc.fail(w + ("after",), f"expected a list of check names, got {after!r}")
    timeout = c.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise doc.fail(w + ("timeout",), f"expected seconds > 0, got {timeout!r}")
    return CheckDef(name=name, reason=str(c["reason"]), run=c.get("run"),
                    expect=_expect(doc, w + ("expect",), c.get("expect") or {}),
                    compare=c.get("compare"), probe=c.get("probe"), timeout=float(timeout),
                    assets=assets, after=tuple(after))


def _expect(doc: Document, w: tuple[Any, ...], raw: Any) -> Expect:
    e = _mapping(doc, w, raw, optional=("exit", "stdout", "contains", "lacks", "matches"))
    if "matches" in e:
        try:
            re.compile(e["matches"])
        except re.error as exc:
            raise doc.fail(w + ("matches",), f"bad regular expression: {exc}") from exc
    return Expect(exit=e.get("exit", 0),
                  stdout=None if e.get("stdout") is None else str(e["stdout"]),
                  contains=tuple(str(x) for x in e.get("contains", ())),
                  lacks=tuple(str(x) for x in e.get("lacks", ())), matches=e.get("matches"))


def _mapping(doc: Document, w: tuple[Any, ...], value: Any, *, required: tuple[str, ...] = (),
             optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.fail(w, f"expected a mapping, got {type(value).__name__}")
    for key in required:
        if key not in value:
            raise doc.fail(w, f"missing required setting '{key}'")
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise doc.fail(w + (key,), f"unknown setting{did_you_mean(str(key), allowed)}")
    return value


def validate_catalog_checks(catalog: Catalog, checks: Mapping[str, CheckDef]) -> None:
    """Every check a variant names must be defined: fail at load, not half-way through a test."""
    catalog.require_checks(tuple(checks), hint=f"define it in {DEFAULT_CHECKS} or fix the name "
                                               f"in {catalog.path}")


def select_checks(catalog: Catalog, checks: Mapping[str, CheckDef], *, variant: str,
                  only: Sequence[str] = ()) -> tuple[CheckDef, ...]:
    """The variant's checks (inherited along its parents), or the named ones, in catalog order.

    Naming a check outside the variant is allowed (e.g. cuda-packages on a sage image, to show
    it fails); naming an unknown one is a UsageError.
    """
    validate_catalog_checks(catalog, checks)
    if variant not in catalog.variants:
        raise UsageError(f"unknown variant '{variant}'{did_you_mean(variant, catalog.variants)}")
    applicable = catalog.variant_checks(variant)
    for name in only:
        if name not in checks:
            raise UsageError(f"--checks: unknown check '{name}'{did_you_mean(name, tuple(checks))}",
                             hint=f"known checks: {', '.join(checks)}")
    if not only:
        names = list(dict.fromkeys(applicable))
    else:
        # Catalog order first, then any extra ones in the order given.
        names = [n for n in dict.fromkeys(applicable) if n in only]
        names += [n for n in dict.fromkeys(only) if n not in names]
    return tuple(checks[n] for n in names)
