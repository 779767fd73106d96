"""The standard image metadata publish plans (publish/metadata.py, pure) and the catalog policy
it comes from - no cloud. Each value is checked against the build and catalog it comes from, and
each catalog mistake is refused naming the setting."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from sage_image.catalog.model import DEFAULT_CATALOG, load_catalog
from sage_image.errors import ConfigError, UsageError
from sage_image.outfolder import read_manifest
from sage_image.publish.metadata import (
    check_values,
    image_metadata,
    min_disk_gib,
    retirement,
)
from sage_image.publish.output import ImageFile
from sage_image.publish.site import SiteImage
from tests import contract
from tests.publish.conftest import build_output
from tests.publish.scs0102 import ImageView, problems

GIB = 1 << 30


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def edit_manifest(out: Path, **changes: object) -> None:
    contract.write_build(out, contract.replace(read_manifest(out), **changes))


def as_view(output, meta, *, file: ImageFile) -> ImageView:
    """The planned metadata as an image a cloud would show (what scs0102 checks)."""
    p = meta.properties
    return ImageView(name=output.identity.name, created_at="2030-01-01T00:00:00Z",
                     size=file.size, min_disk=meta.min_disk, min_ram=meta.min_ram,
                     architecture=p["architecture"], os_distro=p["os_distro"],
                     os_version=p["os_version"], hw_disk_bus=p["hw_disk_bus"],
                     hypervisor_type=p.get("hypervisor_type"), hw_rng_model=p.get("hw_rng_model"),
                     hash_algo="sha512", properties=dict(p))


def test_a_sage_build_at_each_site_kind(make_build, catalog):
    out = build_output(make_build("Sage-X", timestamp=1_700_000_000, variant="sage"))
    metal = image_metadata(out, catalog, file=out.files["qcow2"], site_kind="baremetal")
    kvm = image_metadata(out, catalog, file=out.files["raw"], site_kind="kvm")
    p = metal.properties
    commit = out.properties["build-repo-commit"]
    assert (metal.min_disk, metal.min_ram) == (1, catalog.variants["sage"].min_ram)
    assert {k: p[k] for k in ("architecture", "hw_architecture", "os_distro", "os_version",
                              "os_purpose", "image_original_user", "os_admin_user",
                              "image_build_date", "hw_disk_bus", "hw_rng_model")} == {
        "architecture": "x86_64", "hw_architecture": "x86_64", "os_distro": "debian",
        "os_version": "12", "os_purpose": "custom", "image_original_user": "cc",
        "os_admin_user": "cc", "image_build_date": "2023-11-14 22:13:20",
        "hw_disk_bus": "virtio", "hw_rng_model": "virtio"}
    assert p["image_source"] == f"https://example.invalid/sage-image-builder/tree/{commit}"
    assert p["image_description"].endswith(f"/blob/{commit}/README.md")
    assert (p["replace_frequency"], p["provided_until"], p["uuid_validity"],
            p["hotfix_hours"]) == ("monthly", "notice", "last-2", "0")
    # the hybrid BIOS+UEFI layout claims no firmware; only KVM sites name a hypervisor
    assert "hw_firmware_type" not in p and "hypervisor_type" not in p
    assert dict(kvm.properties) == {**p, "hypervisor_type": "kvm"}
    assert problems(as_view(out, metal, file=out.files["qcow2"]), now=2e9) == []


def test_purpose_memory_arch_and_firmware_come_from_the_build_and_catalog(make_build, catalog):
    base = build_output(make_build("CC-X", variant="base", arch="arm64", sites=("CHI@UC",)))
    meta = image_metadata(base, catalog, file=base.files["qcow2"], site_kind="baremetal")
    assert meta.properties["os_purpose"] == "generic"
    assert meta.properties["architecture"] == "aarch64"
    assert meta.properties["hw_firmware_type"] == "uefi"  # arm64's layout boots UEFI only
    changed = replace(catalog, variants={**catalog.variants, "base": replace(
        catalog.variants["base"], min_ram=3072, os_purpose="minimal")})
    meta = image_metadata(base, changed, file=base.files["qcow2"], site_kind="baremetal")
    assert (meta.min_ram, meta.properties["os_purpose"]) == (3072, "minimal")


def test_min_disk_is_the_virtual_size_rounded_up_to_gib():
    def file(virtual: int, size: int = 1000) -> ImageFile:
        return ImageFile(disk_format="qcow2", path=Path("x"), size=size, virtual_size=virtual,
                         sha512="", md5="", sha256="")

    assert min_disk_gib(file(GIB)) == 1
    assert min_disk_gib(file(GIB + 1)) == 2
    assert min_disk_gib(file(int(3.3 * GIB))) == 4
    assert min_disk_gib(file(10, size=int(1.5 * GIB))) == 2  # never less than the file
    assert min_disk_gib(file(10)) == 1


def test_a_build_outside_git_links_to_head_and_a_manifest_without_provenance_is_refused(make_build, catalog):
    out = make_build("Sage-X")
    manifest = read_manifest(out)
    edit_manifest(out, properties={**manifest.properties, "build-repo-commit": "unknown"})
    meta = image_metadata(build_output(out), catalog, file=build_output(out).files["raw"],
                          site_kind="kvm")
    assert meta.properties["image_source"].endswith("/tree/HEAD")
    # a manifest without the provenance the metadata is made from is no manifest at all
    for key in ("build-timestamp", "build-repo"):
        props = {k: v for k, v in manifest.properties.items() if k != key}
        data = msgspec.to_builtins(manifest) | {"properties": props}
        (out / "manifest.json").write_bytes(msgspec.json.encode(data))
        with pytest.raises(UsageError, match=f"properties: missing {key}"):
            build_output(out)


def test_a_variant_the_catalog_lacks_is_refused(make_build, catalog):
    with pytest.raises(UsageError, match="unknown variant 'mystery'"):
        build_output(make_build("X-X", variant="mystery", tested=None))


def test_a_value_longer_than_glance_keeps_is_refused():
    check_values({"a": "x" * 255}, where="W")
    with pytest.raises(UsageError, match="W: property b is 256 characters long"):
        check_values({"a": "x", "b": "y" * 256}, where="W")


def test_backdating_retires_a_generic_image_and_says_how_to_undo_it():
    def image(**props: str) -> SiteImage:
        return SiteImage(id="1", name="N", status="active", visibility="public", sha512=None,
                         size=1, created_at="", properties=props)

    retired = retirement(image(os_purpose="generic"))
    assert dict(retired.set_props) == {"os_purpose": "oldgeneric"}
    assert dict(retired.restore_props) == {"os_purpose": "generic"} and not retired.was_hidden
    for purpose in ("custom", "gpu"):  # only generic has an "old" purpose
        assert dict(retirement(image(os_purpose=purpose)).set_props) == {}
    assert dict(retirement(image()).set_props) == {}  # published by an older sage-image


# -- the catalog policy -------------------------------------------------------------------------

BROKEN = [
    ("replace_frequency: monthly", "replace_frequency: biweekly",
     "publish.metadata.replace_frequency: unknown replace_frequency 'biweekly'"),
    ("uuid_validity: last-2", "uuid_validity: last-3",
     "publish.metadata.uuid_validity: last-3 promises more replaced versions than prune keeps"),
    ("uuid_validity: last-2", "uuid_validity: a-while",
     "publish.metadata.uuid_validity: expected none, notice, forever, last-N or YYYY-MM-DD"),
    ("provided_until: notice", "provided_until: 2027/01/01",
     "publish.metadata.provided_until: expected YYYY-MM-DD, none or notice"),
    ('image_source: "{repo}/tree/{commit}"', 'image_source: "{repo}/tree/{sha}"',
     "publish.metadata.image_source: bad template"),
    ("hw_disk_bus: virtio", "hw_disk_bus: floppy", "publish.metadata.hw_disk_bus: unknown"),
    ("kvm: {hypervisor_type: kvm}", "kvm: {hypervisor_type: vmware}",
     "publish.metadata.site_kinds.kvm.hypervisor_type: unknown hypervisor_type 'vmware'"),
    ("kvm: {hypervisor_type: kvm}", "kvm: {os_purpose: gpu}",
     "publish.metadata.site_kinds.kvm.os_purpose: 'os_purpose' is the same at every site"),
    ("kvm: {hypervisor_type: kvm}", "kvmm: {hypervisor_type: kvm}",
     "publish.metadata.site_kinds.kvmm: unknown site kind 'kvmm' (did you mean 'kvm'?)"),
    ("hotfix_hours: 0", "hotfix_hours: soon", "publish.metadata.hotfix_hours: expected a whole number"),
    ("  properties: {}", "  properties: {os_purpose: generic}",
     "publish.properties.os_purpose: 'os_purpose' is set by publish itself"),
    ("  container: sage-images", "  container: sage/images",
     "publish.container: expected a Swift container name"),
    ("    os_purpose: custom", "    os_purpose: appliance",
     "variants.sage.os_purpose: unknown os_purpose 'appliance'"),
    ("    os_purpose: generic", "    os_purpose: oldgeneric",
     "variants.base.os_purpose: unknown os_purpose 'oldgeneric'"),
    ("    os_purpose: custom   # an appliance: none of the standard's other purposes\n"
     "    min_ram: 512", "    os_purpose: custom\n    min_ram: 32",
     "variants.sage.min_ram: expected 64..1048576, got 32"),
    ("    os_purpose: gpu\n", "", "variants.gpu: missing required setting 'os_purpose'"),
]


@pytest.mark.parametrize("old,new,expected", BROKEN, ids=[b[2].split(":")[0] for b in BROKEN])
def test_a_broken_metadata_policy_is_refused_naming_the_setting(tmp_path, old, new, expected):
    text = DEFAULT_CATALOG.read_text()
    assert old in text
    path = tmp_path / "catalog.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert info.value.message.startswith("catalog.yaml:") and expected in info.value.message


def test_the_shipped_policy(catalog):
    assert {n: (v.os_purpose, v.min_ram) for n, v in catalog.variants.items()} == {
        "base": ("generic", 512), "sage": ("custom", 512), "gpu": ("gpu", 2048)}
    assert catalog.publish.container == "sage-images"
    assert dict(catalog.publish.metadata.site_kinds) == {"kvm": {"hypervisor_type": "kvm"}}
