"""Helpers for the live sage-node tests (fixtures in conftest.py).

The node is real: Debian's RabbitMQ and Redis, the data-sharing service (the stand-in, which
behaves as upstream 0.14.0, in a venv with upstream's pinned requirements), the data service -
on free ports, in a temporary folder. Plugins run with the process runner: the real pywaggle
0.56.3 in a process with a container's environment and mounts (the booted sage image tests the
Docker runner).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from sage_image.builder.sources import STANDIN_TEMPLATES

ROOT = Path(__file__).resolve().parents[2]
SAGE_NODE = Path(sys.executable).with_name("sage-node")
DSS_STANDIN = STANDIN_TEMPLATES / "wes-data-sharing-service"
NODE_ID, VSN = "000048B02D05A0A4", "w02e"      # as /etc/waggle has them; WES changes the case
PORT_NAMES = ("amqp", "mqtt", "management", "prometheus", "redis", "epmd", "erlang_dist",
              "dss_metrics", "data_api")


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class NodeHarness:
    root: Path
    config_path: Path
    config: dict

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {"SAGE_NODE_CONFIG": str(self.config_path)}

    def cli(self, *args: str, timeout: float = 240, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SAGE_NODE), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)

    @property
    def ports(self) -> dict[str, int]:
        return self.config["ports"]

    @property
    def state(self) -> Path:
        return Path(self.config["state_dir"])


def make_node(root: Path, dss_python: Path, **overrides) -> NodeHarness:
    waggle = root / "waggle"
    waggle.mkdir(parents=True)
    (waggle / "node-id").write_text(NODE_ID + "\n")
    (waggle / "vsn").write_text(VSN + "\n")
    config = {
        "state_dir": str(root / "state"), "waggle_dir": str(waggle), "runner": "process",
        "ready_timeout": 240,
        "ports": dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True)),
        "dss": {"checkout": str(DSS_STANDIN), "python": str(dss_python)},
        "plugin_python": sys.executable,
    } | overrides
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return NodeHarness(root=root, config_path=path, config=config)


def leftovers(node: NodeHarness, pids: list[int]) -> list[str]:
    """What of a node still runs or listens after `down` (empty when nothing)."""
    found = [f"pid {pid}" for pid in pids if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    found += [f"port {name} {port}" for name, port in node.ports.items() if not port_is_free(port)]
    return found


def group_pids(leaders: list[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                pgid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            except (OSError, IndexError):
                continue
            if pgid in leaders:
                pids.append(int(entry.name))
    return pids
