"""`sage-image cache list|prune` on a real cache folder."""

from __future__ import annotations

import fcntl
import json
import os
import time

from sage_image.cli import main


def make_cache(root):
    (root / "layers").mkdir(parents=True)
    (root / "layers" / "abc.tar.gz").write_bytes(b"x" * 2048)
    (root / "git" / "0123.git").mkdir(parents=True)
    (root / "git" / "0123.git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "dib" / "slot-0").mkdir(parents=True)
    old = time.time() - 40 * 86400
    os.utime(root / "layers" / "abc.tar.gz", (old, old))


def test_list_shows_every_kind(tmp_path, capsys):
    make_cache(tmp_path)
    assert main(["cache", "list", "--cache", str(tmp_path), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert {e["kind"] for e in entries} == {"layer", "source", "dib-slot"}
    layer = next(e for e in entries if e["kind"] == "layer")
    assert layer["size"] == 2048 and layer["age_days"] >= 39


def test_prune_by_age_keeps_recent_entries(tmp_path, capsys):
    make_cache(tmp_path)
    assert main(["cache", "prune", "--older-than", "30", "--cache", str(tmp_path)]) == 0
    assert not (tmp_path / "layers" / "abc.tar.gz").exists()
    assert (tmp_path / "git" / "0123.git").exists() and (tmp_path / "dib" / "slot-0").exists()


def test_prune_never_removes_what_a_running_build_holds(tmp_path, capsys):
    make_cache(tmp_path)
    with open(tmp_path / "dib" / "slot-0.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["cache", "prune", "--cache", str(tmp_path)]) == 0
    assert "kept 1 in use by a running build" in capsys.readouterr().err
    assert (tmp_path / "dib" / "slot-0").exists()
    assert not (tmp_path / "layers" / "abc.tar.gz").exists()
