"""Plans for every combination the catalog allows, and every request it must refuse."""

from __future__ import annotations

import itertools

import pytest
import yaml

from sage_image.builder.plan import (
    BUILDER_ELEMENTS,
    BuildRequest,
    SourceOverride,
    parse_source_override,
    plan_build,
)
from sage_image.catalog import load_catalog
from sage_image.errors import UsageError

CATALOG = load_catalog()
COMBINATIONS = [
    (release, variant, arch, site)
    for release, variant, arch in itertools.product(CATALOG.releases, CATALOG.variants,
                                                    CATALOG.arches)
    if arch in CATALOG.releases[release].arches and arch in CATALOG.variant_arches(variant)
    for site in [None, *(s for s in CATALOG.sites if arch in CATALOG.sites[s].arches)]
]


@pytest.mark.parametrize("release,variant,arch,site", COMBINATIONS,
                         ids=["-".join(map(str, c)) for c in COMBINATIONS])
def test_every_catalog_combination_plans(release, variant, arch, site):
    plan = plan_build(CATALOG, BuildRequest(release=release, variant=variant, arch=arch,
                                            sites=(site,) if site else (), timestamp=1700000000))
    rel = CATALOG.releases[release]
    assert plan.elements[0] == rel.element
    assert list(plan.elements[-len(BUILDER_ELEMENTS):]) == list(BUILDER_ELEMENTS)
    for element in CATALOG.arches[arch].elements + CATALOG.variant_elements(variant):
        assert element in plan.elements
    assert len(set(plan.elements)) == len(plan.elements)
    assert plan.env["DIB_RELEASE"] == release
    assert plan.env["DIB_DISTRIBUTION_MIRROR"] == rel.mirrors[arch]
    assert plan.identity.name == CATALOG.image_name(release=release, variant=variant, arch=arch)
    wanted = {CATALOG.site_kinds[CATALOG.sites[s].kind].disk_format for s in plan.sites}
    assert set(plan.formats) == wanted
    for site_name in plan.sites:
        for element in CATALOG.site_kinds[CATALOG.sites[site_name].kind].elements:
            assert element in plan.elements
    assert plan.properties["build-release"] == release
    assert plan.properties["build-timestamp"] == "1700000000"
    assert {s.name for s in plan.sources} == set(CATALOG.variant_sources(variant))
    cuda = CATALOG.variants["gpu"].cuda.releases.get(release)
    if variant == "gpu" and cuda:
        assert plan.env["DIB_SAGE_CUDA_VERSION"] == plan.properties["build-cuda-version"] \
            == cuda.version
        assert plan.boot_cmdline.endswith(" pci=realloc=off")
    elif variant == "gpu":  # no CUDA version stated for the release: the build refuses
        assert plan.cuda.version is None and "DIB_SAGE_CUDA_VERSION" not in plan.env
        assert "build-cuda-version" not in plan.properties
    else:
        assert plan.cuda is None and "pci=realloc" not in plan.boot_cmdline
    for key, value in plan.properties.items():  # cc-snapshot splits on commas, drops spaces
        assert not any(c in value for c in ", \t\n"), (key, value)


@pytest.mark.parametrize("release,cuda,driver", [("bookworm", "11.8", "535"),
                                                 ("trixie", "12.4", "550"),
                                                 ("jammy", "12.4", "550")])
def test_gpu_plan_has_the_releases_own_cuda(release, cuda, driver):
    plan = plan_build(CATALOG, BuildRequest(release=release, variant="gpu"))
    assert (plan.cuda.version, plan.cuda.driver) == (cuda, driver)
    assert plan.properties["build-cuda-version"] == cuda
    assert plan.properties["build-nvidia-driver"] == driver
    assert plan.env["DIB_SAGE_CUDA_VERSION"] == cuda and plan.env["DIB_SAGE_CUDA_DRIVER"] == driver
    assert plan.env["DIB_SAGE_CUDA_CMDLINE"] == "pci=realloc=off"
    assert plan.boot_cmdline.split()[-1] == "pci=realloc=off"


