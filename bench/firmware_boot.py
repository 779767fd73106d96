#!/usr/bin/env python3
"""Where a firmware boot's time goes: seconds from QEMU start to each console milestone.

Boots the image (read-only, through a throw-away overlay) through SeaBIOS or OVMF under TCG, with
the same machine as `sage-image test --firmware` by default, timestamps the serial console and
stops at the login prompt. No metadata drive: cloud-init's cost is the same as in a direct boot
(measured there); this isolates firmware + GRUB + reading kernel and initrd. `--disk ide` or
`--disk ahci` try other disk controllers (SeaBIOS reads the kernel through the BIOS disk calls).

usage: .venv/bin/python bench/firmware_boot.py IMAGE [--uefi] [--disk virtio|ide|ahci]
                                               [--timeout S]
example: .venv/bin/python bench/firmware_boot.py out/bookworm-base/CC-Debian12.qcow2 --uefi
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sage_image.boottest.boot.qemu import uefi_firmware  # noqa: E402

MILESTONES = (("firmware", ("SeaBIOS", "BdsDxe", "UEFI")), ("grub", ("GNU GRUB", "Booting `")),
              ("kernel", ("Linux version",)), ("init", ("systemd[1]", "Welcome to")),
              ("login", (" login:",)))
DISKS = {"virtio": "virtio-blk-pci,drive=root,bootindex=1",
         "ide": "ide-hd,drive=root,bus=ide.0,bootindex=1",
         "ahci": "ide-hd,drive=root,bus=ahci.0,bootindex=1"}


def qemu_argv(overlay: Path, *, uefi: bool, disk: str) -> list[str]:
    argv = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35" if disk == "ahci" else "pc", "-cpu", "max",
            "-accel", "tcg,thread=multi", "-m", "2048", "-smp", "2", "-serial", "stdio",
            "-drive", f"if=none,id=root,file={overlay},format=qcow2,cache=unsafe"]
    if disk == "ahci":
        argv += ["-device", "ahci,id=ahci"]
    argv += ["-device", DISKS[disk]]
    return argv + (["-bios", uefi_firmware("x86_64")] if uefi else [])


def measure(image: Path, *, uefi: bool, disk: str, timeout: float) -> dict:
    fmt = "qcow2" if image.suffix == ".qcow2" else "raw"
    with tempfile.TemporaryDirectory(prefix="bench-fw-") as tmp:
        overlay = Path(tmp) / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
                        str(image.resolve()), str(overlay)], check=True)
        start = time.monotonic()
        proc = subprocess.Popen(qemu_argv(overlay, uefi=uefi, disk=disk),
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        seen: dict[str, float] = {}
        text = b""
        try:
            os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
            while "login" not in seen and time.monotonic() - start < timeout:
                chunk = proc.stdout.read(65536) or b""  # type: ignore[union-attr]
                if not chunk:
                    time.sleep(0.05)
                    continue
                text += chunk
                decoded = text.decode(errors="replace")
                for name, markers in MILESTONES:
                    if name not in seen and any(m in decoded for m in markers):
                        seen[name] = round(time.monotonic() - start, 1)
        finally:
            proc.kill()
            proc.wait()
    return {"firmware": "ovmf" if uefi else "seabios", "disk": disk, "milestones_s": seen,
            "load_1min": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--uefi", action="store_true")
    parser.add_argument("--disk", choices=tuple(DISKS), default="virtio")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    print(json.dumps(measure(args.image, uefi=args.uefi, disk=args.disk, timeout=args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
