"""Pure planning: from the catalog and a request to exactly what diskimage-builder will do.

Nothing here touches the disk, the network or the clock (the timestamp is an input), so every
release x variant x arch x site combination can be planned - and tested - in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from .. import __version__
from ..catalog import Catalog, Release, Source
from ..catalog.model import PARTITION_ROLES, Layout, PythonEnv
from ..errors import UsageError
from ..outfolder import ImageIdentity
from ..values import did_you_mean

# Elements sage-image itself adds to every build (see their READMEs in sage_image/elements).
BUILDER_ELEMENTS = ("build-artifacts",)
SOURCES_ELEMENT = "pinned-sources"
LAYER_ELEMENT = "layer-export"
ROOT_LABEL = "cloudimg-rootfs"
# Chameleon's admin account (ImageDefs.md): name and uid/gid, when an admin user is asked for.
ADMIN_USER = "ccadmin"
ADMIN_UID = 1010
BOOT_ARGS = f"root=LABEL={ROOT_LABEL} ro"
# Chameleon's CUDA images boot with this (CC-Images ImageDefs.md): the gpu element adds it to
# GRUB's command line, and the boot test's direct kernel boot uses it too.
CUDA_CMDLINE = "pci=realloc=off"


@dataclass(frozen=True)
class SourceOverride:
    """``--source NAME=URL_OR_PATH[@COMMIT]``: fetch NAME from elsewhere (air-gapped, tests)."""

    name: str
    url: str
    commit: str | None = None


@dataclass(frozen=True)
class BuildRequest:
    release: str
    variant: str
    arch: str = "amd64"
    sites: tuple[str, ...] = ()  # empty: every site that carries the arch
    kvm: bool = False  # the seed's --kvm: target the catalog's KVM sites
    out_dir: Path | None = None
    source_overrides: tuple[SourceOverride, ...] = ()
    compression: str | None = None  # default: the catalog's
    admin_user: str | None = None
    admin_keys: Path | None = None
    serial_autologin: bool = True  # Chameleon requires it; --no-serial-autologin opts out
    timestamp: int = 0  # Unix seconds: build-timestamp
    builder_commit: str = "unknown"  # the sage-image source commit: build-repo-commit
    from_layer: Path | None = None  # start from the parent variant's saved root (layered build)
    save_layer: Path | None = None  # save this build's root for its child variants
    layer_only: bool = False  # only the layer is wanted (a parent no one asked to publish)
    pip_index_url: str | None = None  # the Python package index (default: the catalog's)


@dataclass(frozen=True)
class PlannedSource:
    name: str
    url: str
    commit: str | None  # None: the override's default branch, resolved when fetched
    pinned: str  # the catalog's commit
    path: str  # destination in the image
    overridden: bool


@dataclass(frozen=True)
class PlannedPython:
    """The variant's Python tools: a venv installed from the release's hash-pinned lock."""

    venv: str
    index_url: str
    lock: Path | None  # None: the catalog has no lock for this release (the build refuses)
    python: str | None  # the release's Python version the lock was made for


@dataclass(frozen=True)
class PlannedCuda:
    """The variant's NVIDIA driver and CUDA toolkit for this release."""

    version: str | None  # None: the catalog has no CUDA version for this release (build refuses)
    driver: str | None


@dataclass(frozen=True)
class FirewallRule:
    """At boot the image finds its site kind by `virt` and turns the firewall on or off."""

    kind: str
    virt: str
    enabled: bool


@dataclass(frozen=True)
class BuildPlan:
    identity: ImageIdentity  # what the manifest names: image name, release, variant, arch, OS
    dib_arch: str
    qemu_arch: str
    sites: tuple[str, ...]
    elements: tuple[str, ...]
    env: Mapping[str, str]
    formats: tuple[str, ...]
    compression: str
    sources: tuple[PlannedSource, ...]
    properties: Mapping[str, str]
    checks: tuple[str, ...]
    min_free_gb: int
    mirror: str
    out_dir: Path
    admin_keys: Path | None = None
    from_layer: Path | None = None
    save_layer: Path | None = None
    layer_only: bool = False
    python: PlannedPython | None = None
    node_python: PlannedPython | None = None   # sage-node's venv (variants.*.node_python)
    cuda: PlannedCuda | None = None
    boot_cmdline: str = f"{BOOT_ARGS} console=ttyS0,115200"
    layout: Layout | None = None
    warnings: tuple[str, ...] = field(default=())
    ntp_servers: tuple[str, ...] = ()  # every target site's servers, in catalog order
    ntp_pool: bool = True  # a target site has no servers of its own: the distribution's pool
    firewall: tuple[FirewallRule, ...] = ()


