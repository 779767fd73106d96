"""`sage-image diff`: the pure diff of two hand-made manifests, and the command's input rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sage_image.cli import main
from sage_image.diff.diff import diff_manifests
from sage_image.outfolder import ImageFile, Manifest, SourceEntry
from tests import contract


def _src(url: str, commit: str, stand_in: bool = False) -> SourceEntry:
    return SourceEntry(url=url, commit=commit, pinned=commit, path="/opt/x", stand_in=stand_in)


def _file(path: str, size: int) -> ImageFile:
    return contract.fake_file(path, size=size)


OLD_MANIFEST = contract.manifest(
    elements=("debian-minimal", "chameleon-common", "sage"),
    checks=("cloud-init", "sudo", "docker"),
    boot=contract.replace(contract.manifest().boot, kernel_version="6.1.0-26-amd64"),
    files={"qcow2": _file("x.qcow2", 1000), "raw": _file("x.raw", 5000)},
    sources={"waggle-node": _src("https://github.com/waggle-sensor/waggle-node", "a" * 40),
             "sage-ecr": _src("https://github.com/sagecontinuum/ecr", "b" * 40),
             "cc-snapshot": _src("https://github.com/ChameleonCloud/cc-snapshot", "c" * 40, True),
             "old-tool": _src("https://example.org/old", "d" * 40)},
    packages={"docker.io": "20.10.24+dfsg1-1+b3", "gone": "1.0-1", "libfoo": "1.9-1",
              "epoch": "1:2.0-1", "tilde": "1.0-1", "same": "3.0-1"},
    python_packages={"requests": "2.31.0", "urllib3": "2.0.7", "pyyaml": "6.0.1",
                     "oldpy": "1.0"})
OLD = OLD_MANIFEST


def _new_manifest():
    m = OLD_MANIFEST
    packages = {k: v for k, v in m.packages.items() if k != "gone"} | {
        "nvidia-driver": "535.183.01-1", "libfoo": "1.10-1",    # 1.10 > 1.9
        "epoch": "2.5-1",                                        # epoch 1 > none
        "tilde": "1.0~rc1-1",                                    # ~ sorts before
        "docker.io": "20.10.24+dfsg1-1+b4"}
    python = {k: v for k, v in m.python_packages.items() if k != "oldpy"} | {
        "torch": "2.3.0", "requests": "2.32.3", "urllib3": "1.26.18", "pyyaml": "6.0.1"}
    sources = {k: v for k, v in m.sources.items() if k != "old-tool"} | {  # removed
        "waggle-node": contract.replace(m.sources["waggle-node"], commit="e" * 40),  # re-pinned
        "sage-ecr": contract.replace(m.sources["sage-ecr"],
                                     url="https://github.com/waggle-sensor/ecr"),   # moved
        "cc-snapshot": contract.replace(m.sources["cc-snapshot"], stand_in=False),  # now real
        "edge-plugins": _src("https://github.com/waggle-sensor/edge-plugins", "f" * 40)}  # added
    return contract.replace(
        m, variant="gpu", builder_version="0.2.0",
        elements=("debian-minimal", "chameleon-common", "sage", "gpu"),
        checks=("cloud-init", "docker", "nvidia"),
        boot=contract.replace(m.boot, kernel_version="6.1.0-28-amd64"),
        files={"qcow2": _file("x.qcow2", 1500)}, sources=sources, packages=packages,
        python_packages=python)


def _new() -> Manifest:
    return _new_manifest()


def _kinds(result, section):
    return {c.name: (c.kind, c.old, c.new) for c in result.of(section)}


def test_every_kind_of_change():
    result = diff_manifests(OLD, _new())
    assert result.differs
    assert _kinds(result, "image") == {
        "variant": ("changed", "sage", "gpu"), "builder_version": ("changed", "0.1.0", "0.2.0"),
        "kernel": ("changed", "6.1.0-26-amd64", "6.1.0-28-amd64")}
    assert _kinds(result, "element") == {"gpu": ("added", None, "gpu")}
    assert _kinds(result, "check") == {"nvidia": ("added", None, "nvidia"),
                                       "sudo": ("removed", "sudo", None)}
    assert _kinds(result, "size") == {"qcow2": ("grew", "1000", "1500"),
                                      "raw": ("removed", "5000", None)}
    sources = {(c.name, c.kind): (c.old, c.new) for c in result.of("source")}
    assert sources[("waggle-node", "re-pinned")] == ("a" * 40, "e" * 40)
    assert sources[("sage-ecr", "moved")] == ("https://github.com/sagecontinuum/ecr",
                                               "https://github.com/waggle-sensor/ecr")
    assert sources[("cc-snapshot", "now real")] == ("true", "false")
    assert ("old-tool", "removed") in sources and ("edge-plugins", "added") in sources
    assert f"{'f' * 40} https://github.com/waggle-sensor/edge-plugins" == \
        sources[("edge-plugins", "added")][1]
    assert _kinds(result, "package") == {
        "gone": ("removed", "1.0-1", None),
        "nvidia-driver": ("added", None, "535.183.01-1"),
        "libfoo": ("upgraded", "1.9-1", "1.10-1"),
        "epoch": ("downgraded", "1:2.0-1", "2.5-1"),
        "tilde": ("downgraded", "1.0-1", "1.0~rc1-1"),
        "docker.io": ("upgraded", "20.10.24+dfsg1-1+b3", "20.10.24+dfsg1-1+b4")}
    assert _kinds(result, "python") == {
        "oldpy": ("removed", "1.0", None), "torch": ("added", None, "2.3.0"),
        "requests": ("upgraded", "2.31.0", "2.32.3"),
        "urllib3": ("downgraded", "2.0.7", "1.26.18")}
    assert "same" not in _kinds(result, "package")


def test_identical_and_reversed():
    assert not diff_manifests(OLD, contract.replace(OLD_MANIFEST)).differs
    assert diff_manifests(OLD, OLD).summary() == "no changes"
    back = diff_manifests(_new(), OLD)
    assert _kinds(back, "package")["libfoo"] == ("downgraded", "1.10-1", "1.9-1")
    assert _kinds(back, "element") == {"gpu": ("removed", "gpu", None)}


def test_summary_and_json_are_complete():
    result = diff_manifests(OLD, _new())
    doc = result.as_json()
    assert doc["counts"]["package"] == {"removed": 1, "added": 1, "upgraded": 2, "downgraded": 2}
    assert sum(len(v) for v in doc["changes"].values()) == len(result.changes)
    assert "packages: " in result.summary() and "kernel changed" in result.summary()
    json.dumps(doc)  # plain data


def test_python_packages_absent_on_either_side():
    old = contract.replace(OLD_MANIFEST, python_packages={})
    result = diff_manifests(old, _new())
    assert {c.kind for c in result.of("python")} == {"added"}


# -- the command ----------------------------------------------------------------------------------
def _write(folder: Path, manifest: Manifest) -> Path:
    return contract.write_build(folder, manifest)


def test_cli_table_json_and_exit_code(tmp_path, capsys):
    a, b = _write(tmp_path / "a", OLD_MANIFEST), _write(tmp_path / "b", _new_manifest())
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "libfoo" in out and "upgraded" in out and "1.9-1" in out and "1.10-1" in out
    assert "re-pinned" in out
    assert main(["diff", str(a), str(b / "manifest.json"), "--exit-code"]) == 1
    capsys.readouterr()
    assert main(["diff", str(a), str(a), "--exit-code"]) == 0
    assert "no changes" in capsys.readouterr().out
    assert main(["diff", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["differs"] and doc["counts"]["source"]["re-pinned"] == 1


@pytest.mark.parametrize("make", [
    lambda p: p / "missing",                                                 # no folder
    lambda p: (p / "empty").mkdir() or p / "empty",                          # no manifest.json
    lambda p: (p / "x.json").write_text("{not json") and p / "x.json",      # not JSON
    lambda p: (p / "y.json").write_text('{"hello": 1}') and p / "y.json",   # not a manifest
    lambda p: (p / "z.json").write_text("[1, 2]") and p / "z.json",         # not an object
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, make):
    good = _write(tmp_path / "good", OLD_MANIFEST)
    bad = make(tmp_path)
    assert main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sage-image: error: ") and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("sage-image:")]) == 1


def test_needs_two_builds_or_a_site(tmp_path, capsys):
    a = _write(tmp_path / "a", OLD_MANIFEST)
    assert main(["diff", str(a)]) == 2
    assert main(["diff", str(a), str(a), "--site", "CHI@UC"]) == 2
    assert "two builds" in capsys.readouterr().err
