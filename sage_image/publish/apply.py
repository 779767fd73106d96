"""Carry out one site's plan: record, upload, verify, backdate, point, promote - or roll the
site back.

Guarantee: the production name only ever moves to an image that is active and whose
os_hash_value matched the manifest, and whose record is in the site's object store. If anything
fails (or the user interrupts), before this returns the old image gets its name, visibility and
purpose back, `current/<name>` what it said before, and the temporary image and the record
objects this run created are deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import (
    NameTaken,
    PublishError,
    RecordFailed,
    RollbackIncomplete,
    SiteUnreachable,
    UploadFailed,
    VerifyFailed,
)
from . import site as glance
from . import store
from .failures import contain, translated
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
    error: PublishError | None = field(default=None, compare=False)  # why it failed

    @property
    def ok(self) -> bool:
        return self.status in ("published", "up to date", "planned")

    @property
    def mb_per_s(self) -> float | None:
        if not self.uploaded or self.upload_seconds <= 0:
            return None
        return self.uploaded / 1e6 / self.upload_seconds


def failed(error: PublishError, *, seconds: float = 0.0) -> SiteResult:
    return SiteResult(error.site, "failed", error.reason, seconds=seconds, error=error)


@dataclass
class _Progress:
    """What has been changed at the site so far: exactly what a rollback must undo."""

    recorded: list[str] = field(default_factory=list)  # record objects this run created
    temp: SiteImage | None = None
    backdated: SiteImage | None = None
    pointer_before: bytes | None = None  # what current/<name> held before this run
    pointer_set: bool = False
    promoted: bool = False
    sent: int = 0  # bytes uploaded
    upload_seconds: float = 0.0


def apply_plan(conn: Connection, plan: SitePlan, *, report: Reporter,
               cancel: threading.Event) -> SiteResult:
    """Carry out the plan; a failure (or Ctrl-C) rolls the site back first. The result of a
    failed site says why, and that it was rolled back (or what could not be undone)."""
    start = time.monotonic()
    if plan.action is Action.UP_TO_DATE:
        return SiteResult(plan.site, "up to date", plan.reason,
                          image_id=plan.current.id if plan.current else None)
    if plan.action is Action.REFUSE:
        return SiteResult(plan.site, "refused", plan.reason)
    done = _Progress()
    try:
        new = contain(plan.site, lambda: _publish_steps(conn, plan, done, report, cancel),
                      doing="publishing")
    except BaseException:  # KeyboardInterrupt / SystemExit: clean the site, then let it go
        _rollback(conn, plan, done, report)
        raise
    if isinstance(new, PublishError):
        problems = _rollback(conn, plan, done, report)
        error = RollbackIncomplete(new, problems) if problems else new
        reason = error.reason if problems else f"{new.reason}; rolled back"
        return SiteResult(plan.site, "failed", reason, seconds=time.monotonic() - start,
                          error=error)
    assert plan.file is not None
    return SiteResult(plan.site, "published", image_id=new.id, seconds=time.monotonic() - start,
                      uploaded=plan.file.size, upload_seconds=done.upload_seconds,
                      backdated=(f"{done.backdated.id} -> {plan.backdate_name}"
                                 if done.backdated else None))


def _publish_steps(conn: Connection, plan: SitePlan, done: _Progress, report: Reporter,
                   cancel: threading.Event) -> SiteImage:
    """Each step says what its failures are (failures.translated), and reports its phase."""
    assert plan.file is not None and plan.record is not None
    site = plan.site

    def step(phase: str, failure: type[PublishError] = PublishError,
             unreachable: type[PublishError] = SiteUnreachable) -> AbstractContextManager[None]:
        report(phase, done.sent)
        return translated(site, phase, failed=failure, unreachable=unreachable)

    for stale in plan.stale:
        with step("deleting leftover upload"):
            glance.delete_image(conn, stale.id)
    # The record first: it is small, and a site whose object store fails is refused before
    # gigabytes are uploaded. The store is a service of its own: not answering is its failure.
    with step("recording", RecordFailed, RecordFailed):
        _write_record(conn, plan, done)
    with step("creating"):
        done.temp = glance.create_image(conn, name=plan.temp_name,
                                        disk_format=plan.file.disk_format,
                                        properties=plan.properties, min_disk=plan.min_disk,
                                        min_ram=plan.min_ram)
    with step("uploading", UploadFailed):
        _upload(conn, plan, done, report, cancel)
    with step("verifying", VerifyFailed):
        new = glance.wait_active(conn, done.temp.id)
    _verify(plan, new)
    _check_cancel(cancel)
    if plan.current is not None and plan.retire is not None:
        # scs-0102-v2: an old version is renamed and hidden; a kept `generic` is `oldgeneric`
        with step("backdating"):
            done.backdated = glance.patch_image(
                conn, plan.current, name=plan.backdate_name, hidden=True,
                set_props={**plan.retire.set_props, PROP_SUPERSEDED_BY: new.id,
                           PROP_BACKDATED_AT: datetime.now(timezone.utc).isoformat(
                               timespec="seconds")})
    _check_cancel(cancel)
    with translated(site, "checking the name"):  # a moment, not a phase of its own
        _check_name_free(conn, plan)
    record = plan.record
    with step("pointing current", RecordFailed, RecordFailed):
        done.pointer_before = store.read(conn, record.container, record.pointer)
        store.put(conn, record.container, record.pointer, f"{record.version}\n".encode(),
                  site=site)
        done.pointer_set = True
    with step("promoting"):
        new = glance.patch_image(conn, new, name=plan.production_name, visibility=plan.visibility)
        done.promoted = True
    return new


def _upload(conn: Connection, plan: SitePlan, done: _Progress, report: Reporter,
            cancel: threading.Event) -> None:
    assert plan.file is not None and done.temp is not None

    def on_bytes(n: int) -> None:
        done.sent += n
        report("uploading", done.sent)

    began = time.monotonic()
    glance.upload_file(conn, done.temp.id, plan.file.path, size=plan.file.size,
                       on_bytes=on_bytes, cancel=cancel)
    done.upload_seconds = time.monotonic() - began


def _write_record(conn: Connection, plan: SitePlan, done: _Progress) -> None:
    assert plan.record is not None
    store.ensure_container(conn, plan.record.container)
    for name, data in plan.record.objects.items():
        if store.put_new(conn, plan.record.container, name, data, site=plan.site):
            done.recorded.append(name)


def _verify(plan: SitePlan, image: SiteImage) -> None:
    assert plan.file is not None
    if image.sha512 != plan.file.sha512:
        raise VerifyFailed(f"checksum mismatch: Glance stored sha512 {str(image.sha512)[:16]}..., "
                           f"the manifest says {plan.file.sha512[:16]}...", site=plan.site)
    if image.size is not None and image.size != plan.file.size:
        raise VerifyFailed(f"size mismatch: Glance stored {image.size} bytes, "
                           f"the manifest says {plan.file.size}", site=plan.site)


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("interrupted")


def _check_name_free(conn: Connection, plan: SitePlan) -> None:
    # Someone may have created an image with the production name since we planned.
    holders = glance.list_images(conn, name=plan.production_name)
    if holders:
        raise NameTaken(f"'{plan.production_name}' appeared meanwhile on "
                        f"{', '.join(i.id for i in holders)}", site=plan.site)


def _rollback(conn: Connection, plan: SitePlan, done: _Progress, report: Reporter) -> list[str]:
    """Undo in reverse order: the pointer, then the old image gets its name back (users see it
    again sooner), the new image and the record objects this run created go. Every step is
    tried even if an earlier one fails."""
    problems: list[str] = []
    if done.promoted:
        return problems
    report("rolling back", 0)
    record, retire = plan.record, plan.retire
    assert record is not None  # a PUBLISH plan has one

    def attempt(what: str, step: Callable[[], object]) -> None:
        outcome = contain(plan.site, step)
        if isinstance(outcome, PublishError):
            problems.append(f"could not {what}: {outcome.reason}")

    def restore_pointer() -> None:
        if done.pointer_before is None:
            store.delete(conn, record.container, record.pointer)
        else:
            store.put(conn, record.container, record.pointer, done.pointer_before,
                      site=plan.site)

    if done.pointer_set:
        attempt(f"restore {record.container}/{record.pointer}", restore_pointer)
    backdated = done.backdated
    if backdated is not None and retire is not None:
        attempt(f"rename {backdated.id} back", lambda: glance.patch_image(
            conn, backdated, name=plan.production_name, hidden=retire.was_hidden,
            set_props=retire.restore_props, remove_props=(PROP_SUPERSEDED_BY, PROP_BACKDATED_AT)))
    temp = done.temp
    if temp is not None:
        attempt(f"delete {temp.id}", lambda: glance.delete_image(conn, temp.id))
    # Only the objects this run created: an object that was there already may be another
    # image's record.
    for name in reversed(done.recorded):
        attempt(f"delete {record.container}/{name}",
                lambda name=name: store.delete(conn, record.container, name))
    return problems
