"""Code that runs inside a local Swift's own processes: its ring builder, and a log hook.

Imported by `python -m sage_image.localcloud.swift_app` (the rings) and by the Swift servers
(`log_custom_handlers`), never by sage-image itself: it imports Swift.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import SysLogHandler


def log_to_stderr(conf: dict, name: str, log_to_console: bool, log_route: str, fmt: str,
                  logger: logging.Logger, adapted_logger: object) -> None:
    """Swift always logs to syslog: /dev/log, else UDP to localhost:514 (where nothing listens
    on this machine). Send its log to stderr instead - the server's server.log."""
    for handler in [h for h in logger.handlers if isinstance(h, SysLogHandler)]:
        logger.removeHandler(handler)
        handler.close()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(f"%(asctime)s {name}: %(message)s"))
    logger.addHandler(stream)


def build_rings(etc: str, ports: dict[str, int]) -> None:
    """One ring per server kind, one device each (d1 on 127.0.0.1:port), one replica: what a
    single-disk Swift needs. Swift's own RingBuilder, in one process (swift-ring-builder would
    be three runs, each paying Swift's import time)."""
    from swift.common.ring import RingBuilder

    for kind, port in ports.items():
        builder = RingBuilder(0, 1, 0)  # 2**0 partitions, 1 replica, no move delay
        builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
                         "device": "d1", "weight": 1})
        builder.rebalance()
        builder.get_ring().save(f"{etc}/{kind}.ring.gz")


if __name__ == "__main__":
    # python -m sage_image.localcloud.swift_app ETC account=PORT container=PORT object=PORT
    build_rings(sys.argv[1], {k: int(v) for k, v in (a.split("=") for a in sys.argv[2:])})
