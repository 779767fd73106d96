"""Failures leave every site as it was: killed uploads, wrong checksums, a site that is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openstack
import pytest
import yaml

from sage_image.localcloud.servers import free_port
from sage_image.outfolder import read_manifest
from sage_image.publish.plan import TEMP_MARK
from sage_image.publish.site import SiteImage, list_images
from tests import contract

pytestmark = pytest.mark.cloud


def images(cloud: str, name: str) -> list[SiteImage]:
    return [i for i in list_images(openstack.connect(cloud=cloud)) if i.name.startswith(name)]


def assert_intact(cloud: str, name: str, old: SiteImage) -> None:
    """Production is the old image, unchanged; no temporary image is left."""
    now = images(cloud, name)
    assert [i.id for i in now if i.name == name] == [old.id]
    same = next(i for i in now if i.id == old.id)
    assert (same.sha512, same.status, same.visibility) == (old.sha512, "active", old.visibility)
    assert "sage-image-superseded-by" not in same.properties
    assert [i for i in now if TEMP_MARK in i.name] == []
    assert len(now) == 1


def start_publish(out: Path, *args: str) -> subprocess.Popen[str]:
    # SIGINT as a terminal delivers it, also when the suite was started in the background
    # (a non-interactive shell's `cmd &` leaves SIGINT ignored, and Python keeps it so)
    return subprocess.Popen([sys.executable, "-m", "sage_image.cli", "publish", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_uploading(cloud: str, name: str, proc: subprocess.Popen[str]) -> SiteImage:
    """Wait until Glance is receiving the temporary image's bytes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        temp = [i for i in images(cloud, name) if TEMP_MARK in i.name and i.status == "saving"]
        if temp:
            return temp[0]
        time.sleep(0.05)
    raise AssertionError(f"no upload seen (publish exited {proc.poll()})")


@pytest.fixture
def published(clouds_env, make_build, image_name, cli) -> SiteImage:
    """A production image on KVM@TACC for the failure to be measured against."""
    run = cli("publish", make_build(image_name, formats=("raw",)), "--sites", "KVM@TACC")
    assert run.code == 0, run.err
    return next(i for i in images("kvm-tacc", image_name) if i.name == image_name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_upload_rolls_back(published, make_build, image_name, sig):
    big = make_build(image_name, timestamp=1_710_000_000, size_mb=300, formats=("raw",))
    proc = start_publish(big, "--sites", "KVM@TACC")
    try:
        wait_uploading("kvm-tacc", image_name, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert_intact("kvm-tacc", image_name, published)


def test_killed_client_leaves_production_intact(published, make_build, image_name, cli):
    """SIGKILL: no chance to clean up. Production is untouched and the private leftover is
    deleted by the next run, which then publishes."""
    big = make_build(image_name, timestamp=1_710_000_000, size_mb=300, formats=("raw",))
    proc = start_publish(big, "--sites", "KVM@TACC")
    try:
        temp = wait_uploading("kvm-tacc", image_name, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    now = images("kvm-tacc", image_name)
    assert [i.id for i in now if i.name == image_name] == [published.id]
    leftovers = [i for i in now if TEMP_MARK in i.name]
    assert [i.id for i in leftovers] == [temp.id]
    assert leftovers[0].visibility == "private" and leftovers[0].status != "active"

    run = cli("publish", big, "--sites", "KVM@TACC")
    assert run.code == 0, run.err
    assert f"delete leftover upload {temp.id}" in run.err
    after = images("kvm-tacc", image_name)
    assert [i for i in after if TEMP_MARK in i.name] == []
    assert sorted(i.name for i in after) == [image_name, f"{image_name}-20231114"]


def test_wrong_checksum_rolls_back(published, make_build, image_name, cli):
    out = make_build(image_name, timestamp=1_710_000_000, formats=("raw",))
    manifest = read_manifest(out)
    # the file no longer matches its build
    raw = contract.replace(manifest.files["raw"], sha512="0" * 128)
    contract.write_build(out, contract.replace(manifest, files={"raw": raw}))
    make_build.write_results(out, passed=True)
    run = cli("publish", out, "--sites", "KVM@TACC", "--json")
    assert run.code == 1
    site = run.json()["sites"][0]
    assert site["status"] == "failed"
    assert "checksum mismatch" in site["reason"] and "rolled back" in site["reason"]
    assert_intact("kvm-tacc", image_name, published)


def test_one_site_down_then_rerun_finishes_it(clouds_env, make_build, image_name, cli, tmp_path,
                                              monkeypatch):
    clouds = yaml.safe_load(clouds_env.clouds_yaml.read_text())
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the site is down
    clouds["clouds"]["chi-tacc"].update(auth={"endpoint": dead}, image_endpoint_override=dead)
    broken = tmp_path / "clouds.yaml"
    broken.write_text(yaml.safe_dump(clouds))
    out = make_build(image_name)

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    first = cli("publish", out, "--json")
    assert first.code == 1
    status = {s["site"]: s["status"] for s in first.json()["sites"]}
    assert status == {"CHI@UC": "published", "CHI@TACC": "failed", "KVM@TACC": "published"}

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_env.clouds_yaml))
    second = cli("publish", out, "--json")
    assert second.code == 0, second.err
    status = {s["site"]: s["status"] for s in second.json()["sites"]}
    assert status == {"CHI@UC": "up to date", "CHI@TACC": "published", "KVM@TACC": "up to date"}
    assert "SITE" not in second.out  # --json: only JSON on stdout
