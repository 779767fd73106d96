"""Golden files: the N=1 tree, so a review sees exactly what a change does to the manifests.

Regenerate after an intended change, then review the diff of tests/vw/golden/:
    SAGE_IMAGE_REGEN_GOLDEN=1 .venv/bin/pytest tests/vw/test_golden.py
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_image.vw import k8s
from sage_image.vw.compose import convert

GOLDEN = Path(__file__).with_name("golden")
COMPOSE = Path(__file__).with_name("fixtures") / "docker-compose.yml"
REGEN = os.environ.get("SAGE_IMAGE_REGEN_GOLDEN") == "1"


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["built-in", "from-compose"])
def test_n1_output_matches_golden(case: str, make_plan: Callable[..., k8s.Plan]) -> None:
    if case == "from-compose":
        conv = convert(COMPOSE)
        plan = make_plan(stack=conv.stack, extra_env=conv.env)
    else:
        plan = make_plan()
    generated = k8s.files(plan)
    # The compose fixture describes the same node as the built-in stack: one golden tree for both.
    golden = GOLDEN / "built-in"
    if REGEN and case == "built-in":
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in generated.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
    assert tree(golden) == generated, (
        "generated manifests differ from tests/vw/golden; if intended, regenerate with "
        "SAGE_IMAGE_REGEN_GOLDEN=1 .venv/bin/pytest tests/vw/test_golden.py and review the diff")


def test_golden_check_can_fail(make_plan: Callable[..., k8s.Plan]) -> None:
    generated = k8s.files(make_plan(nodes=1, storage_class="standard"))
    assert tree(GOLDEN / "built-in") != generated
