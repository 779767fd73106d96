"""What a test run answers for: the tester's identity and a digest per check definition.

A result is reused - by `release`, by `publish`'s gate, by the tests' fixtures - only when the
tester and every current check's definition are the ones it ran (`outfolder.publish_gate`).
The digest covers what decides a check's verdict: what runs (`run`, `probe`, `compare`,
`assets`), what is expected, what it waits for (`after`) and its timeout - not its name or its
failure message. Placeholders are digested as written: the values they take come from the
image (whose bytes the result names by sha512) or from the run itself (hostname, key).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from ... import __version__
from ...catalog.model import Catalog
from ...outfolder import Expectation, Tester
from .model import CheckDef, select_checks

BOOTTEST = Path(__file__).resolve().parents[1]  # sage_image/boottest: the tester's code


def check_digest(check: CheckDef) -> str:
    definition = asdict(check)
    for label in ("name", "reason"):
        definition.pop(label)
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def current_tester() -> Tester:
    """sage-image's version and a digest of the boot-test code (every .py file under
    sage_image/boottest): a change to how checks run, compare or boot is a new tester."""
    digest = hashlib.sha256()
    for path in sorted(BOOTTEST.rglob("*.py")):
        digest.update(str(path.relative_to(BOOTTEST)).encode() + b"\0" + path.read_bytes())
    return Tester(version=__version__, digest=digest.hexdigest()[:16])


def expectation_for(checks: Iterable[CheckDef]) -> Expectation:
    return Expectation(tester=current_tester(), checks={c.name: check_digest(c) for c in checks})


def variant_expectation(catalog: Catalog, definitions: Mapping[str, CheckDef], *,
                        variant: str) -> Expectation:
    """What a run of VARIANT must have run to count now: its checks as the catalog and the
    check definitions say today."""
    return expectation_for(select_checks(catalog, definitions, variant=variant))
