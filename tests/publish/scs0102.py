"""Our own check of image metadata against SCS scs-0102-v2 (the Sovereign Cloud Stack's image
metadata standard, SovereignCloudStack/standards: Standards/scs-0102-v2-image-metadata.md).

Rule for rule it reads an image as the standard's conformance code does
(Tests/iaas/scs_0102_image_metadata/image_metadata.py, read 2026-12): through openstacksdk's
Image resource (architecture, min_disk, hw_disk_bus ... as the resource's attributes, the rest
from `properties`), with the same allowed values, date formats and the same recency and
uniqueness rules. Where the standard's text is stricter than that code, this follows the text:
`hw_disk_bus` and `uuid_validity` must be set (the code lets them be absent), `provided_until`
must be a date, `none` or `notice` (the code only wants it non-empty), `os_distro` lowercase and
`os_version` numeric. Plus Glance's own limit: no property value over 255 characters.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ARCHITECTURES = ("x86_64", "aarch64", "risc-v")
DISK_BUSES = ("virtio", "scsi")
HYPERVISOR_TYPES = ("qemu", "kvm", "xen", "hyper-v", "esxi")
RNG_MODELS = ("virtio",)
OS_PURPOSES = ("generic", "oldgeneric", "minimal", "k8snode", "gpu", "network", "custom")
DAY = 24 * 3600
# how old an image may get before it counts as not replaced in time (a little slack, as theirs)
REPLACE_SECONDS = {"never": 0, "critical_bug": 0, "yearly": 365 * DAY, "quarterly": 92 * DAY,
                   "monthly": 31 * DAY, "weekly": 7 * 25 * 3600, "daily": 25 * 3600}
STRICT_DATE = ("%Y-%m-%dT%H:%M:%SZ",)
BUILD_DATES = STRICT_DATE + ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
NAME_DATES = ("%Y-%m-%d", "%Y%m%d")
OLD_MARKERS = ("old", "prev")
URL_SCHEMES = ("http", "https", "ftp", "ftps")
GIB = 1 << 30
MAX_VALUE = 255


@dataclass(frozen=True)
class ImageView:
    """What the rules read of an image (openstacksdk's Image resource, as the standard's code
    reads it)."""

    name: str
    visibility: str = "public"
    hidden: bool = False
    created_at: str = "2026-01-01T00:00:00Z"
    size: int = 0
    min_disk: int = 0
    min_ram: int = 0
    architecture: str | None = None
    os_distro: str | None = None
    os_version: str | None = None
    hw_disk_bus: str | None = None
    hypervisor_type: str | None = None
    hw_rng_model: str | None = None
    hash_algo: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    def prop(self, key: str) -> str:
        return str(self.properties.get(key) or "")


def view(image: Any) -> ImageView:
    """An openstacksdk image.v2 Image as the rules read it."""
    return ImageView(
        name=image.name, visibility=image.visibility, hidden=bool(image.is_hidden),
        created_at=image.created_at, size=image.size or 0, min_disk=image.min_disk or 0,
        min_ram=image.min_ram or 0, architecture=image.architecture,
        os_distro=image.os_distro, os_version=image.os_version, hw_disk_bus=image.hw_disk_bus,
        hypervisor_type=image.hypervisor_type, hw_rng_model=image.hw_rng_model,
        hash_algo=image.hash_algo, properties=dict(image.properties or {}))


def parse_date(text: str, formats: Sequence[str] = BUILD_DATES) -> int:
    """Unix seconds, or 0 when `text` is in none of the formats."""
    for fmt in formats:
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    return 0


def is_url(text: str) -> bool:
    scheme, sep, rest = text.partition("://")
    return bool(sep and rest) and scheme in URL_SCHEMES


def problems(image: ImageView, *, now: float | None = None) -> list[str]:
    """Every mandatory scs-0102-v2 property with a valid value, and the recommended ones valid
    where set; one line per problem, naming the property."""
    now = time.time() if now is None else now
    out = []

    def bad(key: str, why: str) -> None:
        out.append(f"{image.name}: {key} {why}")

    if image.architecture not in ARCHITECTURES:
        bad("architecture", f"is {image.architecture!r}, not one of {ARCHITECTURES}")
    if not image.min_disk:
        bad("min_disk", "is not set")
    elif image.min_disk * GIB < image.size:
        bad("min_disk", f"({image.min_disk} GiB) is smaller than the image ({image.size} bytes)")
    if image.min_ram < 64:
        bad("min_ram", f"is {image.min_ram} MiB: not set, or too little to boot")
    if not image.os_distro or image.os_distro != image.os_distro.lower():
        bad("os_distro", f"is {image.os_distro!r}: not a lowercase libosinfo name")
    if not re.fullmatch(r"\d+(\.\d+)*", image.os_version or ""):
        bad("os_version", f"is {image.os_version!r}: not a version number")
    if image.prop("os_purpose") not in OS_PURPOSES:
        bad("os_purpose", f"is {image.prop('os_purpose')!r}, not one of {OS_PURPOSES}")
    if image.hw_disk_bus not in DISK_BUSES:
        bad("hw_disk_bus", f"is {image.hw_disk_bus!r}, not one of {DISK_BUSES}")
    if image.hypervisor_type not in (None, *HYPERVISOR_TYPES):
        bad("hypervisor_type", f"is {image.hypervisor_type!r}")
    if image.hw_rng_model not in (None, *RNG_MODELS):
        bad("hw_rng_model", f"is {image.hw_rng_model!r}")
    if image.hash_algo not in ("sha256", "sha512"):
        bad("os_hash_algo", f"is {image.hash_algo!r}")
    out += _build_date(image, now)
    out += _origin_and_policy(image)
    out += [f"{image.name}: {k} is {len(str(v))} characters, Glance keeps {MAX_VALUE}"
            for k, v in image.properties.items() if len(str(v)) > MAX_VALUE]
    return out


def _build_date(image: ImageView, now: float) -> list[str]:
    built = parse_date(image.prop("image_build_date"))
    registered = parse_date(image.created_at, STRICT_DATE)
    if not built:
        return [f"{image.name}: image_build_date {image.prop('image_build_date')!r} is no date"]
    if built > registered:
        return [f"{image.name}: image_build_date is after the upload ({image.created_at})"]
    if built > now:
        return [f"{image.name}: image_build_date is in the future"]
    return []


def _origin_and_policy(image: ImageView) -> list[str]:
    out = []
    source = image.prop("image_source")
    if source != "private" and not is_url(source):
        out.append(f"{image.name}: image_source {source!r} is neither a URL nor 'private'")
    for key in ("image_description", "image_original_user"):
        if not image.prop(key):
            out.append(f"{image.name}: {key} is not set")
    if image.prop("replace_frequency") not in REPLACE_SECONDS:
        out.append(f"{image.name}: replace_frequency {image.prop('replace_frequency')!r}")
    until = image.prop("provided_until")
    if until not in ("none", "notice") and not parse_date(until, ("%Y-%m-%d",)):
        out.append(f"{image.name}: provided_until {until!r} is no date, 'none' or 'notice'")
    validity = image.prop("uuid_validity")
    if not (validity in ("none", "notice", "forever") or parse_date(validity)
            or (validity.startswith("last-") and validity[5:].isdecimal())):
        out.append(f"{image.name}: uuid_validity {validity!r}")
    hotfix = image.prop("hotfix_hours")
    if hotfix and not hotfix.isdecimal():
        out.append(f"{image.name}: hotfix_hours {hotfix!r} is not a number of hours")
    return out


def outdated(image: ImageView, now: float) -> str:
    """'' when the image is recent enough for its replace_frequency, or past its
    provided_until; else why not: 'marked' (hidden, or renamed with a date or old/prev at the
    end) or 'unmarked' (a user referencing it by name gets a stale image)."""
    built = parse_date(image.prop("image_build_date")) or parse_date(image.created_at,
                                                                      STRICT_DATE)
    every = REPLACE_SECONDS.get(image.prop("replace_frequency") or "never", 0)
    if not every or now <= built + 1.1 * every:
        return ""
    until = image.prop("provided_until")
    if until in ("none", "notice") or now > parse_date(until, ("%Y-%m-%d",)):
        return ""
    marker = image.name.rsplit(" ", 1)[-1] if " " in image.name else ""
    if image.hidden or marker in OLD_MARKERS or parse_date(marker, NAME_DATES):
        return "marked"
    return "unmarked"


def recency_problems(images: Sequence[ImageView], *, now: float | None = None) -> list[str]:
    """An outdated image needs a recent one under its name without the marker (the standard's
    scs-0102-image-recency)."""
    now = time.time() if now is None else now
    by_name = {i.name: i for i in images}
    out = []
    for image in images:
        if not outdated(image, now):
            continue
        short = image.name.rsplit(" ", 1)[0].rstrip()
        newer = by_name.get(short) if short != image.name else None
        if newer is None or outdated(newer, now):
            out.append(f"{image.name}: outdated by its replace_frequency, with no newer image")
    return out


def uniqueness_problems(images: Iterable[ImageView]) -> list[str]:
    """At most one public, listed `generic` image per (architecture, os_distro, os_version)."""
    buckets: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for image in images:
        if (image.visibility == "public" and not image.hidden and image.os_distro
                and image.os_version and image.prop("os_purpose") == "generic"):
            buckets[(image.architecture or "", image.os_distro, image.os_version)].append(
                image.name)
    return [f"{key}: {len(names)} public generic images: {', '.join(sorted(names))}"
            for key, names in buckets.items() if len(names) > 1]


def chunked(properties: Mapping[str, str]) -> list[str]:
    """Property families that are pieces of one larger document: keys that differ only by a
    trailing number (sage-summary-00, -01 ...), or values that are long unbroken encoded text."""
    families: dict[str, list[str]] = defaultdict(list)
    for key in properties:
        match = re.fullmatch(r"(.*?)[-_]?\d+", key)
        if match:
            families[match.group(1)].append(key)
    out = [f"{base}*: {len(keys)} numbered pieces" for base, keys in families.items()
           if len(keys) > 1]
    out += [f"{key}: {len(value)} characters of encoded data" for key, value in properties.items()
            if len(str(value)) > 100 and re.fullmatch(r"[A-Za-z0-9+/=]+", str(value))]
    return out
