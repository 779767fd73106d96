"""Fast tests: check definitions and selection, comparisons, expectations, results, assets."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sage_image.boottest.boot.qemu import free_port
from sage_image.boottest.boot.ssh import Output, SshTarget, generate_key
from sage_image.boottest.checks.assets import (
    BUSYBOX_TAG,
    PinnedDeb,
    fetch_pinned_file,
    write_busybox_image,
)
from sage_image.boottest.checks.compare import (
    compare_ntp,
    compare_packages,
    compare_partitions,
    compare_provenance,
    compare_source_commits,
)
from sage_image.boottest.checks.identity import current_tester
from sage_image.boottest.checks.model import (
    DEFAULT_CHECKS,
    VARIABLES,
    CheckDef,
    Expect,
    load_checks,
    render,
    select_checks,
    validate_catalog_checks,
)
from sage_image.boottest.checks.results import (
    TestReport,
    check_line,
    junit_xml,
    save_results,
    summary_table,
)
from sage_image.boottest.checks.runner import (
    GUEST_ASSET_DIR,
    CheckContext,
    CheckResult,
    expectation_problem,
    run_checks,
    run_concurrently,
)
from sage_image.builder.build import layout_manifest
from sage_image.catalog.model import load_catalog
from sage_image.errors import BootTestError, ConfigError, UsageError
from sage_image.outfolder import NtpEntry, read_results
from tests import contract

CATALOG_CHECKS = {"cloud-init", "hostname", "ssh-login", "sudo", "sshd-hardened", "provenance",
                  "packages", "docker-group", "docker-socket", "docker-run", "docker-compose",
                  "sage-commands", "source-commits", "cuda-packages", "pywaggle-plugin",
                  "sage-data-client", "virtual-waggle-report", "virtual-waggle-newplugin",
                  "beehive-config", "sage-ecr-config", "cc-account", "serial-autologin", "chrony", "firewall", "ssh-hostkeys", "ssh-audit",
                  "provenance-values", "cc-snapshot", "cc-snapshot-deps", "docker-firewall", "partition-table",
                  "boot-units"}


def test_every_catalog_check_is_defined() -> None:
    checks = load_checks()
    validate_catalog_checks(load_catalog(), checks)
    assert CATALOG_CHECKS <= set(checks)


def test_selection_follows_the_variant_chain() -> None:
    catalog, checks = load_catalog(), load_checks()
    base = [c.name for c in select_checks(catalog, checks, variant="base")]
    sage = [c.name for c in select_checks(catalog, checks, variant="sage")]
    gpu = [c.name for c in select_checks(catalog, checks, variant="gpu")]
    assert base[:3] == ["cloud-init", "hostname", "ssh-login"] and "docker-run" not in base
    assert sage[:len(base)] == base and "docker-run" in sage and "cuda-packages" not in sage
    assert gpu[:len(sage)] == sage and gpu[len(sage):] == [
        "cuda-packages", "cuda-nvcc", "nvidia-module", "nvidia-smi", "cmdline-pci-realloc"]


def test_selection_by_name_keeps_catalog_order_and_allows_extras() -> None:
    catalog, checks = load_catalog(), load_checks()
    names = [c.name for c in select_checks(catalog, checks, variant="sage",
                                           only=("cuda-packages", "docker-run", "hostname"))]
    assert names == ["hostname", "docker-run", "cuda-packages"]
    with pytest.raises(UsageError, match="unknown check 'docker-rnu' .*did you mean 'docker-run'"):
        select_checks(catalog, checks, variant="sage", only=("docker-rnu",))


def test_catalog_naming_an_undefined_check_fails_at_load(tmp_path: Path) -> None:
    text = load_catalog().path.read_text().replace("docker-socket,", "docker-sokcet,", 1)
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"variants\.sage\.checks\[1\]: unknown check "
                                          r"'docker-sokcet' \(did you mean 'docker-socket'\?\)"):
        select_checks(load_catalog(bad), load_checks(), variant="sage")


@pytest.mark.parametrize("snippet, message", [
    ("  x:\n    reason: r\n", "needs exactly one of 'run'"),
    ("  x:\n    reason: r\n    run: true\n    expect: {contain: [a]}\n",
     r"checks\.x\.expect\.contain: unknown setting \(did you mean 'contains'\?\)"),
    ("  x:\n    reason: r\n    run: true\n    compare: pakages\n",
     "unknown compare 'pakages' .did you mean 'packages'"),
    ("  x:\n    reason: r\n    run: true\n    timeout: -1\n", "expected seconds > 0"),
    ("  x:\n    reason: r\n    run: true\n    assets: [docker-busybx]\n", "unknown asset"),
    ("  x:\n    reason: r\n    run: true\n    after: [clod-init]\n",
     r"checks\.x\.after\.0: unknown check 'clod-init'"),
    ("  x:\n    reason: r\n    run: true\n    after: cloud-init\n", "expected a list"),
    ("  x:\n    reason: r\n    run: true\n    after: [y]\n"
     "  y:\n    reason: r\n    run: true\n    after: [x]\n", "waits for itself"),
])
def test_bad_check_definitions_name_the_setting(tmp_path: Path, snippet: str,
                                                message: str) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("schema: 1\nchecks:\n" + snippet)
    with pytest.raises(ConfigError, match=message):
        load_checks(path)


def test_a_new_check_is_yaml_only(tmp_path: Path) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("schema: 1\nchecks:\n  motd:\n    reason: 'no motd: {out}'\n"
                    "    run: cat /etc/motd\n    expect: {contains: [Chameleon]}\n")
    check = load_checks(path)["motd"]
    assert check.expect.contains == ("Chameleon",) and check.timeout == 120


def test_checks_run_concurrently_and_report_in_order() -> None:
    """Independent checks overlap; `after` holds a check back; results keep the given order."""
    names = ["slow-wait", "a", "b", "c", "d", "needs-wait"]
    defs = [CheckDef(name=n, reason="r", run="true",
                     after=("slow-wait",) if n == "needs-wait" else ()) for n in names]
    log: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    gate = threading.Event()

    def evaluate(check: CheckDef) -> CheckResult:
        with lock:
            log.append(("start", check.name, time.monotonic()))
        if check.name == "slow-wait":
            assert gate.wait(5), "the other checks did not run while this one waited"
        elif check.name == "d":
            gate.set()  # only reached if a..d ran while slow-wait was still waiting
        with lock:
            log.append(("end", check.name, time.monotonic()))
        return CheckResult(check.name, check.name != "b", 0.0)

    started: list[str] = []
    results = list(run_concurrently(defs, evaluate, on_start=lambda c: started.append(c.name),
                                    workers=3))
    assert [r.name for r in results] == names == started
    assert [r.passed for r in results] == [True, True, False, True, True, True]
    ends = {name: t for kind, name, t in log if kind == "end"}
    begins = {name: t for kind, name, t in log if kind == "start"}
    assert begins["needs-wait"] >= ends["slow-wait"]


def test_a_dependency_that_fails_still_lets_the_check_run() -> None:
    defs = [CheckDef(name="first", reason="r", run="false"),
            CheckDef(name="second", reason="r", run="true", after=("first",)),
            CheckDef(name="third", reason="r", run="true", after=("not-selected",))]
    results = list(run_concurrently(defs, lambda c: CheckResult(c.name, c.name != "first", 0.0),
                                    workers=1))
    assert [(r.name, r.passed) for r in results] == [("first", False), ("second", True),
                                                     ("third", True)]


def test_an_asset_is_prepared_once_and_fails_each_check_that_uses_it(tmp_path: Path) -> None:
    """No guest listens: the copy fails once, and each docker check reports it on its own."""
    key = generate_key(tmp_path, comment="t")
    ctx = CheckContext(target=SshTarget(port=free_port(), key=key.private), manifest=None,
                       values={"asset_dir": GUEST_ASSET_DIR}, host_dir=tmp_path,
                       qemu_arch="x86_64")
    checks = load_checks()
    docker = [checks["docker-run"], checks["docker-compose"]]
    results = list(run_checks(docker, ctx))
    assert [r.passed for r in results] == [False, False]
    assert all("could not copy docker-busybox into the guest" in (r.reason or "")
               for r in results)
    assert list(ctx.prepared) == ["docker-busybox"]


def test_only_later_stage_checks_wait_for_cloud_init() -> None:
    checks = load_checks()
    waiting = {c.name for c in checks.values() if "cloud-init" in c.after}
    # sage-node-up reads /etc/waggle, which cloud-init's final stage writes per instance
    assert waiting == {"sshd-hardened", "ssh-audit", "boot-units", "sage-node-up"}


def test_render_fills_known_placeholders_only() -> None:
    assert render("{hostname} {{.Go}} ${db:Status} { x; }", {"hostname": "h"}) == \
        "h {{.Go}} ${db:Status} { x; }"


def _out(stdout: str, exit: int = 0, stderr: str = "") -> Output:
    return Output(exit=exit, stdout=stdout, stderr=stderr)


def test_expectations() -> None:
    assert expectation_problem(Expect(stdout="{hostname}"), _out("h1\n"), {"hostname": "h1"}) \
        is None
    assert expectation_problem(Expect(stdout="h1"), _out("other\n"), {}) == "other"
    assert expectation_problem(Expect(), _out("", 1, "boom\n"), {}) == "boom (exit 1)"
    assert expectation_problem(Expect(matches=r"(^|\s)docker(\s|$)"), _out("cc sudo\n"), {}) \
        == "cc sudo"
    assert expectation_problem(Expect(matches=r"(^|\s)docker(\s|$)"),
                               _out("cc docker sudo\n"), {}) is None
    assert expectation_problem(Expect(lacks=("666",)), _out("666 root:docker"), {}) \
        .startswith("output has '666'")


def test_docker_socket_expectation() -> None:
    expect = load_checks()["docker-socket"].expect
    assert expectation_problem(expect, _out("660 root:docker\n"), {}) is None
    for bad in ("666 root:docker", "662 root:docker", "660 root:root",
                "stat: cannot statx '/var/run/docker.sock': No such file or directory"):
        assert expectation_problem(expect, _out(bad + "\n"), {}) is not None, bad


NVCC = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2022 NVIDIA Corporation\n"
        "Cuda compilation tools, release {v}, V{v}.89\nBuild cuda_{v}.r11.8/compiler.31833905_0\n")


def test_gpu_check_expectations_pass_good_and_fail_broken_outputs() -> None:
    checks = load_checks()
    bookworm = {"cuda_version": "11.8"}
    nvcc = checks["cuda-nvcc"].expect
    assert expectation_problem(nvcc, _out(NVCC.format(v="11.8")), bookworm) is None
    assert expectation_problem(nvcc, _out(NVCC.format(v="12.4")), bookworm) is not None
    assert expectation_problem(nvcc, _out("", 127, "nvcc: command not found\n"), bookworm) \
        == "nvcc: command not found (exit 127)"
    # a manifest without build-cuda-version leaves the placeholder: nothing can match it
    assert expectation_problem(nvcc, _out(NVCC.format(v="11.8")), {}) is not None
    module = checks["nvidia-module"].expect
    assert expectation_problem(module, _out(
        "ok /lib/modules/6.1.0-28-amd64/updates/dkms/nvidia-current.ko.xz\n"), {}) is None
    assert expectation_problem(module, _out("no nvidia module for kernel 6.1.0-28-amd64\n", 1),
                               {}) is not None
    smi = checks["nvidia-smi"].expect
    assert expectation_problem(smi, _out("/usr/bin/nvidia-smi\n"), {}) is None
    assert expectation_problem(smi, _out("no nvidia-smi on PATH\n", 1), {}) is not None
    cmdline = checks["cmdline-pci-realloc"].expect
    good = "BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro console=ttyS0,115200 pci=realloc=off"
    assert expectation_problem(cmdline, _out(good + "\n"), {}) is None
    for bad in (good.removesuffix(" pci=realloc=off"), good.replace("realloc=off", "realloc"),
                good + "x"):
        assert expectation_problem(cmdline, _out(bad + "\n"), {}) is not None, bad


@pytest.mark.parametrize("modules,ok", [
    ({"6.1.0-28-amd64": "nvidia-current"}, True),   # Debian's DKMS module name
    ({"6.1.0-28-amd64": "nvidia"}, True),           # NVIDIA's repository
    ({"6.1.0-27-amd64": "nvidia-current"}, False),  # built for another kernel only
    ({"6.1.0-28-amd64": "nvidia-current:gone"}, False),  # in modules.dep, the .ko deleted
    ({"6.1.0-28-amd64": "nvidia-current:6.1.0-27-amd64"}, False),  # the .ko of another kernel
    ({}, False),                                    # no module at all
])
def test_nvidia_module_command_wants_the_running_kernels_module(
        tmp_path: Path, modules: dict[str, str], ok: bool) -> None:
    """The check's own shell command, run here with a stand-in uname and modinfo. Like the real
    modinfo, `-F filename` answers from modules.dep (KERNEL:NAME entries) and `-F vermagic`
    reads the .ko: it fails when the file is gone, and gives the kernel the file was built for
    (KERNEL:NAME:BUILT-FOR, or KERNEL:NAME:gone)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uname").write_text("#!/bin/sh\necho 6.1.0-28-amd64\n")
    table = " ".join(f"{k}:{m}" for k, m in modules.items())
    (bin_dir / "modinfo").write_text(
        "#!/bin/sh\n# modinfo -k KERNEL -F filename|vermagic NAME\n"
        f"for e in {table}; do k=${{e%%:*}}; r=${{e#*:}}; m=${{r%%:*}}; b=${{r#*:}}; "
        "[ \"$b\" = \"$r\" ] && b=$k; [ \"$k\" = \"$2\" ] && [ \"$m\" = \"$5\" ] || continue; "
        "f=/lib/modules/$2/updates/dkms/$5.ko.xz; "
        "case $4 in filename) echo \"$f\";; "
        "vermagic) [ \"$b\" = gone ] && { echo \"modinfo: ERROR: could not get modinfo from "
        "'$5': No such file or directory\" >&2; exit 1; }; "
        "echo \"$b SMP preempt mod_unload modversions\";; esac; exit 0; done\n"
        "echo \"modinfo: ERROR: Module $5 not found.\" >&2; exit 1\n")
    for tool in ("uname", "modinfo"):
        (bin_dir / tool).chmod(0o755)
    check = load_checks()["nvidia-module"]
    command = check.run.replace("/sbin/modinfo", str(bin_dir / "modinfo"))
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    out = Output(exit=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    assert (expectation_problem(check.expect, out, {}) is None) is ok, proc.stdout


MANIFEST = contract.manifest(
    properties={"build-tag": "t1", "build-variant": "sage"},
    packages={"bash": "5.2-2", "docker.io": "20.10"},
    sources={"waggle-node": contract.replace(contract.WAGGLE_NODE, commit="a" * 40),
             "beehive-server": contract.replace(contract.WAGGLE_NODE, path="/opt/beehive-server",
                                                commit="b" * 40)})


def test_compare_provenance() -> None:
    assert compare_provenance(json.dumps(MANIFEST.properties), MANIFEST) is None
    diff = compare_provenance(json.dumps(MANIFEST.properties | {"build-tag": "t2"}), MANIFEST)
    assert diff == "build-tag: image 't2' != manifest 't1'"
    assert compare_provenance("cat: no such file", MANIFEST).startswith("not JSON")


def test_compare_packages() -> None:
    good = "ii |bash|5.2-2\nii |docker.io|20.10\nrc |old|1\n"
    assert compare_packages(good, MANIFEST) is None
    diff = compare_packages("ii |bash|5.2-3\nii |vim|9\n", MANIFEST)
    assert diff == ("missing in image: docker.io 20.10; not in manifest: vim 9; "
                    "bash: image 5.2-3 != manifest 5.2-2")


def test_compare_source_commits() -> None:
    out = f"/opt/virtual-waggle|{'a' * 40}\n/opt/beehive-server|{'c' * 40}\n"
    assert compare_source_commits(out, MANIFEST) == \
        "beehive-server: /opt/beehive-server is at cccccccccccc, manifest says bbbbbbbbbbbb"
    out = f"/opt/virtual-waggle|{'a' * 40}\n/opt/beehive-server|missing\n"
    assert "no git checkout at /opt/beehive-server" in compare_source_commits(out, MANIFEST)


def test_compare_ntp() -> None:
    manifest = contract.manifest(ntp=NtpEntry(servers=("ntp1.example",), pool=False))
    good = "chrony=active\ntimesyncd=inactive\ntracking=ok\nserver ntp1.example iburst\n"
    assert compare_ntp(good, manifest) is None
    assert compare_ntp(good.replace("=active", "=inactive", 1), manifest) == "chrony is inactive"
    assert compare_ntp(good + "pool 2.debian.pool.ntp.org iburst\n", manifest) == \
        "pool 2.debian.pool.ntp.org but the manifest says pool=false"
    timesyncd = "chrony=active\ntimesyncd=active\ntracking=fail\n"
    assert compare_ntp(timesyncd, contract.manifest(ntp=NtpEntry(servers=(), pool=True))) == \
        "systemd-timesyncd is active; chronyc cannot talk to chronyd; pool (none) but the " \
        "manifest says pool=true"


def _report(*results: CheckResult, error: str | None = None) -> TestReport:
    return TestReport(name="Sage-VirtualWaggle-Debian12", tested_file="x.qcow2",
                      tested_sha512="ab" * 64, mode="direct", accel="tcg", checks=results,
                      boot_seconds=17.5, started="2026-01-01T00:00:00+00:00",
                      finished="2026-01-01T00:01:00+00:00", error=error,
                      tester=current_tester(), digests={r.name: "d" * 16 for r in results})


def test_results_json_follows_the_manifest_doc(tmp_path: Path) -> None:
    ok = CheckResult("hostname", True, 0.4)
    bad = CheckResult("docker-group", False, 0.3, reason="cc is not in the docker group: cc")
    path = save_results(_report(ok, bad), tmp_path / "test-results.json")
    data = json.loads(path.read_text())
    assert set(data) >= {"schema", "name", "tested_file", "tested_sha512", "passed", "mode",
                         "accel", "checks", "boot_seconds", "started", "finished", "tester"}
    assert data["passed"] is False
    assert data["checks"][1] == {"name": "docker-group", "passed": False, "seconds": 0.3,
                                 "reason": "cc is not in the docker group: cc",
                                 "digest": "d" * 16}
    assert data["tester"] == {"version": current_tester().version,
                              "digest": current_tester().digest}
    assert read_results(path) == _report(ok, bad).to_record()
    assert _report(ok).passed and not _report().passed
    assert not _report(ok, error="guest did not come up").passed
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_junit_and_table() -> None:
    report = _report(CheckResult("hostname", True, 0.4, output="sage-test-1"),
                     CheckResult("sudo", False, 1.0, reason="cc has no passwordless sudo: x"))
    suite = ET.fromstring(junit_xml(report)).find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='sudo']/failure")
    assert failure is not None and failure.get("message") == "cc has no passwordless sudo: x"
    table = summary_table(report)
    assert "hostname  pass" in table and "sudo      FAIL" in table
    assert check_line(report.checks[1]).startswith("  FAIL  sudo")
    boot_failed = ET.fromstring(junit_xml(_report(error="no ssh"))).find("testsuite")
    assert boot_failed is not None and boot_failed.get("errors") == "1"


