"""Reading listening sockets from /proc (what `status` reports and the checks rely on)."""

from __future__ import annotations

import os
import socket

from sage_node.listeners import Listener, listeners_of, outside, parse_proc_net_tcp

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
V4 = HEADER + (
    "   0: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
    "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1\n"
    "   2: 010011AC:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1\n"
    "   3: 0100007F:9C40 0100007F:1628 01 00000000:00000000 00:00000000 00000000     0        0 444 1\n")
V6 = HEADER + (
    "   0: 00000000000000000000000001000000:10E2 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 555 1\n")


def test_parse_listen_lines_only():
    assert parse_proc_net_tcp(V4, v6=False) == [("127.0.0.1", 5672, 111), ("0.0.0.0", 22, 222),
                                                ("172.17.0.1", 5672, 333)]
    assert parse_proc_net_tcp(V6, v6=True) == [("::1", 4322, 555)]


def test_outside_flags_every_address_but_loopback_and_the_allowed_ones():
    found = [Listener("127.0.0.1", 1, 1), Listener("::1", 2, 1), Listener("172.17.0.1", 3, 1),
             Listener("0.0.0.0", 4, 1), Listener("10.0.0.5", 5, 1)]
    assert outside(found, {"172.17.0.1"}) == [Listener("0.0.0.0", 4, 1),
                                               Listener("10.0.0.5", 5, 1)]
    assert outside(found, set()) == found[2:]


def test_this_processs_own_listener_is_found():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert Listener("127.0.0.1", port, os.getpid()) in listeners_of([os.getpid()])
    assert all(item.port != port for item in listeners_of([os.getpid()]))


def test_interface_addresses_for_the_docker_bridge():
    from sage_node.node import interface_address

    assert interface_address("lo") == "127.0.0.1"
    assert interface_address("no-such-if0") is None