def plan_build(catalog: Catalog, request: BuildRequest) -> BuildPlan:
    """Validate the request against the catalog and compute the whole build."""
    release, variant, arch = _validate_names(catalog, request)
    sites = _target_sites(catalog, request)
    kinds = sorted({catalog.sites[s].kind for s in sites})
    site_elements = tuple(dict.fromkeys(e for k in kinds for e in catalog.site_kinds[k].elements))
    sources = _plan_sources(catalog, request)
    layout = catalog.layouts[catalog.arches[arch].layout]
    elements = tuple(dict.fromkeys(
        (release.element,) + catalog.arches[arch].elements + (layout.element,)
        + catalog.variant_elements(variant)
        + site_elements + ((SOURCES_ELEMENT,) if sources else ()) + BUILDER_ELEMENTS
        + ((LAYER_ELEMENT,) if request.save_layer else ())
        + (("no-final-image",) if request.layer_only else ())))
    name = catalog.image_name(release=release.name, variant=variant, arch=arch)
    compression = request.compression or catalog.builder.compression
    if compression not in ("zlib", "zstd"):
        raise UsageError(f"unknown compression '{compression}' (known: zlib, zstd)")
    ntp_servers, ntp_pool = _ntp(catalog, sites)
    cuda = _plan_cuda(catalog, request)
    firewall = tuple(FirewallRule(kind=k.name, virt=k.virt, enabled=k.firewall)
                     for k in catalog.site_kinds.values())
    return BuildPlan(
        identity=ImageIdentity(name=name, release=release.name, variant=variant, arch=arch,
                               family=release.family, os_version=release.version),
        dib_arch=catalog.arches[arch].dib_arch,
        qemu_arch=catalog.arches[arch].qemu_arch, sites=sites, elements=elements,
        env=MappingProxyType(_dib_env(catalog, request, release)
                             | _runtime_env(ntp_servers, ntp_pool, firewall)
                             | {"DIB_BLOCK_DEVICE_CONFIG": block_device_config(layout)}),
        formats=tuple(sorted({catalog.site_kinds[k].disk_format for k in kinds})),
        compression=compression, sources=sources,
        properties=MappingProxyType(_properties(catalog, request, name, release)
                                    | _cuda_properties(cuda)),
        checks=catalog.variant_checks(variant),
        min_free_gb=max(v.min_free_gb for v in catalog.variant_chain(variant)),
        mirror=release.mirrors[arch],
        out_dir=request.out_dir or Path("out") / f"{release.name}-{variant}-{arch}",
        admin_keys=request.admin_keys, from_layer=request.from_layer,
        save_layer=request.save_layer, layer_only=request.layer_only, layout=layout,
        python=_plan_python(catalog.variant_python(request.variant), request),
        node_python=_plan_python(catalog.variant_node_python(request.variant), request),
        cuda=cuda,
        boot_cmdline=f"{BOOT_ARGS} console={catalog.arches[arch].console}"
                     + (f" {CUDA_CMDLINE}" if cuda else ""),
        ntp_servers=ntp_servers, ntp_pool=ntp_pool, firewall=firewall,
    )


