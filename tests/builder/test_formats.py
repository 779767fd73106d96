"""The image files a build writes (real qemu-img on a small disk): a qcow2 written beside the
raw is proved to hold the same disk, and the manifest records it - the boot test boots the raw,
bare-metal sites get the qcow2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sage_image.builder.artifacts import file_digests, produce_files, prove_same_disk
from sage_image.builder.plan import BuildRequest, plan_build
from sage_image.catalog import load_catalog
from sage_image.errors import BuildError

CATALOG = load_catalog()


def small_disk(path: Path, *, size_mb: int = 8) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", path, f"{size_mb}M"], check=True)
    with path.open("r+b") as f:
        f.seek(1 << 20)
        f.write(os.urandom(2 << 20))  # data between holes, like a real image
    return path


def plan_for(sites: tuple[str, ...], tmp_path: Path):  # noqa: ANN201
    return plan_build(CATALOG, BuildRequest(release="bookworm", variant="base", sites=sites,
                                            out_dir=tmp_path / "out", timestamp=1700000000))


def test_a_qcow2_beside_the_raw_records_that_it_is_the_same_disk(tmp_path: Path) -> None:
    plan = plan_for(("CHI@UC", "KVM@TACC"), tmp_path)
    assert set(plan.formats) == {"qcow2", "raw"}
    plan.out_dir.mkdir()
    files = produce_files(small_disk(tmp_path / "image.raw"), plan, plan.out_dir)
    assert files["qcow2"].same_disk_as == files["raw"].sha512
    assert files["raw"].sha512 == file_digests(plan.out_dir / files["raw"].path)["sha512"]
    assert files["raw"].same_disk_as is None


def test_a_qcow2_only_build_records_no_equivalence(tmp_path: Path) -> None:
    # Nothing to compare it with: the boot test boots the qcow2 itself (boot/image.py).
    plan = plan_for(("CHI@UC",), tmp_path)
    plan.out_dir.mkdir()
    files = produce_files(small_disk(tmp_path / "image.raw"), plan, plan.out_dir)
    assert list(files) == ["qcow2"] and files["qcow2"].same_disk_as is None
    assert not (tmp_path / "image.raw").exists()


def test_a_qcow2_of_another_disk_is_refused(tmp_path: Path) -> None:
    raw = small_disk(tmp_path / "a.raw")
    other = small_disk(tmp_path / "b.raw")  # same size, other bytes
    qcow2 = tmp_path / "b.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", other, qcow2], check=True)
    with pytest.raises(BuildError, match="b.qcow2 does not hold the same disk as a.raw"):
        prove_same_disk(raw, qcow2)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", "-c", raw, qcow2], check=True)
    prove_same_disk(raw, qcow2)  # the same disk, compressed
