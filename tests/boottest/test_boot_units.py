"""Fast tests: config drive contents, disk inspection, QEMU command line, KVM choice."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path

import pytest

from sage_image.boottest.boot import disk
from sage_image.boottest.boot.configdrive import (
    Metadata,
    configdrive_files,
    nocloud_files,
    write_drive,
)
from sage_image.boottest.boot.kvm import choose_accel, probe_kvm
from sage_image.boottest.boot.qemu import Machine, VmSpec, free_port, qemu_argv
from sage_image.boottest.boot.ssh import SshTarget, generate_key
from sage_image.boottest.checks import runner as check_runner
from sage_image.errors import BootTestError, UsageError

from .conftest import make_ext4, make_mbr_disk

META = Metadata(uuid="0b4f0e5e-1111-4222-8333-944455556666", hostname="sage-test-0b4f0e5e",
                public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsomekey sage-image-test-x",
                mac="52:54:00:11:22:33")


def test_configdrive_carries_key_hostname_uuid() -> None:
    files = configdrive_files(META)
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["uuid"] == META.uuid
    assert meta["hostname"] == META.hostname
    assert list(meta["public_keys"].values()) == [META.public_key]
    net = json.loads(files["openstack/latest/network_data.json"])
    assert net["links"][0]["ethernet_mac_address"] == META.mac
    assert net["networks"][0]["type"] == "ipv4_dhcp"


def test_configdrive_iso_is_labelled_config_2(tmp_path: Path) -> None:
    iso = write_drive("configdrive", META, tmp_path)
    # ISO 9660 primary volume descriptor: the volume id is at 32768 + 40, 32 bytes.
    assert iso.read_bytes()[32808:32840].decode().strip() == "config-2"
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(iso)], capture_output=True,
                             text=True, check=True).stdout
    assert "/openstack/latest/meta_data.json" in listing
    content = subprocess.run(["isoinfo", "-R", "-i", str(iso), "-x",
                              "/openstack/latest/meta_data.json"], capture_output=True,
                             text=True, check=True).stdout
    assert json.loads(content)["public_keys"]["sage-image-test"] == META.public_key


def test_nocloud_option(tmp_path: Path) -> None:
    files = nocloud_files(META)
    assert f"instance-id: {META.uuid}" in files["meta-data"]
    assert f"  - {META.public_key}" in files["meta-data"]
    iso = write_drive("nocloud", META, tmp_path)
    assert iso.read_bytes()[32808:32840].decode().strip() == "cidata"


def test_throwaway_key_is_private_to_the_workdir(tmp_path: Path) -> None:
    key = generate_key(tmp_path, comment="sage-image-test-abc")
    assert key.private.stat().st_mode & 0o077 == 0
    assert key.public_line.startswith("ssh-ed25519 ") and key.public_line.endswith("-abc")
    assert "PRIVATE" not in key.public_line


def test_partitions_mbr_and_bare_filesystem(tmp_path: Path) -> None:
    fs = make_ext4(tmp_path / "fs.raw", {"boot/": b""})
    bare = disk.inspect_disk(fs)
    assert disk.find_root(bare).offset == 0
    mbr = make_mbr_disk(tmp_path / "mbr.raw", fs)
    qcow = tmp_path / "mbr.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(mbr), str(qcow)], check=True)
    for image in (mbr, qcow):  # raw is read directly, qcow2 through qemu-img dd
        root = disk.find_root(disk.inspect_disk(image))
        assert (root.index, root.offset, root.label) == (1, 1 << 20, disk.ROOT_LABEL)


def test_kernel_extraction_picks_newest(tmp_path: Path, tiny) -> None:
    image = tiny("bad-kernel")
    root = disk.find_root(disk.inspect_disk(image))
    files = disk.extract_kernel(image, root, tmp_path)
    assert files.version == "6.1.0-1-amd64"
    assert files.kernel.read_bytes().startswith(b"not a kernel")


def test_missing_kernel_is_a_clear_error(tmp_path: Path, tiny) -> None:
    image = tiny("no-kernel")
    root = disk.find_root(disk.inspect_disk(image))
    with pytest.raises(BootTestError, match=r"no kernel in the image \(/boot has no vmlinuz"):
        disk.extract_kernel(image, root, tmp_path)


def test_not_a_disk_image(tiny) -> None:
    with pytest.raises(UsageError, match="not a disk image"):
        disk.find_root(disk.inspect_disk(tiny("not-a-disk")))


def test_corrupt_qcow2(tiny) -> None:
    info = disk.inspect_disk(tiny("corrupt-qcow2"))
    with pytest.raises(BootTestError, match=r"qcow2 image is corrupt: \d+ corruption"):
        disk.check_disk(info)


def test_truncated_qcow2_is_refused(tmp_path: Path, tiny) -> None:
    src = tiny("no-kernel-qcow2").read_bytes()
    cut = tmp_path / "cut.qcow2"
    cut.write_bytes(src[: len(src) // 3])
    with pytest.raises(BootTestError):
        info = disk.inspect_disk(cut)
        disk.check_disk(info)
        disk.find_root(info)


def _spec(tmp_path: Path, **kw) -> VmSpec:
    base = dict(disk=tmp_path / "d.qcow2", disk_format="qcow2", qemu_arch="x86_64",
                accel="tcg", seed=tmp_path / "seed.iso", mac=META.mac)
    return VmSpec(**(base | kw))


def test_qemu_argv_direct_boot(tmp_path: Path) -> None:
    spec = _spec(tmp_path, kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img",
                 cmdline="root=LABEL=cloudimg-rootfs ro console=ttyS0,115200")
    argv = qemu_argv(spec, overlay=tmp_path / "o.qcow2", serial_log=tmp_path / "s.log",
                     port=2222)
    joined = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64" and spec.mode == "direct"
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined
    assert f"file={tmp_path / 'o.qcow2'}" in joined and str(spec.disk) not in joined
    assert "-kernel" in argv and "-initrd" in argv and "tcg,thread=multi" in argv
    assert "readonly=on" in joined


def test_qemu_argv_firmware_and_arm64(tmp_path: Path) -> None:
    fw = qemu_argv(_spec(tmp_path), overlay=tmp_path / "o", serial_log=tmp_path / "s", port=1)
    assert "-kernel" not in fw and "-bios" not in fw
    if Path("/usr/share/ovmf/OVMF.fd").is_file():
        uefi = qemu_argv(_spec(tmp_path, uefi=True), overlay=tmp_path / "o",
                         serial_log=tmp_path / "s", port=1)
        assert "-bios" in uefi
    arm = qemu_argv(_spec(tmp_path, qemu_arch="aarch64", kernel=tmp_path / "k"),
                    overlay=tmp_path / "o", serial_log=tmp_path / "s", port=1)
    assert arm[0] == "qemu-system-aarch64" and "virt" in arm
    assert arm[arm.index("-cpu") + 1] == "max,pauth-impdef=on"  # TCG: cheap pointer auth


def test_free_ports_differ() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) >= 4 and all(1024 < p < 65536 for p in ports)


def test_accel_choice(tmp_path: Path) -> None:
    assert choose_accel("tcg", qemu="q", qemu_arch="x86_64", kernel=None).accel == "tcg"
    assert choose_accel("auto", qemu="q", qemu_arch="aarch64", kernel=None).accel == "tcg"
    # A "kernel" that is not one never reaches the root-mount message: KVM is not trusted.
    fake = tmp_path / "vmlinuz"
    fake.write_bytes(b"nope")
    assert probe_kvm(qemu="qemu-system-x86_64", kernel=fake, seconds=10) is False


@pytest.mark.parametrize("formats,booted", [(("qcow2",), "qcow2"), (("qcow2", "raw"), "raw")])
def test_the_test_boots_the_qcow2_when_the_build_made_only_that(tmp_path: Path, formats,
                                                                booted) -> None:
    # A single bare-metal site: the build writes only the qcow2, the file publish uploads - so
    # the boot test must boot that file (with both, it boots the raw; the build proves the
    # qcow2 is the same disk, see tests/builder/test_formats.py).
    from sage_image.boottest.boot.image import resolve_image
    from tests import contract

    files = {}
    for fmt in formats:
        path = tmp_path / f"Img.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "4M"], check=True)
        files[fmt] = contract.image_file(path, fmt)
    contract.write_build(tmp_path, contract.manifest("Img", variant="base", files=files))
    image = resolve_image(tmp_path)
    assert image.disk.format == booted and image.tested_file == f"Img.{booted}"
    assert image.disk.path == tmp_path / f"Img.{booted}"  # what QEMU's overlay is backed by


def _fake_ssh_audit(tmp_path: Path, monkeypatch, script: str) -> None:
    """A stand-in ssh-audit on PATH (the real one runs against the guest in test_boot_image)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "ssh-audit"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(check_runner.time, "sleep", lambda s: None)


