"""Files built on the host and copied into the guest before a check (checks.yaml `assets`).

docker-busybox: a container image in ``docker save`` format with one layer holding a static
busybox, so ``docker load`` + ``docker run`` work in a guest that has no registry to pull from.
Written here byte for byte (deterministic tar, fixed times) rather than with a docker on the host.
The busybox is the host's for a guest of its own arch, else Debian's for the guest's arch,
fetched once by URL and sha256 (``FOREIGN_BUSYBOX``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ...builder.cache import default_cache_root
from ...errors import BootTestError, CommandError
from ...runner import run

BUSYBOX_TAG = "sage-image-test/busybox:1"
# Debian's busybox-static puts the binary here; the dynamic busybox would need libc in the image.
BUSYBOX_PATHS = {"x86_64": ("/bin/busybox", "/usr/bin/busybox")}
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class PinnedDeb:
    """One file out of a Debian package fetched by URL, accepted only with this sha256."""

    url: str
    sha256: str
    member: str  # its path in the package


# A guest of another arch than the host (an arm64 image tested on an x86 host) needs a busybox
# of its own arch: Debian bookworm's busybox-static for it, from Debian's mirror, once per cache.
# When a point release drops this version from the pool, the fetch fails and names this pin.
FOREIGN_BUSYBOX = {
    "aarch64": PinnedDeb(
        url="http://deb.debian.org/debian/pool/main/b/busybox/"
            "busybox-static_1.35.0-4+deb12u1+b1_arm64.deb",
        sha256="732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5",
        member="bin/busybox"),
}
FETCH_TIMEOUT = 120
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
    if qemu_arch in FOREIGN_BUSYBOX:
        return fetch_pinned_file(FOREIGN_BUSYBOX[qemu_arch], default_cache_root())
    raise BootTestError(f"no static busybox for {qemu_arch} on this host",
                        hint="apt-get install busybox-static (the docker checks copy it into "
                             "the guest as a container image)")


def fetch_pinned_file(pin: PinnedDeb, cache_root: Path) -> Path:
    """The pinned package's file, from CACHE/assets (fetched and its hash checked the first time)."""
    dest = cache_root / "assets" / pin.sha256[:16] / Path(pin.member).name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as work:
        deb = Path(work) / "package.deb"
        deb.write_bytes(_download(pin))
        try:
            run(["dpkg-deb", "-x", deb, Path(work) / "root"], timeout=120)
        except CommandError as exc:
            raise BootTestError(f"{pin.url}: not a Debian package ({exc.message})") from exc
        found = Path(work) / "root" / pin.member
        if not found.is_file():
            raise BootTestError(f"{pin.url} has no {pin.member}")
        os.replace(found, dest)  # atomic: a concurrent test sees the whole file or none
    return dest


def _download(pin: PinnedDeb) -> bytes:
    try:
        with urllib.request.urlopen(pin.url, timeout=FETCH_TIMEOUT) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BootTestError(f"cannot fetch {pin.url}: {getattr(exc, 'reason', exc)}",
                            hint="Debian may have replaced that version: update the pin in "
                                 "sage_image/boottest/checks/assets.py") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.sha256:
        raise BootTestError(f"{pin.url}: sha256 {digest}, pinned {pin.sha256}; not used")
    return data


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
