"""The Kubernetes renderer both `ci k8s` and `vw k8s` write through (sage_image/k8s/render.py):
text that reads back as the objects, and a tree writer that replaces only its own trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from sage_image.errors import UsageError
from sage_image.k8s import render

MARKER = ".written-by-test"
SCRIPT = "set -u\nif [ -e x ]; then\n  echo 'it is: \"x\"'\nfi\n"


def write(out: Path, files: dict[str, str]) -> list[Path]:
    return render.write_tree(out, files, marker=MARKER, command="sage-image test-render")


def test_dump_reads_back_and_keeps_scripts_readable() -> None:
    obj = {"kind": "Job", "metadata": {"name": "j"}, "script": SCRIPT, "id": "0000000000000001",
           "line": " ".join(["word"] * 40), "mode": 0o400}
    text = render.dump(obj)
    assert yaml.safe_load(text) == obj
    assert list(yaml.safe_load(text)) == list(obj)  # the generator's key order, not sorted
    assert "script: |\n  set -u\n" in text  # a literal block, as written
    assert f"line: {obj['line']}\n" in text  # never folded


def test_folder_files_lists_every_object_in_its_kustomization() -> None:
    objs = [{"kind": "Namespace", "metadata": {"name": "ns"}},
            {"kind": "Job", "metadata": {"name": "a", "namespace": "ns"}}]
    files = render.folder_files(objs, header="# h\n",
                                subfolder=lambda o: "jobs/" if o["kind"] == "Job" else "")
    assert list(files) == ["kustomization.yaml", "namespace-ns.yaml", "jobs/job-a.yaml"]
    assert all(text.startswith("# h\n") for text in files.values())
    assert yaml.safe_load(files["kustomization.yaml"])["resources"] == [
        "namespace-ns.yaml", "jobs/job-a.yaml"]


def test_write_tree_replaces_its_own_tree_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, {"a.yaml": "a: 1\n", "jobs/b.yaml": "b: 1\n"})
    folder = os.stat(out).st_ino
    written = write(out, {"a.yaml": "a: 2\n"})
    assert written == [out / "a.yaml"] and (out / "a.yaml").read_text() == "a: 2\n"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.yaml"]  # nothing stale left
    assert os.stat(out).st_ino == folder  # the folder itself stays (a mount point, a link)


def test_write_tree_never_empties_a_folder_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match=r"--out .*/mine: folder is not empty and was not "
                                          r"written by `sage-image test-render`"):
        write(mine, {"a.yaml": "a: 1\n"})
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_tree_that_fails_half_way_is_still_ours_to_replace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"--out .*/out: cannot write .*/out/x: File exists"):
        write(out, {"x": "a file\n", "x/y.yaml": "y: 1\n"})  # x/ cannot be a folder
    assert write(out, {"y.yaml": "y: 1\n"}) == [out / "y.yaml"]
