"""Everything publish says to a site's Glance (and Nova), through openstacksdk's image proxy.

The proxy pages the listings (`images()`, hidden ones with `is_hidden=True`), waits for a status
(`wait_for_status`), ignores a 404 on delete (`ignore_missing`), and `update_image` sends one
JSON patch made from what changed on the Image resource: custom properties are set and removed
through its `properties`. Image records are created through the Image resource too, with our
own properties only: the proxy's `create_image()` re-reads the whole file to hash it (minutes
for a 3 GB image, and the manifest has the hashes), looks the name up first, adds properties of
its own and deletes the image itself on an error. The bytes go through the resource's upload
from our own file object, which counts them for the progress bars and stops on Ctrl-C.

Functions here raise what openstacksdk raises; the steps that call them translate it
(failures.py). `SiteImage` is the plain-data view plan() works on.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import Interrupted

if TYPE_CHECKING:
    from openstack.connection import Connection
    from openstack.image.v2.image import Image

CHUNK = 1 << 20
PAGE = 500  # images a listing asks for at once (Glance's default is 25, its maximum 1000)
SETTLED, BROKEN = "active", ["killed", "deleted"]  # where an upload ends


class Cancelled(Interrupted):
    """The user interrupted publishing; raised from inside an upload to stop it."""


@dataclass(frozen=True)
class SiteImage:
    """One Glance image, as plain data (plan() works on these)."""

    id: str
    name: str
    status: str
    visibility: str
    sha512: str | None
    size: int | None
    created_at: str
    hidden: bool = False
    protected: bool = False
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    min_disk: int = 0  # GiB
    min_ram: int = 0  # MiB

    @property
    def build_timestamp(self) -> int | None:
        try:
            return int(self.properties["build-timestamp"])
        except (KeyError, ValueError):
            return None


# -- Glance's core attributes ---------------------------------------------------------------

_core_lock = threading.Lock()
_core_by_conn: weakref.WeakKeyDictionary[Connection, frozenset[str]] = (
    weakref.WeakKeyDictionary())


def core_attributes(conn: Connection) -> frozenset[str]:
    """The attributes Glance itself keeps for an image, as the site's image schema names them
    (`is_base`); everything else in an image is a custom property. openstacksdk's Image does
    not draw that line: it models some custom properties as attributes (os_distro,
    architecture, hw_*) and leaves some core ones (stores) in its `properties`. Asked once per
    connection."""
    with _core_lock:
        known = _core_by_conn.get(conn)
    if known is None:
        schema = conn.image.get_image_schema().properties or {}
        known = frozenset(k for k, v in schema.items() if v.get("is_base", True))
        with _core_lock:
            _core_by_conn[conn] = known
    return known


def site_image(image: Image, core: frozenset[str]) -> SiteImage:
    doc = image.to_dict(headers=False, computed=False, original_names=True)
    doc.update(doc.pop("properties", None) or {})  # the properties openstacksdk does not model
    props = {k: str(v) for k, v in doc.items() if k not in core and v is not None}
    sha512 = image.hash_value if image.hash_algo in (None, "sha512") else None
    return SiteImage(id=image.id, name=image.name or "", status=image.status or "",
                     visibility=image.visibility or "", sha512=sha512, size=image.size,
                     created_at=image.created_at or "", hidden=bool(image.is_hidden),
                     protected=bool(image.is_protected), properties=MappingProxyType(props),
                     min_disk=int(image.min_disk or 0), min_ram=int(image.min_ram or 0))


# -- reading --------------------------------------------------------------------------------

def list_images(conn: Connection, *, name: str | None = None) -> list[SiteImage]:
    """Every image the account sees, hidden ones included (Glance lists those only when
    asked for them); with `name`, those with exactly that name (Glance filters: openstacksdk
    spends about 1.4 ms making each listed image a resource, seconds at a site of thousands)."""
    core = core_attributes(conn)
    query = {"name": name} if name is not None else {}
    return [site_image(image, core) for hidden in (False, True)
            for image in conn.image.images(is_hidden=hidden, limit=PAGE, **query)
            if name is None or image.name == name]  # a MySQL-backed Glance may ignore case


def get_image(conn: Connection, image_id: str) -> SiteImage:
    return site_image(conn.image.get_image(image_id), core_attributes(conn))


# -- writing --------------------------------------------------------------------------------

def create_image(conn: Connection, *, name: str, disk_format: str,
                 properties: Mapping[str, str], min_disk: int = 0,
                 min_ram: int = 0) -> SiteImage:
    """An image record (no data yet), private so that nobody else sees it before promotion."""
    from openstack.image.v2.image import Image

    record = Image.new(name=name, disk_format=disk_format, container_format="bare",
                       visibility="private", min_disk=min_disk, min_ram=min_ram, **properties)
    return site_image(record.create(conn.image), core_attributes(conn))


class _Reader:
    """File object for the PUT body: counts bytes for the progress bar and stops on cancel.
    __len__ makes requests send a Content-Length instead of a chunked body."""

    def __init__(self, handle: BinaryIO, size: int, on_bytes: Callable[[int], None],
                 cancel: threading.Event) -> None:
        self.handle, self.size, self.on_bytes, self.cancel = handle, size, on_bytes, cancel

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        if self.cancel.is_set():
            raise Cancelled("interrupted during the upload")
        data = self.handle.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.on_bytes(len(data))
        return data


def upload_file(conn: Connection, image_id: str, path: Path, *, size: int,
                on_bytes: Callable[[int], None], cancel: threading.Event) -> None:
    """PUT the file's bytes into the image (Glance answers once it has stored them)."""
    from openstack import exceptions
    from openstack.image.v2.image import Image

    with path.open("rb") as handle:
        reader = _Reader(handle, size, on_bytes, cancel)
        exceptions.raise_from_response(
            Image.existing(id=image_id).upload(conn.image, data=reader, size=size))


