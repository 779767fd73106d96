"""Our scs-0102-v2 checker (tests/publish/scs0102.py) catches every broken value it is there to
catch: each rule shown failing on an image that breaks it, and passing on one that does not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.publish.scs0102 import ImageView, chunked, problems, recency_problems, uniqueness_problems

NOW = 1_900_000_000.0  # 2030-03-17
PROPS = {"os_purpose": "generic", "image_build_date": "2026-11-14 22:13:20",
         "image_source": "https://example.org/src/tree/abc", "image_description": "https://x.org/d",
         "image_original_user": "cc", "replace_frequency": "monthly", "provided_until": "notice",
         "uuid_validity": "last-2", "hotfix_hours": "0"}
GOOD = ImageView(name="CC-Debian12", created_at="2026-11-15T00:00:00Z", size=3 << 30,
                 min_disk=4, min_ram=2048, architecture="x86_64", os_distro="debian",
                 os_version="12", hw_disk_bus="virtio", hw_rng_model="virtio", hash_algo="sha512",
                 properties=PROPS)


def with_props(**props: str) -> ImageView:
    return replace(GOOD, properties={**PROPS, **props})


def test_a_good_image_passes():
    assert problems(GOOD, now=NOW) == []
    assert problems(replace(GOOD, hypervisor_type="kvm", hw_rng_model=None), now=NOW) == []
    assert problems(with_props(image_source="private", provided_until="2031-01-01",
                               uuid_validity="2031-06-30", hotfix_hours=""), now=NOW) == []


BROKEN = [
    ("architecture", replace(GOOD, architecture="amd64")),
    ("architecture", replace(GOOD, architecture=None)),
    ("min_disk", replace(GOOD, min_disk=0)),
    ("min_disk", replace(GOOD, min_disk=2)),  # smaller than the 3 GiB image
    ("min_ram", replace(GOOD, min_ram=0)),
    ("os_distro", replace(GOOD, os_distro="Debian")),
    ("os_distro", replace(GOOD, os_distro=None)),
    ("os_version", replace(GOOD, os_version="bookworm")),
    ("os_purpose", with_props(os_purpose="appliance")),
    ("os_purpose", replace(GOOD, properties={k: v for k, v in PROPS.items() if k != "os_purpose"})),
    ("hw_disk_bus", replace(GOOD, hw_disk_bus=None)),
    ("hw_disk_bus", replace(GOOD, hw_disk_bus="floppy")),
    ("hypervisor_type", replace(GOOD, hypervisor_type="baremetal")),
    ("hw_rng_model", replace(GOOD, hw_rng_model="egd")),
    ("os_hash_algo", replace(GOOD, hash_algo="md5")),
    ("image_build_date", with_props(image_build_date="14.11.2026")),
    ("image_build_date", with_props(image_build_date="2026-11-16")),  # after the upload
    ("image_source", with_props(image_source="github.com/x")),
    ("image_description", with_props(image_description="")),
    ("image_original_user", with_props(image_original_user="")),
    ("replace_frequency", with_props(replace_frequency="sometimes")),
    ("provided_until", with_props(provided_until="")),
    ("provided_until", with_props(provided_until="forever")),
    ("uuid_validity", with_props(uuid_validity="")),
    ("uuid_validity", with_props(uuid_validity="last-two")),
    ("hotfix_hours", with_props(hotfix_hours="48h")),
    ("characters", with_props(image_description="x" * 256)),
]


@pytest.mark.parametrize("key,image", BROKEN, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BROKEN)])
def test_each_broken_value_is_reported(key, image):
    found = problems(image, now=NOW)
    assert found and all(key in p for p in found), found


def test_a_build_date_in_the_future_is_reported():
    future = replace(with_props(image_build_date="2031-01-01"), created_at="2031-01-02T00:00:00Z")
    assert problems(future, now=NOW) == [f"{GOOD.name}: image_build_date is in the future"]


def test_recency_an_outdated_image_needs_a_newer_one_or_to_be_hidden():
    dated = with_props(provided_until="2031-01-01")  # monthly, built 2026: long outdated
    assert recency_problems([dated], now=NOW) != []
    renamed = replace(dated, name="CC-Debian12 20261114")
    newer = replace(dated, properties={**dated.properties, "image_build_date": "2030-03-10"},
                    created_at="2030-03-11T00:00:00Z")
    assert recency_problems([renamed, newer], now=NOW) == []
    assert recency_problems([replace(dated, hidden=True)], now=NOW) != []  # no newer image
    assert recency_problems([replace(dated, hidden=True), newer], now=NOW) != []  # other name
    assert recency_problems([with_props(provided_until="notice")], now=NOW) == []  # no promise


def test_uniqueness_at_most_one_listed_public_generic_image():
    twin = replace(GOOD, name="Debian 12")
    assert uniqueness_problems([GOOD, twin]) != []
    assert uniqueness_problems([GOOD, replace(twin, hidden=True)]) == []
    assert uniqueness_problems([GOOD, replace(twin, visibility="shared")]) == []
    old = replace(twin, properties={**PROPS, "os_purpose": "oldgeneric"})
    assert uniqueness_problems([GOOD, old]) == []
    assert uniqueness_problems([GOOD, replace(twin, architecture="aarch64")]) == []


def test_chunked_documents_are_found():
    assert chunked(PROPS) == []
    assert chunked({"build-source-a": "1", "hw_disk_bus": "virtio", "sage-manifest-sha256": "f" * 64}) == []
    # what publish stored before: a manifest summary cut into numbered base64 pieces
    pieces = {f"sage-summary-{i:02d}": "QUJD" * 60 for i in range(3)} | {"sage-summary-chunks": "3"}
    assert chunked(pieces) != []
    assert chunked({"blob": "QUJD" * 40}) != []
