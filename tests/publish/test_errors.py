"""Each publish error from a real failure at real local sites (a stopped Glance, a refused
credential and a refused permission at Keystone, a name taken meanwhile, bytes Glance refuses,
a wrong checksum, an object store that is down, a rollback Glance refuses), and the one
boundary that keeps a failure at one site from stopping the others."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import openstack
import pytest
import yaml

from sage_image.catalog import load_catalog
from sage_image.console import Console
from sage_image.errors import (
    AccessRefused,
    NameTaken,
    PublishError,
    RecordFailed,
    RollbackIncomplete,
    SiteUnreachable,
    UploadFailed,
    VerifyFailed,
)
from sage_image.localcloud.cloud import LocalCloud, SiteSpec, start_cloud
from sage_image.localcloud.servers import free_port, stop_process
from sage_image.outfolder import read_manifest
from sage_image.publish import publish as pub
from sage_image.publish.apply import SiteResult, apply_plan
from sage_image.publish.plan import TEMP_MARK
from sage_image.publish.site import create_image, list_images
from tests import contract

pytestmark = pytest.mark.cloud


def publish(out: Path, sites: str, *, visibility: str | None = None
            ) -> tuple[list[pub.Planned], list[SiteResult]]:
    """`sage-image publish OUT --sites SITES` through the library: the typed errors, not only
    the messages the CLI shows."""
    catalog = load_catalog()
    request = pub.PublishRequest(output_dir=out, sites=tuple(sites.split(",")), all_sites=False,
                                 visibility=visibility, untested=False, dry_run=False)
    prepared = pub.prepare(catalog, request)
    planned = pub.plan_all(catalog, request, prepared)
    return planned, pub.apply_all(Console(json_mode=True), planned)


def apply_with(out: Path, site: str, hook: Callable[[str], None], *,
               visibility: str | None = None) -> SiteResult:
    """Publish OUT to one site, calling `hook(phase)` as each step starts (what someone else
    does at the site meanwhile)."""
    catalog = load_catalog()
    request = pub.PublishRequest(output_dir=out, sites=(site,), all_sites=False,
                                 visibility=visibility, untested=False, dry_run=False)
    (planned,) = pub.plan_all(catalog, request, pub.prepare(catalog, request))
    assert planned.plan is not None and planned.conn is not None, planned.reason
    return apply_plan(planned.conn, planned.plan, report=lambda phase, _: hook(phase),
                      cancel=threading.Event())


def names(cloud: str, name: str) -> list[str]:
    return sorted(i.name for i in list_images(openstack.connect(cloud=cloud))
                  if i.name.startswith(name))


# -- a stopped site -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stopped_site() -> Iterator[LocalCloud]:
    """CHI@NCAR (cloud chi-ncar): a real Glance site that was started, then stopped."""
    root = Path(tempfile.mkdtemp(prefix="sage-stopped-"))
    cloud = None
    try:
        cloud = start_cloud(root, [SiteSpec("chi-ncar")])
        glance = cloud.server("chi-ncar")
        stop_process(glance.pid, root=glance.root)
        yield cloud
    finally:
        if cloud is not None:
            cloud.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def with_stopped(clouds_env, stopped_site, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    clouds = yaml.safe_load(clouds_env.clouds_yaml.read_text())
    clouds["clouds"].update(yaml.safe_load(stopped_site.clouds_yaml.read_text())["clouds"])
    both = tmp_path / "clouds.yaml"
    both.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(both))


def test_a_stopped_site_is_unreachable_and_fails_alone(with_stopped, make_build, image_name,
                                                       cli):
    out = make_build(image_name, sites=("CHI@UC", "CHI@NCAR"))
    planned, results = publish(out, "CHI@UC,CHI@NCAR")
    by_site = {r.site: r for r in results}
    assert by_site["CHI@UC"].status == "published"  # the other site went on
    down = by_site["CHI@NCAR"]
    assert down.status == "failed" and isinstance(down.error, SiteUnreachable)
    assert down.reason.startswith("cannot list images: ") and "unavailable" in down.reason
    assert down.error.hint and "clouds.yaml" in down.error.hint

    run = cli("images", image_name, "--sites", "CHI@UC,CHI@NCAR", "--json")
    assert run.code == 1 and run.json()["errors"]["CHI@NCAR"].startswith("cannot list images")
    # `diff --site` is one site's command: the error and its hint are the CLI's one line each
    run = cli("diff", out, "--site", "CHI@NCAR")
    assert run.code == 1 and "Traceback" not in run.err
    lines = run.err.splitlines()
    assert lines[0].startswith("sage-image: error: CHI@NCAR: cannot list images: ")
    assert lines[1].startswith("hint: is the site up?")


# -- Keystone: a refused credential, a refused permission, a rollback refused -----------------

def test_a_credential_keystone_refuses(keystone_env, make_build, image_name, tmp_path,
                                       monkeypatch, cli):
    clouds = yaml.safe_load(keystone_env.clouds_yaml.read_text())
    auth = clouds["clouds"]["chi-tacc"]["auth"]
    secret = auth["application_credential_secret"]
    auth["application_credential_secret"] = "not-" + secret
    wrong = tmp_path / "clouds.yaml"
    wrong.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(wrong))
    out = make_build(image_name)
    planned, results = publish(out, "CHI@TACC")
    error = results[0].error
    assert isinstance(error, AccessRefused) and "401" in error.reason, error
    assert "credentials" in (error.hint or "")
    run = cli("publish", out, "--sites", "CHI@TACC", "--json")
    assert run.code == 1 and "401" in run.json()["sites"][0]["reason"]
    assert secret not in run.out + run.err and "not-" + secret not in run.out + run.err


def test_a_permission_keystone_refuses(keystone_env, make_build, image_name):
    """A project member may not make an image public (real Glance policy): AccessRefused at
    promotion, after which the site is rolled back."""
    _, first = publish(make_build(image_name, variant="base"), "CHI@TACC", visibility="shared")
    assert first[0].status == "published", first[0].reason
    _, results = publish(make_build(image_name, timestamp=1_710_000_000, variant="base"),
                         "CHI@TACC", visibility="public")
    error = results[0].error
    assert isinstance(error, AccessRefused) and error.reason.startswith("promoting: ")
    assert "403" in error.reason and results[0].reason.endswith("; rolled back")
    assert names("chi-tacc", image_name) == [image_name]


def test_a_rollback_glance_refuses_is_incomplete(keystone_env, make_build, image_name):
    """Promotion is refused (403) and, meanwhile, someone protected the new image: the rollback
    cannot delete it, and says so; everything else was undone."""
    conn = openstack.connect(cloud="chi-tacc")
    temp: list[str] = []

    def protect(phase: str) -> None:
        if phase == "promoting":
            image = next(i for i in list_images(conn) if TEMP_MARK in i.name
                         and i.name.startswith(image_name))
            conn.image.update_image(image.id, is_protected=True)
            temp.append(image.id)

    out = make_build(image_name, variant="base")
    try:
        result = apply_with(out, "CHI@TACC", protect, visibility="public")
        assert isinstance(result.error, RollbackIncomplete), result
        assert isinstance(result.error.cause, AccessRefused)
        assert result.reason.startswith("promoting: ") and "403" in result.reason
        assert f"ROLLBACK INCOMPLETE: could not delete {temp[0]}: " in result.reason
        assert len(result.error.problems) == 1  # the record objects were deleted
        assert names("chi-tacc", image_name) == [f"{image_name}{TEMP_MARK}"
                                                 f"{read_manifest(out).files['qcow2'].sha512[:12]}"]
    finally:
        for image_id in temp:
            conn.image.update_image(image_id, is_protected=False)
            conn.image.delete_image(image_id)


# -- the steps of a publish ------------------------------------------------------------------

def test_a_name_taken_meanwhile(clouds_env, make_build, image_name):
    conn = openstack.connect(cloud="chi-uc")
    intruder: list[str] = []

    def take_the_name(phase: str) -> None:
        if phase == "verifying":  # after planning, before the name is checked again
            intruder.append(create_image(conn, name=image_name, disk_format="qcow2",
                                         properties={}).id)

    result = apply_with(make_build(image_name), "CHI@UC", take_the_name)
    assert isinstance(result.error, NameTaken), result
    assert result.reason == (f"'{image_name}' appeared meanwhile on {intruder[0]}; "
                             "rolled back")
    assert names("chi-uc", image_name) == [image_name]  # the intruder, nothing of ours


def test_bytes_glance_refuses_fail_the_upload(clouds_env, make_build, image_name):
    """Glance inspects what it is sent: bytes that are no qcow2 uploaded as qcow2 are refused
    (415) - an UploadFailed, rolled back."""
    out = make_build(image_name, formats=("qcow2",), sites=("CHI@UC",))
    manifest = read_manifest(out)
    qcow2 = out / manifest.files["qcow2"].path
    qcow2.write_bytes(b"not a qcow2 image\n" * 4096)
    entry = contract.image_file(qcow2, "qcow2", virtual_size=manifest.files["qcow2"].virtual_size)
    contract.write_build(out, contract.replace(manifest, files={"qcow2": entry}))
    contract.write_test(out, contract.results(read_manifest(out)))
    _, results = publish(out, "CHI@UC")
    error = results[0].error
    assert isinstance(error, UploadFailed) and error.reason.startswith("uploading: "), error
    assert "415" in error.reason and results[0].reason.endswith("; rolled back")
    assert names("chi-uc", image_name) == []


def test_a_wrong_checksum_fails_verification(clouds_env, make_build, image_name):
    out = make_build(image_name, formats=("raw",), sites=("KVM@TACC",))
    manifest = read_manifest(out)
    raw = contract.replace(manifest.files["raw"], sha512="0" * 128)
    contract.write_build(out, contract.replace(manifest, files={"raw": raw}))
    contract.write_test(out, contract.results(read_manifest(out)))
    _, results = publish(out, "KVM@TACC")
    assert isinstance(results[0].error, VerifyFailed), results[0]
    assert results[0].reason.startswith("checksum mismatch: ")
    assert names("kvm-tacc", image_name) == []


def test_an_object_store_that_is_down_fails_the_record(clouds_env, make_build, image_name,
                                                      tmp_path, monkeypatch):
    clouds = yaml.safe_load(clouds_env.clouds_yaml.read_text())
    clouds["clouds"]["kvm-tacc"]["object_store_endpoint_override"] = \
        f"http://127.0.0.1:{free_port()}/v1/AUTH_kvm-tacc"  # nothing listens there
    broken = tmp_path / "clouds.yaml"
    broken.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    _, results = publish(make_build(image_name, sites=("KVM@TACC",)), "KVM@TACC")
    assert isinstance(results[0].error, RecordFailed), results[0]
    assert results[0].reason.startswith("recording: ")
    assert names("kvm-tacc", image_name) == []


# -- clouds.yaml ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,error", [
    ("clouds: 3\n", "cannot read clouds.yaml: TypeError"),
    ("clouds:\n  chi-uc: 5\n", "cannot configure cloud 'chi-uc': AttributeError"),
    ("clouds:\n  chi-uc:\n    auth_type: no-such-plugin\n    auth: {auth_url: http://127.0.0.1:1}\n",
     "cannot configure cloud 'chi-uc': NoMatchingPlugin"),
])
def test_a_malformed_clouds_yaml_is_one_line(text, error, make_build, image_name, tmp_path,
                                             monkeypatch, cli):
    (tmp_path / "clouds.yaml").write_text(text)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.chdir(tmp_path)
    out = make_build(image_name, sites=("CHI@UC",))
    run = cli("diff", out, "--site", "CHI@UC")  # one site's command: bad input, exit 2
    assert run.code == 2 and error in run.err and "Traceback" not in run.err
    run = cli("publish", out, "--sites", "CHI@UC", "--json")
    assert run.code in (1, 2) and "Traceback" not in run.err
    # at a site (publish, images), a site whose entry is broken fails alone
    reason = run.json()["sites"][0]["reason"] if run.code == 1 else run.err
    assert error in reason


# -- the boundary ----------------------------------------------------------------------------

def test_the_boundary_keeps_every_failure_at_its_site():
    from keystoneauth1 import exceptions as ksa

    from sage_image.publish.failures import contain

    def fails(exc: BaseException) -> Callable[[], None]:
        def job() -> None:
            raise exc
        return job

    unreachable = contain("S", fails(ksa.ConnectFailure("refused")), doing="listing")
    assert isinstance(unreachable, SiteUnreachable) and unreachable.reason == "listing: refused"
    bug = contain("S", fails(ZeroDivisionError("division by zero")), doing="listing")
    assert type(bug) is PublishError and bug.message == "S: listing: division by zero"
    assert contain("S", lambda: 42) == 42
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not a site's failure
        contain("S", fails(KeyboardInterrupt()))
