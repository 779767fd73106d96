"""Everything publish says to a site's object store (Swift), through openstacksdk's object_store
proxy: the record of a build (publish/record.py) and the `current` pointers.

A version's objects are written once: a PUT with `If-None-Match: *` creates an object only where
none is, and `ETag` (the md5 of the bytes) makes Swift refuse bytes that arrived damaged. An
existing object with the same bytes is left as it is (a re-run, or another image of the same
build); one with other bytes is an error, never overwritten - an image may point at it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import RecordFailed

if TYPE_CHECKING:
    from openstack.connection import Connection


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()  # Swift's ETag


def ensure_container(conn: Connection, container: str) -> None:
    conn.object_store.create_container(name=container)  # PUT: idempotent


def put_new(conn: Connection, container: str, name: str, data: bytes, *, site: str) -> bool:
    """Create `name`; True if this call created it, False if it already held these bytes."""
    from openstack import exceptions

    etag = _md5(data)
    try:
        _put(conn, container, name, data, etag=etag, site=site, if_none_match="*")
        return True
    except exceptions.HttpException as exc:
        if exc.status_code != 412:  # Precondition Failed: the object exists
            raise
    if conn.object_store.get_object_metadata(name, container).etag == etag:
        return False
    raise RecordFailed(f"{container}/{name} already holds another build's record (two builds "
                       "with the same build-tag?); it is left as it is", site=site)


def put(conn: Connection, container: str, name: str, data: bytes, *, site: str) -> None:
    _put(conn, container, name, data, etag=_md5(data), site=site)


def _put(conn: Connection, container: str, name: str, data: bytes, *, etag: str, site: str,
         **conditions: str) -> None:
    """PUT through the object_store proxy, and make sure Swift stored it: 201 with our ETag.
    (openstacksdk's create_object reports success for any answer below 400 - a clouds.yaml
    whose object-store endpoint is not a Swift would lose the record silently.)"""
    from openstack import exceptions

    headers = {"ETag": etag, **{k.replace("_", "-").title(): v for k, v in conditions.items()}}
    resp = conn.object_store.put(quote(f"{container}/{name}"), data=data, headers=headers)
    exceptions.raise_from_response(resp)
    if resp.status_code != 201 or resp.headers.get("Etag", "").strip('"') != etag:
        raise RecordFailed(f"the object store did not store {container}/{name} (HTTP "
                           f"{resp.status_code}, ETag {resp.headers.get('Etag')!r}): is the "
                           "site's object-store endpoint a Swift?", site=site)


def read(conn: Connection, container: str, name: str) -> bytes | None:
    """The object's bytes, or None when the store has no such object (or container)."""
    from openstack import exceptions

    try:
        return bytes(conn.object_store.download_object(name, container))
    except exceptions.NotFoundException:
        return None


def delete(conn: Connection, container: str, name: str) -> None:
    conn.object_store.delete_object(name, ignore_missing=True, container=container)
