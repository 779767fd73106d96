"""Shared fixtures for `sage-image vw k8s` tests: the shipped catalog, a test key, requests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sage_image.catalog.model import Catalog, load_catalog
from sage_image.vw import k8s
from sage_image.vw.model import K8sRequest, default_stack, parse_beehive

FIXTURES = Path(__file__).with_name("fixtures")
COMPOSE = FIXTURES / "docker-compose.yml"
# The fixture key's one secret-looking line: no output or YAML file may ever contain it.
KEY_MARKER = "TEST-ONLY-NOT-A-REAL-KEY"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    dest = tmp_path / "register.pem"
    shutil.copy(FIXTURES / "private" / "register.pem", dest)
    dest.chmod(0o600)
    return dest


@pytest.fixture
def make_request(catalog: Catalog, key: Path) -> Callable[..., K8sRequest]:
    def make(**overrides: Any) -> K8sRequest:
        base = K8sRequest(nodes=1, stack=default_stack(), kube=catalog.kubernetes,
                          source=catalog.sources["waggle-node"],
                          beehive=parse_beehive("beehive.example.org"), register_key=key)
        return replace(base, **overrides)
    return make


@pytest.fixture
def make_plan(make_request: Callable[..., K8sRequest]) -> Callable[..., k8s.Plan]:
    return lambda **overrides: k8s.plan(make_request(**overrides))
