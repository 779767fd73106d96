"""Files built on the host and copied into the guest before a check (checks.yaml `assets`).

docker-busybox: a container image in ``docker save`` format with one layer holding a static
busybox, so ``docker load`` + ``docker run`` work in a guest that has no registry to pull from.
Written here byte for byte (deterministic tar, fixed times) rather than with a docker on the host.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from ...errors import BootTestError

BUSYBOX_TAG = "sage-image-test/busybox:1"
# Debian's busybox-static puts the binary here; the dynamic busybox would need libc in the image.
BUSYBOX_PATHS = {"x86_64": ("/bin/busybox", "/usr/bin/busybox")}
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
APPLETS = ("sh", "echo", "cat", "ls", "true", "sleep", "id", "nc")
# Run in the guest as cc once the asset is copied in ({path}: where it is), once for all the
# checks that use it: `docker load` costs seconds under TCG. If it fails, each of those checks
# fails with its output.
GUEST_SETUP = {"docker-busybox": "docker load -q -i {path} 2>&1"}


def build_asset(name: str, dest_dir: Path, *, qemu_arch: str) -> Path:
    if name == "docker-busybox":
        return write_busybox_image(dest_dir / "docker-busybox.tar", qemu_arch=qemu_arch)
    raise BootTestError(f"unknown asset '{name}'")


def find_static_busybox(qemu_arch: str) -> Path:
    for candidate in BUSYBOX_PATHS.get(qemu_arch, ()):
        path = Path(candidate)
        if path.is_file() and _is_static_elf(path):
            return path
    raise BootTestError(f"no static busybox for {qemu_arch} on this host",
                        hint="apt-get install busybox-static (the docker checks copy it into "
                             "the guest as a container image)")


def _is_static_elf(path: Path) -> bool:
    data = path.read_bytes()
    return data[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in data[:4096] \
        and b"/lib/ld-linux" not in data[:4096]


def write_busybox_image(dest: Path, *, qemu_arch: str) -> Path:
    layer = _layer_tar(find_static_busybox(qemu_arch))
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": DOCKER_ARCH[qemu_arch], "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "sage-image test"}],
    }, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    repo, tag = BUSYBOX_TAG.split(":")
    manifest = json.dumps([{"Config": config_name, "RepoTags": [BUSYBOX_TAG],
                            "Layers": [f"{layer_id}/layer.tar"]}]).encode()
    members = {
        config_name: config,
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": json.dumps({"id": layer_id}).encode(),
        f"{layer_id}/layer.tar": layer,
        "manifest.json": manifest,
        "repositories": json.dumps({repo: {tag: layer_id}}).encode(),
    }
    dest.write_bytes(_tar(members))
    return dest


def _layer_tar(busybox: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add_dir(tar, "bin")
        _add_dir(tar, "tmp", mode=0o1777)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    return buf.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            for parent in _parents(name):
                if parent not in tar.getnames():
                    _add_dir(tar, parent)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]