BANNER_LOST = "echo '[exception] did not receive banner: Connection reset by peer'; exit 1\n"
AUDIT_OK = "echo '(gen) banner: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3'\n"


def test_ssh_audit_tries_again_when_a_busy_sshd_drops_it(tmp_path: Path, monkeypatch) -> None:
    count = tmp_path / "count"
    _fake_ssh_audit(tmp_path, monkeypatch, f"echo x >> {count}\n"
                    f"[ $(wc -l < {count}) -ge 3 ] || {{ {BANNER_LOST.strip()}; }}\n{AUDIT_OK}")
    problem, _ = check_runner.probe_ssh_audit(SshTarget(22, tmp_path / "k"),
                                              timeout=30)
    assert problem is None and count.read_text().count("x") == 3


def test_ssh_audit_that_never_reaches_sshd_fails(tmp_path: Path, monkeypatch) -> None:
    _fake_ssh_audit(tmp_path, monkeypatch, BANNER_LOST)
    problem, _ = check_runner.probe_ssh_audit(SshTarget(22, tmp_path / "k"),
                                              timeout=30)
    assert problem.startswith("ssh-audit did not reach sshd: [exception] did not receive banner")


def _journal_only_write(fs: Path, path: str, data: bytes) -> None:
    """Commit a new first block of `path` to the journal only, as a VM stopped mid-flight does."""
    block = subprocess.run(["debugfs", "-R", f"bmap {path} 0", str(fs)], check=True,
                           capture_output=True, text=True).stdout.strip()
    new = fs.with_suffix(".block")
    new.write_bytes(data)
    subprocess.run(["debugfs", "-w", "-f", "-", str(fs)], check=True, capture_output=True,
                   input=f"jo\njw -b {block} {new}\njc\n", text=True)


