"""A test run's results: test-results.json (read by publish), JUnit XML (CI), a summary table.

test-results.json is `outfolder.TestResults` (docs/manifest.md): per check, the digest of the
definition that ran, and the tester's identity - publish's gate (`outfolder.publish_gate`)
accepts a run only for the bytes it tested, by this tester, of every check as defined now.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ...console import format_table
from ...outfolder import RESULTS_SCHEMA, CheckRecord, Tester, TestResults, write_results
from .runner import CheckResult


@dataclass(frozen=True)
class TestReport:
    name: str
    tested_file: str          # relative to the output folder when there is one
    tested_sha512: str
    mode: str                 # direct / firmware
    accel: str                # kvm / tcg
    checks: tuple[CheckResult, ...]
    boot_seconds: float | None
    started: str
    finished: str
    error: str | None = None  # why the guest could not be tested at all (boot failure)
    logs: tuple[str, ...] = ()
    # The options that make this run not count for publishing ("--checks ssh-login",
    # "--keep-running"): a pass of a chosen subset, or of a VM a user could log in to and
    # change while it ran, is not a pass of the image.
    restricted_by: tuple[str, ...] = ()
    firmware: str | None = None  # what the guest booted with, read in it: bios / uefi
    # Wall time from SSH up to the last check's result: checks run concurrently, so this is
    # less than the sum of their `seconds`.
    checks_seconds: float | None = None
    memory_mb: int = 2048  # the guest's memory
    tester: Tester = Tester(version="", digest="")
    digests: Mapping[str, str] = field(default_factory=dict)  # check -> definition digest

    __test__ = False  # not a pytest test class, despite the name

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def qualifies_for_publish(self) -> bool:
        return self.passed and not self.restricted_by

    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_record(self) -> TestResults:
        """What test-results.json holds: what a person looks for first (name, file, verdict),
        the checks last."""
        return TestResults(
            schema=RESULTS_SCHEMA, name=self.name, tested_file=self.tested_file,
            tested_sha512=self.tested_sha512, passed=self.passed,
            qualifies_for_publish=self.qualifies_for_publish, restricted_by=self.restricted_by,
            mode=self.mode, accel=self.accel, firmware=self.firmware, memory_mb=self.memory_mb,
            tester=self.tester,
            checks=tuple(CheckRecord(name=c.name, passed=c.passed, seconds=c.seconds,
                                     reason=c.reason, digest=self.digests[c.name])
                         for c in self.checks),
            boot_seconds=self.boot_seconds, checks_seconds=self.checks_seconds,
            started=self.started, finished=self.finished, error=self.error, logs=self.logs)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self.to_record())


def save_results(report: TestReport, path: Path) -> Path:
    """Write atomically: publish may read the file while a second test is finishing."""
    return write_results(path, report.to_record())


def junit_xml(report: TestReport) -> str:
    suite = ET.Element("testsuite", {
        "name": f"sage-image test {report.name}", "tests": str(len(report.checks)),
        "failures": str(len(report.failed())), "errors": "1" if report.error else "0",
        "time": f"{_checks_wall(report) + (report.boot_seconds or 0):.2f}",
        "timestamp": report.started,
    })
    props = ET.SubElement(suite, "properties")
    for key in ("tested_file", "mode", "accel", "boot_seconds"):
        ET.SubElement(props, "property", {"name": key, "value": str(getattr(report, key))})
    if report.error:
        case = ET.SubElement(suite, "testcase", {"classname": report.name, "name": "boot"})
        ET.SubElement(case, "error", {"message": report.error}).text = "\n".join(report.logs)
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {"classname": report.name, "name": check.name,
                                                  "time": f"{check.seconds:.2f}"})
        if not check.passed:
            ET.SubElement(case, "failure", {"message": check.reason or "failed"})
        if check.output:
            ET.SubElement(case, "system-out").text = check.output
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _checks_wall(report: TestReport) -> float:
    if report.checks_seconds is not None:
        return report.checks_seconds
    return sum(c.seconds for c in report.checks)


def write_junit(report: TestReport, path: Path) -> Path:
    path.write_text(junit_xml(report))
    return path


def check_line(result: CheckResult) -> str:
    """The live line printed as each check finishes."""
    status = "PASS" if result.passed else "FAIL"
    line = f"  {status}  {result.name:<16} {result.seconds:6.1f}s"
    return line + (f"  {result.reason}" if result.reason else "")


def summary_table(report: TestReport) -> str:
    rows: Sequence[Sequence[Any]] = [
        (c.name, "pass" if c.passed else "FAIL", f"{c.seconds:.1f}", c.reason or "")
        for c in report.checks]
    return format_table(["CHECK", "RESULT", "SECONDS", "REASON"], rows)