def test_busybox_docker_image_is_a_valid_docker_save(tmp_path: Path) -> None:
    path = write_busybox_image(tmp_path / "bb.tar", qemu_arch="x86_64")
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == [BUSYBOX_TAG]
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()
        config = json.load(tar.extractfile(manifest[0]["Config"]))
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        names = inner.getnames()
        assert "bin/busybox" in names and inner.getmember("bin/sh").issym()
    # Deterministic: the same bytes every time (cacheable, reproducible).
    assert write_busybox_image(tmp_path / "bb2.tar", qemu_arch="x86_64").read_bytes() == \
        path.read_bytes()


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    """A real HTTP server on loopback serving `folder` (a stand-in for Debian's mirror)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_foreign_busybox_is_fetched_once_by_hash_from_a_real_package(tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: busybox-static\nVersion: 1:1.35.0-4\nArchitecture: arm64\n"
        "Maintainer: test <t@example.org>\nDescription: a stand-in\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "busybox").write_bytes(b"\x7fELF-a-stand-in-binary")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(mirror / "bb.deb")],
                   check=True, capture_output=True)
    digest = hashlib.sha256((mirror / "bb.deb").read_bytes()).hexdigest()
    server = _serve(mirror)
    url = f"http://127.0.0.1:{server.server_address[1]}/bb.deb"
    try:
        with pytest.raises(BootTestError, match="sha256 .* pinned 0+; not used"):
            fetch_pinned_file(PinnedDeb(url, "0" * 64, "bin/busybox"), tmp_path / "cache")
        with pytest.raises(BootTestError, match="cannot fetch .*/gone.deb"):
            fetch_pinned_file(PinnedDeb(url.replace("bb.deb", "gone.deb"), digest, "bin/busybox"),
                              tmp_path / "cache")
        got = fetch_pinned_file(PinnedDeb(url, digest, "bin/busybox"), tmp_path / "cache")
    finally:
        server.shutdown()
    assert got.read_bytes() == b"\x7fELF-a-stand-in-binary"
    # cached: no server needed the second time, and nothing half-written was left behind
    assert fetch_pinned_file(PinnedDeb(url, digest, "bin/busybox"), tmp_path / "cache") == got
    assert [p.name for p in got.parent.iterdir()] == ["busybox"]


def _sfdisk_json(tmp_path: Path, *sgdisk: str) -> str:
    """sfdisk --json of a real 700 MiB sparse disk partitioned with sgdisk (or sfdisk for MBR)."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"")
    os.truncate(disk, 700 * 2**20)
    if sgdisk:
        subprocess.run(["sgdisk", *sgdisk, str(disk)], check=True, capture_output=True)
    else:
        subprocess.run(["sfdisk", "-q", str(disk)], input=",,L,*\n", text=True, check=True)
    return subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True,
                          text=True).stdout