def wait_active(conn: Connection, image_id: str, *, timeout: int = 600) -> SiteImage:
    """The image once Glance has settled it: `active`. openstacksdk raises ResourceFailure
    when it was killed or deleted instead, ResourceTimeout after `timeout` seconds."""
    from openstack.image.v2.image import Image

    image = conn.image.wait_for_status(Image.existing(id=image_id, status=None), SETTLED,
                                       failures=BROKEN, interval=0.5, wait=timeout)
    return site_image(image, core_attributes(conn))


def patch_image(conn: Connection, image: SiteImage, *, name: str | None = None,
                visibility: str | None = None, hidden: bool | None = None,
                set_props: Mapping[str, str] | None = None,
                remove_props: Iterable[str] = ()) -> SiteImage:
    """One PATCH: openstacksdk makes the JSON patch from what changes on the Image resource
    (only what differs from `image` is sent). `remove_props` are custom properties that
    openstacksdk does not model (ours: sage-*); they go by leaving them out of `properties`."""
    current = _resource(image)
    changes: dict[str, Any] = {k: v for k, v in (("name", name), ("visibility", visibility),
                                                 ("is_hidden", hidden)) if v is not None}
    unmodelled = current.properties or {}
    removed = {k for k in remove_props if k in image.properties}
    modelled = sorted(removed - unmodelled.keys())
    if modelled:
        raise ValueError(f"cannot remove {', '.join(modelled)}: openstacksdk models them")
    if not (changes or set_props or removed):
        return image
    kept = {k: v for k, v in unmodelled.items() if k not in removed}
    # Unmodelled keys among set_props join `properties`; modelled ones (os_distro ...) are set
    # as attributes. Passing `properties` whole matters: an unmodelled key alone would replace
    # the resource's properties with just itself, and the patch would remove all the others.
    updated = conn.image.update_image(current, properties=kept, **changes, **(set_props or {}))
    return site_image(updated, core_attributes(conn))


def _resource(image: SiteImage) -> Image:
    """The Image resource as `image` saw it: the patch's starting point."""
    from openstack.image.v2.image import Image

    return Image.existing(id=image.id, name=image.name, visibility=image.visibility,
                          os_hidden=image.hidden, **image.properties)


def delete_image(conn: Connection, image_id: str) -> None:
    conn.image.delete_image(image_id, ignore_missing=True)


def images_in_use(conn: Connection, image_ids: Iterable[str]) -> set[str]:
    """Image IDs some server still boots from (asks Nova; all projects when allowed)."""
    from openstack import exceptions

    wanted = set(image_ids)
    try:
        servers = list(conn.compute.servers(details=True, all_projects=True))
    except exceptions.ForbiddenException:
        servers = list(conn.compute.servers(details=True))
    used = {(s.image or {}).get("id") for s in servers}
    return wanted & used
