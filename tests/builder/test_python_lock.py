"""The Sage Python tools: hash-pinned locks in the catalog, how a build plans and records them,
and the wrapper/stand-in behaviour the image's checks rely on (run for real, here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sage_image.boottest.checks.compare import compare_packages
from sage_image.builder import preflight
from sage_image.builder.artifacts import installed_python_packages
from sage_image.builder.plan import BuildRequest, plan_build
from sage_image.builder.pythonlock import LockEntry, lock_versions, parse_lock, render_lock
from sage_image.builder.sources import STANDIN_TEMPLATES
from sage_image.catalog import load_catalog
from sage_image.errors import ConfigError, PreflightError
from sage_image.release.plan import layer_key
from tests import contract

CATALOG = load_catalog()
SAGE_PYTHON = CATALOG.variants["sage"].python
ELEMENTS = Path(__file__).resolve().parents[2] / "sage_image" / "elements"


@pytest.mark.parametrize("release", sorted(SAGE_PYTHON.locks))
def test_every_lock_pins_the_sage_tools_by_version_and_hash(release: str) -> None:
    entries = {e.name: e for e in parse_lock(SAGE_PYTHON.locks[release].file)}
    assert entries["pywaggle"].version == "0.56.3"
    assert entries["sage-data-client"].version == "0.9.1"
    assert {"pika", "pandas", "numpy", "opencv-python-headless"} <= set(entries)
    assert all(len(h) == 64 for e in entries.values() for h in e.hashes)
    # Compiled wheels differ per arch: amd64 and arm64 each have their own hash.
    assert len(entries["numpy"].hashes) == 2 and len(entries["pandas"].hashes) == 2
    assert len(entries["pywaggle"].hashes) == 1  # one pure-Python wheel for both


def test_lock_round_trip_and_bad_lines(tmp_path: Path) -> None:
    entries = (LockEntry("pika", "1.4.4", ("a" * 64,)), LockEntry("numpy", "2", ("c" * 64, "b" * 64)))
    path = tmp_path / "lock.txt"
    path.write_text(render_lock(entries, "made here\nfor a test"))
    assert path.read_text().startswith("# made here\n# for a test\nnumpy==2 \\\n")
    assert parse_lock(path) == (LockEntry("numpy", "2", ("b" * 64, "c" * 64)),
                                LockEntry("pika", "1.4.4", ("a" * 64,)))
    path.write_text("# header\nPy_Waggle==1.0 --hash=sha256:" + "d" * 64 + "\npandas==2\n")
    with pytest.raises(ConfigError, match=r"lock.txt:3: expected 'name==version --hash"):
        parse_lock(path)
    assert lock_versions(SAGE_PYTHON.locks["bookworm"].file)["pywaggle"] == "0.56.3"
    with pytest.raises(ConfigError, match="cannot read Python lock"):
        parse_lock(tmp_path / "missing.txt")


def test_plan_carries_the_venv_lock_and_index() -> None:
    plan = plan_build(CATALOG, BuildRequest(release="bookworm", variant="sage"))
    assert plan.python is not None and plan.python.venv == "/opt/sage/venv"
    assert plan.python.lock == SAGE_PYTHON.locks["bookworm"].file and plan.python.python == "3.11"
    assert plan.env["DIB_SAGE_VENV"] == "/opt/sage/venv"
    assert plan.env["DIB_SAGE_PIP_INDEX_URL"] == "https://pypi.org/simple"
    mirror = plan_build(CATALOG, BuildRequest(release="trixie", variant="gpu",
                                              pip_index_url="http://127.0.0.1:9/simple"))
    assert mirror.python.lock == SAGE_PYTHON.locks["trixie"].file  # gpu inherits sage's
    assert mirror.env["DIB_SAGE_PIP_INDEX_URL"] == "http://127.0.0.1:9/simple"
    assert plan_build(CATALOG, BuildRequest(release="bookworm", variant="base")).python is None


def test_a_release_without_a_lock_is_refused_before_building() -> None:
    plan = plan_build(CATALOG, BuildRequest(release="bionic", variant="sage"))
    with pytest.raises(PreflightError, match="variant sage has no Python lock for release bionic"):
        preflight.check_python_lock(plan)
    preflight.check_python_lock(plan_build(CATALOG, BuildRequest(release="bookworm",
                                                                 variant="sage")))


def test_ubuntu_2604_plans_but_its_sage_build_is_refused_for_want_of_a_lock() -> None:
    base = plan_build(CATALOG, BuildRequest(release="resolute", variant="base", arch="arm64"))
    assert base.identity.name == "CC-Ubuntu26.04-ARM64" and base.properties["build-os-version"] == "26.04"
    preflight.check_python_lock(base)  # base has no Python tools
    sage = plan_build(CATALOG, BuildRequest(release="resolute", variant="sage"))
    assert sage.identity.name == "Sage-VirtualWaggle-Ubuntu26.04" and sage.python.lock is None
    with pytest.raises(PreflightError, match="no Python lock for release resolute"):
        preflight.check_python_lock(sage)


def test_the_lock_is_part_of_the_sage_layer_key_only(tmp_path: Path) -> None:
    text = CATALOG.path.read_text().replace("file: python/sage-bookworm.txt",
                                            f"file: {tmp_path}/lock.txt")
    (tmp_path / "catalog.yaml").write_text(text)
    shutil.copy(SAGE_PYTHON.locks["bookworm"].file, tmp_path / "lock.txt")
    shutil.copytree(SAGE_PYTHON.locks["bookworm"].file.parent, tmp_path / "python")
    other = load_catalog(tmp_path / "catalog.yaml")
    base = layer_key(CATALOG, "bookworm", "base", "amd64", "")
    assert layer_key(other, "bookworm", "base", "amd64", "") == base
    sage = layer_key(other, "bookworm", "sage", "amd64", base)
    assert sage == layer_key(CATALOG, "bookworm", "sage", "amd64", base)
    (tmp_path / "lock.txt").write_text("pika==1.4.3 --hash=sha256:" + "0" * 64 + "\n")
    assert layer_key(other, "bookworm", "sage", "amd64", base) != sage


def test_python_packages_listing_and_comparison(tmp_path: Path) -> None:
    listing = tmp_path / "python-packages"
    listing.write_text("pywaggle==0.56.3\nsage_data_client==0.9.1\npip==23.0.1\n")
    packages = installed_python_packages(listing)
    assert packages == {"pip": "23.0.1", "pywaggle": "0.56.3", "sage-data-client": "0.9.1"}
    assert installed_python_packages(tmp_path / "none") == {}
    manifest = contract.manifest(packages={"bash": "5.2"}, python_packages=packages)
    guest = "ii |bash|5.2\npy|pywaggle|0.56.3\npy|sage_data_client|0.9.1\npy|pip|23.0.1\n"
    assert compare_packages(guest, manifest) is None
    assert compare_packages(guest.replace("0.56.3", "0.56.2"), manifest) == \
        "python pywaggle: image 0.56.2 != manifest 0.56.3"
    assert compare_packages("ii |bash|5.2\n", manifest).startswith(
        "missing in image: python pip 23.0.1")
    assert compare_packages(guest, contract.replace(manifest, python_packages={})).startswith(
        "not in manifest: python pip")


@pytest.fixture()
def waggle_node(tmp_path: Path) -> Path:
    """The waggle-node stand-in as it lies in the image (/opt/virtual-waggle)."""
    home = tmp_path / "opt" / "virtual-waggle"
    shutil.copytree(STANDIN_TEMPLATES / "waggle-node", home)
    return home


def test_newplugin_writes_into_the_users_directory(waggle_node: Path, tmp_path: Path) -> None:
    wrapper = ELEMENTS / "sage" / "static" / "usr" / "local" / "bin" / "virtual-waggle"
    user = tmp_path / "home"
    user.mkdir()
    proc = subprocess.run(["sh", str(wrapper), "newplugin", "hello"], cwd=user, text=True,
                          capture_output=True, env={"PATH": "/usr/bin:/bin",
                                                    "VW_HOME": str(waggle_node)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (user / "plugin-hello").iterdir()) == \
        ["Dockerfile", "plugin.py", "requirements.txt", "sage.json"]
    assert json.loads((user / "plugin-hello" / "sage.json").read_text())["name"] == "hello"
    assert not (waggle_node / "plugin-hello").exists()
    again = subprocess.run(["sh", str(wrapper), "newplugin", "Bad Name"], cwd=user, text=True,
                           capture_output=True, env={"PATH": "/usr/bin:/bin",
                                                     "VW_HOME": str(waggle_node)})
    assert again.returncode == 1 and "lowercase letters" in again.stderr


def test_image_readme_leads_with_sage_node_and_labels_the_2020_stack() -> None:
    readme = (ELEMENTS / "sage" / "static" / "opt" / "sage" / "README").read_text()
    lines = readme.splitlines()
    assert "sage-node" in lines[0] and lines[1].startswith("Start: sage-node up")
    assert "sage-node new" in lines[2] and "sage-node run" in lines[3]
    assert "PYWAGGLE_LOG_DIR" in lines[-2]
    assert lines[-1].startswith("The 2020 stack") and "Virtual Waggle" in lines[-1] \
        and "Beehive v1" in lines[-1]
    motd = (ELEMENTS / "sage" / "install.d" / "62-sage-python").read_text()
    assert "sage-node up" in motd and "2020 stack" in motd


def test_dib_gets_the_lock_venv_and_the_hosts_ca_bundle(tmp_path: Path) -> None:
    from sage_image.builder.dib import BuildPaths, dib_environment, host_ca_bundle

    plan = plan_build(CATALOG, BuildRequest(release="bookworm", variant="sage"))
    env = dib_environment(plan, BuildPaths(work=tmp_path, dib_cache=tmp_path / "cache"))
    assert env["SAGE_IMAGE_PYTHON_LOCK"] == str(SAGE_PYTHON.locks["bookworm"].file)
    assert env["SAGE_IMAGE_VENV"] == "/opt/sage/venv"
    assert env.get("SAGE_IMAGE_PIP_CERT") == (str(host_ca_bundle()) if host_ca_bundle() else None)
    base = plan_build(CATALOG, BuildRequest(release="bookworm", variant="base"))
    base_env = dib_environment(base, BuildPaths(work=tmp_path, dib_cache=tmp_path / "cache"))
    assert not {"SAGE_IMAGE_PYTHON_LOCK", "SAGE_IMAGE_VENV", "SAGE_IMAGE_PIP_CERT"} & set(base_env)


# -- sage-node's venv (variants.sage.node_python) ------------------------------------------

NODE_PYTHON = CATALOG.variants["sage"].node_python
DSS_PINS = {"pywaggle": "0.54.", "pywagglemsg": "0.4.", "pika": "1.2.", "redis": "4.3.",
            "prometheus-client": "0.14."}


@pytest.mark.parametrize("release", sorted(NODE_PYTHON.locks))
def test_every_node_lock_has_the_data_sharing_services_pins(release: str) -> None:
    entries = {e.name: e for e in parse_lock(NODE_PYTHON.locks[release].file)}
    wrong = {n: entries[n].version if n in entries else None for n, prefix in DSS_PINS.items()
             if n not in entries or not entries[n].version.startswith(prefix)}
    assert wrong == {}
    # sage-node's own needs, and what builds it from source in the image
    assert {"pyyaml", "setuptools", "wheel"} <= set(entries)
    assert NODE_PYTHON.locks[release].python == SAGE_PYTHON.locks[release].python


def test_the_dss_pins_are_its_requirements_txt() -> None:
    pins = [ln for ln in (STANDIN_TEMPLATES / "wes-data-sharing-service" / "requirements.txt")
            .read_text().splitlines() if ln and not ln.startswith(("#", "coverage"))]
    assert sorted(pins) == sorted(r for r in NODE_PYTHON.requirements if "==" in r)


def test_plan_and_dib_carry_the_node_venv_its_lock_and_source(tmp_path: Path) -> None:
    from sage_image.builder.dib import NODE_SOURCE, BuildPaths, dib_environment

    plan = plan_build(CATALOG, BuildRequest(release="bookworm", variant="sage"))
    assert plan.node_python.venv == "/opt/sage/node/venv"
    assert plan.node_python.lock == NODE_PYTHON.locks["bookworm"].file
    assert plan.env["DIB_SAGE_NODE_VENV"] == "/opt/sage/node/venv"
    env = dib_environment(plan, BuildPaths(work=tmp_path, dib_cache=tmp_path / "cache"))
    assert env["SAGE_IMAGE_NODE_PYTHON_LOCK"] == str(NODE_PYTHON.locks["bookworm"].file)
    assert env["SAGE_IMAGE_NODE_SOURCE"] == str(NODE_SOURCE)
    assert (NODE_SOURCE / "pyproject.toml").is_file() and (NODE_SOURCE / "cli.py").is_file()
    gpu = plan_build(CATALOG, BuildRequest(release="bookworm", variant="gpu"))
    assert gpu.node_python.venv == "/opt/sage/node/venv"            # inherited from sage
    base = plan_build(CATALOG, BuildRequest(release="bookworm", variant="base"))
    assert base.node_python is None and "DIB_SAGE_NODE_VENV" not in base.env
    assert "SAGE_IMAGE_NODE_SOURCE" not in dib_environment(
        base, BuildPaths(work=tmp_path, dib_cache=tmp_path / "cache"))


def test_a_missing_node_lock_is_refused_before_building(tmp_path: Path) -> None:
    text = CATALOG.path.read_text().replace("file: python/node-bookworm.txt",
                                            f"file: {tmp_path}/missing.txt")
    (tmp_path / "catalog.yaml").write_text(text)
    shutil.copytree(SAGE_PYTHON.locks["bookworm"].file.parent, tmp_path / "python")
    plan = plan_build(load_catalog(tmp_path / "catalog.yaml"),
                      BuildRequest(release="bookworm", variant="sage"))
    with pytest.raises(PreflightError, match="missing.txt is missing"):
        preflight.check_python_lock(plan)
    line = '        bookworm: {python: "3.11", glibc: "2.36", file: python/node-bookworm.txt}\n'
    assert line in CATALOG.path.read_text()
    (tmp_path / "catalog.yaml").write_text(CATALOG.path.read_text().replace(line, ""))
    plan = plan_build(load_catalog(tmp_path / "catalog.yaml"),
                      BuildRequest(release="bookworm", variant="sage"))
    with pytest.raises(PreflightError, match="variant sage has no node_python lock for release "
                                             "bookworm"):
        preflight.check_python_lock(plan)


def test_node_venv_packages_are_compared_with_the_manifest() -> None:
    manifest = contract.manifest(packages={"bash": "5.2"}, python_packages={"pika": "1.4.4"},
                                 node_python_packages={"pika": "1.2.1", "redis": "4.3.6"})
    guest = "ii |bash|5.2\npy|pika|1.4.4\nnode|pika|1.2.1\nnode|redis|4.3.6\n"
    assert compare_packages(guest, manifest) is None
    assert compare_packages(guest.replace("node|pika|1.2.1", "node|pika|1.4.4"), manifest) == \
        "node python pika: image 1.4.4 != manifest 1.2.1"
    assert compare_packages(guest.replace("node|redis|4.3.6\n", ""), manifest) == \
        "missing in image: node python redis 4.3.6"
