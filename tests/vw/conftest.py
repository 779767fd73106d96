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

# (tests run with --import-mode=importlib, so test modules cannot import this file by name;
# they build the same paths from their own __file__)
KEY = Path(__file__).with_name("fixtures") / "private" / "register.pem"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    dest = tmp_path / "register.pem"
    shutil.copy(KEY, dest)
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
