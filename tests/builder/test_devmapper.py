"""The kpartx/dmsetup stand-ins, on real loop devices over a real partitioned file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.builder import devmapper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def shim(tool: str, *args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sage_image.builder.devmapper", tool, *args],
                          env=os.environ | {devmapper.STATE_ENV: str(state)},
                          capture_output=True, text=True)


@pytest.fixture
def disk(tmp_path):
    """A 64 MiB file with two partitions, attached to a loop device; always detached."""
    image = tmp_path / "disk.raw"
    image.write_bytes(b"")
    os.truncate(image, 64 * 2**20)
    subprocess.run(["sfdisk", "-q", str(image)], input="1MiB,20MiB,L\n,,L\n", text=True,
                   check=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True).stdout.strip()
    yield tmp_path, device
    devmapper.sweep(tmp_path, tmp_path / "state")
    subprocess.run(["losetup", "-d", device], capture_output=True)


def test_kpartx_maps_partitions_as_offset_loop_devices(disk):
    work, device = disk
    state = work / "state"
    result = shim("kpartx", "-av", device, state=state)
    assert result.returncode == 0, result.stderr
    name = Path(device).name
    links = [Path(f"/dev/mapper/{name}p1"), Path(f"/dev/mapper/{name}p2")]
    assert all(link.is_symlink() for link in links)
    first = Path(os.readlink(links[0])).name
    assert int(Path(f"/sys/block/{first}/loop/offset").read_text()) == 2**20
    assert int(Path(f"/sys/block/{first}/loop/sizelimit").read_text()) == 20 * 2**20
    # backed by the image file itself (fstrim needs that), not by the whole-disk loop device
    assert Path(f"/sys/block/{first}/loop/backing_file").read_text().strip() == str(work / "disk.raw")
    subprocess.run(["mkfs.ext4", "-q", str(links[0])], check=True)  # usable as a partition
    assert sorted(p.name for p in state.iterdir()) == [f"{name}p1", f"{name}p2"]

    assert shim("dmsetup", "remove", f"{name}p2", state=state).returncode == 0
    assert not links[1].exists()
    assert shim("kpartx", "-d", device, state=state).returncode == 0
    assert not links[0].is_symlink() and not list(state.iterdir())
    assert devmapper.loops_backed_by(work) == [device]  # only the whole-disk device remains


def test_sweep_undoes_everything_a_killed_build_left(disk, tmp_path):
    work, device = disk
    state = work / "state"
    assert shim("kpartx", "-a", device, state=state).returncode == 0
    mnt = work / "mnt"
    mnt.mkdir()
    link = f"/dev/mapper/{Path(device).name}p1"
    subprocess.run(["mkfs.ext4", "-q", link], check=True)
    subprocess.run(["mount", link, str(mnt)], check=True)
    assert devmapper.mounts_under(work) == [str(mnt)]

    done = devmapper.sweep(work, state)
    assert f"unmounted {mnt}" in done
    assert devmapper.mounts_under(work) == [] and devmapper.loops_backed_by(work) == []
    assert not Path(link).is_symlink()


def test_unsupported_arguments_fail_loudly(tmp_path):
    assert shim("kpartx", "-l", "/dev/loop0", state=tmp_path).returncode == 1
    assert shim("dmsetup", "table", state=tmp_path).returncode == 1
    assert shim("frobnicate", state=tmp_path).returncode == 2


def test_kpartx_maps_the_three_partitions_of_the_hybrid_gpt_layout(tmp_path):
    """ESP, BIOS boot partition (no filesystem) and root, as DIB's block-device-efi makes them."""
    image = tmp_path / "disk.raw"
    image.write_bytes(b"")
    os.truncate(image, 64 * 2**20)
    subprocess.run(["sgdisk", "-n", "1:0:+20M", "-t", "1:EF00", "-n", "2:0:+1M", "-t", "2:EF02",
                    "-n", "3:0:0", "-t", "3:8300", str(image)], check=True, capture_output=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True).stdout.strip()
    state = tmp_path / "state"
    try:
        assert shim("kpartx", "-av", device, state=state).returncode == 0
        name = Path(device).name
        sizes = [int(Path(f"/sys/block/{Path(os.readlink(f'/dev/mapper/{name}p{n}')).name}"
                          "/loop/sizelimit").read_text()) for n in (1, 2, 3)]
        assert sizes[:2] == [20 * 2**20, 2**20] and sizes[2] > 40 * 2**20
        assert shim("kpartx", "-d", device, state=state).returncode == 0
        assert devmapper.loops_backed_by(tmp_path) == [device]
    finally:
        devmapper.sweep(tmp_path, state)
        subprocess.run(["losetup", "-d", device], capture_output=True)
