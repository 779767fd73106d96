"""Fast tests: a foreign-arch build is refused before it starts when emulation is unavailable."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_image.builder import preflight
from sage_image.builder.plan import BuildRequest, plan_build
from sage_image.catalog import load_catalog
from sage_image.errors import PreflightError

CATALOG = load_catalog()
ARM64 = plan_build(CATALOG, BuildRequest(release="bookworm", variant="base", arch="arm64"))
AMD64 = plan_build(CATALOG, BuildRequest(release="bookworm", variant="base"))
# /proc/sys/fs/binfmt_misc/qemu-aarch64 as Debian's qemu-user-static registers it
QEMU_AARCH64 = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n"
                "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
                "mask ffffffffffffff00fffffffffffffffffeffffff\n")


def binfmt(tmp_path: Path, *, mounted: bool = True, entry: str | None = QEMU_AARCH64) -> Path:
    folder = tmp_path / "binfmt_misc"
    folder.mkdir()
    if mounted:
        (folder / "register").write_text("")
        (folder / "status").write_text("enabled\n")
    if mounted and entry is not None:
        (folder / "qemu-aarch64").write_text(entry)
    return folder


def test_a_registered_emulator_passes(tmp_path: Path) -> None:
    preflight.check_emulation(ARM64, binfmt_dir=binfmt(tmp_path), machine="x86_64")


def test_a_native_build_needs_no_emulation(tmp_path: Path) -> None:
    unmounted = binfmt(tmp_path, mounted=False)
    preflight.check_emulation(AMD64, binfmt_dir=unmounted, machine="x86_64")
    preflight.check_emulation(ARM64, binfmt_dir=unmounted, machine="aarch64")
    preflight.check_emulation(ARM64, binfmt_dir=unmounted, machine="arm64")


@pytest.mark.parametrize("kwargs,message,hint", [
    (dict(mounted=False), "binfmt_misc is not mounted at", "mount -t binfmt_misc binfmt_misc"),
    (dict(entry=None), "qemu-aarch64 is not registered", "update-binfmts --enable qemu-aarch64"),
    (dict(entry=QEMU_AARCH64.replace("enabled", "disabled", 1)), "qemu-aarch64 is disabled",
     "update-binfmts --enable"),
    (dict(entry=QEMU_AARCH64.replace("flags: PF", "flags: P")), "lacks the F flag",
     "qemu-user-static"),
])
def test_unavailable_emulation_is_refused_with_how_to_enable_it(
        tmp_path: Path, kwargs: dict[str, object], message: str, hint: str) -> None:
    with pytest.raises(PreflightError) as info:
        preflight.check_emulation(ARM64, binfmt_dir=binfmt(tmp_path, **kwargs),  # type: ignore[arg-type]
                                  machine="x86_64")
    assert "an arm64 build on this x86_64 machine needs qemu-user emulation" in info.value.message
    assert message in info.value.message and hint in (info.value.hint or "")
