"""The publish gate on test-results.json: only a full pass of this build's bytes counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sage_image.boottest.boot.disk import DiskInfo
from sage_image.boottest.boot.image import ImageUnderTest
from sage_image.boottest.checks.results import TestReport
from sage_image.boottest.checks.runner import CheckResult
from sage_image.boottest.checks.session import TestRequest, publish_restrictions
from sage_image.publish.output import ImageFile, publish_gate

SHA = "ab" * 64
FILES = {"raw": ImageFile("raw", Path("x.raw"), 1, SHA, "", "")}
VARIANT_CHECKS = ("ssh-login", "hostname", "sudo")


def results(**changes: Any) -> dict[str, Any]:
    full = {"name": "Img", "tested_sha512": SHA, "passed": True, "qualifies_for_publish": True,
            "restricted_by": [],
            "checks": [{"name": n, "passed": True} for n in VARIANT_CHECKS]}
    return full | changes


def gate(r: dict[str, Any]) -> tuple[bool, str]:
    status = publish_gate(r, where="OUT/test-results.json", name="Img", files=FILES,
                          required=VARIANT_CHECKS, rerun="sage-image test OUT")
    return status.passed, status.reason


def test_a_full_pass_of_these_bytes_counts() -> None:
    assert gate(results()) == (True, "")


@pytest.mark.parametrize("changes,reason", [
    ({"qualifies_for_publish": False, "restricted_by": ["--checks ssh-login"],
      "checks": [{"name": "ssh-login", "passed": True}]},
     "does not qualify for publishing (--checks ssh-login); run 'sage-image test OUT'"),
    ({"qualifies_for_publish": False, "restricted_by": ["--keep-running"]},
     "does not qualify for publishing (--keep-running)"),
    # written before runs recorded whether they qualify: passed, but maybe of one check
    ({"qualifies_for_publish": None, "restricted_by": None},
     "does not qualify for publishing (written by an older sage-image)"),
    # a file that claims to qualify but lacks checks of the variant (edited, or another catalog)
    ({"checks": [{"name": "ssh-login", "passed": True}, {"name": "sudo", "passed": True}]},
     "did not pass every check of the variant (missing: hostname)"),
    ({"passed": False, "checks": [{"name": "sudo", "passed": False}]},
     "the boot test failed (sudo)"),
    ({"tested_sha512": "cd" * 64}, "tested other bytes than this build"),
], ids=["checks", "keep-running", "older-file", "missing-check", "failed", "other-bytes"])
def test_anything_less_is_refused(changes: dict[str, Any], reason: str) -> None:
    passed, why = gate(results(**changes))
    assert not passed and reason in why


def _image(variant: str = "sage") -> ImageUnderTest:
    return ImageUnderTest(
        disk=DiskInfo(Path("x.raw"), "raw", 1), out_dir=Path("."), manifest={"variant": "sage"},
        name="Img", variant=variant, qemu_arch="x86_64", tested_file="x.raw", kernel=None,
        initrd=None, root="LABEL=cloudimg-rootfs", results_path=Path("test-results.json"))


def test_which_options_make_a_run_not_count() -> None:
    full = TestRequest(path=Path("."))
    assert publish_restrictions(full, _image(), keep_running=False) == ()
    assert publish_restrictions(TestRequest(path=Path("."), checks=("ssh-login", "sudo")),
                                _image(), keep_running=True) == (
        "--checks ssh-login,sudo", "--keep-running")
    assert publish_restrictions(TestRequest(path=Path("."), variant="base"), _image("base"),
                                keep_running=False) == ("--variant base",)


def test_results_file_says_whether_the_run_qualifies() -> None:
    report = TestReport(name="Img", tested_file="x.raw", tested_sha512=SHA, mode="direct",
                        accel="tcg", checks=(CheckResult("ssh-login", True, 1.0),),
                        boot_seconds=1.0, started="", finished="")
    assert report.to_dict()["qualifies_for_publish"] is True
    partial = replace(report, restricted_by=("--keep-running",)).to_dict()
    assert partial["qualifies_for_publish"] is False
    assert partial["restricted_by"] == ["--keep-running"]