def _ntp(catalog: Catalog, sites: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """One image serves all its target sites: chrony gets every site's servers (it uses those
    that answer), plus the distribution's pool when a site has none of its own."""
    servers = tuple(dict.fromkeys(n for s in sites for n in catalog.sites[s].ntp))
    return servers, any(not catalog.sites[s].ntp for s in sites)


def _runtime_env(ntp_servers: tuple[str, ...], ntp_pool: bool,
                 firewall: tuple[FirewallRule, ...]) -> dict[str, str]:
    """What the image decides at boot, as data for the chameleon-common element."""
    return {
        "DIB_CC_NTP_SERVERS": " ".join(ntp_servers),
        "DIB_CC_NTP_POOL": "1" if ntp_pool else "0",
        # "KIND:VIRT:on|off ..." - every kind, so the image is right wherever it boots
        "DIB_CC_FIREWALL": " ".join(f"{r.kind}:{r.virt}:{'on' if r.enabled else 'off'}"
                                    for r in firewall),
    }


def _plan_python(env: PythonEnv | None, request: BuildRequest) -> PlannedPython | None:
    if env is None:
        return None
    lock = env.locks.get(request.release)
    return PlannedPython(venv=env.venv, index_url=request.pip_index_url or env.index_url,
                         lock=lock.file if lock else None, python=lock.python if lock else None)


def _plan_cuda(catalog: Catalog, request: BuildRequest) -> PlannedCuda | None:
    for variant in catalog.variant_chain(request.variant):
        if variant.cuda:
            per = variant.cuda.releases.get(request.release)
            return PlannedCuda(version=per.version if per else None,
                               driver=per.driver if per else None)
    return None


def _cuda_properties(cuda: PlannedCuda | None) -> dict[str, str]:
    if cuda is None or cuda.version is None or cuda.driver is None:
        return {}
    return {"build-cuda-version": cuda.version, "build-nvidia-driver": cuda.driver}


def block_device_config(layout: Layout) -> str:
    """diskimage-builder's block-device YAML for a catalog layout (the shape of its own
    block-device-efi / -mbr defaults, so its fstab and bootloader steps see what they expect)."""
    partitions = []
    for part in layout.partitions:
        entry: dict[str, object] = {"name": part.name}
        if layout.label == "gpt":
            entry["type"] = PARTITION_ROLES[part.role]["gpt"][0]  # type: ignore[index]
        elif part.mount == "/":
            entry["flags"] = ["boot", "primary"]
        else:
            entry["type"] = "0x" + PARTITION_ROLES[part.role]["mbr"][0]  # type: ignore[index]
        entry["size"] = part.size
        if part.fs:
            entry["mkfs"] = {"type": part.fs, "mount": {
                "mount_point": part.mount,
                "fstab": {"options": "defaults", "fsck-passno": 1 if part.mount == "/" else 2}}}
        partitions.append(entry)
    config = [{"local_loop": {"name": "image0"}},
              {"partitioning": {"base": "image0", "label": layout.label,
                                "partitions": partitions}}]
    # One line (flow style): it is an environment variable, shown by `sage-image plan`.
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=True,
                          width=1 << 16).strip()


def _validate_names(catalog: Catalog, request: BuildRequest) -> tuple[Release, str, str]:
    for value, known, what in ((request.release, catalog.releases, "release"),
                               (request.variant, catalog.variants, "variant"),
                               (request.arch, catalog.arches, "arch")):
        if value not in known:
            raise UsageError(f"unknown {what} '{value}'{did_you_mean(value, known)}"
                             f" (valid: {', '.join(known)})")
    release = catalog.releases[request.release]
    if request.arch not in release.arches:
        raise UsageError(f"release {release.name} is not built for {request.arch}"
                         f" (catalog allows: {', '.join(release.arches)})")
    allowed = catalog.variant_arches(request.variant)
    if request.arch not in allowed:
        raise UsageError(f"variant {request.variant} is not built for {request.arch}"
                         f" (catalog allows: {', '.join(allowed)})")
    if request.from_layer and request.variant and not catalog.variants[request.variant].parent:
        raise UsageError(f"--from-layer: variant {request.variant} has no parent variant to "
                         "start from")
    if request.layer_only and not request.save_layer:
        raise UsageError("--layer-only needs --save-layer FILE")
    if request.admin_user and not request.admin_keys:
        raise UsageError("--admin-user needs --admin-keys FILE (its SSH public keys)")
    return release, request.variant, request.arch


def _target_sites(catalog: Catalog, request: BuildRequest) -> tuple[str, ...]:
    if request.sites and request.kvm:
        raise UsageError("give either --site or --kvm, not both")
    for site in request.sites:
        if site not in catalog.sites:
            raise UsageError(f"unknown site '{site}'{did_you_mean(site, catalog.sites)}"
                             f" (valid: {', '.join(catalog.sites)})")
        if request.arch not in catalog.sites[site].arches:
            raise UsageError(f"site {site} has no {request.arch} nodes"
                             f" (it carries: {', '.join(catalog.sites[site].arches)})")
    if request.sites:
        return tuple(dict.fromkeys(request.sites))
    sites = tuple(s.name for s in catalog.sites.values() if request.arch in s.arches
                  and (not request.kvm or catalog.site_kinds[s.kind].disk_format == "raw"))
    if not sites:
        raise UsageError(f"no catalog site carries {request.arch}" + (" on KVM" if request.kvm
                                                                        else ""))
    return sites