def test_the_cuda_image_gets_room_for_its_file_systems_overhead():
    """~8 GiB of CUDA content: 512 MiB could not even hold its inode tables (a real gpu build
    failed with "No space left on device" copying the root in)."""
    extra = {v: plan_build(CATALOG, BuildRequest(release="bookworm", variant=v))
             .env["DIB_IMAGE_EXTRA_SIZE"] for v in ("base", "sage", "gpu")}
    # sage: room for sage-node's Docker images and RabbitMQ's free-disk floor
    assert extra == {"base": "512", "sage": "1024", "gpu": "1536"}


def test_gpu_build_without_a_cuda_version_is_refused_before_building():
    from sage_image.builder import preflight
    from sage_image.errors import PreflightError

    plan = plan_build(CATALOG, BuildRequest(release="noble", variant="gpu"))
    with pytest.raises(PreflightError, match="no CUDA version for release noble") as info:
        preflight.check_cuda(plan)
    assert "variants.gpu.cuda.releases.noble" in (info.value.hint or "")
    preflight.check_cuda(plan_build(CATALOG, BuildRequest(release="bookworm", variant="gpu")))
    preflight.check_cuda(plan_build(CATALOG, BuildRequest(release="noble", variant="sage")))


def test_sage_bookworm_plan_in_detail(catalog):
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="sage"))
    assert plan.identity.name == "Sage-VirtualWaggle-Debian12"
    assert plan.elements == ("debian-minimal", "vm", "block-device-efi", "chameleon-common",
                             "sage", "chi", "kvm", "pinned-sources", "build-artifacts")
    assert plan.formats == ("qcow2", "raw")  # bare metal wants qcow2, KVM@TACC raw
    assert plan.env["DIB_DEBIAN_SECURITY_MIRROR"] == "http://deb.debian.org/debian-security"
    assert "NoCloud" in plan.env["DIB_CLOUD_INIT_DATASOURCES"]
    assert [s.path for s in plan.sources] == ["/opt/cc-snapshot", "/opt/virtual-waggle",
                                             "/opt/beehive-server", "/opt/edge-plugins",
                                             "/opt/sage-ecr", "/opt/wes-data-sharing-service"]


def test_block_device_config_is_made_from_the_catalog_layout(catalog):
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="base"))
    config = yaml.safe_load(plan.env["DIB_BLOCK_DEVICE_CONFIG"])
    table = config[1]["partitioning"]
    assert config[0] == {"local_loop": {"name": "image0"}} and table["label"] == "gpt"
    assert [(p["name"], p["type"], p["size"]) for p in table["partitions"]] == [
        ("ESP", "EF00", "550MiB"), ("BSP", "EF02", "8MiB"), ("root", "8300", "100%")]
    assert table["partitions"][0]["mkfs"]["mount"]["mount_point"] == "/boot/efi"
    assert "mkfs" not in table["partitions"][1]  # GRUB's core image lives there, no filesystem
    assert plan.layout is not None and plan.layout.name == "hybrid"


def test_mbr_layout_config_matches_dibs_own_default(catalog):
    from sage_image.builder.plan import block_device_config
    table = yaml.safe_load(block_device_config(catalog.layouts["mbr"]))[1]["partitioning"]
    assert table["label"] == "mbr"
    assert table["partitions"] == [{"name": "root", "flags": ["boot", "primary"], "size": "100%",
                                    "mkfs": {"type": "ext4", "mount": {
                                        "mount_point": "/", "fstab": {"options": "defaults",
                                                                      "fsck-passno": 1}}}}]


def test_kvm_build_targets_kvm_sites_and_raw(catalog):
    plan = plan_build(catalog, BuildRequest(release="jammy", variant="base", kvm=True))
    assert plan.sites == ("KVM@TACC",) and plan.formats == ("raw",)
    assert "kvm" in plan.elements and "chi" not in plan.elements


def test_arm64_uses_uefi_layout_and_ports_mirror(catalog):
    plan = plan_build(catalog, BuildRequest(release="jammy", variant="sage", arch="arm64"))
    assert "block-device-efi" in plan.elements and plan.dib_arch == "arm64"
    assert plan.layout is not None and plan.layout.firmware == ("uefi",)
    assert plan.mirror == "http://ports.ubuntu.com/ubuntu-ports"
    assert plan.identity.name.endswith("-ARM64") and "KVM@TACC" not in plan.sites


