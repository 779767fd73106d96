"""What publishing will do at one site: a pure function of the build and the site's images.

No I/O here, so `--dry-run` and the tests of naming, refusal and idempotence need no cloud.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType

from ..catalog.model import Publish
from .clouds import SiteTarget
from .metadata import ImageMetadata, Retirement, retirement
from .output import BuildOutput, ImageFile
from .record import Record
from .site import SiteImage

# Properties publish keeps on images, besides the manifest's build-* ones.
PROP_SUPERSEDED_BY = "sage-image-superseded-by"
PROP_BACKDATED_AT = "sage-image-backdated-at"
PROP_UNTESTED = "sage-image-untested"
TEMP_MARK = ".sage-image-upload."


class Action(str, enum.Enum):
    PUBLISH = "publish"
    UP_TO_DATE = "up to date"
    REFUSE = "refuse"


@dataclass(frozen=True)
class SitePlan:
    site: str
    action: Action
    reason: str
    production_name: str
    visibility: str
    file: ImageFile | None = None
    temp_name: str = ""
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    min_disk: int = 0  # GiB
    min_ram: int = 0  # MiB
    record: Record | None = None
    current: SiteImage | None = None
    backdate_name: str | None = None
    retire: Retirement | None = None  # what else backdating changes on `current`
    stale: tuple[SiteImage, ...] = ()

    def describe(self) -> list[str]:
        """The plan in words, one step a line (what --dry-run prints)."""
        if self.action is not Action.PUBLISH:
            return [f"{self.action.value}: {self.reason}"]
        assert self.file is not None and self.record is not None
        steps = [f"delete leftover upload {i.id} ({i.name})" for i in self.stale]
        steps.append(f"record {len(self.record.objects)} objects in {self.record.container}/"
                     f"{self.record.prefix}.*")
        steps.append(f"upload {self.file.path.name} ({self.file.size / 1e6:.1f} MB, "
                     f"{self.file.disk_format}, min_disk {self.min_disk} GiB, min_ram "
                     f"{self.min_ram} MiB) as private '{self.temp_name}'")
        steps.append(f"verify os_hash_value = {self.file.sha512[:16]}...")
        if self.current is not None and self.retire is not None:
            purpose = "".join(f", {k} {self.current.properties.get(k)} -> {v}"
                              for k, v in self.retire.set_props.items())
            steps.append(f"backdate {self.current.id}: '{self.production_name}' -> "
                         f"'{self.backdate_name}', hidden{purpose}")
        steps.append(f"point {self.record.container}/{self.record.pointer} at "
                     f"{self.record.version}")
        steps.append(f"promote to '{self.production_name}' ({self.visibility})")
        return steps


def temp_name(production_name: str, sha512: str) -> str:
    return f"{production_name}{TEMP_MARK}{sha512[:12]}"


def is_temp_of(image: SiteImage, production_name: str) -> bool:
    return image.name.startswith(production_name + TEMP_MARK)


def image_properties(output: BuildOutput, policy: Publish, metadata: ImageMetadata,
                     record: Record, *, untested: bool) -> dict[str, str]:
    """Glance properties: the manifest's build-* provenance (as Chameleon's pipeline sets them:
    python-chi reads build-repo), the standard metadata, the catalog's extra properties and
    the pointers to the build's record."""
    props = dict(output.properties)
    props.update(metadata.properties)
    props.update(policy.properties)
    props.update(record.properties)
    if untested:
        props[PROP_UNTESTED] = "true"
    return props


def backdate_name(scheme: str, image: SiteImage, production_name: str,
                  taken: Collection[str]) -> str:
    """The name the replaced image gets: the catalog's scheme, `.N` appended on collision."""
    stamp = image.build_timestamp
    when = (datetime.fromtimestamp(stamp, tz=timezone.utc) if stamp is not None
            else _parse_created(image.created_at))
    base = scheme.format(
        name=production_name, date=when.strftime("%Y%m%d"),
        timestamp=str(stamp if stamp is not None else int(when.timestamp())),
        tag=image.properties.get("build-tag", "untagged"),
        commit=image.properties.get("build-repo-commit", "unknown")[:7])
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}.{n}"
    return name


def _parse_created(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, tz=timezone.utc)


def plan_site(target: SiteTarget, output: BuildOutput, images: Sequence[SiteImage], *,
              policy: Publish, metadata: ImageMetadata | None, record: Record, visibility: str,
              untested: bool) -> SitePlan:
    """`metadata` is None when the build has no file in the site's format."""
    name = output.identity.name
    base = SitePlan(site=target.name, action=Action.REFUSE, reason="", production_name=name,
                    visibility=visibility)

    def refuse(reason: str) -> SitePlan:
        return SitePlan(**{**base.__dict__, "reason": reason})

    if output.identity.arch not in target.arches:
        return refuse(f"{target.name} takes no {output.identity.arch} images "
                      f"(arches: {', '.join(target.arches)})")
    file = output.files.get(target.disk_format)
    if file is None or metadata is None:
        return refuse(f"{target.name} needs {target.disk_format} and the build has "
                      f"{', '.join(output.files) or 'no files'}")
    holders = sorted((i for i in images if i.name == name), key=lambda i: i.id)
    if len(holders) > 1:
        return refuse(f"{len(holders)} images are named '{name}': "
                      f"{', '.join(i.id for i in holders)}; keep one and rename the others")
    current = holders[0] if holders else None
    if current is not None and current.sha512 == file.sha512 and current.status == "active":
        return SitePlan(**{**base.__dict__, "action": Action.UP_TO_DATE, "file": file,
                           "reason": f"{current.id} already has this sha512",
                           "current": current})
    stale = tuple(i for i in images if is_temp_of(i, name))
    taken = {i.name for i in images}
    return SitePlan(
        site=target.name, action=Action.PUBLISH, reason="", production_name=name,
        visibility=visibility, file=file, temp_name=temp_name(name, file.sha512),
        properties=MappingProxyType(image_properties(output, policy, metadata, record,
                                                     untested=untested)),
        min_disk=metadata.min_disk, min_ram=metadata.min_ram, record=record,
        current=current, stale=stale,
        backdate_name=(backdate_name(policy.backdate, current, name, taken)
                       if current is not None else None),
        retire=retirement(current) if current is not None else None)
