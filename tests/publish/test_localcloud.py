"""`sage-image localcloud up|down`: real Glance sites and their real object store (Swift), and
nothing left running after `down` or after a start that failed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import openstack
import pytest
import yaml

from sage_image.localcloud import swift
from sage_image.localcloud.cloud import STATE_FILE, SiteSpec, start_cloud
from sage_image.localcloud.servers import LocalCloudError


def processes_under(root: Path) -> list[int]:
    """Every process that runs from `root` or names a file under it on its command line."""
    folder, found = str(root.resolve()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if cwd.startswith(folder) or any(a.startswith(folder + "/") for a in argv):
            found.append(int(entry.name))
    return found


def sage_image(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sage_image.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.cloud
def test_up_starts_sites_with_an_object_store_and_down_stops_everything(tmp_path):
    sites = tmp_path / "sites"
    up = sage_image("localcloud", "up", "--dir", str(sites), "--cloud", "chi-uc", "--cloud",
                    "kvm-tacc", "--json")
    try:
        assert up.returncode == 0, up.stderr
        servers = json.loads(up.stdout)["servers"]
        assert sorted(s["name"] for s in servers) == [
            "chi-uc", "kvm-tacc", "swift-account", "swift-container", "swift-object",
            "swift-proxy"]
        running = processes_under(sites)
        assert {s["pid"] for s in servers} <= set(running)
        clouds = yaml.safe_load((sites / "clouds.yaml").read_text())["clouds"]
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(sites / "clouds.yaml")
        try:
            stores = {c: openstack.connect(cloud=c).object_store for c in clouds}
            stores["chi-uc"].create_container(name="c")
            stores["chi-uc"].create_object("c", "o", data=b"hello")
            assert stores["chi-uc"].download_object("o", "c") == b"hello"
            assert [c.name for c in stores["kvm-tacc"].containers()] == []  # its own account
        finally:
            del os.environ["OS_CLIENT_CONFIG_FILE"]
    finally:
        down = sage_image("localcloud", "down", "--dir", str(sites))
    assert down.returncode == 0, down.stderr
    assert processes_under(sites) == [] and not (sites / STATE_FILE).exists()


@pytest.mark.cloud
def test_a_failed_start_leaves_nothing_running(tmp_path, monkeypatch):
    """Swift's proxy cannot start (a pipeline naming a filter that does not exist): the error
    names it and its log, and every server that did start is stopped."""
    good = swift._proxy_conf

    def broken(*args, **kwargs) -> str:  # noqa: ANN002, ANN003
        return good(*args, **kwargs).replace("pipeline = catch_errors", "pipeline = no-such-filter catch_errors")

    monkeypatch.setattr(swift, "_proxy_conf", broken)
    root = tmp_path / "sites"
    with pytest.raises(LocalCloudError, match="local swift 'swift-proxy' did not start") as info:
        start_cloud(root, [SiteSpec("chi-uc")])
    assert "server.log" in (info.value.hint or "")
    assert processes_under(root) == [] and not (root / STATE_FILE).exists()


def test_a_folder_without_extended_attributes_is_refused(tmp_path, monkeypatch):
    """Swift keeps object metadata in xattrs: a file system without them is refused before
    anything starts (ext4 here has them; the refusal is simulated at the system call)."""
    swift.check_xattrs(tmp_path)  # the real file system: fine

    def no_xattrs(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", no_xattrs)
    with pytest.raises(LocalCloudError, match="no user extended attributes") as info:
        swift.check_xattrs(tmp_path)
    assert "ext4" in info.value.hint and list(tmp_path.iterdir()) == []
