"""Chameleon's own client finds our images as it finds theirs: python-chi (PyPI), in a process of
its own as a user's notebook runs it, against the three Keystone-backed local sites (python-chi
speaks only Keystone v3, through keystoneauth; the sites without Keystone are out of its reach).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openstack
import pytest
import yaml

from sage_image.publish.site import create_image

pytestmark = pytest.mark.cloud
REGIONS = {"CHI@UC": "chi-uc", "CHI@TACC": "chi-tacc", "KVM@TACC": "kvm-tacc"}

# What a user runs: chi.set("region_name", ...) per site (chi.use_site looks the site up on
# chameleoncloud.org), then get_image and list_images. One JSON line per site.
PROBE = """
import json, sys
import chi, chi.image
regions, names = sys.argv[1].split(","), sys.argv[2:]
for region in regions:
    chi.set("region_name", region)
    found = {}
    for name in names:
        try:
            image = chi.image.get_image(name)
            found[name] = {"id": image.uuid, "supported": image.is_chameleon_supported}
        except Exception as exc:
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}
    listed = [i.name for i in chi.image.list_images()]
    print(json.dumps({"region": region, "get": found, "list": listed}))
"""


def python_chi(clouds_yaml, *names: str) -> dict[str, dict]:
    """Run python-chi with the application credential the site's clouds.yaml entry holds, as
    OS_* variables (python-chi reads those, not clouds.yaml)."""
    auth = yaml.safe_load(clouds_yaml.read_text())["clouds"]["chi-uc"]["auth"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=auth["auth_url"], OS_AUTH_TYPE="v3applicationcredential",
               OS_APPLICATION_CREDENTIAL_ID=auth["application_credential_id"],
               OS_APPLICATION_CREDENTIAL_SECRET=auth["application_credential_secret"],
               OS_INTERFACE="public")
    proc = subprocess.run([sys.executable, "-c", PROBE, ",".join(REGIONS.values()), *names],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["region"]: r for r in map(json.loads, proc.stdout.splitlines())}


def test_python_chi_finds_every_published_image_at_every_site(keystone_env, make_build,
                                                             image_name, cli):
    base, sage = f"CC-{image_name}", image_name
    published = {}
    for name, variant in ((base, "base"), (sage, "sage")):
        run = cli("publish", make_build(name, variant=variant), "--visibility", "shared",
                  "--json")
        assert run.code == 0, run.err
        published[name] = {s["site"]: s["image_id"] for s in run.json()["sites"]}
    # a second version: python-chi must still find exactly one image by each name
    run = cli("publish", make_build(sage, timestamp=1_710_000_000), "--visibility", "shared",
              "--json")
    assert run.code == 0, run.err
    published[sage] = {s["site"]: s["image_id"] for s in run.json()["sites"]}

    seen = python_chi(keystone_env.clouds_yaml, base, sage)
    for site, region in REGIONS.items():
        for name in (base, sage):
            # found by name, the image publish made production there; ours, not Chameleon's
            assert seen[region]["get"][name] == {"id": published[name][site],
                                                 "supported": False}, seen[region]
            assert name in seen[region]["list"]
        assert f"{sage}-20231114" not in seen[region]["list"]  # the old version is hidden


def test_python_chi_refuses_a_name_two_images_share(keystone_env, make_build, image_name, cli):
    """The check can fail: python-chi refuses duplicate names (why publish keeps names unique)."""
    assert cli("publish", make_build(image_name, sites=("CHI@UC",)), "--visibility",
               "shared").code == 0
    create_image(openstack.connect(cloud="chi-uc"), name=image_name, disk_format="qcow2",
                 properties={})
    seen = python_chi(keystone_env.clouds_yaml, image_name)
    assert "Multiple images found" in seen["chi-uc"]["get"][image_name]["error"]
    assert "No images found" in seen["chi-tacc"]["get"][image_name]["error"]
