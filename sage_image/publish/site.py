"""Everything publish says to a site's Glance (and Nova), through openstacksdk.

Reads go through openstacksdk's Image resource; writes use the Glance v2 REST calls directly
(create, PUT the file, JSON-patch), because openstacksdk's create_image() re-reads the whole
file to hash it, adds its own properties and returns before the upload has settled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO

from ..waiting import poll_until

if TYPE_CHECKING:
    from openstack.connection import Connection

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
CHUNK = 1 << 20
# Glance's own image attributes: everything else in an image document is a custom property.
CORE_ATTRS = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "disk_format",
    "container_format", "created_at", "updated_at", "tags", "self", "file", "schema",
    "direct_url", "locations", "stores"})


class Cancelled(Exception):
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


def image_from_doc(doc: Mapping[str, Any]) -> SiteImage:
    props = {str(k): str(v) for k, v in doc.items() if k not in CORE_ATTRS and v is not None}
    sha512 = doc.get("os_hash_value") if doc.get("os_hash_algo") in (None, "sha512") else None
    return SiteImage(id=doc["id"], name=doc.get("name") or "", status=doc.get("status", ""),
                     visibility=doc.get("visibility", ""), sha512=sha512, size=doc.get("size"),
                     created_at=doc.get("created_at") or "", hidden=bool(doc.get("os_hidden")),
                     protected=bool(doc.get("protected")), properties=MappingProxyType(props),
                     min_disk=int(doc.get("min_disk") or 0), min_ram=int(doc.get("min_ram") or 0))


def _check(resp: Any) -> Any:
    from openstack import exceptions

    exceptions.raise_from_response(resp)
    return resp


def list_images(conn: Connection) -> list[SiteImage]:
    """Every image the account sees, hidden ones included, following Glance's pagination."""
    images: list[SiteImage] = []
    for hidden in (False, True):  # os_hidden images are only listed when asked for
        url: str | None = f"/images?limit=500&os_hidden={str(hidden).lower()}"
        while url:
            data = _check(conn.image.get(url)).json()
            images.extend(image_from_doc(d) for d in data.get("images", []))
            nxt = data.get("next")
            url = nxt.removeprefix("/v2") if nxt else None
    return images


def get_image(conn: Connection, image_id: str) -> SiteImage:
    return image_from_doc(_check(conn.image.get(f"/images/{image_id}")).json())


def create_image(conn: Connection, *, name: str, disk_format: str,
                 properties: Mapping[str, str], min_disk: int = 0,
                 min_ram: int = 0) -> SiteImage:
    """An image record (no data yet), private so that nobody else sees it before promotion."""
    body = {"name": name, "disk_format": disk_format, "container_format": "bare",
            "visibility": "private", "min_disk": min_disk, "min_ram": min_ram, **properties}
    return image_from_doc(_check(conn.image.post("/images", json=body)).json())


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
    with path.open("rb") as handle:
        reader = _Reader(handle, size, on_bytes, cancel)
        _check(conn.image.put(f"/images/{image_id}/file", data=reader,
                              headers={"Content-Type": "application/octet-stream"}))


def wait_active(conn: Connection, image_id: str, *, timeout: float = 600) -> SiteImage:
    """Glance answers the PUT when the data is stored; poll briefly in case it still settles."""
    def settled() -> SiteImage | None:
        image = get_image(conn, image_id)
        return image if image.status in ("active", "killed", "deleted") else None

    return poll_until(settled, timeout=timeout, interval=0.5) or get_image(conn, image_id)


def patch_image(conn: Connection, image: SiteImage, *, name: str | None = None,
                visibility: str | None = None, hidden: bool | None = None,
                set_props: Mapping[str, str] | None = None,
                remove_props: Iterable[str] = ()) -> SiteImage:
    """One JSON-patch request: Glance applies all its operations in a single save."""
    ops: list[dict[str, Any]] = []
    if name is not None:
        ops.append({"op": "replace", "path": "/name", "value": name})
    if visibility is not None:
        ops.append({"op": "replace", "path": "/visibility", "value": visibility})
    if hidden is not None:
        ops.append({"op": "replace", "path": "/os_hidden", "value": hidden})
    for key, value in (set_props or {}).items():
        ops.append({"op": "add", "path": f"/{key}", "value": value})
    for key in remove_props:
        if key in image.properties:
            ops.append({"op": "remove", "path": f"/{key}"})
    if not ops:
        return image
    resp = conn.image.patch(f"/images/{image.id}", json=ops, headers={"Content-Type": PATCH_TYPE})
    return image_from_doc(_check(resp).json())


def delete_image(conn: Connection, image_id: str) -> None:
    from openstack import exceptions

    try:
        _check(conn.image.delete(f"/images/{image_id}"))
    except exceptions.NotFoundException:
        pass


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