HYBRID = ("-n", "1:0:+550M", "-t", "1:EF00", "-n", "2:0:+8M", "-t", "2:EF02",
          "-n", "3:0:0", "-t", "3:8300")


def test_partitions_comparison_accepts_the_hybrid_layout_and_names_each_difference(
        tmp_path: Path) -> None:
    manifest = contract.manifest(layout=layout_manifest(load_catalog().layouts["hybrid"]))
    assert compare_partitions(_sfdisk_json(tmp_path, *HYBRID), manifest) is None
    # an MBR image (the old layout)
    assert compare_partitions(_sfdisk_json(tmp_path), manifest) == (
        "the disk is mbr, layout hybrid is gpt")
    # the ESP retyped, the BIOS boot partition missing
    broken = _sfdisk_json(tmp_path, "-n", "1:0:+550M", "-t", "1:8300", "-n", "2:0:0",
                          "-t", "2:8300")
    reason = compare_partitions(broken, manifest)
    assert reason is not None
    assert reason.startswith("partition 1 (ESP) is Linux filesystem, hybrid wants EFI system; "
                             "partition 2 (BIOS boot) is Linux filesystem, hybrid wants BIOS "
                             "boot")
    assert reason.endswith("(and 1 more)")  # partition 3 (root) is missing
    small = _sfdisk_json(tmp_path, "-n", "1:0:+100M", "-t", "1:EF00", *HYBRID[4:])
    assert compare_partitions(small, manifest) == (
        "partition 1 (ESP) is 100 MiB, hybrid wants 550MiB")
    assert "no partition table" in (compare_partitions("sfdisk: cannot open /dev/vda", manifest)
                                    or "")
    assert "records no disk layout" in (compare_partitions("{}", contract.manifest(layout=None))
                                        or "")


