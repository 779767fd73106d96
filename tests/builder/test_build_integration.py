"""A real diskimage-builder build of the sage image, opened read-only and checked.

Also: a build interrupted half-way (SIGTERM) or killed outright (SIGKILL) leaves no mount,
loop device or partition mapping behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sage_image.builder import devmapper
from sage_image.builder.artifacts import file_digests
from sage_image.builder.build import reap_stale_work
from sage_image.builder.imagefs import ImageFiles

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="image builds need root")]

CACHE = Path.home() / ".cache" / "sage-image"


@pytest.fixture(scope="module")
def image(sage_build, sage_manifest) -> ImageFiles:
    return ImageFiles(sage_build / sage_manifest.files["raw"].path)


def test_pinned_commits_are_checked_out_under_opt(image, sage_manifest, source_repos):
    for name, (_repo, commit) in source_repos.items():
        entry = sage_manifest.sources[name]
        assert entry.commit == commit and entry.stand_in is False
        assert image.read_text(f"{entry.path}/.git/HEAD").strip() == commit
        assert image.exists(f"{entry.path}/TEST-FIXTURE")
    assert sage_manifest.stand_ins == ()
    assert sage_manifest.properties["build-stand-ins"] == ""


def test_docker_and_compose_come_from_debian_packages(image, sage_manifest):
    for package in ("docker.io", "docker-compose", "cloud-init", "openssh-server"):
        assert package in sage_manifest.packages, package
    status = image.read_text("/var/lib/dpkg/status")
    assert "Package: docker.io\nStatus: install ok installed" in status
    assert "Package: docker-compose\nStatus: install ok installed" in status


def test_cloud_init_default_user_is_cc_with_docker(image):
    config = image.read_text("/etc/cloud/cloud.cfg.d/50-chameleon.cfg")
    assert re.search(r"default_user:\n\s+name: cc\n\s+uid: 1000", config)
    groups = re.search(r"groups: \[(.*)\]", config).group(1).split(", ")
    assert "docker" in groups
    assert "disable_root: true" in config and "ssh_pwauth: false" in config
    assert 'sudo: ["ALL=(ALL) NOPASSWD:ALL"]' in config


def test_docker_socket_is_never_world_writable(image):
    unit = image.read_text("/lib/systemd/system/docker.socket")
    assert "SocketMode=0660" in unit and "SocketGroup=docker" in unit
    for folder in ("/etc/systemd/system", "/etc/rc.local", "/etc/profile.d"):
        if image.exists(folder) and image.stat(folder).mode & 0o040000:
            for name in image.listdir(folder):
                path = f"{folder}/{name}"
                if image.stat(path).mode & 0o100000:
                    assert not re.search(r"chmod\s+(666|777|[ao]\+w)\s+\S*docker\.sock",
                                         image.read_text(path)), path


def test_sshd_is_hardened_and_no_host_key_is_baked_in(image):
    config = image.read_text("/etc/ssh/sshd_config.d/10-chameleon-hardening.conf")
    for setting in ("PermitRootLogin no", "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no"):
        assert setting in config
    algorithms = " ".join(line for line in config.splitlines()
                          if line.startswith(("KexAlgorithms", "Ciphers", "MACs")))
    assert "sha1" not in algorithms and "cbc" not in algorithms and "curve25519" in algorithms
    assert not [n for n in image.listdir("/etc/ssh") if n.startswith("ssh_host_")]


def test_sage_commands_are_installed(image):
    for command in ("virtual-waggle", "beehive-server", "sage-ecr"):
        assert image.stat(f"/usr/local/bin/{command}").mode & 0o777 == 0o755
    assert image.exists("/usr/bin/cc-snapshot")
    assert "BEEHIVE_ROOT" in image.read_text("/etc/profile.d/sage.sh")
    daemon = json.loads(image.read_text("/etc/docker/daemon.json"))
    assert "127.0.0.1:5001" in daemon["insecure-registries"]


def test_provenance_equals_manifest_properties(image, sage_manifest):
    provenance = json.loads(image.read_text("/opt/chameleon/provenance.json"))
    assert provenance == sage_manifest.properties
    for key in ("build-variant", "build-distro", "build-release", "build-repo",
                "build-repo-commit", "build-timestamp", "build-tag"):
        assert provenance[key], key


def test_manifest_checksums_match_the_files(sage_build, sage_manifest):
    assert set(sage_manifest.files) == {"qcow2", "raw"}
    for entry in sage_manifest.files.values():
        path = sage_build / entry.path
        assert path.stat().st_size == entry.size
        assert file_digests(path) == {k: getattr(entry, k) for k in ("sha256", "sha512", "md5")}
    qcow2 = sage_manifest.files["qcow2"]
    assert qcow2.compression == "zlib" and qcow2.size < qcow2.virtual_size
    assert (sage_build / "boot" / "vmlinuz").stat().st_size > 1_000_000
    assert "dib:install.d" in sage_manifest.phases


def test_build_left_nothing_behind(sage_build):
    # Other builds may be running on this machine (their work folders are alive); a finished
    # build must leave no work folder, mount or loop device of its own.
    for work in (CACHE / "work").glob("*"):
        assert _owner_alive(work), f"{work} was left behind"
    alive = list((CACHE / "work").glob("*"))
    stray_mounts = [m for m in devmapper.mounts_under(CACHE / "work")
                    if not any(m.startswith(str(w)) for w in alive)]
    stray_loops = [d for d in devmapper.loops_backed_by(CACHE / "work")
                   if not any(w.name in Path(f"/sys/block/{Path(d).name}/loop/backing_file")
                              .read_text() for w in alive)]
    assert stray_mounts == [] and stray_loops == []


def _owner_alive(work: Path) -> bool:
    try:
        os.kill(int((work / "owner").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _start_build(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sage_image.cli", "build", "--release", "bookworm", "--variant",
         "base", "--allow-stand-ins", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_phase(proc: subprocess.Popen[str], phase: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    for line in proc.stderr:
        if phase in line:
            return
        assert time.monotonic() < deadline, f"never reached {phase}"
    pytest.fail(f"build ended before {phase} (exit {proc.wait()})")


def _work_of(proc: subprocess.Popen[str]) -> Path:
    return next(CACHE.joinpath("work").glob(f"bookworm-base-amd64-{proc.pid}"))


def test_sigterm_half_way_cleans_up_everything(tmp_path):
    proc = _start_build(tmp_path / "out")
    try:
        _wait_for_phase(proc, "dib:finalise.d")  # image partitions mapped and mounted now
        work = _work_of(proc)
        assert devmapper.loops_backed_by(work) and devmapper.mounts_under(work)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=180) == 130
    finally:
        proc.kill()
    assert devmapper.loops_backed_by(work) == [] and devmapper.mounts_under(work) == []
    assert not work.exists()
    assert not list((tmp_path / "out").glob("*.qcow2")) and not list((tmp_path / "out").glob("*.raw"))
    assert (tmp_path / "out" / "build.log").exists()  # kept for the post-mortem


def test_sigkill_leftovers_are_reaped_by_the_next_build(tmp_path):
    proc = _start_build(tmp_path / "out")
    try:
        _wait_for_phase(proc, "dib:install.d")  # the chroot's /proc, /sys, /dev are mounted
        work = _work_of(proc)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    time.sleep(1)
    assert devmapper.mounts_under(work)  # a SIGKILLed process cannot clean up after itself...
    assert work in reap_stale_work(CACHE)  # ...so the next build does, first thing
    assert devmapper.mounts_under(work) == [] and devmapper.loops_backed_by(work) == []
    assert not work.exists()
