"""`sage-image publish` against three real Glance sites."""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest

from sage_image.outfolder import Manifest, read_manifest, read_published, read_results
from sage_image.publish.site import SiteImage, create_image, list_images

SITES = ("CHI@UC", "CHI@TACC", "KVM@TACC")
CLOUDS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}

pytestmark = pytest.mark.cloud


def images(cloud: str, name: str) -> list[SiteImage]:
    """The site's images of one production name (production, backdated, temporary)."""
    conn = openstack.connect(cloud=cloud)
    return [i for i in list_images(conn) if i.name.startswith(name)]


def production(cloud: str, name: str) -> SiteImage:
    holders = [i for i in images(cloud, name) if i.name == name]
    assert len(holders) == 1, holders
    return holders[0]


def manifest(out: Path) -> Manifest:
    return read_manifest(out)


def test_first_publish_then_noop_then_backdate(clouds_env, make_build, image_name, cli):
    out = make_build(image_name, timestamp=1_700_000_000)
    first = cli("publish", out, "--json")
    assert first.code == 0, first.err
    result = first.json()
    assert [s["status"] for s in result["sites"]] == ["published"] * 3
    files = manifest(out).files
    for site in SITES:
        image = production(CLOUDS[site], image_name)
        fmt = "raw" if site.startswith("KVM") else "qcow2"
        assert image.sha512 == files[fmt].sha512
        assert image.visibility == "public"
        assert image.properties["build-tag"] == "sage-image-12-1700000000"
        assert image.properties["os_distro"] == "debian"
        assert image.properties["os_version"] == "12"
        assert image.properties["hw_architecture"] == "x86_64"
        # a hybrid BIOS+UEFI image claims neither (Chameleon's set none)
        assert "hw_firmware_type" not in image.properties
        assert "sage-image-untested" not in image.properties
    published = read_published(out).sites
    assert {s: published[s].image_id for s in SITES} == {
        s["site"]: s["image_id"] for s in result["sites"]}

    # Re-publish: nothing uploaded, every site "up to date".
    again = cli("publish", out, "--json")
    assert again.code == 0, again.err
    assert [s["status"] for s in again.json()["sites"]] == ["up to date"] * 3
    assert len(images("chi-uc", image_name)) == 1

    # A new build: the old production image is backdated with its own build date.
    new = make_build(image_name, timestamp=1_710_000_000)  # 2024-03-09
    third = cli("publish", new)
    assert third.code == 0, third.err
    assert "published" in third.out
    for site in SITES:
        cloud = CLOUDS[site]
        current = production(cloud, image_name)
        assert current.properties["build-timestamp"] == "1710000000"
        old = [i for i in images(cloud, image_name) if i.name == f"{image_name}-20231114"]
        assert len(old) == 1
        assert old[0].properties["build-timestamp"] == "1700000000"
        assert old[0].properties["sage-image-superseded-by"] == current.id
        assert "sage-image-backdated-at" in old[0].properties


def test_kvm_site_receives_raw(clouds_env, make_build, image_name, cli):
    out = make_build(image_name)
    run = cli("publish", out, "--sites", "KVM@TACC")
    assert run.code == 0, run.err
    conn = openstack.connect(cloud="kvm-tacc")
    image = production("kvm-tacc", image_name)
    doc = conn.image.get(f"/images/{image.id}").json()
    assert doc["disk_format"] == "raw"
    assert image.sha512 == manifest(out).files["raw"].sha512
    assert images("chi-uc", image_name) == []  # only the site asked for


def test_backdate_collision_gets_suffix(clouds_env, make_build, image_name, cli):
    """Two builds of the same day replaced in turn: -YYYYMMDD, then -YYYYMMDD.1."""
    for stamp in (1_700_000_000, 1_700_000_100, 1_700_000_200):
        run = cli("publish", make_build(image_name, timestamp=stamp), "--sites", "CHI@UC")
        assert run.code == 0, run.err
    names = sorted(i.name for i in images("chi-uc", image_name))
    assert names == [image_name, f"{image_name}-20231114", f"{image_name}-20231114.1"]


def test_backdate_scheme_from_catalog(clouds_env, make_build, image_name, cli, tmp_path):
    from sage_image.catalog.model import DEFAULT_CATALOG

    text = DEFAULT_CATALOG.read_text().replace('backdate: "{name}-{date}"',
                                               'backdate: "{name} ({tag})"')
    assert 'backdate: "{name} ({tag})"' in text
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(text)
    for stamp in (1_700_000_000, 1_700_086_400):
        run = cli("publish", make_build(image_name, timestamp=stamp), "--sites", "CHI@UC",
                  "--catalog", catalog)
        assert run.code == 0, run.err
    names = sorted(i.name for i in images("chi-uc", image_name))
    assert names == [image_name, f"{image_name} (sage-image-12-1700000000)"]


