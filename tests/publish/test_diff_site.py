"""What publish records on a Glance image, and `sage-image diff OUT --site S` against it, with
real Glance sites and a real (this machine's) package list of several hundred packages."""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest

from sage_image.builder.artifacts import installed_packages
from sage_image.outfolder import read_manifest, read_published
from sage_image.publish.record import CHUNK_CHARS, PROP_CHUNKS, PROP_MANIFEST_SHA, packages_digest
from sage_image.publish.site import list_images, patch_image
from tests import contract

pytestmark = pytest.mark.cloud
DPKG_STATUS = Path("/var/lib/dpkg/status")


def _edit(out: Path, **changes) -> None:  # noqa: ANN003
    contract.write_build(out, contract.replace(read_manifest(out), **changes))


def _real_packages() -> dict:
    return {"packages": installed_packages(DPKG_STATUS),
            "python_packages": {"pywaggle": "0.56.3", "numpy": "1.26.4"}}


def _production(cloud: str, name: str):  # noqa: ANN202
    conn = openstack.connect(cloud=cloud)
    return conn, next(i for i in list_images(conn) if i.name == name)


def test_publish_records_a_summary_diff_site_reads_it(clouds_env, make_build, image_name, cli):
    first = make_build(image_name, timestamp=1_700_000_000, sites=("CHI@UC",))
    _edit(first, **_real_packages())
    assert len(read_manifest(first).packages) > 100
    assert cli("publish", first, "--json").code == 0
    conn, image = _production("chi-uc", image_name)
    props = image.properties
    assert int(props[PROP_CHUNKS]) > 5  # the package list really had to be cut up
    assert all(len(v) <= CHUNK_CHARS for v in props.values())
    assert len(props) < 128  # Glance's default image_property_quota (413 above it)
    assert props[PROP_MANIFEST_SHA] and "sage-packages-sha256" in props

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

    # Publishing it records what is new against the image it replaced.
    assert cli("publish", second, "--json").code == 0
    previous = read_published(second).sites["CHI@UC"].previous
    assert previous is not None and previous.image_id == image.id
    assert previous.changes["counts"]["package"] == {"added": 1, "upgraded": 1}
    assert read_published(first).sites["CHI@UC"].previous is None
    # ... and the description says so.
    assert cli("describe", second).code == 0
    text = (second / "appliance.md").read_text()
    assert "## What's new" in text and "sage-image-new-package" in text

    # A damaged record is reported, not trusted: change one chunk of the new production image.
    conn, now = _production("chi-uc", image_name)
    patch_image(conn, now, set_props={"sage-summary-00": "A" * CHUNK_CHARS})
    broken = cli("diff", second, "--site", "CHI@UC")
    assert broken.code == 2 and "damaged" in broken.err and "Traceback" not in broken.err


def test_diff_site_bad_input(clouds_env, make_build, image_name, cli):
    out = make_build(image_name, sites=("CHI@UC",))
    missing = cli("diff", out, "--site", "CHI@UC")
    assert missing.code == 2 and f"no production image named '{image_name}'" in missing.err
    unknown = cli("diff", out, "--site", "CHI@NOWHERE")
    assert unknown.code == 2 and "unknown site" in unknown.err


def test_packages_digest_is_order_free():
    a = {"b": "1", "a": "2"}
    assert packages_digest(a) == packages_digest({"a": "2", "b": "1"})
    assert packages_digest(a) != packages_digest({"a": "2", "b": "1.1"})