def _plan_sources(catalog: Catalog, request: BuildRequest) -> tuple[PlannedSource, ...]:
    wanted = catalog.variant_sources(request.variant)
    overrides = {o.name: o for o in request.source_overrides}
    for name in overrides:
        if name not in catalog.sources:
            raise UsageError(f"--source: unknown source '{name}'{did_you_mean(name, catalog.sources)}"
                             f" (valid: {', '.join(catalog.sources)})")
        if name not in wanted:
            raise UsageError(f"--source: variant {request.variant} does not use '{name}'"
                             f" (it uses: {', '.join(wanted) or 'none'})")
    return tuple(_planned_source(catalog.sources[n], overrides.get(n)) for n in wanted)


def _planned_source(source: Source, override: SourceOverride | None) -> PlannedSource:
    if override is None:
        return PlannedSource(name=source.name, url=source.url, commit=source.commit,
                             pinned=source.commit, path=source.path, overridden=False)
    return PlannedSource(name=source.name, url=override.url, commit=override.commit,
                         pinned=source.commit, path=source.path, overridden=True)


def _dib_env(catalog: Catalog, request: BuildRequest, release: Release) -> dict[str, str]:
    env = {
        "DIB_RELEASE": release.name,
        "DIB_DISTRIBUTION_MIRROR": release.mirrors[request.arch],
        "DIB_CLOUD_INIT_DATASOURCES": catalog.builder.cloud_init_datasources,
        "DIB_CC_SERIAL_AUTOLOGIN": "1" if request.serial_autologin else "0",
        # The root filesystem label the boot test (and Chameleon's own images) use.
        "ROOT_LABEL": ROOT_LABEL,
    }
    python = catalog.variant_python(request.variant)
    if python:
        env["DIB_SAGE_VENV"] = python.venv
        env["DIB_SAGE_PIP_INDEX_URL"] = request.pip_index_url or python.index_url
    node_python = catalog.variant_node_python(request.variant)
    if node_python:
        env["DIB_SAGE_NODE_VENV"] = node_python.venv
        env["DIB_SAGE_NODE_PIP_INDEX_URL"] = request.pip_index_url or node_python.index_url
    if release.security_mirror:
        env["DIB_DEBIAN_SECURITY_MIRROR"] = release.security_mirror
    if catalog.builder.image_size_gb:
        env["DIB_IMAGE_SIZE"] = str(catalog.builder.image_size_gb)
    else:
        env["DIB_IMAGE_EXTRA_SIZE"] = str(catalog.variant_image_extra_mb(request.variant))
    if request.admin_user:
        env["DIB_CC_ADMIN_USER"] = request.admin_user
        env["DIB_CC_ADMIN_UID"] = str(ADMIN_UID)
    for variant in catalog.variant_chain(request.variant):
        per = variant.cuda.releases.get(release.name) if variant.cuda else None
        if variant.cuda and per:
            cuda = variant.cuda
            env.update({
                "DIB_SAGE_CUDA_VERSION": per.version,
                "DIB_SAGE_CUDA_DRIVER": per.driver,
                "DIB_SAGE_CUDA_CMDLINE": CUDA_CMDLINE,
            })
            if release.family == "ubuntu":  # NVIDIA's repository
                env["DIB_SAGE_CUDA_REPO"] = cuda.ubuntu_repo.format(
                    version_nodot=release.version.replace(".", ""))
                env["DIB_SAGE_CUDA_KEYRING"] = cuda.ubuntu_keyring
            else:  # the release's own non-free packages
                env["DIB_SAGE_CUDA_DEBIAN_PACKAGES"] = " ".join(cuda.debian_packages)
    env.update(release.env)
    return env


def _properties(catalog: Catalog, request: BuildRequest, name: str,
                release: Release) -> dict[str, str]:
    """The build-* properties Chameleon's tooling reads; also /opt/chameleon/provenance.json."""
    return {
        "build-image-name": name,
        "build-variant": request.variant,
        "build-distro": release.family,
        "build-release": release.name,
        "build-os-version": release.version,
        "build-arch": request.arch,
        "build-repo": catalog.builder.repo,
        "build-repo-commit": request.builder_commit,
        "build-timestamp": str(request.timestamp),
        "build-tag": catalog.builder.build_tag.format(version=__version__,
                                                      timestamp=request.timestamp),
        "build-builder-version": __version__,
    }


def parse_source_override(text: str) -> SourceOverride:
    """``NAME=URL_OR_PATH[@COMMIT]``; an ``@`` followed by a slash or colon is part of the URL."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UsageError(f"--source {text!r}: expected NAME=URL_OR_PATH[@COMMIT]")
    location, at, ref = rest.rpartition("@")
    if at and location and ref and not any(c in ref for c in "/:"):
        return SourceOverride(name=name, url=location, commit=ref)
    return SourceOverride(name=name, url=rest)
