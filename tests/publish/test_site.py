"""publish/site.py through openstacksdk's image proxy, read back from real Glance as raw JSON
(not through the code under test): what a PATCH keeps, sets and removes, hidden images in
listings, and where the line between Glance's own attributes and custom properties runs."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from openstack.image.v2.image import Image

from sage_image.publish import site
from sage_image.publish.site import SiteImage, create_image, list_images, patch_image

pytestmark = pytest.mark.cloud
CUSTOM = {"os_distro": "debian", "os_purpose": "generic", "sage-a": "1", "sage-b": "2"}


def raw(conn, image_id: str) -> dict:  # noqa: ANN001
    """The image document as Glance sends it."""
    return conn.image.get(f"/images/{image_id}").json()


@pytest.fixture
def conn(clouds_env):  # noqa: ANN001, ANN201
    return openstack.connect(cloud="chi-uc")


@pytest.fixture
def image(conn, image_name) -> Iterator[SiteImage]:  # noqa: ANN001
    made = create_image(conn, name=image_name, disk_format="qcow2", properties=CUSTOM,
                        min_disk=2, min_ram=512)
    yield made
    conn.image.delete_image(made.id, ignore_missing=True)


def test_create_writes_our_properties_only(conn, image):
    doc = raw(conn, image.id)
    assert {k: doc[k] for k in CUSTOM} == CUSTOM
    assert (doc["visibility"], doc["min_disk"], doc["min_ram"]) == ("private", 2, 512)
    # none of the owner_specified.openstack.* properties the proxy's create_image() adds
    assert not [k for k in doc if k.startswith("owner_specified")]
    assert image.properties == CUSTOM  # os_distro (which openstacksdk models) included


def test_patch_sets_and_removes_properties_and_keeps_the_rest(conn, image, image_name):
    patched = patch_image(conn, image, name=f"{image_name}-old", hidden=True,
                          set_props={"os_purpose": "oldgeneric", "sage-c": "3"},
                          remove_props=("sage-b", "sage-not-there"))
    doc = raw(conn, image.id)
    expected = {"os_distro": "debian", "os_purpose": "oldgeneric", "sage-a": "1", "sage-c": "3"}
    assert {k: v for k, v in doc.items() if k in {*CUSTOM, "sage-c"}} == expected
    assert (doc["name"], doc["os_hidden"]) == (f"{image_name}-old", True)
    assert patched.properties == expected and patched.hidden
    # and back, as a rollback does
    patch_image(conn, patched, name=image_name, hidden=False, set_props={"os_purpose": "generic"},
                remove_props=("sage-c",))
    doc = raw(conn, image.id)
    assert {k: v for k, v in doc.items() if k in {*CUSTOM, "sage-c"}} == {
        k: v for k, v in CUSTOM.items() if k != "sage-b"}
    assert (doc["name"], doc["os_hidden"]) == (image_name, False)


def test_the_check_catches_a_patch_that_drops_properties(conn, image):
    """The can-fail twin: the proxy's update_image given one custom property alone makes it the
    resource's whole `properties`, and the patch removes every other one - patch_image passes
    `properties` whole for that reason."""
    res = Image.existing(id=image.id, name=image.name, **image.properties)
    conn.image.update_image(res, **{"sage-c": "3"})
    doc = raw(conn, image.id)
    assert "sage-a" not in doc and "os_purpose" not in doc  # what the test above would catch
    assert doc["sage-c"] == "3" and doc["os_distro"] == "debian"  # os_distro is modelled


def test_a_property_openstacksdk_models_is_not_removed_silently(conn, image):
    with pytest.raises(ValueError, match="cannot remove os_distro"):
        patch_image(conn, image, remove_props=("os_distro",))
    assert raw(conn, image.id)["os_distro"] == "debian"


def test_nothing_to_change_sends_nothing(conn, image):
    before = raw(conn, image.id)["updated_at"]
    assert patch_image(conn, image, remove_props=("sage-not-there",)) is image
    assert raw(conn, image.id)["updated_at"] == before


def test_properties_are_what_the_sites_schema_does_not_call_core(conn, image, tmp_path: Path):
    qcow2 = tmp_path / "x.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", qcow2, "4M"], check=True)
    site.upload_file(conn, image.id, qcow2, size=qcow2.stat().st_size, on_bytes=lambda n: None,
                     cancel=threading.Event())
    active = site.wait_active(conn, image.id)
    doc = raw(conn, image.id)
    core = {k for k, v in conn.image.get("/schemas/image").json()["properties"].items()
            if v.get("is_base", True)}
    assert "stores" in doc and "stores" not in active.properties  # core; openstacksdk leaves
    assert active.properties == {k: str(v) for k, v in doc.items() if k not in core}
    assert (active.status, active.size, active.sha512) == ("active", qcow2.stat().st_size,
                                                           doc["os_hash_value"])


def test_listing_pages_and_includes_hidden_images(conn, image_name, monkeypatch):
    made = [create_image(conn, name=f"{image_name}-{i}", disk_format="qcow2", properties={})
            for i in range(5)]
    try:
        for hidden in made[3:]:
            patch_image(conn, hidden, hidden=True)
        monkeypatch.setattr(site, "PAGE", 2)  # three pages of visible images, two of hidden
        listed = [i for i in list_images(conn) if i.name.startswith(image_name)]
        assert sorted(i.id for i in listed) == sorted(i.id for i in made)
        assert sorted(i.name for i in listed if i.hidden) == [f"{image_name}-3", f"{image_name}-4"]
        # one name: Glance filters, hidden images included
        assert [i.id for i in list_images(conn, name=f"{image_name}-3")] == [made[3].id]
        assert [i.id for i in list_images(conn, name=f"{image_name}-1")] == [made[1].id]
        # what a listing without is_hidden=True would have missed
        default = [i.id for i in conn.image.images() if i.name.startswith(image_name)]
        assert len(default) == 3
    finally:
        for i in made:
            site.delete_image(conn, i.id)
    site.delete_image(conn, made[0].id)  # already gone: a 404 is ignored
    assert [i for i in list_images(conn) if i.name.startswith(image_name)] == []
