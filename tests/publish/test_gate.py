"""The publish gate (outfolder.publish_gate): only a full pass of this build's bytes, by this
tester, of every check of the variant as it is defined now, counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from sage_image.boottest.boot.disk import DiskInfo
from sage_image.boottest.boot.image import ImageUnderTest
from sage_image.boottest.checks.identity import check_digest, current_tester
from sage_image.boottest.checks.model import load_checks
from sage_image.boottest.checks.results import TestReport
from sage_image.boottest.checks.runner import CheckResult
from sage_image.boottest.checks.session import TestRequest, publish_restrictions
from sage_image.outfolder import Expectation, Tester, TestResults, gate_status, publish_gate
from tests import contract

SHA = "ab" * 64
BUILD = contract.manifest("Img", files={"raw": contract.fake_file("x.raw", sha512=SHA)})
NOW = contract.variant_checks("sage")


def gate(r: TestResults, expected: Expectation = NOW) -> tuple[bool, str, str]:
    status = publish_gate(r, where="OUT/test-results.json", manifest=BUILD, expected=expected,
                          rerun="sage-image test OUT")
    return status.passed, status.reason, status.retest


def test_a_full_pass_of_these_bytes_with_todays_checks_counts() -> None:
    assert gate(contract.results(BUILD)) == (True, "", "")


def _changed(name: str) -> Expectation:
    """Today's checks with NAME's definition changed (its timeout, say)."""
    definition = replace(load_checks()[name], timeout=load_checks()[name].timeout + 1)
    return Expectation(tester=NOW.tester, checks=dict(NOW.checks) | {name: check_digest(definition)})


@pytest.mark.parametrize("r,expected,reason,retest", [
    (contract.results(BUILD, checks={n: d for n, d in NOW.checks.items() if n == "ssh-login"},
                      restricted_by=("--checks ssh-login",)), NOW,
     "does not qualify for publishing (--checks ssh-login); run 'sage-image test OUT'",
     "the last test was partial (--checks ssh-login)"),
    (contract.results(BUILD, restricted_by=("--keep-running",)), NOW,
     "does not qualify for publishing (--keep-running); run 'sage-image test OUT'",
     "the last test was partial (--keep-running)"),
    (contract.results(BUILD), _changed("docker-run"),
     "the test run is out of date (checks changed: docker-run); run 'sage-image test OUT'",
     "checks changed: docker-run"),
    (contract.results(BUILD, who=Tester(version="0.1.0", digest="0" * 16)), NOW,
     "the tester changed (ran: sage-image 0.1.0 0000000000000000", "the tester changed"),
    (contract.results(BUILD, failed=("sudo",)), NOW, "the boot test failed (sudo)",
     "the last test failed (sudo)"),
    (contract.results(BUILD, error="the guest did not accept SSH"), NOW,
     "the boot test failed (the guest did not accept SSH)", "the last test failed"),
    (contract.results(BUILD, tested="cd" * 64), NOW, "tested other bytes than this build",
     "the image changed since its test"),
    (contract.replace(contract.results(BUILD), name="Other"), NOW, "is for 'Other', not 'Img'",
     "the results are for Other"),
], ids=["checks", "keep-running", "changed-check", "other-tester", "failed", "no-boot",
        "other-bytes", "other-image"])
def test_anything_less_is_refused(r: TestResults, expected: Expectation, reason: str,
                                  retest: str) -> None:
    passed, why, again = gate(r, expected)
    assert not passed and reason in why and again.startswith(retest)


def test_every_changed_and_added_check_is_named_in_one_line() -> None:
    expected = _changed("docker-run")
    expected = Expectation(tester=expected.tester,
                           checks=dict(_changed("firewall").checks) | {
                               "docker-run": expected.checks["docker-run"], "new-check": "1"})
    assert gate(contract.results(BUILD), expected)[2] == \
        "checks changed: firewall, docker-run; checks added: new-check"


def test_an_unreadable_or_missing_results_file_is_a_refusal(tmp_path: Path) -> None:
    status = gate_status(tmp_path, BUILD, NOW)
    assert not status.passed and status.reason.startswith("no test-results.json in")
    assert status.retest == ""  # never tested: nothing to say "again" about
    (tmp_path / "test-results.json").write_text('{"schema": 1, "passed": true}')
    status = gate_status(tmp_path, BUILD, NOW)
    assert not status.passed and "schema 1 (this sage-image reads 2)" in status.reason
    assert status.retest == "its results are unreadable"


def test_the_tester_is_the_boottest_code() -> None:
    assert len(current_tester().digest) == 16
    assert current_tester() == current_tester()  # the same code, the same tester


def test_a_check_digest_covers_what_decides_its_verdict_and_nothing_else() -> None:
    check = load_checks()["docker-run"]
    assert check_digest(replace(check, reason="another message")) == check_digest(check)
    for change in ({"run": check.run + " "}, {"timeout": 1.0}, {"after": ("cloud-init",)},
                   {"expect": replace(check.expect, exit=1)}, {"assets": ()}):
        assert check_digest(replace(check, **change)) != check_digest(check), change


def _image(variant: str = "sage") -> ImageUnderTest:
    return ImageUnderTest(
        disk=DiskInfo(Path("x.raw"), "raw", 1), out_dir=Path("."), manifest=BUILD,
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


def test_results_file_says_what_ran_and_whether_the_run_qualifies() -> None:
    report = TestReport(name="Img", tested_file="x.raw", tested_sha512=SHA, mode="direct",
                        accel="tcg", checks=(CheckResult("ssh-login", True, 1.0),),
                        boot_seconds=1.0, started="", finished="", tester=current_tester(),
                        digests={"ssh-login": NOW.checks["ssh-login"]})
    record = report.to_record()
    assert record.qualifies_for_publish is True
    assert record.checks[0].digest == NOW.checks["ssh-login"]
    assert record.tester == current_tester()
    partial = replace(report, restricted_by=("--keep-running",)).to_dict()
    assert partial["qualifies_for_publish"] is False
    assert list(partial["restricted_by"]) == ["--keep-running"]
