"""`sage-image diff`: the pure diff of two hand-made manifests, and the command's input rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sage_image.cli import main
from sage_image.diff.diff import diff_manifests

OLD = {
    "schema": 1, "name": "Sage-VirtualWaggle-Debian12", "release": "bookworm", "variant": "sage",
    "arch": "amd64", "family": "debian", "os_version": "12", "builder_version": "0.1.0",
    "elements": ["debian-minimal", "chameleon-common", "sage"],
    "checks": ["cloud-init", "sudo", "docker"],
    "boot": {"kernel_version": "6.1.0-26-amd64"},
    "files": {"qcow2": {"path": "x.qcow2", "size": 1000}, "raw": {"path": "x.raw", "size": 5000}},
    "sources": {
        "waggle-node": {"url": "https://github.com/waggle-sensor/waggle-node", "commit": "a" * 40,
                        "stand_in": False},
        "sage-ecr": {"url": "https://github.com/sagecontinuum/ecr", "commit": "b" * 40,
                     "stand_in": False},
        "cc-snapshot": {"url": "https://github.com/ChameleonCloud/cc-snapshot", "commit": "c" * 40,
                        "stand_in": True},
        "old-tool": {"url": "https://example.org/old", "commit": "d" * 40, "stand_in": False},
    },
    "packages": {"docker.io": "20.10.24+dfsg1-1+b3", "gone": "1.0-1", "libfoo": "1.9-1",
                 "epoch": "1:2.0-1", "tilde": "1.0-1", "same": "3.0-1"},
    "python_packages": {"requests": "2.31.0", "urllib3": "2.0.7", "pyyaml": "6.0.1",
                        "oldpy": "1.0"},
}


def _new() -> dict:
    new = copy.deepcopy(OLD)
    new.update(variant="gpu", builder_version="0.2.0",
               elements=["debian-minimal", "chameleon-common", "sage", "gpu"],
               checks=["cloud-init", "docker", "nvidia"])
    new["boot"]["kernel_version"] = "6.1.0-28-amd64"
    new["files"]["qcow2"]["size"] = 1500
    del new["files"]["raw"]
    src = new["sources"]
    src["waggle-node"]["commit"] = "e" * 40                                   # re-pinned
    src["sage-ecr"]["url"] = "https://github.com/waggle-sensor/ecr"          # moved
    src["cc-snapshot"]["stand_in"] = False                                    # now real
    del src["old-tool"]                                                       # removed
    src["edge-plugins"] = {"url": "https://github.com/waggle-sensor/edge-plugins",
                           "commit": "f" * 40, "stand_in": False}             # added
    pk = new["packages"]
    del pk["gone"]
    pk.update({"nvidia-driver": "535.183.01-1", "libfoo": "1.10-1",           # 1.10 > 1.9
               "epoch": "2.5-1",                                              # epoch 1 > none
               "tilde": "1.0~rc1-1",                                          # ~ sorts before
               "docker.io": "20.10.24+dfsg1-1+b4"})
    py = new["python_packages"]
    del py["oldpy"]
    py.update({"torch": "2.3.0", "requests": "2.32.3", "urllib3": "1.26.18", "pyyaml": "6.0.1"})
    return new


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
    assert not diff_manifests(OLD, copy.deepcopy(OLD)).differs
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
    old = {k: v for k, v in OLD.items() if k != "python_packages"}
    result = diff_manifests(old, _new())
    assert {c.kind for c in result.of("python")} == {"added"}


# -- the command ----------------------------------------------------------------------------------
def _write(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_cli_table_json_and_exit_code(tmp_path, capsys):
    a, b = _write(tmp_path / "a", OLD), _write(tmp_path / "b", _new())
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
    good = _write(tmp_path / "good", OLD)
    bad = make(tmp_path)
    assert main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sage-image: error: ") and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("sage-image:")]) == 1


def test_needs_two_builds_or_a_site(tmp_path, capsys):
    a = _write(tmp_path / "a", OLD)
    assert main(["diff", str(a)]) == 2
    assert main(["diff", str(a), str(a), "--site", "CHI@UC"]) == 2
    assert "two builds" in capsys.readouterr().err
