"""`sage-image images` and `sage-image prune` against real Glance, and the pure prune plan."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import openstack
import pytest

from sage_image.publish.lifecycle import PruneRule, plan_prune
from sage_image.publish.site import SiteImage, list_images, patch_image


def site_images(cloud: str, name: str) -> dict[str, SiteImage]:
    return {i.name: i for i in list_images(openstack.connect(cloud=cloud))
            if i.name.startswith(name)}


@pytest.mark.cloud
def test_images_shows_versions_and_agreement(clouds_env, make_build, image_name, cli):
    assert cli("publish", make_build(image_name, timestamp=1_700_000_000)).code == 0
    second = make_build(image_name, timestamp=1_710_000_000)
    assert cli("publish", second, "--sites", "CHI@UC,KVM@TACC").code == 0
    run = cli("images", image_name, "--json")
    assert run.code == 0, run.err
    data = run.json()
    roles = sorted((r["site"], r["role"], r["build_tag"]) for r in data["images"])
    assert roles == [  # publish hides the image it replaces (scs-0102-v2)
        ("CHI@TACC", "production", "sage-image-12-1700000000"),
        ("CHI@UC", "backdated (hidden)", "sage-image-12-1700000000"),
        ("CHI@UC", "production", "sage-image-12-1710000000"),
        ("KVM@TACC", "backdated (hidden)", "sage-image-12-1700000000"),
        ("KVM@TACC", "production", "sage-image-12-1710000000")]
    assert all(r["sha512"] and r["commit"] for r in data["images"])
    assert data["agreement"][image_name]["agree"] is False
    text = cli("images", image_name)
    assert f"{image_name}: the sites DIFFER (CHI@UC=sage-image-12-1710000000" in text.out
    assert cli("publish", second).code == 0  # CHI@TACC gets it too; the others are up to date
    assert cli("images", image_name, "--json").json()["agreement"][image_name]["agree"] is True


@pytest.mark.cloud
def test_prune_hides_and_deletes_by_age_and_keep(clouds_env, make_build, image_name, cli):
    stamps = (1_600_000_000, 1_650_000_000, 1_700_000_000, 1_710_000_000)
    for stamp in stamps:
        run = cli("publish", make_build(image_name, timestamp=stamp), "--sites", "CHI@UC")
        assert run.code == 0, run.err
    conn = openstack.connect(cloud="chi-uc")
    now = datetime.now(timezone.utc)
    ages = {"20200913": 600, "20220415": 400, "20231114": 10}  # days since each was replaced
    for suffix, days in ages.items():
        image = site_images("chi-uc", image_name)[f"{image_name}-{suffix}"]
        assert image.hidden  # publish hid it when it replaced it
        when = (now - timedelta(days=days)).isoformat(timespec="seconds")
        # as an older sage-image left a replaced image: listed, to be hidden by prune
        patch_image(conn, image, hidden=False, set_props={"sage-image-backdated-at": when})
    before = site_images("chi-uc", image_name)

    dry = cli("prune", image_name, "--sites", "CHI@UC", "--keep", "1", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    plan = {a["image"]: a["action"] for a in dry.json()["actions"]}
    assert plan == {f"{image_name}-20200913": "delete", f"{image_name}-20220415": "hide",
                    f"{image_name}-20231114": "keep"}
    assert site_images("chi-uc", image_name) == before  # a dry run changes nothing

    run = cli("prune", image_name, "--sites", "CHI@UC", "--keep", "1")
    assert run.code == 0, run.err
    assert run.out.index("plan:") < run.out.index(": done")  # the plan is printed first
    after = site_images("chi-uc", image_name)
    assert sorted(after) == [image_name, f"{image_name}-20220415", f"{image_name}-20231114"]
    assert after[f"{image_name}-20220415"].hidden
    assert not after[f"{image_name}-20231114"].hidden
    assert after[image_name] == before[image_name]  # production untouched

    # keep 0 and everything old: still never the production image.
    run = cli("prune", image_name, "--sites", "CHI@UC", "--keep", "0", "--hide-after", "1d",
              "--delete-after", "1d", "--json")
    assert run.code == 0
    assert sorted(site_images("chi-uc", image_name)) == [image_name]
    assert all(a["image"] != image_name for a in run.json()["actions"])


def _image(name: str, replaced_days: int, now: datetime, image_id: str) -> SiteImage:
    when = (now - timedelta(days=replaced_days)).isoformat()
    return SiteImage(id=image_id, name=name, status="active", visibility="public", sha512="x",
                     size=1, created_at=when,
                     properties={"build-image-name": "Sage", "sage-image-backdated-at": when,
                                 "build-timestamp": str(1_000_000 + replaced_days)})


def test_prune_plan_never_touches_in_use_or_production():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    images = [_image("Sage", 0, now, "prod"), _image("Sage-1", 900, now, "old1"),
              _image("Sage-2", 800, now, "old2"), _image("Sage-3", 400, now, "old3")]
    rule = PruneRule(hide_after=timedelta(days=360), delete_after=timedelta(days=540), keep=0)
    plan = {a.image.id: (a.action, a.reason)
            for a in plan_prune("S", images, {"Sage"}, rule=rule, now=now, in_use={"old1"},
                                in_use_known=True)}
    assert "prod" not in plan
    assert plan["old1"] == ("keep", "replaced 900d ago; in use by a server")
    assert plan["old2"][0] == "delete"
    assert plan["old3"][0] == "hide"
    # Nova could not be asked: hide is harmless, delete is not done.
    unknown = {a.image.id: a.action
               for a in plan_prune("S", images, {"Sage"}, rule=rule, now=now, in_use=set(),
                                   in_use_known=False)}
    assert unknown == {"old1": "keep", "old2": "keep", "old3": "hide"}


@pytest.mark.cloud
def test_describe_after_publish(clouds_env, make_build, image_name, cli):
    out = make_build(image_name)
    before = cli("describe", out)
    assert before.code == 0, before.err
    assert "Not published yet" in before.out
    run = cli("publish", out, "--json")
    ids = {s["site"]: s["image_id"] for s in run.json()["sites"]}
    doc = cli("describe", out, "--json").json()
    assert doc["chi_uc_appliance_id"] == ids["CHI@UC"]
    assert doc["kvm_tacc_appliance_id"] == ids["KVM@TACC"]
    md = (out / "appliance.md").read_text()
    for text in ("ssh cc@", "docker", "virtual-waggle up", "09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94",
                 ids["CHI@TACC"], "docker-compose | 1.29.2-3"):
        assert text in md
    assert (out / "appliance.json").exists()