def test_untested_image_refused_unless_flagged(clouds_env, make_build, image_name, cli):
    missing = make_build(image_name, tested=None)
    run = cli("publish", missing, "--sites", "CHI@UC")
    assert run.code == 2
    assert "refusing to publish" in run.err and "no test-results.json" in run.err
    failed = make_build(image_name, tested=False)
    run = cli("publish", failed, "--sites", "CHI@UC")
    assert run.code == 2 and "boot test failed (ssh-login)" in run.err
    assert images("chi-uc", image_name) == []
    run = cli("publish", failed, "--sites", "CHI@UC", "--untested")
    assert run.code == 0, run.err
    assert production("chi-uc", image_name).properties["sage-image-untested"] == "true"


@pytest.mark.parametrize("checks,restricted_by", [
    (("ssh-login",), ("--checks ssh-login",)),
    (("ssh-login", "hostname", "sudo"), ("--keep-running",)),
], ids=["--checks", "--keep-running"])
def test_a_partial_test_run_does_not_count(clouds_env, make_build, image_name, cli, checks,
                                           restricted_by):
    # test-results.json as `sage-image test OUT --checks ssh-login` (or --keep-running)
    # writes it: passed, but not a test of the image as publish means it.
    out = make_build(image_name, tested=None)
    make_build.write_results(out, passed=True, checks=checks, restricted_by=restricted_by)
    run = cli("publish", out, "--sites", "CHI@UC")
    assert run.code == 2, run.err
    assert f"does not qualify for publishing ({restricted_by[0]})" in run.err
    assert f"run 'sage-image test {out}'" in run.err
    assert images("chi-uc", image_name) == []
    make_build.write_results(out, passed=True)  # the full run
    assert cli("publish", out, "--sites", "CHI@UC").code == 0


def test_a_format_not_proved_to_be_the_tested_disk_is_refused(clouds_env, make_build,
                                                              image_name, cli):
    # The test booted the raw; bare-metal sites take the qcow2. Without the build's record
    # that the qcow2 holds the same disk, that is publishing untested bytes.
    out = make_build(image_name, same_disk=False)
    run = cli("publish", out, "--sites", "CHI@UC,KVM@TACC")
    assert run.code == 2, run.err
    assert "refusing to publish" in run.err and "to CHI@UC: the qcow2 file is not the tested" in run.err
    assert images("chi-uc", image_name) == [] and images("kvm-tacc", image_name) == []
    assert cli("publish", out, "--sites", "KVM@TACC").code == 0  # the raw is what was tested
    proved = make_build(image_name, timestamp=1_700_086_400)  # with the build's proof
    assert cli("publish", proved, "--sites", "CHI@UC").code == 0


def test_a_qcow2_only_build_is_published_as_tested(clouds_env, make_build, image_name, cli):
    out = make_build(image_name, formats=("qcow2",), sites=("CHI@UC",))
    assert read_results(out / "test-results.json").tested_file.endswith(".qcow2")
    run = cli("publish", out, "--sites", "CHI@UC")
    assert run.code == 0, run.err
    assert production("chi-uc", image_name).sha512 == manifest(out).files["qcow2"].sha512


def test_two_production_images_refused(clouds_env, make_build, image_name, cli):
    conn = openstack.connect(cloud="chi-tacc")
    dupes = [create_image(conn, name=image_name, disk_format="qcow2", properties={})
             for _ in range(2)]
    run = cli("publish", make_build(image_name), "--json")
    assert run.code == 1
    by_site = {s["site"]: s for s in run.json()["sites"]}
    assert by_site["CHI@TACC"]["status"] == "refused"
    for dupe in dupes:
        assert dupe.id in by_site["CHI@TACC"]["reason"]
    assert by_site["CHI@UC"]["status"] == "published"
    assert len(images("chi-tacc", image_name)) == 2  # untouched


def test_dry_run_changes_nothing(clouds_env, make_build, image_name, cli):
    cli("publish", make_build(image_name, timestamp=1_700_000_000), "--sites", "CHI@UC")
    before = images("chi-uc", image_name)
    run = cli("publish", make_build(image_name, timestamp=1_710_000_000), "--sites", "CHI@UC",
              "--dry-run")
    assert run.code == 0, run.err
    assert f"'{image_name}' -> '{image_name}-20231114'" in run.err
    assert "upload" in run.err and "promote" in run.err
    assert images("chi-uc", image_name) == before


def test_bad_input_is_one_line_exit_2(clouds_env, make_build, image_name, cli, tmp_path):
    run = cli("publish", tmp_path / "nope")
    assert run.code == 2 and run.err.startswith("sage-image: error: ")
    assert "Traceback" not in run.err
    run = cli("publish", make_build(image_name), "--sites", "CHI@UCC")
    assert run.code == 2 and "did you mean 'CHI@UC'" in run.err
    run = cli("publish", make_build(image_name), "--sites", "CHI@NCAR")
    assert run.code == 2 and "no cloud 'chi-ncar' in clouds.yaml" in run.err