def test_source_override_replaces_url_and_commit(catalog):
    plan = plan_build(catalog, BuildRequest(
        release="bookworm", variant="sage",
        source_overrides=(SourceOverride("waggle-node", "/srv/vw", "abc123"),)))
    vw = next(s for s in plan.sources if s.name == "waggle-node")
    assert (vw.url, vw.commit, vw.overridden) == ("/srv/vw", "abc123", True)
    assert vw.pinned == catalog.sources["waggle-node"].commit


REFUSED = [
    (dict(release="bionc", variant="sage"), "unknown release 'bionc' (did you mean 'bionic'?)"),
    (dict(release="jammy", variant="sgae"), "unknown variant 'sgae' (did you mean 'sage'?)"),
    (dict(release="jammy", variant="sage", arch="ppc64"), "unknown arch 'ppc64'"),
    (dict(release="jammy", variant="sage", sites=("CHI@XYZ",)), "unknown site 'CHI@XYZ'"),
    (dict(release="jammy", variant="sage", arch="arm64", sites=("CHI@NCAR",)),
     "site CHI@NCAR has no arm64 nodes"),
    (dict(release="jammy", variant="gpu", arch="arm64"), "variant gpu is not built for arm64"),
    (dict(release="jammy", variant="sage", arch="arm64", kvm=True), "no catalog site carries arm64 on KVM"),
    (dict(release="jammy", variant="sage", sites=("CHI@UC",), kvm=True), "either --site or --kvm"),
    (dict(release="jammy", variant="sage", admin_user="ops"), "--admin-user needs --admin-keys"),
    (dict(release="jammy", variant="sage", compression="lzma"), "unknown compression 'lzma'"),
    (dict(release="jammy", variant="sage", source_overrides=(SourceOverride("waggle", "/x"),)),
     "unknown source 'waggle' (did you mean 'waggle-node'?)"),
    (dict(release="jammy", variant="base", source_overrides=(SourceOverride("waggle-node", "/x"),)),
     "variant base does not use 'waggle-node'"),
]


@pytest.mark.parametrize("fields,expected", REFUSED, ids=[r[1][:40] for r in REFUSED])
def test_refused_requests_say_why(catalog, fields, expected):
    with pytest.raises(UsageError) as info:
        plan_build(catalog, BuildRequest(**fields))
    assert expected in info.value.message
    assert info.value.exit_code == 2


def test_unknown_names_list_the_valid_ones(catalog):
    with pytest.raises(UsageError, match="valid: bionic, focal, jammy, noble, resolute, bookworm, trixie"):
        plan_build(catalog, BuildRequest(release="xenial", variant="sage"))


@pytest.mark.parametrize("text,expected", [
    ("waggle-node=/srv/vw", SourceOverride("waggle-node", "/srv/vw")),
    ("waggle-node=/srv/vw@abc", SourceOverride("waggle-node", "/srv/vw", "abc")),
    ("x=https://github.com/a/b@v1.2", SourceOverride("x", "https://github.com/a/b", "v1.2")),
    ("x=git@github.com:a/b", SourceOverride("x", "git@github.com:a/b")),
    ("x=ssh://git@host/a/b@deadbeef", SourceOverride("x", "ssh://git@host/a/b", "deadbeef")),
])
def test_parse_source_override(text, expected):
    assert parse_source_override(text) == expected


@pytest.mark.parametrize("text", ["waggle-node", "=/x", "x="])
def test_parse_source_override_refuses_malformed(text):
    with pytest.raises(UsageError, match="expected NAME=URL_OR_PATH"):
        parse_source_override(text)


def _with_ntp(catalog_text: str, write_catalog, servers: dict[str, str]):
    for cloud, value in servers.items():
        old = f"    cloud: {cloud}"
        start = catalog_text.index(old)
        at = catalog_text.index("    ntp: []\n", start)
        catalog_text = catalog_text[:at] + f"    ntp: {value}\n" + catalog_text[at + 12:]
    return load_catalog(write_catalog(catalog_text))


