"""The gpu element's nvidia-drm rule (elements/gpu/install.d/70-gpu-cuda), run by a real shell as
modprobe runs an `install` command: nvidia-drm loads where an NVIDIA GPU is, and loading it is a
successful no-op elsewhere (Debian's boot-time load must not fail on a node without one)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ELEMENT = Path(__file__).resolve().parents[2] / "sage_image/elements/gpu/install.d/70-gpu-cuda"


def _install_command() -> str:
    match = re.search(r"^install nvidia-drm (.+)$", ELEMENT.read_text(), re.M)
    assert match, "the element writes no `install nvidia-drm` rule"
    return match.group(1)


def _load(tmp_path: Path, vendors: list[str]) -> tuple[int, str]:
    """The rule with /sys/bus/pci/devices and /sbin/modprobe pointed at stand-ins in tmp_path."""
    devices = tmp_path / "devices"
    for i, vendor in enumerate(vendors):
        (devices / f"0000:00:0{i}.0").mkdir(parents=True)
        (devices / f"0000:00:0{i}.0" / "vendor").write_text(vendor + "\n")
    calls = tmp_path / "modprobe-calls"
    modprobe = tmp_path / "modprobe"
    modprobe.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    modprobe.chmod(0o755)
    command = _install_command().replace("/sys/bus/pci/devices", str(devices)) \
                                .replace("/sbin/modprobe", str(modprobe))
    proc = subprocess.run(["sh", "-c", command], env={"CMDLINE_OPTS": "", "PATH": "/usr/bin:/bin"})
    return proc.returncode, calls.read_text() if calls.exists() else ""


@pytest.mark.parametrize("vendors,loaded", [
    (["0x8086", "0x1af4"], ""),                                   # a VM without a GPU
    ([], ""),                                                     # no PCI at all
    (["0x8086", "0x10de"], "--ignore-install nvidia-drm\n"),      # a GPU node
    (["0x10de0"], ""),                                            # not NVIDIA's id, only alike
])
def test_nvidia_drm_loads_only_with_an_nvidia_gpu(tmp_path: Path, vendors: list[str],
                                                  loaded: str) -> None:
    assert _load(tmp_path, vendors) == (0, loaded)
