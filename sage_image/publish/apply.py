"""Carry out one site's plan: upload, verify, backdate, promote - or roll the site back.

Guarantee: the production name only ever moves to an image that is active and whose
os_hash_value matched the manifest. If anything fails (or the user interrupts), the old image gets
its name back and the temporary image is deleted before this returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import PublishError
from . import site as glance
from .plan import PROP_BACKDATED_AT, PROP_SUPERSEDED_BY, Action, SitePlan
from .site import Cancelled, SiteImage

if TYPE_CHECKING:
    from openstack.connection import Connection

log = logging.getLogger("sage_image.publish")

# Called with a phase ("upload", "verify" ...) and, during the upload, the bytes sent so far.
Reporter = Callable[[str, int], None]


@dataclass(frozen=True)
class SiteResult:
    site: str
    status: str  # published / up to date / failed / refused / planned
    reason: str = ""
    image_id: str | None = None
    seconds: float = 0.0
    uploaded: int = 0  # bytes
    upload_seconds: float = 0.0
    backdated: str | None = None  # "<old id> -> <new name>"

    @property
    def ok(self) -> bool:
        return self.status in ("published", "up to date", "planned")

    @property
    def mb_per_s(self) -> float | None:
        if not self.uploaded or self.upload_seconds <= 0:
            return None
        return self.uploaded / 1e6 / self.upload_seconds


@dataclass
class _Progress:
    """What has been changed at the site so far: exactly what a rollback must undo."""

    temp: SiteImage | None = None
    backdated: SiteImage | None = None
    promoted: bool = False
    upload_seconds: float = 0.0


def apply_plan(conn: Connection, plan: SitePlan, *, report: Reporter,
               cancel: threading.Event) -> SiteResult:
    start = time.monotonic()
    if plan.action is Action.UP_TO_DATE:
        return SiteResult(plan.site, "up to date", plan.reason,
                          image_id=plan.current.id if plan.current else None)
    if plan.action is Action.REFUSE:
        return SiteResult(plan.site, "refused", plan.reason)
    done = _Progress()
    try:
        new = _publish_steps(conn, plan, done, report, cancel)
    except BaseException as exc:
        report("rolling back", 0)
        problems = _rollback(conn, plan, done)
        reason = _reason(exc) + (f"; ROLLBACK INCOMPLETE: {'; '.join(problems)}" if problems
                                 else "; rolled back")
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt / SystemExit: the site is clean, let it propagate
        return SiteResult(plan.site, "failed", reason, seconds=time.monotonic() - start)
    assert plan.file is not None
    return SiteResult(plan.site, "published", image_id=new.id, seconds=time.monotonic() - start,
                      uploaded=plan.file.size, upload_seconds=done.upload_seconds,
                      backdated=(f"{done.backdated.id} -> {plan.backdate_name}"
                                 if done.backdated else None))


def _publish_steps(conn: Connection, plan: SitePlan, done: _Progress, report: Reporter,
                   cancel: threading.Event) -> SiteImage:
    assert plan.file is not None
    for stale in plan.stale:
        report("deleting leftover upload", 0)
        glance.delete_image(conn, stale.id)
    report("creating", 0)
    done.temp = glance.create_image(conn, name=plan.temp_name,
                                    disk_format=plan.file.disk_format, properties=plan.properties)
    sent = 0

    def on_bytes(n: int) -> None:
        nonlocal sent
        sent += n
        report("uploading", sent)

    began = time.monotonic()
    glance.upload_file(conn, done.temp.id, plan.file.path, size=plan.file.size,
                       on_bytes=on_bytes, cancel=cancel)
    done.upload_seconds = time.monotonic() - began
    report("verifying", sent)
    new = glance.wait_active(conn, done.temp.id)
    _verify(plan, new)
    _check_cancel(cancel)
    if plan.current is not None:
        report("backdating", sent)
        done.backdated = glance.patch_image(
            conn, plan.current, name=plan.backdate_name,
            set_props={PROP_SUPERSEDED_BY: new.id,
                       PROP_BACKDATED_AT: datetime.now(timezone.utc).isoformat(timespec="seconds")})
    _check_cancel(cancel)
    _check_name_free(conn, plan)
    report("promoting", sent)
    new = glance.patch_image(conn, new, name=plan.production_name, visibility=plan.visibility)
    done.promoted = True
    return new


def _verify(plan: SitePlan, image: SiteImage) -> None:
    assert plan.file is not None
    if image.status != "active":
        raise PublishError(f"upload ended with image status '{image.status}'", site=plan.site)
    if image.sha512 != plan.file.sha512:
        raise PublishError(f"checksum mismatch: Glance stored sha512 {str(image.sha512)[:16]}..., "
                           f"the manifest says {plan.file.sha512[:16]}...", site=plan.site)
    if image.size is not None and image.size != plan.file.size:
        raise PublishError(f"size mismatch: Glance stored {image.size} bytes, "
                           f"the manifest says {plan.file.size}", site=plan.site)


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("interrupted")


def _check_name_free(conn: Connection, plan: SitePlan) -> None:
    # Someone may have created an image with the production name since we planned.
    holders = [i for i in glance.list_images(conn) if i.name == plan.production_name]
    if holders:
        raise PublishError(f"'{plan.production_name}' appeared meanwhile on "
                           f"{', '.join(i.id for i in holders)}", site=plan.site)


def _rollback(conn: Connection, plan: SitePlan, done: _Progress) -> list[str]:
    """Undo in reverse order; the old image gets its name back first (users see it again
    sooner). Every step is tried even if an earlier one fails."""
    problems: list[str] = []
    if done.promoted:
        return problems
    if done.backdated is not None:
        try:
            glance.patch_image(conn, done.backdated, name=plan.production_name,
                               remove_props=(PROP_SUPERSEDED_BY, PROP_BACKDATED_AT))
        except Exception as exc:
            problems.append(f"could not rename {done.backdated.id} back: {_reason(exc)}")
    if done.temp is not None:
        try:
            glance.delete_image(conn, done.temp.id)
        except Exception as exc:
            problems.append(f"could not delete {done.temp.id}: {_reason(exc)}")
    return problems


def _reason(exc: BaseException) -> str:
    """One line, no secrets: the exception's own message (openstacksdk messages hold URLs and
    HTTP status, never credentials)."""
    if isinstance(exc, PublishError):
        return exc.reason
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
