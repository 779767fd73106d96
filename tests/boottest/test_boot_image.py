"""Integration (slow): boot the real bookworm sage image; all checks pass. Then boot copies
broken on purpose (edited with debugfs, no second build) and see each check fail with the right
message - proof that every check can fail.

The image is the session's real release run (tests/conftest.py `sage_release`): built on the
base layer and boot-tested there by `sage-image test --json --junit`, exactly as a user runs it;
the good-image test reads that run's results instead of booting the same bytes a second time.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sage_image.outfolder import TestResults, read_manifest
from tests import contract
from tests.boottest.image_copies import copy_for_breaking, edit_root, read_root, write_broken

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("sage_image/catalog", "sage_image/elements", "sage_image/builder", "sage_node")
SAGE_CHECKS = ("cloud-init", "hostname", "ssh-login", "sudo", "cc-account", "serial-autologin",
               "chrony", "firewall", "sshd-hardened", "ssh-hostkeys", "ssh-audit", "provenance",
               "provenance-values", "packages", "cc-snapshot", "cc-snapshot-deps", "partition-table",
               "boot-units",
               "docker-group", "docker-socket", "docker-run", "docker-firewall", "docker-compose",
               "sage-commands", "source-commits", "pywaggle-plugin", "sage-data-client",
               "virtual-waggle-report", "virtual-waggle-newplugin", "beehive-config",
               "sage-ecr-config", "sage-node-up", "sage-node-build", "sage-node-run", "sage-node-data",
               "sage-node-exit-code", "sage-node-check", "sage-node-listeners")
# Checks that need what broken_sage breaks first (cc's sudo, a running Docker for the docker
# image's set-up, a boot where only one unit fails): broken_chameleon, with them intact, breaks
# these instead.
SUDO_CHECKS = ("firewall", "ssh-hostkeys", "ssh-audit", "cc-snapshot", "docker-firewall",
               "partition-table", "docker-compose", "boot-units")
SITE_PACKAGES = "/opt/sage/venv/lib/python3.11/site-packages"
# sage-node's checks need cc's Docker and a node that starts: broken_node breaks them instead.
NODE_CHECKS = ("sage-node-up", "sage-node-build", "sage-node-run", "sage-node-data",
               "sage-node-exit-code", "sage-node-check", "sage-node-listeners")
NODE_PACKAGE = "/opt/sage/node/venv/lib/python3.11/site-packages/sage_node"
# The wrapper as it was before issue 12: every command ran in the checkout, so newplugin wrote
# the plugin into /opt/virtual-waggle (group-writable) instead of the user's directory.
OLD_VIRTUAL_WAGGLE = "#!/bin/sh\ncd /opt/virtual-waggle || exit 1\nexec ./waggle-node \"$@\"\n"


def source_tree_hash() -> str:
    digest = hashlib.sha256()
    for top in BUILD_INPUTS:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def sage_image(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sage_image.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def built_sage(sage_build: Path) -> Path:
    """The bookworm sage build output folder of the session's release run."""
    return sage_build


def test_good_image_passes_every_check(built_sage: Path) -> None:
    results = contract.fresh_results(built_sage)
    failed = {c.name: c.reason for c in results.checks if not c.passed}
    assert results.passed is True and failed == {}, (failed, results.error)
    assert results.qualifies_for_publish is True and results.restricted_by == ()
    assert tuple(c.name for c in results.checks) == SAGE_CHECKS
    manifest = read_manifest(built_sage)
    assert results.tested_sha512 in {f.sha512 for f in manifest.files.values()}
    assert 'failures="0"' in (built_sage / "junit.xml").read_text()
    assert _image_unchanged(built_sage, results)


