"""`sage-image report`: from a realistic release folder (real small files, checksums computed)
to a static page, rendered in headless Chromium: the matrix cells in the DOM, a screenshot."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sage_image.catalog.model import load_catalog
from sage_image.cli import main
from sage_image.errors import UsageError
from sage_image.outfolder import (
    Manifest,
    PreviousImage,
    SitePublication,
    read_manifest,
    read_results,
    write_published,
)
from sage_image.release import report
from sage_image.release.plan import plan_release
from tests import contract

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic", "--hide-scrollbars"]
T0 = 1_747_742_400  # 2025-05-20 12:00 UTC

# What the fixture release did, per image: build, test and publish outcomes.
# bookworm amd64: base and sage published (CHI@TACC's upload of sage failed and was rolled back);
# arm64: base built as a layer only, sage's build failed, so its test and publishes were skipped.
EXPECTED = {
    ("bookworm-base-amd64", "CHI@UC"): "published",
    ("bookworm-base-amd64", "CHI@TACC"): "up to date",
    ("bookworm-base-amd64", "KVM@TACC"): "published",
    ("bookworm-sage-amd64", "CHI@UC"): "published",
    ("bookworm-sage-amd64", "CHI@TACC"): "failed",
    ("bookworm-sage-amd64", "KVM@TACC"): "published",
    ("bookworm-base-arm64", "CHI@UC"): "not carried",
    ("bookworm-base-arm64", "CHI@TACC"): "not carried",
    ("bookworm-base-arm64", "KVM@TACC"): "not carried",
    ("bookworm-sage-arm64", "CHI@UC"): "skipped",
    ("bookworm-sage-arm64", "CHI@TACC"): "skipped",
    ("bookworm-sage-arm64", "KVM@TACC"): "not carried",
}
EXPECTED_TESTS = {"bookworm-base-amd64": "passed", "bookworm-sage-amd64": "passed",
                  "bookworm-base-arm64": "not run", "bookworm-sage-arm64": "not run"}


# -- the fixture: a release folder as `sage-image release` writes it ---------------------------
def _digest(data: bytes, name: str) -> str:
    return hashlib.new(name, data).hexdigest()


def _write_build(folder: Path, image: dict[str, Any], formats: list[str], seed: int) -> Manifest:
    """A build output folder: small real image files, manifest.json with their checksums."""
    folder.mkdir(parents=True)
    files = {}
    for i, fmt in enumerate(formats):
        data = os.urandom(1) + bytes([seed, i]) * (40_000 + 9_000 * seed + 3_000 * i)
        path = folder / f"{image['name']}.{fmt}"
        path.write_bytes(data)
        files[fmt] = contract.image_file(path, fmt, virtual_size=10 * 2**30)
    manifest = contract.manifest(
        image["name"], release=image["release"], variant=image["variant"], arch=image["arch"],
        sites=tuple(image["sites"]), files=files, created="2025-05-20T12:30:00Z",
        properties={"build-timestamp": str(T0 + 60 * seed),
                    "build-tag": f"sage-image-12-{T0 + 60 * seed}",
                    "build-variant": image["variant"], "build-image-name": image["name"]})
    contract.write_build(folder, manifest)
    return manifest


def _write_tests(folder: Path, manifest: Manifest, passed: bool) -> None:
    names = ("cloud-init", "hostname", "ssh-login", "sudo", "provenance")
    contract.write_test(folder, contract.results(manifest, checks={n: "0" * 16 for n in names},
                                                 failed=() if passed else ("ssh-login",)))


def make_release(root: Path) -> Path:
    catalog = load_catalog()
    sites = ("CHI@UC", "CHI@TACC", "KVM@TACC")
    amd = plan_release(catalog, releases=("bookworm",), variants=("base", "sage"),
                       arches=("amd64",), sites=sites, publish=True)
    arm = plan_release(catalog, releases=("bookworm",), variants=("sage",), arches=("arm64",),
                       sites=sites, publish=True)
    images = [asdict(i) for i in amd.images + arm.images]
    publishes = [asdict(p) for p in amd.publishes + arm.publishes]
    folder = root / "release"
    jobs: dict[str, dict[str, Any]] = {}

    def job(job_id: str, status: str, seconds: float, reason: str | None = None, **extra: Any) -> None:
        jobs[job_id] = {"status": status, "seconds": seconds, "reason": reason,
                        "cached": extra.pop("cached", False), **extra}

    formats = {"CHI@UC": "qcow2", "CHI@TACC": "qcow2", "KVM@TACC": "raw"}
    for seed, image in enumerate(images, 1):
        key = image["key"]
        if key == "bookworm-sage-arm64":
            job(f"build:{key}", "failed", 95.2, "dib: element sage failed (exit 1), see build.log")
            job(f"test:{key}", "skipped", 0.0, f"build:{key} failed")
            continue
        wanted = sorted({formats[s] for s in image["sites"]}) or ["qcow2"]
        manifest = _write_build(folder / key, image, wanted, seed)
        job(f"build:{key}", "ok", {"base": 412.7, "sage": 151.3}[image["variant"]],
            cached=image["variant"] == "sage")
        if image["requested"]:
            _write_tests(folder / key, manifest, passed=True)
            job(f"test:{key}", "ok", 64.0 + seed)
    for p in publishes:
        jid = f"publish:{p['image']}@{p['site']}"
        if p["image"] == "bookworm-sage-arm64":
            job(jid, "skipped", 0.0, "test:bookworm-sage-arm64 skipped", image_id=None,
                mb_per_s=None, result=None)
        elif jid == "publish:bookworm-sage-amd64@CHI@TACC":
            job(jid, "failed", 33.1, "upload: 503 Service Unavailable (rolled back)",
                image_id=None, mb_per_s=None, result="failed")
        else:
            same = jid == "publish:bookworm-base-amd64@CHI@TACC"
            job(jid, "ok", 3.2 if same else 41.5 + len(jid) % 7, None,
                image_id=hashlib.md5(jid.encode()).hexdigest(), mb_per_s=None if same else 88.4,
                result="up to date" if same else "published")
    (folder / "release.json").write_text(json.dumps({
        "schema": 1, "started": "2025-05-20T12:00:00Z", "finished": "2025-05-20T12:41:07Z",
        "plan": {"images": images, "publishes": publishes}, "jobs": jobs}, indent=2))
    return folder


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    return make_release(tmp_path)


def formats() -> dict[str, str]:
    catalog = load_catalog()
    return {n: catalog.site_kinds[s.kind].disk_format for n, s in catalog.sites.items()}


# -- the model -----------------------------------------------------------------------------------
def test_report_model_matches_the_release(release_dir: Path) -> None:
    result = report.build_report(report.load_release(release_dir), formats())
    assert result.sites == ("CHI@UC", "CHI@TACC", "KVM@TACC")
    states = {(r.key, c.site): c.state for r in result.rows for c in r.cells}
    assert states == EXPECTED
    assert {r.key: r.test for r in result.rows} == EXPECTED_TESTS
    sage = next(r for r in result.rows if r.key == "bookworm-sage-amd64")
    manifest = read_manifest(release_dir / sage.key)
    kvm = next(c for c in sage.cells if c.site == "KVM@TACC")
    assert kvm.file is not None and kvm.file.sha256 == manifest.files["raw"].sha256
    uc = next(c for c in sage.cells if c.site == "CHI@UC")
    assert uc.file is not None and uc.file.disk_format == "qcow2"
    assert sage.version == "2025-05-20 12:02 UTC" and sage.build.cached
    assert result.failed == 2  # sage arm64 build, sage amd64 at CHI@TACC


def test_a_test_result_for_other_bytes_is_stale(release_dir: Path) -> None:
    folder = release_dir / "bookworm-base-amd64"
    results = read_results(folder / "test-results.json")
    contract.write_test(folder, contract.replace(results, tested_sha512="0" * 128))
    result = report.build_report(report.load_release(release_dir), formats())
    assert next(r for r in result.rows if r.key == "bookworm-base-amd64").test == "stale"


def test_a_partial_test_run_is_not_shown_as_passed(release_dir: Path) -> None:
    folder = release_dir / "bookworm-base-amd64"
    results = read_results(folder / "test-results.json")
    contract.write_test(folder, contract.replace(results, passed=True, qualifies_for_publish=False,
                                                 restricted_by=("--checks ssh-login",)))
    result = report.build_report(report.load_release(release_dir), formats())
    row = next(r for r in result.rows if r.key == "bookworm-base-amd64")
    assert row.test == "partial" and "--checks ssh-login" in row.test_detail


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "release.json").unlink(), "no release.json"),
    (lambda d: (d / "release.json").write_text("{\n  'bad'"), "release.json:2: not valid JSON"),
    (lambda d: (d / "release.json").write_text('{"schema": 7}'), "unsupported schema 7"),
])
def test_a_bad_release_dir_is_a_one_line_usage_error(release_dir: Path, damage: Any,
                                                     message: str) -> None:
    damage(release_dir)
    with pytest.raises(UsageError, match=message):
        report.load_release(release_dir)


def test_the_page_is_self_contained(release_dir: Path) -> None:
    page = report.render_html(report.build_report(report.load_release(release_dir), formats()),
                              generator="test")
    assert "<script" not in page.lower()
    # no address to fetch: the only URL is the SVG namespace, which is a name, not a download
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "@import" not in page and "url(" not in page and " src=" not in page
    assert "<svg" in page and page.count('class="bar"') == 15  # every job that ran or was skipped


def test_html_escapes_names(release_dir: Path) -> None:
    data = report.load_release(release_dir)
    manifests = dict(data.manifests)
    manifests["bookworm-base-amd64"] = contract.replace(manifests["bookworm-base-amd64"],
                                                        name="<img src=x onerror=alert(1)>")
    page = report.render_html(report.build_report(
        report.ReleaseData(data.release, manifests, data.tests), formats()), generator="t")
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_whats_new_against_the_replaced_image(release_dir: Path) -> None:
    """publish records in published.json what changed against the image it replaced; the
    report shows it per image and site (and says nothing for a site without a record)."""
    from sage_image.diff.diff import diff_manifests

    sage = release_dir / "bookworm-sage-amd64"
    new = read_manifest(sage)
    old_packages = {k: v for k, v in new.packages.items() if k != "docker-compose"}
    old = contract.replace(new, packages=old_packages | {"docker.io": "20.10.5+dfsg1-1"})
    new = contract.replace(new, packages=new.packages | {"docker.io": "20.10.24+dfsg1-1",
                                                         "docker-compose": "1.29.2-3"})
    changes = diff_manifests(old, new, old_label="CHI@UC: old",
                             new_label="new").as_json()

    def site(image_id: str, previous: PreviousImage | None) -> SitePublication:
        return SitePublication(image_id=image_id, name=new.name, cloud="c", status="published",
                               time="", previous=previous)

    write_published(sage, {
        "CHI@UC": site("new-id", PreviousImage(image_id="old-id", build_tag=None,
                                               changes=changes)),
        "KVM@TACC": site("kvm-id", None)})
    result = report.build_report(report.load_release(release_dir), formats())
    row = next(r for r in result.rows if r.key == "bookworm-sage-amd64")
    cells = {c.site: c for c in row.cells}
    assert cells["CHI@UC"].whats_new == "packages: 1 added, 1 upgraded"
    assert ("package", "docker.io", "upgraded", "20.10.5+dfsg1-1", "20.10.24+dfsg1-1") \
        in cells["CHI@UC"].changes
    assert cells["KVM@TACC"].whats_new == "the first version at this site"
    assert cells["CHI@TACC"].whats_new is None  # its publish failed
    page = report.render_html(result, generator="t")
    assert 'class="whats-new" data-image="bookworm-sage-amd64" data-site="CHI@UC"' in page
    assert "<td>docker-compose</td><td>added</td>" in page


# -- in a browser --------------------------------------------------------------------------------
class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.tests: dict[str, str] = {}
        self.bars = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-site"):
            self.cells[(a["data-image"] or "", a["data-site"] or "")] = a.get("data-state") or ""
        elif tag == "td" and a.get("data-field") == "test":
            self.tests[a["data-image"] or ""] = a.get("data-state") or ""
        elif tag == "rect" and "bar" in (a.get("class") or ""):
            self.bars += 1


def matrix_problems(dom: str) -> list[str]:
    """Differences between the matrix the browser shows and what the release did."""
    cells = _Cells()
    cells.feed(dom)
    problems = [f"{k}: shows {cells.cells.get(k)!r}, expected {v!r}" for k, v in EXPECTED.items()
                if cells.cells.get(k) != v]
    problems += [f"test {k}: shows {cells.tests.get(k)!r}" for k, v in EXPECTED_TESTS.items()
                 if cells.tests.get(k) != v]
    return problems + ([] if cells.bars == 15 else [f"chart has {cells.bars} bars"])


def chromium(args: list[str], profile: Path) -> str:
    """Run headless Chromium in its own process group and leave none of it running."""
    binary = shutil.which("chromium")
    assert binary, "chromium is in scripts/apt-packages.txt: run scripts/setup"
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # renderer/zygote children, if any linger
        except ProcessLookupError:
            pass
        proc.wait()
    return out


def png_is_not_blank(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data): a blank page has very few."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-screenshot")


def test_report_renders_in_chromium(release_dir: Path, tmp_path: Path, shots: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    assert main(["report", str(release_dir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out / "report.html"
    dom = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile1")
    assert "Images" in dom and matrix_problems(dom) == []
    shot = shots / "report.png"
    chromium([f"--screenshot={shot}", "--window-size=1400,1100", page.as_uri()],
             tmp_path / "profile2")
    width, height, distinct = png_is_not_blank(shot)
    assert (width, height) == (1400, 1100) and distinct > 30
    data = json.loads((out / "report.json").read_text())
    assert {(r["key"], c["site"]): c["state"] for r in data["rows"] for c in r["cells"]} == EXPECTED
    print(f"screenshot kept at {shot}")


def test_the_dom_check_catches_a_wrong_cell(release_dir: Path, tmp_path: Path) -> None:
    result = report.build_report(report.load_release(release_dir), formats())
    page = report.render_html(result, generator="t")
    # the CHI@TACC failure shown as a success must not pass
    wrong = page.replace('data-site="CHI@TACC" data-state="failed"',
                         'data-site="CHI@TACC" data-state="published"')
    assert wrong != page
    (tmp_path / "wrong.html").write_text(wrong)
    dom = chromium(["--dump-dom", (tmp_path / "wrong.html").as_uri()], tmp_path / "profile")
    assert matrix_problems(dom) == [
        "('bookworm-sage-amd64', 'CHI@TACC'): shows 'published', expected 'failed'"]


def test_report_json_flag(release_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(release_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["failed_jobs"] == 2 and Path(data["html"]).is_file()


def test_report_of_a_missing_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no release.json" in err and "Traceback" not in err
