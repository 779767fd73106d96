"""Instance metadata the way Chameleon delivers it: an OpenStack config drive.

Chameleon's bare-metal and KVM sites hand cloud-init a ``config-2`` volume; booting with the same
layout exercises cloud-init's ConfigDrive path, the one production uses. NoCloud (``cidata``) is
kept as an option for images built without the ConfigDrive datasource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...runner import run

KINDS = ("configdrive", "nocloud")
KEY_NAME = "sage-image-test"


@dataclass(frozen=True)
class Metadata:
    uuid: str
    hostname: str
    public_key: str      # one OpenSSH public key line
    mac: str             # the NIC's MAC, so network_data.json can name the link as Nova does


def configdrive_files(meta: Metadata) -> dict[str, str]:
    """Path inside the volume -> content, as Nova writes it (openstack/latest/...)."""
    meta_data: dict[str, Any] = {
        "uuid": meta.uuid,
        "name": meta.hostname,
        "hostname": meta.hostname,
        "launch_index": 0,
        "availability_zone": "nova",
        "project_id": "sage-image-test",
        "public_keys": {KEY_NAME: meta.public_key},
        "keys": [{"name": KEY_NAME, "type": "ssh", "data": meta.public_key}],
        "meta": {},
    }
    network_data = {
        "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": meta.mac, "mtu": 1500}],
        "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "tap0",
                      "network_id": "sage-image-test"}],
        "services": [],
    }
    files = {"meta_data.json": meta_data, "network_data.json": network_data,
             "vendor_data.json": {}, "vendor_data2.json": {}}
    return {f"openstack/latest/{name}": json.dumps(data, indent=2, sort_keys=True)
            for name, data in files.items()}


def nocloud_files(meta: Metadata) -> dict[str, str]:
    meta_data = "\n".join([
        f"instance-id: {meta.uuid}",
        f"local-hostname: {meta.hostname}",
        "public-keys:",
        f"  - {meta.public_key}",
        "",
    ])
    return {"meta-data": meta_data, "user-data": "#cloud-config\n{}\n"}


def write_drive(kind: str, meta: Metadata, workdir: Path) -> Path:
    """Write the metadata tree and pack it as an ISO 9660 volume; return the ISO's path."""
    if kind == "configdrive":
        files, label = configdrive_files(meta), "config-2"
    else:
        files, label = nocloud_files(meta), "cidata"
    tree = workdir / f"{kind}-tree"
    for rel, content in files.items():
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    iso = workdir / f"{kind}.iso"
    # Rock Ridge + Joliet keep the long lower-case names cloud-init looks for.
    run(["genisoimage", "-quiet", "-o", iso, "-V", label, "-J", "-R", tree], timeout=60)
    return iso
