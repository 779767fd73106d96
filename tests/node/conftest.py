"""Fixtures for the live sage-node tests: a real node on free ports, in a temporary folder,
always stopped (the teardown fails if anything of it is left running or listening)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_image.catalog import load_catalog
from tests.node.harness import DSS_STANDIN, NodeHarness, group_pids, leftovers, make_node


@pytest.fixture(scope="session")
def dss_python(tmp_path_factory) -> Path:
    """A venv as the sage image's sage-node venv: the catalog's hash-pinned node_python lock
    for this Python (what the data-sharing service runs with in the image); on a Python the
    catalog has no lock for, the service's own requirements.txt pins."""
    venv = tmp_path_factory.mktemp("dss-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    env = load_catalog().variants["sage"].node_python
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    lock = next((lock.file for lock in env.locks.values() if lock.python == here), None)
    if lock is not None:
        subprocess.run([*pip, "--require-hashes", "--no-deps", "-r", str(lock)], check=True)
    else:
        pins = [ln for ln in (DSS_STANDIN / "requirements.txt").read_text().splitlines()
                if ln and not ln.startswith(("#", "coverage"))]   # coverage: upstream's tests
        subprocess.run([*pip, *pins], check=True)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def live_node(tmp_path_factory, dss_python) -> Iterator[NodeHarness]:
    if shutil.which("unshare") is None:
        pytest.fail("the process runner needs unshare (util-linux)")
    node = make_node(tmp_path_factory.mktemp("node"), dss_python)
    up = node.cli("up", "--json")
    pids: list[int] = []
    try:
        state = json.loads((node.state / "node.json").read_text()) \
            if (node.state / "node.json").exists() else {}
        pids = group_pids([part["pid"] for part in state.get("parts", {}).values()])
        assert up.returncode == 0, f"sage-node up failed:\n{up.stderr}"
        yield node
    finally:
        down = node.cli("down")
        left = leftovers(node, pids)
        assert down.returncode == 0 and not left, \
            f"sage-node down: {down.stderr}\nstill running or listening: {left}"
