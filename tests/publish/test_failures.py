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
from sage_image.publish import store
from sage_image.publish.plan import TEMP_MARK
from sage_image.publish.site import SiteImage, list_images
from tests import contract

pytestmark = pytest.mark.cloud
CONTAINER = "sage-images"


def images(cloud: str, name: str) -> list[SiteImage]:
    return [i for i in list_images(openstack.connect(cloud=cloud)) if i.name.startswith(name)]


def records(cloud: str, name: str) -> dict[str, bytes]:
    """The site's object store as far as image `name` goes: its record objects and pointer."""
    conn = openstack.connect(cloud=cloud)
    names = [o.name for o in conn.object_store.objects(CONTAINER)
             if o.name == f"current/{name}" or f"/{name}." in o.name]
    return {n: store.read(conn, CONTAINER, n) for n in names}


def assert_intact(cloud: str, name: str, old: SiteImage, old_records: dict[str, bytes]) -> None:
    """Production is the old image, unchanged; no temporary image is left; the object store
    holds what it held (no record of the failed build, `current` unchanged)."""
    now = images(cloud, name)
    assert [i.id for i in now if i.name == name] == [old.id]
    same = next(i for i in now if i.id == old.id)
    assert (same.sha512, same.status, same.visibility, same.hidden) == (
        old.sha512, "active", old.visibility, old.hidden)
    assert "sage-image-superseded-by" not in same.properties
    assert same.properties.get("os_purpose") == old.properties.get("os_purpose")
    assert [i for i in now if TEMP_MARK in i.name] == []
    assert len(now) == 1
    assert records(cloud, name) == old_records


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
def published(clouds_env, make_build, image_name, cli) -> tuple[SiteImage, dict[str, bytes]]:
    """A production image on KVM@TACC (a generic one: backdating would make it oldgeneric)
    and its records, for the failure to be measured against."""
    out = make_build(image_name, formats=("raw",), variant="base")
    run = cli("publish", out, "--sites", "KVM@TACC")
    assert run.code == 0, run.err
    image = next(i for i in images("kvm-tacc", image_name) if i.name == image_name)
    assert image.properties["os_purpose"] == "generic"
    return image, records("kvm-tacc", image_name)


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
    assert_intact("kvm-tacc", image_name, *published)


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
    assert [i.id for i in now if i.name == image_name] == [published[0].id]
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
    assert_intact("kvm-tacc", image_name, *published)


def test_another_build_under_the_same_build_tag_is_refused(published, make_build, image_name,
                                                           cli):
    """A record is never overwritten: an image may point at it. Two builds with one build-tag
    (build-timestamp) cannot both be recorded; the second is refused and rolled back."""
    twin = make_build(image_name, formats=("raw",), variant="base")  # same name and timestamp
    run = cli("publish", twin, "--sites", "KVM@TACC", "--json")
    assert run.code == 1
    reason = run.json()["sites"][0]["reason"]
    assert "already holds another build's record" in reason and "rolled back" in reason
    assert_intact("kvm-tacc", image_name, *published)


def test_a_site_whose_object_store_is_down_is_not_touched(published, clouds_env, make_build,
                                                          image_name, cli, tmp_path, monkeypatch):
    """The record is written first: a site whose store fails gets no upload at all."""
    clouds = yaml.safe_load(clouds_env.clouds_yaml.read_text())
    clouds["clouds"]["kvm-tacc"]["object_store_endpoint_override"] = \
        f"http://127.0.0.1:{free_port()}/v1/AUTH_kvm-tacc"  # nothing listens there
    broken = tmp_path / "clouds.yaml"
    broken.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    new = make_build(image_name, timestamp=1_710_000_000, formats=("raw",), variant="base")
    run = cli("publish", new, "--sites", "KVM@TACC", "--json")
    assert run.code == 1
    site = run.json()["sites"][0]
    assert site["status"] == "failed" and "rolled back" in site["reason"], site
    assert "Traceback" not in run.err
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_env.clouds_yaml))
    assert_intact("kvm-tacc", image_name, *published)


def test_an_object_store_endpoint_that_is_no_swift_is_refused(published, clouds_env, make_build,
                                                              image_name, cli, tmp_path,
                                                              monkeypatch):
    """A cloud without Keystone and without an object-store endpoint: openstacksdk sends the
    record to the Glance endpoint, which answers 300 - a success to the SDK. Publish checks that
    Swift stored it (201 and its ETag) and refuses the site instead of losing the record."""
    clouds = yaml.safe_load(clouds_env.clouds_yaml.read_text())
    del clouds["clouds"]["kvm-tacc"]["object_store_endpoint_override"]
    broken = tmp_path / "clouds.yaml"
    broken.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    new = make_build(image_name, timestamp=1_710_000_000, formats=("raw",), variant="base")
    run = cli("publish", new, "--sites", "KVM@TACC", "--json")
    assert run.code == 1
    reason = run.json()["sites"][0]["reason"]
    assert "the object store did not store" in reason and "a Swift?" in reason, reason
    assert reason.endswith("rolled back")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_env.clouds_yaml))
    assert_intact("kvm-tacc", image_name, *published)
