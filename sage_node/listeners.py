"""Which TCP ports the node's processes listen on, read from /proc (for `status` and checks):
the promise is loopback and the Docker bridge only."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .proc import group_members

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    pid: int


def parse_proc_net_tcp(text: str, *, v6: bool) -> list[tuple[str, int, int]]:
    """(address, port, socket inode) of every LISTEN line of /proc/net/tcp or tcp6."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        hex_addr, hex_port = fields[1].split(":")
        raw = bytes.fromhex(hex_addr)
        # the kernel prints each 32-bit word in host (little-endian) order
        packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        address = str(ipaddress.IPv6Address(packed) if v6 else ipaddress.IPv4Address(packed))
        found.append((address, int(hex_port, 16), int(fields[9])))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def listeners_of(group_leaders: list[int], proc_root: Path = Path("/proc")) -> list[Listener]:
    """Listening TCP sockets held by these process groups (a part and what it started)."""
    owners: dict[int, int] = {}
    for leader in group_leaders:
        for pid in {leader, *group_members(leader)}:
            for inode in _socket_inodes(pid):
                owners[inode] = pid
    found = []
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            text = (proc_root / "net" / name).read_text()
        except OSError:
            continue
        for address, port, inode in parse_proc_net_tcp(text, v6=v6):
            if inode in owners:
                found.append(Listener(address, port, owners[inode]))
    return sorted(set(found), key=lambda item: (item.port, item.address))


def outside(listeners: list[Listener], allowed: set[str]) -> list[Listener]:
    """Listeners on an address that is neither loopback nor one of ``allowed``."""
    return [item for item in listeners
            if not ipaddress.ip_address(item.address).is_loopback and item.address not in allowed]
