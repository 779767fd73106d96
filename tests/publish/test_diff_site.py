"""The record publish keeps in each site's object store (real Swift beside real Glance), and
`sage-image diff OUT --site S` against it, with a real (this machine's) package list of several
hundred packages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openstack
import pytest

from sage_image.builder.artifacts import installed_packages
from sage_image.outfolder import decode_manifest, read_manifest, read_published
from sage_image.publish import store
from sage_image.publish.record import PROP_MANIFEST_SHA, PROP_RECORD
from sage_image.publish.site import list_images, patch_image
from tests import contract
from tests.publish.scs0102 import chunked

pytestmark = pytest.mark.cloud
DPKG_STATUS = Path("/var/lib/dpkg/status")
CONTAINER = "sage-images"


def _edit(out: Path, **changes) -> None:  # noqa: ANN003
    contract.write_build(out, contract.replace(read_manifest(out), **changes))


def _real_packages() -> dict:
    return {"packages": installed_packages(DPKG_STATUS),
            "python_packages": {"pywaggle": "0.56.3", "numpy": "1.26.4"}}


def _production(cloud: str, name: str):  # noqa: ANN202
    conn = openstack.connect(cloud=cloud)
    return conn, next(i for i in list_images(conn) if i.name == name)


def _tag(out: Path) -> str:
    return read_manifest(out).build_tag


def test_publish_records_the_build_and_diff_site_reads_it(clouds_env, make_build, image_name,
                                                          cli):
    first = make_build(image_name, timestamp=1_700_000_000, sites=("CHI@UC",))
    _edit(first, **_real_packages())
    assert len(read_manifest(first).packages) > 100
    assert cli("publish", first, "--json").code == 0
    conn, image = _production("chi-uc", image_name)
    props = image.properties
    # short pointers on the image; the documents are in the site's object store
    prefix = f"versions/{_tag(first)}/{image_name}"
    assert props[PROP_RECORD] == f"{CONTAINER}/{prefix}"
    assert all(len(v) <= 255 for v in props.values()) and chunked(props) == []
    manifest = (first / "manifest.json").read_bytes()
    assert store.read(conn, CONTAINER, prefix + ".manifest.json") == manifest
    assert hashlib.sha256(manifest).hexdigest() == props[PROP_MANIFEST_SHA]
    packages = decode_manifest(manifest, where="the record").packages
    assert store.read(conn, CONTAINER, prefix + ".packages").decode().splitlines() == [
        f"{n}={v}" for n, v in sorted(packages.items())]
    assert store.read(conn, CONTAINER, f"current/{image_name}") == f"{_tag(first)}\n".encode()

    same = cli("diff", first, "--site", "CHI@UC", "--json", "--exit-code")
    assert same.code == 0, same.err
    assert same.json()["differs"] is False

    # The next version: one package upgraded, one added, a source re-pinned.
    second = make_build(image_name, timestamp=1_700_100_000, sites=("CHI@UC",))

    changed = _real_packages()
    name = sorted(changed["packages"])[0]
    changed["packages"][name] = changed["packages"][name] + "+sage1"
    changed["packages"]["sage-image-new-package"] = "1.0-1"
    changed["sources"] = {"waggle-node": contract.replace(contract.WAGGLE_NODE, commit="1" * 40)}
    _edit(second, **changed)
    before = cli("diff", second, "--site", "CHI@UC", "--json", "--exit-code")
    assert before.code == 1, before.err
    changes = before.json()["changes"]
    assert {c["kind"] for c in changes["package"]} == {"upgraded", "added"}
    assert changes["source"] == [{"name": "waggle-node", "kind": "re-pinned",
                                  "old": "09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                                  "new": "1" * 40}]
    assert before.json()["old"] == f"CHI@UC: {image.id}"
    table = cli("diff", second, "--site", "CHI@UC")
    assert "sage-image-new-package" in table.out and "re-pinned" in table.out

    # Publishing it records what is new against the image it replaced, and moves `current`.
    assert cli("publish", second, "--json").code == 0
    previous = read_published(second).sites["CHI@UC"].previous
    assert previous is not None and previous.image_id == image.id
    assert previous.changes["counts"]["package"] == {"added": 1, "upgraded": 1}
    assert read_published(first).sites["CHI@UC"].previous is None
    assert store.read(conn, CONTAINER, f"current/{image_name}") == f"{_tag(second)}\n".encode()
    assert store.read(conn, CONTAINER, prefix + ".manifest.json") == manifest  # kept
    # ... and the description says so.
    assert cli("describe", second).code == 0
    text = (second / "appliance.md").read_text()
    assert "## What's new" in text and "sage-image-new-package" in text

    # A record changed in the store is reported, not trusted: comparing another build with it
    # is refused; the very build it was still compares (its own manifest), with a warning.
    _, now = _production("chi-uc", image_name)
    record = now.properties[PROP_RECORD].split("/", 1)[1] + ".manifest.json"
    good = store.read(conn, CONTAINER, record)
    store.put(conn, CONTAINER, record, manifest, site="CHI@UC")  # the first build's manifest in its place
    broken = cli("diff", first, "--site", "CHI@UC")
    assert broken.code == 2 and "is not the manifest the image was published with" in broken.err
    assert "Traceback" not in broken.err
    itself = cli("diff", second, "--site", "CHI@UC", "--json", "--exit-code")
    assert itself.code == 0 and itself.json()["differs"] is False
    assert "is not the manifest the image was published with" in itself.err

    # A store that lost the record: the same build still compares (with a note), another is
    # refused with what the image's digests tell.
    store.delete(conn, CONTAINER, record)
    lost = cli("diff", second, "--site", "CHI@UC", "--json", "--exit-code")
    assert lost.code == 0, lost.err
    assert lost.json()["differs"] is False
    assert "is not in the site's object store" in lost.err and "this very build" in lost.err
    other = cli("diff", first, "--site", "CHI@UC")
    assert other.code == 2 and "is not in the site's object store" in other.err
    assert "its package list is not the same as this build's" in other.err
    store.put(conn, CONTAINER, record, good, site="CHI@UC")
    assert cli("diff", first, "--site", "CHI@UC").code == 0  # restored: compared again


def test_diff_site_against_an_image_without_a_record(clouds_env, make_build, image_name, cli):
    """An image published before records were kept in the object store (no pointer)."""
    out = make_build(image_name, sites=("KVM@TACC",))
    assert cli("publish", out).code == 0
    conn, image = _production("kvm-tacc", image_name)
    patch_image(conn, image, remove_props=(PROP_RECORD,))
    run = cli("diff", make_build(image_name, timestamp=1_710_000_000), "--site", "KVM@TACC")
    assert run.code == 2 and "points at no record (published by an older sage-image)" in run.err
    # the record of a site is its own: KVM@TACC's store is not CHI@UC's
    chi_uc = openstack.connect(cloud="chi-uc")
    assert store.read(chi_uc, CONTAINER, f"current/{image_name}") is None


def test_diff_site_bad_input(clouds_env, make_build, image_name, cli):
    out = make_build(image_name, sites=("CHI@UC",))
    missing = cli("diff", out, "--site", "CHI@UC")
    assert missing.code == 2 and f"no production image named '{image_name}'" in missing.err
    unknown = cli("diff", out, "--site", "CHI@NOWHERE")
    assert unknown.code == 2 and "unknown site" in unknown.err