def _image_unchanged(out: Path, tested: TestResults) -> bool:
    """The image was only QEMU's read-only backing file: its checksum is still the manifest's."""
    digest = hashlib.sha512()
    with (out / tested.tested_file).open("rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == tested.tested_sha512


# -- deliberately broken copies -------------------------------------------------------------

@pytest.fixture(scope="session")
def broken_sage(built_sage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every check but ssh-login broken, each in its own way."""
    work = tmp_path_factory.mktemp("broken")
    raw, manifest = copy_for_breaking(built_sage, work / "out")
    cfg = "/etc/cloud/cloud.cfg.d/50-chameleon.cfg"
    chameleon = re.sub(r"(groups: \[[^\]]*)\bdocker\b,? ?", r"\1", read_root(raw, cfg))
    assert "docker" not in chameleon and "uid: 1000" in chameleon
    chameleon = chameleon.replace("uid: 1000", "uid: 1001")                   # cc-account
    provenance = json.loads(read_root(raw, "/opt/chameleon/provenance.json"))
    provenance["build-tag"] = "tampered"
    provenance["zz-list"] = "a=1,b=2"                                          # provenance-values
    edit_root(raw, work, {
        cfg: (chameleon, 0o644),                                               # docker-group
        "/etc/cloud/cloud.cfg.d/99-broken.cfg":
            ("bootcmd: [\"exit 3\"]\npreserve_hostname: true\n", 0o644),      # cloud-init, hostname
        "/etc/sudoers.d/zz-broken": ("cc ALL=(ALL) ALL\n", 0o440),             # sudo
        "/etc/ssh/sshd_config.d/00-broken.conf": ("PasswordAuthentication yes\n", 0o644),
        "/opt/chameleon/provenance.json": (json.dumps(provenance), 0o644),    # provenance
        "/etc/systemd/system/docker.socket.d/zz-broken.conf":
            ("[Socket]\nSocketMode=0666\n", 0o644),                            # docker-socket
        "/etc/docker/daemon.json": ("{ this is not json\n", 0o644),           # docker-run
        "/usr/local/bin/sage-ecr": None,                                       # sage-commands
        f"{SITE_PACKAGES}/waggle/plugin/plugin.py": None,                      # pywaggle-plugin
        f"{SITE_PACKAGES}/sage_data_client/__init__.py":
            ("raise ImportError('broken on purpose')\n", 0o644),             # sage-data-client
        "/opt/virtual-waggle/docker-compose.yml": None,                        # v-w report
        "/usr/local/bin/virtual-waggle": (OLD_VIRTUAL_WAGGLE, 0o755),          # v-w newplugin
        "/opt/beehive-server/do.sh": ("case $1 in\n", 0o755),                  # beehive-config
        "/opt/sage-ecr/docker-compose.yml":
            ("version: '2.4'\nservices:\n  api: {}\n", 0o644),                  # sage-ecr-config
        # serial-autologin
        "/etc/systemd/system/serial-getty@.service.d/chameleon-autologin.conf": None,
        "/etc/systemd/system/getty@ttyS0.service.d/chameleon-autologin.conf": None,
        "/etc/systemd/system/chrony.service.d/zz-broken.conf":                 # chrony
            ("[Unit]\nConditionPathExists=/sage-image-broken\n", 0o644),
        "/usr/bin/virt-sysprep": None,                                         # cc-snapshot-deps
    }, mkdirs=("/etc/systemd/system/docker.socket.d", "/etc/systemd/system/chrony.service.d"))
    return write_broken(
        raw, manifest,
        packages=manifest.packages | {"sage-image-missing-package": "1.0"},       # packages
        python_packages=manifest.python_packages | {"sage-image-missing-wheel": "1.0"},
        sources=manifest.sources | {"beehive-server": contract.replace(           # source-commits
            manifest.sources["beehive-server"], commit="0" * 40)})


EXPECTED_FAILURES = {
    "cloud-init": "cloud-init did not finish cleanly: status: error",
    "hostname": "hostname is not the one from the metadata (sage-test-",
    "sudo": "cc has no passwordless sudo: sudo: a password is required",
    "sshd-hardened": "sshd accepts a login it must refuse: password login is offered "
                     "(methods: publickey,password",
    "provenance": "/opt/chameleon/provenance.json differs from the manifest: build-tag: image "
                  "'tampered'",
    "packages": "installed packages differ from the manifest: missing in image: "
                "sage-image-missing-package 1.0",
    "docker-group": "cc is not in the docker group: cc",
    "docker-socket": "/var/run/docker.sock must exist and not be world-writable: 666 root:docker",
    "docker-run": "cc cannot run a container without sudo: ",
    "sage-commands": "a Sage command is missing or does not answer --help: sage-ecr: command "
                     "not found",
    "source-commits": "a checkout under /opt is not at the manifest's commit: beehive-server: "
                      "/opt/beehive-server is at ",
    "cuda-packages": "the NVIDIA driver or CUDA packages are not installed: no nvidia-driver",
    "pywaggle-plugin": "a pywaggle plugin cannot publish a measurement as cc: ",
    "sage-data-client": "sage-data-client (or pywaggle's vision extra) does not import as cc: ",
    "virtual-waggle-report": "virtual-waggle report does not run the pinned waggle-node code: ",
    # the old wrapper runs newplugin in /opt/virtual-waggle: there it fails (cc is not in the
    # broken image's docker group, which owns the checkout) or writes into /opt - never ./
    "virtual-waggle-newplugin": "virtual-waggle newplugin does not create the plugin in the "
                                "user's directory: ",
    "beehive-config": "beehive-server's pinned code or compose files do not validate: ",
    "sage-ecr-config": "the Edge Code Repository's compose file does not validate: ",
    "cc-account": "cc is not uid/gid 1000 with bash (uid:gid:shell:group of gid 1000): 1001:",
    "serial-autologin": "cc is not logged in automatically on the serial console: "
                        "serial-getty@ttyS0 does not autologin cc",
    "chrony": "time sync is not chrony with the catalog's servers: chrony is inactive",
    "provenance-values": "cc-snapshot would garble /opt/chameleon/provenance.json: values with "
                         "a comma, whitespace or brace: zz-list='a=1,b=2'",
    "cc-snapshot-deps": "cc-snapshot's dependencies are missing: missing: virt-sysprep",
}


def test_broken_image_fails_each_check_with_its_reason(broken_sage: Path) -> None:
    names = ",".join([c for c in SAGE_CHECKS if c not in SUDO_CHECKS + NODE_CHECKS]
                     + ["cuda-packages"])
    proc = sage_image("test", str(broken_sage), "--json", "--checks", names)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["restricted_by"] == [f"--checks {names}"]  # chosen checks: not for publish
    reasons = {c["name"]: c["reason"] for c in report["checks"]}
    assert reasons.pop("ssh-login") is None  # the one check this image does not break
    wrong = {name: reasons.get(name) for name, expected in EXPECTED_FAILURES.items()
             if not (reasons.get(name) or "").startswith(expected)}
    assert wrong == {}, wrong  # every mismatch at once: a run takes minutes
    assert "daemon" in reasons["docker-run"].lower()
    assert "python sage-image-missing-wheel 1.0" in reasons["packages"]
    assert "waggle.plugin" in reasons["pywaggle-plugin"]
    assert "broken on purpose" in reasons["sage-data-client"]
    assert "suitable configuration file" in reasons["virtual-waggle-report"]
    assert "do.sh" in reasons["beehive-config"]
    assert "Compose file is invalid" in reasons["sage-ecr-config"]
    logs = {Path(p).name for p in report["logs"]}
    assert {"serial.log", "cloud-init.log"} <= logs
    assert "bootcmd" in (broken_sage / "test-logs" / "cloud-init.log").read_text()


@pytest.fixture(scope="session")
def broken_chameleon(built_sage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checks that need sudo, broken with sudo intact: the firewall decided on under KVM and
    its ruleset flushing every table (Docker's too), an ECDSA host key, and cc-snapshot
    installed without its no-self-update wrapper (as the image had it before)."""
    work = tmp_path_factory.mktemp("broken-chameleon")
    raw, manifest = copy_for_breaking(built_sage, work / "out")
    conf = read_root(raw, "/etc/chameleon/firewall.conf")
    assert "kvm vm off" in conf
    rules = read_root(raw, "/etc/chameleon/firewall.nft")
    edit_root(raw, work, {
        "/etc/chameleon/firewall.conf": (conf.replace("kvm vm off", "kvm vm on"), 0o644),
        "/etc/chameleon/firewall.nft": ("flush ruleset\n" + rules, 0o644),   # docker-firewall
        "/etc/cloud/cloud.cfg.d/99-broken.cfg":
            ("ssh_genkeytypes: [ed25519, rsa, ecdsa]\n", 0o644),
        "/etc/ssh/sshd_config.d/00-broken.conf":
            ("HostKey /etc/ssh/ssh_host_ecdsa_key\n", 0o644),              # ssh-hostkeys, -audit
        "/usr/bin/cc-snapshot": (read_root(raw, "/opt/cc-snapshot/cc-snapshot"), 0o755),
        "/usr/bin/docker-compose": None,                                       # docker-compose
        # boot-units: the stanza diskimage-builder's debian-minimal used to write (no such NIC)
        "/etc/network/interfaces.d/eth0": ("auto eth0\niface eth0 inet dhcp\n", 0o644),
    })
    # partition-table: the ESP and the BIOS boot partition retyped as plain Linux partitions (the
    # ESP's filesystem stays, so /boot/efi still mounts and the boot is unchanged)
    subprocess.run(["sgdisk", "--typecode=1:8300", "--typecode=2:8300", str(raw)], check=True,
                   capture_output=True)
    return write_broken(raw, manifest)


SUDO_FAILURES = {
    "firewall": "the host firewall is wrong: booted under virt=",   # ... must be off; decided on
    "ssh-hostkeys": "SSH host keys must be ed25519 and RSA only: keys: ecdsa ed25519 rsa; "
                    "sshd HostKey: ecdsa ed25519 rsa",
    "ssh-audit": "ssh-audit finds a weakness in sshd: ssh-audit reports [fail]: ",
    "cc-snapshot": "cc-snapshot does not work offline as pinned: cc-snapshot tried to download: "
                   "curl ",
    "docker-firewall": "Docker and the host firewall fight: Docker's NAT rules are gone",
    "docker-compose": "docker-compose cannot run a service as cc: docker-compose: command not "
                      "found",
    "partition-table": "the boot disk's partition table is not the image's layout: partition 1 "
                       "(ESP) is Linux filesystem, hybrid wants EFI system; partition 2 (BIOS "
                       "boot) is Linux filesystem, hybrid wants BIOS boot",
    "boot-units": "a systemd unit failed during boot: ",
}


def test_broken_chameleon_image_fails_each_sudo_check(broken_chameleon: Path) -> None:
    proc = sage_image("test", str(broken_chameleon), "--json",
                      "--checks", ",".join(("ssh-login", "sudo") + SUDO_CHECKS))
    assert proc.returncode == 1, proc.stderr
    reasons = {c["name"]: c["reason"] for c in json.loads(proc.stdout)["checks"]}
    assert reasons.pop("ssh-login") is None and reasons.pop("sudo") is None
    wrong = {name: reasons.get(name) for name, expected in SUDO_FAILURES.items()
             if not (reasons.get(name) or "").startswith(expected)}
    assert wrong == {}, wrong
    assert "must be off; decided: kvm on" in reasons["firewall"]
    assert "ecdsa" in reasons["ssh-audit"]
    assert "networking.service" in reasons["boot-units"] and "degraded" in reasons["boot-units"]
    assert "raw.githubusercontent.com/ChameleonCloud/cc-snapshot/master" in reasons["cc-snapshot"]



@pytest.fixture(scope="session")
def broken_node(built_sage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sage-node's checks but sage-node-build and -run, each broken on its own, the node still
    starting:
    Erlang's epmd.socket unmasked and enabled (it listens on every address at boot), the
    ECR's description rule gone from `check`, the data-sharing service adding no vsn, `run`
    losing the plugin's exit code, the service's metrics port on every address."""
    work = tmp_path_factory.mktemp("broken-node")
    raw, manifest = copy_for_breaking(built_sage, work / "out")
    appspec = read_root(raw, f"{NODE_PACKAGE}/appspec.py")
    control = read_root(raw, f"{NODE_PACKAGE}/control.py")
    parts = read_root(raw, f"{NODE_PACKAGE}/parts.py")
    dss = read_root(raw, "/opt/wes-data-sharing-service/main.py")
    edits = {
        f"{NODE_PACKAGE}/appspec.py": appspec.replace(
            'REQUIRED_FIELDS = {"description": "str", "source": "dict"}',
            'REQUIRED_FIELDS = {"source": "dict"}'),                            # sage-node-check
        f"{NODE_PACKAGE}/control.py": control.replace(
            "        return launched.runner.wait(name)\n",
            "        launched.runner.wait(name)\n        return 0\n"),             # sage-node-exit-code
        f"{NODE_PACKAGE}/parts.py": parts.replace(
            '"METRICS_HOST": LOOPBACK', '"METRICS_HOST": "0.0.0.0"'),           # sage-node-listeners
        "/opt/wes-data-sharing-service/main.py": dss.replace(
            '"vsn": args.waggle_node_vsn', '"version": args.waggle_node_vsn'),  # sage-node-data
    }
    assert all(new != old for new, old in zip(edits.values(), (appspec, control, parts, dss),
                                              strict=True)), "a break did not apply"
    # sage-node-up: epmd.socket (and the service it starts) unmasked, the socket enabled (what
    # `systemctl enable` links)
    edit_root(raw, work, {**{path: (text, 0o644) for path, text in edits.items()},
                          "/etc/systemd/system/epmd.socket": None,
                          "/etc/systemd/system/epmd.service": None},
              symlinks={"/etc/systemd/system/sockets.target.wants/epmd.socket":
                        "/lib/systemd/system/epmd.socket"})
    return write_broken(raw, manifest)


NODE_FAILURES = {
    "sage-node-up": "sage-node up does not start the node as cc: epmd.socket runs at boot",
    "sage-node-check": "sage-node check does not apply the Edge Code Repository's rules: "
                       "described: ok",
    "sage-node-data": "the plugin's data did not come back through the node: data "
                      "meta.vsn=None; query meta.vsn=",
    "sage-node-exit-code": "a failing plugin's exit code or status is lost: run-exit=0 "
                           "ps=Failed logs=failing on purpose",
    "sage-node-listeners": "a sage-node port is open beyond loopback and the Docker bridge: "
                           "outside: 0.0.0.0:18080",
}


def test_broken_node_image_fails_each_sage_node_check(broken_node: Path) -> None:
    # sage-node-up's own break (epmd.socket at boot) does not stop the node: the others run
    proc = sage_image("test", str(broken_node), "--json",
                      "--checks", ",".join(["cloud-init", *NODE_CHECKS]))
    assert proc.returncode == 1, proc.stderr
    reasons = {c["name"]: c["reason"] for c in json.loads(proc.stdout)["checks"]}
    assert [reasons.pop(c) for c in ("cloud-init", "sage-node-build", "sage-node-run")] == [None] * 3
    wrong = {name: reasons.get(name) for name, expected in NODE_FAILURES.items()
             if not (reasons.get(name) or "").startswith(expected)}
    assert wrong == {}, wrong


def test_without_the_plugin_base_a_new_app_does_not_run(built_sage: Path, tmp_path: Path) -> None:
    """sage-node-build: the image's offline plugin base deleted (nothing can be pulled)."""
    raw, manifest = copy_for_breaking(built_sage, tmp_path / "out")
    config = read_root(raw, "/etc/sage-node/config.yaml")
    archive = re.search(r"archive: (\S+)", config).group(1)
    edit_root(raw, tmp_path, {archive: None})
    proc = sage_image("test", str(write_broken(raw, manifest)), "--json",
                      "--checks", "sage-node-build")
    assert proc.returncode == 1
    reason = json.loads(proc.stdout)["checks"][0]["reason"]
    assert reason.startswith("a new app does not build offline with sage-node build: ")
    assert archive in reason and "missing" in reason

def test_ssh_login_fails_when_sshd_refuses_cc(built_sage: Path, tmp_path: Path) -> None:
    raw, manifest = copy_for_breaking(built_sage, tmp_path / "out")
    edit_root(raw, tmp_path, {"/etc/ssh/sshd_config.d/00-broken.conf": ("DenyUsers cc\n", 0o644)})
    proc = sage_image("test", str(write_broken(raw, manifest)), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    login = next(c for c in report["checks"] if c["name"] == "ssh-login")
    assert login["reason"].startswith("cc did not log in with the key from the metadata: "
                                      "cloud-init finished but sshd refuses the metadata key")
    assert {Path(p).name for p in report["logs"]} >= {"serial.log", "cloud-init.log"}
    # Read from the stopped VM's disk, after the guest was asked to write its page cache.
    serial = next(Path(p) for p in report["logs"] if Path(p).name == "serial.log")
    assert "sysrq: Emergency Sync" in serial.read_text(errors="replace")
