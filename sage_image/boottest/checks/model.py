"""Check definitions (checks.yaml) as frozen dataclasses, validated on load, and selection.

Errors name the file, the check and the setting, like the catalog's:
``checks.yaml: checks.docker-run.expect.contain: unknown setting (did you mean 'contains'?)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ...catalog.model import Catalog
from ...errors import ConfigError, UsageError
from ...values import did_you_mean

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
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read check definitions: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    top = _mapping(path, (), data, required=("schema", "checks"))
    if top["schema"] != 1:
        raise _fail(path, ("schema",), f"unsupported schema {top['schema']!r} (this tool reads 1)")
    raw = _mapping(path, ("checks",), top["checks"], optional=tuple(top["checks"] or {}))
    checks = {str(name): _check(path, str(name), spec) for name, spec in raw.items()}
    _check_order(path, checks)
    return MappingProxyType(checks)


def _check_order(path: Path, checks: Mapping[str, CheckDef]) -> None:
    """Every `after` names a defined check, and no check waits (even indirectly) for itself."""
    for check in checks.values():
        for i, name in enumerate(check.after):
            if name not in checks:
                raise _fail(path, ("checks", check.name, "after", i),
                            f"unknown check '{name}'{did_you_mean(name, tuple(checks))}")
    for check in checks.values():
        seen: set[str] = set()
        todo = list(check.after)
        while todo:
            name = todo.pop()
            if name == check.name:
                raise _fail(path, ("checks", check.name, "after"),
                            "waits for itself (through 'after')")
            if name not in seen:
                seen.add(name)
                todo += checks[name].after


def _check(path: Path, name: str, raw: Any) -> CheckDef:
    w = ("checks", name)
    c = _mapping(path, w, raw, required=("reason",),
                 optional=("run", "expect", "compare", "probe", "timeout", "assets",
                           "after"))
    if ("probe" in c) == ("run" in c):
        raise _fail(path, w, "needs exactly one of 'run' (a command) or 'probe' (built-in)")
    if "compare" in c and "expect" in c:
        raise _fail(path, w, "'compare' and 'expect' exclude each other")
    for key, known in (("compare", COMPARISONS), ("probe", PROBES)):
        if key in c and c[key] not in known:
            hint = did_you_mean(str(c[key]), known)
            raise _fail(path, w + (key,),
                        f"unknown {key} '{c[key]}'{hint} (known: {', '.join(known)})")
    assets = tuple(c.get("assets") or ())
    for i, asset in enumerate(assets):
        if asset not in ASSETS:
            raise _fail(path, w + ("assets", i), f"unknown asset '{asset}'"
                                                 f"{did_you_mean(str(asset), ASSETS)}")
    after = c.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise _fail(path, w + ("after",), f"expected a list of check names, got {after!r}")
    timeout = c.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise _fail(path, w + ("timeout",), f"expected seconds > 0, got {timeout!r}")
    return CheckDef(name=name, reason=str(c["reason"]), run=c.get("run"),
                    expect=_expect(path, w + ("expect",), c.get("expect") or {}),
                    compare=c.get("compare"), probe=c.get("probe"), timeout=float(timeout),
                    assets=assets, after=tuple(after))


def _expect(path: Path, w: tuple[Any, ...], raw: Any) -> Expect:
    e = _mapping(path, w, raw, optional=("exit", "stdout", "contains", "lacks", "matches"))
    if "matches" in e:
        try:
            re.compile(e["matches"])
        except re.error as exc:
            raise _fail(path, w + ("matches",), f"bad regular expression: {exc}") from exc
    return Expect(exit=e.get("exit", 0),
                  stdout=None if e.get("stdout") is None else str(e["stdout"]),
                  contains=tuple(str(x) for x in e.get("contains", ())),
                  lacks=tuple(str(x) for x in e.get("lacks", ())), matches=e.get("matches"))


def _mapping(path: Path, w: tuple[Any, ...], value: Any, *, required: tuple[str, ...] = (),
             optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, w, f"expected a mapping, got {type(value).__name__}")
    for key in required:
        if key not in value:
            raise _fail(path, w, f"missing required setting '{key}'")
    allowed = required + optional
    for key in value:
        if key not in allowed:
            raise _fail(path, w + (key,), f"unknown setting{did_you_mean(str(key), allowed)}")
    return value


def _fail(path: Path, where: tuple[Any, ...], message: str) -> ConfigError:
    dotted = ".".join(str(p) for p in where) or "(top level)"
    return ConfigError(f"{path.name}: {dotted}: {message}", hint=f"edit {path}")


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
