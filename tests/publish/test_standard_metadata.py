"""Published images carry the standard metadata every OpenStack client understands (SCS
scs-0102-v2, Glance's useful image properties), read back from real Glance sites through
openstacksdk's Image resource as the standard's own conformance code reads them, and checked by
our checker (tests/publish/scs0102.py, shown failing on every broken value in test_scs0102.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import openstack
import pytest

from sage_image.catalog import load_catalog
from sage_image.outfolder import Manifest, read_manifest
from tests.publish.scs0102 import (
    chunked,
    problems,
    recency_problems,
    uniqueness_problems,
    view,
)

pytestmark = pytest.mark.cloud
CLOUDS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}
GIB = 1 << 30
# `openstack image show` lists about 20 fields besides the properties: this many properties keep
# it on one screen (the 32 base64 sage-summary-NN pieces publish stored before did not).
MAX_PROPERTIES = 40


def listed(cloud: str, *names: str) -> list:
    """The images a user's default listing shows (hidden ones are not), of these names."""
    conn = openstack.connect(cloud=cloud)
    return [i for i in conn.image.images() if any(i.name.startswith(n) for n in names)]


def hidden(cloud: str, *names: str) -> list:
    conn = openstack.connect(cloud=cloud)
    return [i for i in conn.image.images(is_hidden=True)
            if any(i.name.startswith(n) for n in names)]


def manifest(out: Path) -> Manifest:
    return read_manifest(out)


def test_published_images_carry_every_mandatory_property(clouds_env, make_build, image_name, cli):
    catalog = load_catalog()
    base, sage, arm = f"CC-{image_name}", image_name, f"{image_name}-ARM64"
    builds = {
        # a 1.5 GiB disk (sparse raw, small qcow2): min_disk rounds up to 2; bare-metal sites only
        base: make_build(base, variant="base", virtual_mb=1536, sites=("CHI@UC", "CHI@TACC")),
        sage: make_build(sage, variant="sage"),
        arm: make_build(arm, variant="sage", arch="arm64", sites=("CHI@UC",)),
    }
    for out in builds.values():
        run = cli("publish", out, "--json")
        assert run.code == 0, run.err
    now = time.time()
    for site, cloud in CLOUDS.items():
        images = {i.name: i for i in listed(cloud, base, sage)}
        assert set(images) == {n for n, out in builds.items() if site in manifest(out).sites}
        for name, image in images.items():
            m = manifest(builds[name])
            fmt = "raw" if site == "KVM@TACC" else "qcow2"
            v = view(image)
            assert problems(v, now=now) == [], (site, name)
            assert v.min_disk == math.ceil(m.files[fmt].virtual_size / GIB)
            assert v.min_ram == catalog.variants[m.variant].min_ram
            assert v.properties["os_purpose"] == catalog.variants[m.variant].os_purpose
            assert v.architecture == m.qemu_arch
            assert v.hypervisor_type == ("kvm" if site == "KVM@TACC" else None)
            # only the arm64 image boots one way; the hybrid amd64 layout boots both
            assert v.properties.get("hw_firmware_type") == ("uefi" if name == arm else None)
            # python-chi tells Chameleon's images by build-repo: ours keep the build's own
            assert v.properties["build-repo"] == m.properties["build-repo"]
            assert chunked(v.properties) == [] and len(v.properties) <= MAX_PROPERTIES
        assert uniqueness_problems(view(i) for i in images.values()) == []
    assert [view(i).min_disk for i in listed("chi-uc", base)] == [2]  # 1.5 GiB, rounded up


def test_old_versions_follow_the_standards_rules(clouds_env, make_build, image_name, cli):
    """After a second publish: the replaced image is renamed (the catalog's scheme, as before),
    hidden, still bootable by ID, and a `generic` one is `oldgeneric`; users listing images see
    one image per name, and every image - old ones too - still passes every rule."""
    base, sage = f"CC-{image_name}", image_name
    for stamp in (1_700_000_000, 1_710_000_000):
        for name, variant in ((base, "base"), (sage, "sage")):
            run = cli("publish", make_build(name, variant=variant, timestamp=stamp), "--json")
            assert run.code == 0, run.err
    now = time.time()
    for cloud in CLOUDS.values():
        shown = [view(i) for i in listed(cloud, base, sage)]
        assert sorted(v.name for v in shown) == sorted([base, sage])
        old = {v.name: v for v in map(view, hidden(cloud, base, sage))}
        assert set(old) == {f"{base}-20231114", f"{sage}-20231114"}
        assert old[f"{base}-20231114"].properties["os_purpose"] == "oldgeneric"
        assert old[f"{sage}-20231114"].properties["os_purpose"] == "custom"
        for v in [*shown, *old.values()]:
            assert problems(v, now=now) == [], (cloud, v.name)
            assert v.properties["image_build_date"].startswith(
                "2023-11-14" if v.name in old else "2024-03-09")
        everything = shown + list(old.values())
        assert recency_problems(shown, now=now) == [] and uniqueness_problems(everything) == []
        conn = openstack.connect(cloud=cloud)
        ids = [i.id for i in hidden(cloud, base, sage)]
        assert all(conn.image.get_image(i).status == "active" for i in ids)  # still bootable
