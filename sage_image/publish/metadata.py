"""The standard metadata of a published image: a pure function of the build and the catalog.

What every OpenStack client reads: Glance's "useful image properties" (architecture, os_distro,
os_version, hw_* hints, min_disk/min_ram, which Nova enforces) and Sovereign Cloud Stack's image
metadata standard scs-0102-v2 (os_purpose, image_build_date, image_source, image_description,
image_original_user and the replacement policy). The build decides the technical facts (what
was built, for which CPU and firmware, how large its disk is); the catalog's `publish.metadata`
and each variant's `os_purpose` and `min_ram` decide the promises. docs/publishing.md has the
table of every property and where its value comes from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType

from ..catalog.model import Catalog
from ..errors import UsageError
from .output import BuildOutput, ImageFile
from .site import SiteImage

GIB = 1 << 30
MAX_VALUE_CHARS = 255  # Glance's limit for a property value
PURPOSE_GENERIC, PURPOSE_OLD_GENERIC = "generic", "oldgeneric"
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class ImageMetadata:
    """min_disk and min_ram are Glance image fields (Nova refuses smaller flavors with a clear
    error); the rest are properties."""

    min_disk: int  # GiB
    min_ram: int  # MiB
    properties: Mapping[str, str]


def image_metadata(output: BuildOutput, catalog: Catalog, *, file: ImageFile,
                   site_kind: str) -> ImageMetadata:
    """The metadata of `file` (the format a site of `site_kind` takes) of this build."""
    variant = catalog.variants[output.identity.variant]  # load_output refused an unknown one
    policy = catalog.publish.metadata
    fields = template_fields(output)
    props = {
        "architecture": output.manifest.qemu_arch,
        "os_distro": output.identity.family,
        "os_version": output.identity.os_version,
        "os_purpose": variant.os_purpose,
        "os_admin_user": policy.image_original_user,
        "image_original_user": policy.image_original_user,
        "image_build_date": build_date(output),
        "image_source": policy.image_source.format(**fields),
        "image_description": policy.image_description.format(**fields),
        "replace_frequency": policy.replace_frequency,
        "provided_until": policy.provided_until,
        "uuid_validity": policy.uuid_validity,
        "hw_disk_bus": policy.hw_disk_bus,
    }
    props["hw_architecture"] = props["architecture"]  # Nova's newer name for the same
    if policy.hotfix_hours is not None:
        props["hotfix_hours"] = str(policy.hotfix_hours)
    if policy.hw_rng_model:
        props["hw_rng_model"] = policy.hw_rng_model
    firmware = firmware_type(output)
    if firmware:
        props["hw_firmware_type"] = firmware
    props.update(policy.site_kinds.get(site_kind, {}))
    return ImageMetadata(min_disk=min_disk_gib(file), min_ram=variant.min_ram,
                         properties=MappingProxyType(props))


def firmware_type(output: BuildOutput) -> str | None:
    """hw_firmware_type from the layout the image was built with: set only for an image that
    boots one way (uefi on ARM); a hybrid BIOS+UEFI image sets none, as Chameleon's do, so
    Nova boots it however the node boots. A manifest without a layout claims nothing."""
    firmware = output.manifest.layout.firmware if output.manifest.layout else ()
    return firmware[0] if len(firmware) == 1 else None


def min_disk_gib(file: ImageFile) -> int:
    """The disk the image needs, in whole GiB: its virtual size rounded up (never less than the
    file, which a compressed qcow2 never exceeds anyway)."""
    return max(1, math.ceil(max(file.virtual_size, file.size) / GIB))


def build_date(output: BuildOutput) -> str:
    """image_build_date: when the build ran (build-timestamp; packages are as of then), UTC, in
    the standard's `YYYY-MM-DD hh:mm:ss`."""
    return datetime.fromtimestamp(output.manifest.build_timestamp, tz=timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


def template_fields(output: BuildOutput) -> dict[str, str]:
    """Fields of publish.metadata's URL templates. A build made outside a git checkout records
    build-repo-commit `unknown`: its links point at HEAD."""
    commit = output.properties["build-repo-commit"]  # build-* properties the manifest requires
    repo = output.properties["build-repo"].rstrip("/")
    image = output.identity
    return {"repo": repo,
            "commit": commit if COMMIT_RE.match(commit) else "HEAD",
            "tag": output.build_tag, "name": image.name, "variant": image.variant,
            "release": image.release, "arch": image.arch}


def check_values(properties: Mapping[str, str], *, where: str) -> None:
    """Every value fits Glance's 255 characters: refuse before any site is contacted."""
    for key, value in properties.items():
        if len(value) > MAX_VALUE_CHARS:
            raise UsageError(f"{where}: property {key} is {len(value)} characters long; Glance "
                             f"keeps at most {MAX_VALUE_CHARS}", hint="shorten it in the catalog "
                             "(publish.metadata, publish.properties) or the build's properties")


@dataclass(frozen=True)
class Retirement:
    """What backdating changes on the image it replaces besides its name (scs-0102-v2: an old
    version is renamed and hidden, and a kept `generic` image becomes `oldgeneric`), and what
    undoes it."""

    set_props: Mapping[str, str]
    restore_props: Mapping[str, str]
    was_hidden: bool


def retirement(image: SiteImage) -> Retirement:
    purpose = image.properties.get("os_purpose")
    if purpose == PURPOSE_GENERIC:
        return Retirement(MappingProxyType({"os_purpose": PURPOSE_OLD_GENERIC}),
                          MappingProxyType({"os_purpose": PURPOSE_GENERIC}), image.hidden)
    return Retirement(MappingProxyType({}), MappingProxyType({}), image.hidden)
