"""A Glance behind a real Keystone: application credentials, RC-file passwords, real policy,
and no secret in any output."""

from __future__ import annotations

import os
import subprocess
import sys

import openstack
import pytest
import yaml

from sage_image.publish import store
from sage_image.publish.plan import TEMP_MARK
from sage_image.publish.site import list_images

pytestmark = pytest.mark.cloud
CONTAINER = "sage-images"


def secrets_of(clouds_yaml) -> list[str]:
    clouds = yaml.safe_load(clouds_yaml.read_text())["clouds"]
    found = []
    for cloud in clouds.values():
        auth = cloud.get("auth", {})
        found += [auth[k] for k in ("password", "application_credential_secret") if k in auth]
    assert len(found) >= 2
    return found


def names(cloud: str, name: str) -> list[str]:
    return sorted(i.name for i in list_images(openstack.connect(cloud=cloud))
                  if i.name.startswith(name))


def test_application_credential_publish_and_policy_rollback(keystone_env, make_build,
                                                            image_name, cli):
    first = cli("publish", make_build(image_name, timestamp=1_700_000_000, variant="base"),
                "--sites", "CHI@TACC", "--visibility", "shared", "--json")
    assert first.code == 0, first.err
    assert first.json()["sites"][0]["status"] == "published"
    assert names("chi-tacc", image_name) == [image_name]
    conn = openstack.connect(cloud="chi-tacc")  # the project's own account in the site's Swift
    pointer = f"current/{image_name}"
    assert store.read(conn, CONTAINER, pointer) == b"sage-image-12-1700000000\n"

    # A project member may not make images public (real Keystone + Glance policy): promotion
    # fails after the backdate (which hid the old image and made it oldgeneric) and after
    # `current` moved; the site is rolled back, its object store too.
    second = cli("publish", make_build(image_name, timestamp=1_710_000_000, variant="base"),
                 "--sites", "CHI@TACC", "--visibility", "public", "--json")
    assert second.code == 1
    site = second.json()["sites"][0]
    assert site["status"] == "failed" and "rolled back" in site["reason"]
    assert "403" in site["reason"] or "Forbidden" in site["reason"]
    images = [i for i in list_images(conn) if i.name.startswith(image_name)]
    assert [i.name for i in images] == [image_name]
    old = images[0]
    assert old.properties["build-timestamp"] == "1700000000"
    assert "sage-image-superseded-by" not in old.properties
    assert (old.hidden, old.properties["os_purpose"]) == (False, "generic")
    assert not [i for i in images if TEMP_MARK in i.name]
    assert store.read(conn, CONTAINER, pointer) == b"sage-image-12-1700000000\n"
    objects = [o.name for o in conn.object_store.objects(CONTAINER) if image_name in o.name]
    assert not [o for o in objects if "1710000000" in o] and len(objects) == 3


def test_rc_file_password_auth_for_one_site(keystone_env, make_build, image_name, monkeypatch,
                                            cli):
    auth = yaml.safe_load(keystone_env.clouds_yaml.read_text())["clouds"]["chi-tacc-password"]
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(keystone_env.root / "none.yaml"))
    rc = {"OS_AUTH_URL": auth["auth"]["auth_url"], "OS_USERNAME": auth["auth"]["username"],
          "OS_PASSWORD": auth["auth"]["password"], "OS_PROJECT_NAME": "sage",
          "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
          "OS_REGION_NAME": "chi-tacc", "OS_IDENTITY_API_VERSION": "3"}
    for key, value in rc.items():
        monkeypatch.setenv(key, value)
    out = make_build(image_name)
    run = cli("publish", out, "--sites", "CHI@TACC", "--visibility", "private")
    assert run.code == 0, run.err
    # The RC file names no cloud, so it cannot serve several sites.
    run = cli("publish", out, "--sites", "CHI@TACC,CHI@UC")
    assert run.code == 2 and "no cloud 'chi-tacc' in clouds.yaml" in run.err


def test_no_secret_in_any_output(keystone_env, make_build, image_name):
    """Debug logging on, success and failure paths: the secrets never show."""
    env = dict(os.environ)
    out = make_build(image_name)
    runs = [
        ["--debug", "publish", out, "--sites", "CHI@TACC", "--visibility", "shared"],
        ["--debug", "publish", out, "--sites", "CHI@TACC", "--json"],
        ["--debug", "images", "--sites", "CHI@TACC", image_name],
        ["--debug", "publish", make_build(image_name, timestamp=1_710_000_000),
         "--sites", "CHI@TACC", "--visibility", "public"],
        ["--debug", "prune", "--sites", "CHI@TACC", "--dry-run"],
    ]
    text = ""
    for args in runs:
        proc = subprocess.run([sys.executable, "-m", "sage_image.cli", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=120)
        text += proc.stdout + proc.stderr
    assert "published" in text and "rolled back" in text  # both paths ran
    for secret in secrets_of(keystone_env.clouds_yaml):
        assert secret not in text
