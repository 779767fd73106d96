"""Failures at a site: what openstacksdk and keystoneauth raise, as our typed errors, and the one
boundary where any failure at a site becomes that site's result instead of stopping the others.

Steps translate the exceptions of their SDK calls where they happen (`translated`): the step
decides what a failure there means (an upload that fails is an UploadFailed, whatever the HTTP
status), except for what is about the site as a whole: a refused credential or permission is
always AccessRefused, a site that does not answer SiteUnreachable (a step may say otherwise:
the object store is a service of its own, and its not answering is a RecordFailed). Every
site job (listing, publishing, each rollback step, pruning) runs inside `contain`, the only
place in publish that catches every exception. A failed site's result shows the error's
`reason`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import AccessRefused, PublishError, SageImageError, SiteUnreachable

log = logging.getLogger("sage_image.publish")
T = TypeVar("T")
MAX_REASON = 300  # characters of an exception's message kept in a reason

UNREACHABLE_HINT = ("is the site up? Check the cloud's auth_url and endpoints in clouds.yaml "
                    "(OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml)")
CREDENTIALS_HINT = ("check the cloud's credentials in clouds.yaml (an application credential "
                    "may have expired or been deleted)")
PERMISSION_HINT = "the project's role may not do this at the site (its policy decides)"


def one_line(exc: BaseException) -> str:
    """The exception's own message, first line, bounded: openstacksdk's and keystoneauth's
    messages hold URLs and HTTP status, never credentials."""
    text = str(exc).strip()
    return text.splitlines()[0][:MAX_REASON] if text else type(exc).__name__


def sdk_errors() -> tuple[type[Exception], ...]:
    """What openstacksdk and keystoneauth raise (imported late: publish imports openstacksdk
    only once it talks to a site)."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    return (sdk.SDKException, ksa.ClientException)


def typed(exc: Exception, *, site: str, doing: str | None = None,
          failed: type[PublishError] = PublishError,
          unreachable: type[PublishError] = SiteUnreachable) -> PublishError:
    """Our typed error for an exception of openstacksdk or keystoneauth (one of sdk_errors)."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    message = f"{doing}: {one_line(exc)}" if doing else one_line(exc)
    status = (exc.status_code if isinstance(exc, sdk.HttpException)
              else exc.http_status if isinstance(exc, ksa.HttpError) else None)
    if status == 401 or isinstance(exc, ksa.AuthorizationFailure):
        return AccessRefused(message, site=site, hint=CREDENTIALS_HINT)
    if status == 403:
        return AccessRefused(message, site=site, hint=PERMISSION_HINT)
    if isinstance(exc, (ksa.ConnectionError, ksa.DiscoveryFailure, ksa.EndpointNotFound,
                        sdk.EndpointNotFound)):
        return unreachable(message, site=site, hint=UNREACHABLE_HINT)
    return failed(message, site=site)


@contextmanager
def translated(site: str, doing: str | None = None, *, failed: type[PublishError] = PublishError,
               unreachable: type[PublishError] = SiteUnreachable) -> Iterator[None]:
    """Raise what openstacksdk or keystoneauth raise in the block as our typed error; the
    message starts with `doing` (what the block was doing)."""
    try:
        yield
    except sdk_errors() as exc:
        raise typed(exc, site=site, doing=doing, failed=failed, unreachable=unreachable) from exc


def contain(site: str, job: Callable[[], T], *, doing: str | None = None) -> T | PublishError:
    """Run one site's job: its value, or the typed error it failed with. The boundary that
    keeps a failure at one site (an SDK error, a bad clouds.yaml entry, a bug) from stopping
    the others; KeyboardInterrupt and SystemExit go through."""
    try:
        return job()
    except Exception as exc:  # the boundary: every failure at a site becomes its result
        if isinstance(exc, PublishError):
            return exc
        if isinstance(exc, sdk_errors()):
            return typed(exc, site=site, doing=doing)
        if isinstance(exc, SageImageError):  # a complete message already (clouds.yaml, ...)
            return PublishError(exc.message, site=site, hint=exc.hint)
        log.debug("%s: unexpected failure", site, exc_info=True)  # --debug shows where
        return PublishError(f"{doing}: {one_line(exc)}" if doing else one_line(exc), site=site)