def test_partitions_comparison_for_mbr(tmp_path: Path) -> None:
    manifest = contract.manifest(layout=layout_manifest(load_catalog().layouts["mbr"]))
    assert compare_partitions(_sfdisk_json(tmp_path), manifest) is None
    assert "the disk is gpt, layout mbr is mbr" in (
        compare_partitions(_sfdisk_json(tmp_path, *HYBRID), manifest) or "")


def test_the_direct_boot_passes_the_builds_own_kernel_arguments() -> None:
    from sage_image.boottest.boot.image import kernel_args

    assert kernel_args("root=LABEL=cloudimg-rootfs ro console=ttyS0,115200 pci=realloc=off") \
        == ("pci=realloc=off",)
    assert kernel_args("root=LABEL=cloudimg-rootfs ro console=ttyS0,115200") == ()
    assert kernel_args("") == ()


def test_serial_autologin_looks_at_the_test_vms_console() -> None:
    check = load_checks()["serial-autologin"]
    for console in ("ttyS0", "ttyAMA0"):
        command = render(check.run, {"console": console})
        assert f"serial-getty@{console} getty@{console}" in command and "{console}" not in command
        assert render(check.expect.stdout, {"console": console}) == f"cc logged in on {console}"


def test_every_placeholder_a_check_uses_is_filled() -> None:
    # A {name} the renderer does not know stays literal and the check fails on every image.
    text = DEFAULT_CHECKS.read_text()
    used = set(re.findall(r"(?<![${])\{([a-z_]+)\}(?!\})", text[text.index("schema: 1"):]))
    python_fstring_names = {"k"}  # f"{k}=..." inside an embedded Python program
    assert used - python_fstring_names <= set(VARIABLES)
