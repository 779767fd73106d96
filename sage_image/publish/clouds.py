"""Credentials: which OpenStack cloud a catalog site is, and a connection to it.

openstacksdk does the lookup itself (OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml), so a Chameleon user's existing
clouds.yaml works unchanged. An OpenStack RC file (OS_* variables) serves one site only: it names
no cloud, so it cannot tell sites apart. Nothing here prints or logs a secret: errors name the
cloud and the files searched, never the configuration's content.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..catalog.model import Catalog, Site
from ..errors import UsageError
from ..values import did_you_mean
from .failures import sdk_errors

if TYPE_CHECKING:
    from openstack.connection import Connection

log = logging.getLogger("sage_image.publish")


@dataclass(frozen=True)
class SiteTarget:
    """A catalog site as publish sees it: where it is and which disk format it takes."""

    name: str
    cloud: str
    disk_format: str
    arches: tuple[str, ...]
    from_env: bool = False  # credentials from OS_* variables instead of clouds.yaml
    kind: str = ""  # the catalog site kind (baremetal, kvm): per-kind image metadata


def select_sites(catalog: Catalog, names: Sequence[str] | None, *, all_sites: bool,
                 default: Sequence[str] = ()) -> list[Site]:
    """--sites A,B / --all-sites / the given default; unknown names are a UsageError."""
    if all_sites or not (names or default):
        return list(catalog.sites.values())
    chosen = []
    for name in names or default:
        if name not in catalog.sites:
            raise UsageError(f"unknown site '{name}'{did_you_mean(name, catalog.sites)}"
                             f" (known: {', '.join(catalog.sites)})")
        chosen.append(catalog.sites[name])
    return chosen


def resolve_targets(catalog: Catalog, sites: Sequence[Site]) -> list[SiteTarget]:
    """Map each site to its clouds.yaml entry, or to the OS_* environment for a single site."""
    known = known_clouds()
    targets = []
    for site in sites:
        disk_format = catalog.site_kinds[site.kind].disk_format
        from_env = site.cloud not in known
        if from_env and not (os.environ.get("OS_AUTH_URL") and len(sites) == 1):
            raise UsageError(
                f"site {site.name}: no cloud '{site.cloud}' in clouds.yaml"
                + (f" (clouds found: {', '.join(sorted(known))})" if known else ""),
                hint="add it to clouds.yaml (OS_CLIENT_CONFIG_FILE, ./clouds.yaml or "
                     "~/.config/openstack/clouds.yaml), or source the site's OpenStack RC file "
                     "and publish to that one site (--sites NAME)")
        targets.append(SiteTarget(name=site.name, cloud=site.cloud, disk_format=disk_format,
                                  arches=site.arches, from_env=from_env, kind=site.kind))
    return targets


def config_errors() -> tuple[type[Exception], ...]:
    """What reading clouds.yaml raises: openstacksdk's ConfigException and keystoneauth's
    plugin errors for what they check; TypeError, AttributeError or ValueError from
    openstacksdk's loader for an entry of the wrong shape (a number where a mapping belongs);
    OSError for a file it cannot read."""
    return (*sdk_errors(), OSError, TypeError, AttributeError, ValueError)


def known_clouds() -> set[str]:
    from openstack import config as os_config

    try:
        return set(os_config.OpenStackConfig().get_cloud_names())
    except config_errors() as exc:  # report it without the file's content
        raise UsageError(f"cannot read clouds.yaml: {type(exc).__name__}") from exc


def connect(target: SiteTarget) -> Connection:
    """A connection for one site; authentication happens on the first request."""
    import openstack

    try:
        if target.from_env:
            return openstack.connect(load_yaml_config=False, load_envvars=True)
        return openstack.connect(cloud=target.cloud)
    except config_errors() as exc:  # keystoneauth/openstack config errors name options, not values
        raise UsageError(f"site {target.name}: cannot configure cloud '{target.cloud}': "
                         f"{type(exc).__name__}: {exc}") from exc


def compute_endpoint(conn: Connection) -> str | None:
    """The site's Nova endpoint, or None (a Glance-only site, or no service catalog)."""
    from keystoneauth1 import exceptions as ksa

    config = conn.config
    override = config.config.get("compute_endpoint_override")
    if override:
        return str(override)
    if config.config.get("auth_type") in ("none", "noauth", "admin_token"):
        return None  # no service catalog to ask (openstacksdk would guess the auth endpoint)
    try:
        return conn.session.get_endpoint(service_type="compute",
                                         interface=config.get_interface() or "public",
                                         region_name=config.get_region_name("compute"))
    except ksa.EndpointNotFound:
        return None
    except ksa.ClientException as exc:
        log.debug("compute endpoint lookup failed: %s", type(exc).__name__)
        return None