def test_ntp_servers_of_every_target_site_and_the_pool_only_when_a_site_has_none(
        catalog_text, write_catalog):
    catalog = _with_ntp(catalog_text, write_catalog, {
        "chi-uc": "[ntp1.uc.example, ntp2.uc.example]", "chi-tacc": "[ntp.tacc.example]",
        "kvm-tacc": "[ntp.tacc.example]"})
    both = plan_build(catalog, BuildRequest(release="bookworm", variant="base",
                                            sites=("CHI@UC", "KVM@TACC", "CHI@TACC")))
    assert both.ntp_servers == ("ntp1.uc.example", "ntp2.uc.example", "ntp.tacc.example")
    assert not both.ntp_pool and both.env["DIB_CC_NTP_POOL"] == "0"
    assert both.env["DIB_CC_NTP_SERVERS"] == "ntp1.uc.example ntp2.uc.example ntp.tacc.example"
    # CHI@NCAR has no servers of its own: the distribution's pool stays
    every = plan_build(catalog, BuildRequest(release="bookworm", variant="base"))
    assert every.ntp_pool and "ntp.tacc.example" in every.ntp_servers


def test_default_catalog_ntp_is_the_pool(catalog):
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="base"))
    assert plan.ntp_servers == () and plan.ntp_pool
    assert plan.env["DIB_CC_NTP_SERVERS"] == "" and plan.env["DIB_CC_NTP_POOL"] == "1"


def test_firewall_rules_for_every_kind_even_for_one_site(catalog):
    """One build per image: the image decides at boot, so it carries every kind's rule."""
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="base", sites=("CHI@UC",)))
    assert plan.env["DIB_CC_FIREWALL"] == "baremetal:none:on kvm:vm:off"
    assert {(r.kind, r.virt, r.enabled) for r in plan.firewall} == {
        ("baremetal", "none", True), ("kvm", "vm", False)}


def test_serial_autologin_by_default_and_admin_uid(catalog, tmp_path):
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="base"))
    assert plan.env["DIB_CC_SERIAL_AUTOLOGIN"] == "1" and "DIB_CC_ADMIN_USER" not in plan.env
    off = plan_build(catalog, BuildRequest(release="bookworm", variant="base",
                                           serial_autologin=False))
    assert off.env["DIB_CC_SERIAL_AUTOLOGIN"] == "0"
    keys = tmp_path / "keys.pub"
    keys.write_text("ssh-ed25519 AAAA admin\n")
    admin = plan_build(catalog, BuildRequest(release="bookworm", variant="base",
                                             admin_user="ccadmin", admin_keys=keys))
    assert admin.env["DIB_CC_ADMIN_USER"] == "ccadmin" and admin.env["DIB_CC_ADMIN_UID"] == "1010"


def test_provenance_values_survive_cc_snapshots_parser(catalog):
    """cc-snapshot deletes whitespace and braces and splits on commas: no value may hold one."""
    import re

    from sage_image.builder.build import _final_properties
    from sage_image.builder.sources import FetchedSource
    plan = plan_build(catalog, BuildRequest(release="bookworm", variant="sage",
                                            timestamp=1700000000))
    fetched = tuple(FetchedSource(name=s.name, url=s.url, commit=c * 40, pinned=s.pinned,
                                  path=s.path, stand_in=c in "ab")
                    for s, c in zip(plan.sources, "abcdef", strict=True))
    properties = _final_properties(plan, fetched)
    assert properties["build-source-cc-snapshot"] == "a" * 40
    assert properties["build-stand-ins"] == "cc-snapshot+waggle-node"
    assert [k for k, v in properties.items() if re.search(r"[\s,{}]", v)] == []


def test_the_boot_command_line_names_the_arch_s_own_serial_console():
    """The manifest records the console the image's kernel uses: ttyAMA0 on ARM servers."""
    for arch, console in (("amd64", "console=ttyS0,115200"), ("arm64", "console=ttyAMA0,115200")):
        plan = plan_build(CATALOG, BuildRequest(release="bookworm", variant="base", arch=arch))
        assert console in plan.boot_cmdline.split(), plan.boot_cmdline
