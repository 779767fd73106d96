"""The catalog loads, and every kind of mistake in it is reported with file, line and setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sage_image.catalog import load_catalog
from sage_image.catalog.commands import catalog_images
from sage_image.errors import ConfigError


def test_default_catalog_defines_the_expected_matrix(catalog):
    assert set(catalog.releases) == {"bionic", "focal", "jammy", "noble", "resolute", "bookworm",
                                     "trixie"}
    assert set(catalog.variants) == {"base", "sage", "gpu"}
    assert set(catalog.sites) == {"CHI@UC", "CHI@TACC", "KVM@TACC", "CHI@NCAR"}
    names = {i["name"] for i in catalog_images(catalog)}
    assert {"CC-Ubuntu22.04", "Sage-VirtualWaggle-Ubuntu22.04",
            "Sage-VirtualWaggle-Ubuntu22.04-CUDA", "CC-Ubuntu22.04-ARM64",
            "CC-Debian12", "Sage-VirtualWaggle-Debian12"} <= names
    # gpu is amd64-only: no CUDA image for arm64
    assert "Sage-VirtualWaggle-Ubuntu22.04-CUDA-ARM64" not in names


def test_variant_inherits_elements_sources_and_checks(catalog):
    assert catalog.variant_elements("gpu") == ("chameleon-common", "sage", "gpu")
    assert "cc-snapshot" in catalog.variant_sources("sage")
    assert "waggle-node" in catalog.variant_sources("gpu")
    assert "cloud-init" in catalog.variant_checks("sage")
    assert "docker-run" not in catalog.variant_checks("base")


def test_amd64_is_chameleons_hybrid_layout_and_arm64_uefi_only(catalog):
    hybrid = catalog.layouts[catalog.arches["amd64"].layout]
    assert hybrid.label == "gpt" and hybrid.firmware == ("bios", "uefi")
    assert [(p.role, p.size, p.fs, p.mount) for p in hybrid.partitions] == [
        ("esp", "550MiB", "vfat", "/boot/efi"), ("bios-boot", "8MiB", None, None),
        ("root", "100%", "ext4", "/")]
    assert hybrid.hw_firmware_type is None  # a hybrid image claims neither firmware
    uefi = catalog.layouts[catalog.arches["arm64"].layout]
    assert uefi.firmware == ("uefi",) and uefi.hw_firmware_type == "uefi"
    assert "bios-boot" not in {p.role for p in uefi.partitions}


def test_every_source_is_pinned_to_a_full_commit(catalog):
    for source in catalog.sources.values():
        assert len(source.commit) == 40 and source.path.startswith("/opt/")


def test_a_new_site_is_a_yaml_edit(catalog_text, write_catalog):
    text = catalog_text.replace("sites:\n", "sites:\n  CHI@Edge:\n    kind: baremetal\n"
                                "    cloud: chi-edge\n    arches: [arm64]\n", 1)
    catalog = load_catalog(write_catalog(text))
    assert catalog.sites["CHI@Edge"].arches == ("arm64",)
    assert any("CHI@Edge" in i["sites"] for i in catalog_images(catalog))


BROKEN = [
    # (replace this, with this, the error must contain)
    ("elements: [sage]", "elements: [virtual-wagle]",
     "variants.sage.elements[0]: unknown element 'virtual-wagle'"),
    ("commit: 09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94", "commit: main",
     "sources.waggle-node.commit: pin a full 40-character commit id"),
    ("    kind: kvm\n", "    kind: kvmm\n", "sites.KVM@TACC.kind: unknown site kind 'kvmm' (did you mean 'kvm'?)"),
    ("    parent: base\n", "    parent: bsae\n", "variants.sage.parent: unknown variant 'bsae'"),
    ("family: debian", "family: fedora", "releases.bookworm.family: unknown family 'fedora'"),
    ('name: "CC-{os}{arch_suffix}"', 'name: "CC-{distro}"', "variants.base.name: bad name template"),
    ("    disk_format: raw", "    disk_format: vmdk", "site_kinds.kvm.disk_format: unknown disk format"),
    ("  compression: zlib\n", "  compresion: zlib\n", "builder: missing required setting 'compression'"),
    ("  compression: zlib\n", "  compression: zlib\n  colour: red\n", "builder.colour: unknown setting 'colour'"),
    ("    path: /opt/sage-ecr", "    path: opt/sage-ecr", "sources.sage-ecr.path: expected an absolute path"),
    ("schema: 1", "schema: 7", "schema: unsupported schema 7"),
    ("    image_extra_mb: 1536\n", "    image_extra_mb: lots\n",
     "variants.gpu.image_extra_mb: expected a whole number, got 'lots'"),
    ("    virt: vm\n", "    virt: kvm\n", "site_kinds.kvm.virt: unknown virt 'kvm'"),
    ("    min_free_gb: 25\n", "    min_free_gb: 2.5\n",
     "variants.gpu.min_free_gb: expected a whole number, got 2.5"),
    ("    min_free_gb: 25\n", "    min_free_gb: lots\n",
     "variants.gpu.min_free_gb: expected a whole number, got 'lots'"),
    ('    security_mirror: "http://deb.debian.org/debian-security"\n    # DIB',
     '    security_mirror: "deb.debian.org/debian-security"\n    # DIB',
     "releases.bookworm.security_mirror: expected an http(s) URL"),
    ('    suffix: "-ARM64"', '    suffix: " ARM 64"',
     "arches.arm64.suffix: expected letters, digits and '-'"),
    ('    console: "ttyAMA0,115200"', '    console: "AMA0 fast"',
     "arches.arm64.console: expected a serial console like ttyS0,115200"),
    ("    firewall: true\n", "    firewall: yes please\n",
     "site_kinds.baremetal.firewall: expected true or false"),
    ("    cloud: chi-ncar\n    arches: [amd64]\n    ntp: []\n",
     "    cloud: chi-ncar\n    arches: [amd64]\n    ntp: [\"ntp one.example\"]\n",
     "sites.CHI@NCAR.ntp[0]: expected a host name or address"),
    ("    elements: [vm]\n    layout: hybrid", "    elements: [vm, block-device-mbr]\n    layout: hybrid",
     "arches.amd64.elements[1]: 'block-device-mbr' comes from the layout"),
    ("    layout: hybrid", "    layout: hybird", "arches.amd64.layout: unknown layout 'hybird'"),
    ("      - {name: BSP, role: bios-boot, size: 8MiB}\n", "",
     "layouts.hybrid.firmware: bios boot needs a 'bios-boot' partition"),
    ("{name: BSP, role: bios-boot, size: 8MiB}", "{name: BSP, role: bios-boot, size: 8MB}",
     "layouts.hybrid.partitions[1].size: expected a size like 550MiB"),
    ("{name: BSP, role: bios-boot, size: 8MiB}", "{name: BSP, role: bios-boot, size: 8MiB, fs: ext4}",
     "layouts.hybrid.partitions[1]: a partition has both 'fs' and 'mount', or neither"),
    ("    label: mbr\n    firmware: [bios]\n    partitions:\n",
     "    label: mbr\n    firmware: [bios]\n    partitions:\n      - {name: B, role: bios-boot, size: 8MiB}\n",
     "layouts.mbr.partitions[0].role: a bios-boot partition cannot be in an mbr table"),
    ("docker-socket,", "docker-sokcet,",
     "variants.sage.checks[1]: unknown check 'docker-sokcet' (did you mean 'docker-socket'?)"),
    ('mirrors: {amd64: "http://deb.debian.org/debian", arm64: "http://deb.debian.org/debian"}\n'
     '    security_mirror',
     'mirrors: {amd64: "ftp://x"}\n    security_mirror',
     "releases.bookworm.mirrors: missing required setting 'arm64'"),
    ('bookworm: {version: "11.8", driver: "535"}', 'bookworm: {version: "11.8.89", driver: "535"}',
     "variants.gpu.cuda.releases.bookworm.version: expected MAJOR.MINOR, got '11.8.89'"),
    ('bookworm: {version: "11.8", driver: "535"}', 'bookworm: {version: "11.8", driver: "r535"}',
     "variants.gpu.cuda.releases.bookworm.driver: expected a driver branch number"),
    ('bookworm: {version: "11.8", driver: "535"}', 'bookwrom: {version: "11.8", driver: "535"}',
     "variants.gpu.cuda.releases.bookwrom: unknown release 'bookwrom' (did you mean 'bookworm'?)"),
    ('bookworm: {version: "11.8", driver: "535"}', 'bookworm: {version: "11.8"}',
     "variants.gpu.cuda.releases.bookworm: missing required setting 'driver'"),
]


@pytest.mark.parametrize("old,new,expected", BROKEN, ids=[b[2].split(":")[0] for b in BROKEN])
def test_broken_catalog_names_file_line_and_setting(catalog_text, write_catalog, old, new, expected):
    assert old in catalog_text
    path = write_catalog(catalog_text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    message = info.value.message
    assert message.startswith("catalog.yaml:"), message
    line = int(message.split(":")[1])
    assert 1 <= line <= len(catalog_text.splitlines()) + 1
    assert expected in message


def test_error_line_points_at_the_bad_setting(catalog_text, write_catalog):
    path = write_catalog(catalog_text.replace("elements: [sage]", "elements: [virtual-wagle]"))
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    line = int(info.value.message.split(":")[1])
    assert "virtual-wagle" in path.read_text().splitlines()[line - 1]


def test_invalid_yaml_reports_line(write_catalog):
    with pytest.raises(ConfigError) as info:
        load_catalog(write_catalog("schema: 1\nbuilder: [unclosed\n"))
    assert "not valid YAML" in info.value.message and "catalog.yaml:" in info.value.message


def test_parent_cycle_is_refused(catalog_text, write_catalog):
    text = catalog_text.replace("  base:\n    description:", "  base:\n    parent: gpu\n    description:")
    with pytest.raises(ConfigError, match="parents form a cycle"):
        load_catalog(write_catalog(text))


def test_missing_catalog_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read catalog"):
        load_catalog(tmp_path / "nope.yaml")


def test_misspelt_check_fails_list_not_only_test(catalog_text, write_catalog, capsys):
    from sage_image.cli import main

    path = write_catalog(catalog_text.replace("docker-socket,", "docker-sokcet,", 1))
    assert main(["list", "--catalog", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown check 'docker-sokcet' (did you mean 'docker-socket'?)" in err[0], err
    assert not any("Traceback" in line for line in err)


def test_catalog_reads_the_check_names_the_test_stage_defines():
    from sage_image.boottest.checks.model import DEFAULT_CHECKS, load_checks
    from sage_image.catalog.model import check_definitions, known_checks

    # the boottest package's own data (importlib.resources), not a path the catalog computes
    assert Path(str(check_definitions())).resolve() == DEFAULT_CHECKS.resolve()
    assert known_checks() == tuple(load_checks())


def test_unreadable_check_definitions_fail_the_catalog_loudly(tmp_path, monkeypatch):
    from sage_image.catalog import model

    with pytest.raises(ConfigError, match="cannot read check definitions"):
        model.known_checks(tmp_path / "checks.yaml")
    (tmp_path / "checks.yaml").write_text("schema: 1\nchecks: [a, b]\n")
    with pytest.raises(ConfigError, match=r"checks.yaml:2: checks: expected a mapping"):
        model.known_checks(tmp_path / "checks.yaml")
    # the whole catalog is refused, never loaded with its checks unchecked
    monkeypatch.setattr(model, "CHECK_DEFINITIONS", ("sage_image.boottest.checks", "gone.yaml"))
    with pytest.raises(ConfigError, match="gone.yaml: cannot read check definitions"):
        load_catalog()
    monkeypatch.setattr(model, "CHECK_DEFINITIONS", ("sage_image.no_such_stage", "checks.yaml"))
    with pytest.raises(ConfigError, match="no package sage_image.no_such_stage"):
        load_catalog()


# -- the settings table: one declaration per key drives the reader, `list --settings` and the doc
def test_the_catalog_reference_doc_is_up_to_date():
    from sage_image.catalog.reference import DOC, REGENERATE, as_markdown, settings_rows

    doc = Path(__file__).parents[2] / DOC
    assert doc.read_text() == as_markdown(settings_rows()), \
        f"{DOC} is stale: regenerate it with `{REGENERATE}`"


def test_a_new_setting_is_one_field_declaration(catalog_text, write_catalog):
    """What another branch does to add a key: one field; the reader, its errors and the
    reference follow (and the doc above goes stale until it is regenerated)."""
    from dataclasses import dataclass

    from sage_image.catalog import model, reference
    from sage_image.settings import Named, Whole, read_document, setting
    from sage_image.settings import reference as settings_reference
    from sage_image.yamlfile import read_yaml

    @dataclass(frozen=True, kw_only=True)
    class Variant(model.Variant):
        max_nodes: int = setting(Whole(1), default=4, help="Instances of it per lease.")

    @dataclass(frozen=True, kw_only=True)
    class Catalog(model.Catalog):  # only to use the Variant above
        variants: dict = setting(Named(Variant), help="The images.")

    def read(text: str) -> Catalog:
        doc = read_yaml(write_catalog(text), what="catalog")
        return read_document(Catalog, doc, path=doc.path, document=doc)

    assert read(catalog_text).variants["sage"].max_nodes == 4
    text = catalog_text.replace("    min_free_gb: 10\n", "    min_free_gb: 10\n    max_nodes: 16\n")
    assert read(text).variants["sage"].max_nodes == 16
    with pytest.raises(ConfigError, match=r"catalog.yaml:\d+: variants.sage.max_nodes: expected a "
                                          r"whole number >= 1, got 0"):
        read(text.replace("max_nodes: 16", "max_nodes: 0"))
    with pytest.raises(ConfigError, match=r"variants.sage.max_nodse: unknown setting 'max_nodse' "
                                          r"\(did you mean 'max_nodes'\?\)"):
        read(text.replace("max_nodes: 16", "max_nodse: 16"))
    rows = {r.key: r for r in settings_reference(Catalog)}
    assert rows["variants.<name>.max_nodes"].default == "4"
    doc = Path(__file__).parents[2] / reference.DOC
    assert doc.read_text() != reference.as_markdown(list(rows.values()))


def test_list_settings_is_the_reference(capsys):
    from sage_image.cli import main

    assert main(["list", "--settings", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["variants.<name>.min_free_gb"] == {
        "key": "variants.<name>.min_free_gb", "takes": "a whole number", "required": False,
        "default": "6", "help": "Free disk space (GiB) a build of it needs before it starts."}
    assert rows["publish.prune.hide_after"]["default"] == "12mo"
    assert rows["ci.runners"]["required"] and rows["ci.runners"]["default"] is None
    assert main(["list", "--settings"]) == 0
    assert "sources.<name>.commit  (a full 40-character commit id; required)" in \
        capsys.readouterr().out
    assert main(["list", "--markdown"]) == 2
    assert "--markdown goes with --settings" in capsys.readouterr().err