def test_overlay_logs_need_the_journal_replayed(tmp_path: Path) -> None:
    fs = make_ext4(tmp_path / "root.ext4", {"var/log/cloud-init.log": b"a" * 1024})
    _journal_only_write(fs, "/var/log/cloud-init.log", b"b" * 1024)  # 1 KiB blocks
    info = disk.inspect_disk(make_mbr_disk(tmp_path / "disk.raw", fs))
    root = disk.find_root(info)
    copy, before, after = tmp_path / "root.raw", tmp_path / "before.log", tmp_path / "after.log"
    disk.copy_partition(info, root, copy)
    assert copy.read_bytes() == fs.read_bytes()
    at_start = disk.Partition(root.index, 0, root.size, root.label)
    disk.dump_file(copy, at_start, "/var/log/cloud-init.log", before)
    disk.replay_journal(copy)
    disk.dump_file(copy, at_start, "/var/log/cloud-init.log", after)
    assert before.read_bytes() == b"a" * 1024  # debugfs alone sees the stale block
    assert after.read_bytes() == b"b" * 1024
    with pytest.raises(BootTestError, match="cannot replay the journal"):
        disk.replay_journal(before)


def test_qemu_argv_qmp_socket_is_abstract(tmp_path: Path) -> None:
    argv = qemu_argv(_spec(tmp_path), overlay=tmp_path / "o", serial_log=tmp_path / "s", port=1,
                     qmp="sage-image-qmp-x")
    assert argv[argv.index("-qmp") + 1] == "unix:sage-image-qmp-x,server=on,wait=off,abstract=on"
    assert "-qmp" not in qemu_argv(_spec(tmp_path), overlay=tmp_path / "o",
                                   serial_log=tmp_path / "s", port=1)


def test_qmp_reaches_a_real_qemu(tmp_path: Path) -> None:
    # A VM with a blank disk: SeaBIOS finds nothing to boot, QEMU's machine protocol still answers.
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "64M"], check=True)
    (tmp_path / "seed.iso").write_bytes(bytes(512))
    (tmp_path / "vm").mkdir()
    with Machine(_spec(tmp_path, disk=blank), tmp_path / "vm") as vm:
        assert vm.qmp("query-status")["status"] in ("running", "prelaunch")  # type: ignore[index]
        with pytest.raises(ValueError, match="QMP error"):
            vm.qmp("no-such-command")
        assert vm.qmp("send-key", {"keys": [{"type": "qcode", "data": "s"}]}) == {}
    assert not vm.alive()


def test_ssh_audit_comes_with_sage_image_not_only_with_the_tests() -> None:
    # `sage-image test` (and so every release) runs the ssh-audit check on the host.
    requires = importlib.metadata.requires("sage-image-builder") or []
    assert [r for r in requires if r.startswith("ssh-audit") and "extra ==" not in r], requires


@pytest.mark.parametrize("stderr,tries", [
    ("Connection timed out during banner exchange\r\n", 3),   # a busy guest: try again
    ("kex_exchange_identification: read: Connection reset by peer\r\n", 3),
    ("Permission denied (publickey).\r\n", 1),                 # an answer: no retry
])
def test_a_fresh_login_tries_again_only_when_sshd_was_too_busy_to_answer(
        monkeypatch, stderr: str, tries: int) -> None:
    from sage_image.boottest.boot.ssh import Output

    calls = []

    def ssh_run(target, command, **kwargs):  # noqa: ANN001, ANN003, ANN202
        calls.append(command)
        if len(calls) < 3:
            return Output(exit=255, stdout="", stderr=stderr)
        return Output(exit=0, stdout="ok", stderr="")

    monkeypatch.setattr(check_runner, "ssh_run", ssh_run)
    monkeypatch.setattr(check_runner.time, "sleep", lambda s: None)
    out = check_runner._fresh_login(SshTarget(port=1, key=Path("k")), "true", timeout=5)
    assert len(calls) == tries and out.exit == (0 if tries == 3 else 255)
