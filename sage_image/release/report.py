"""The release report: a static page (and JSON) a person opens in a browser.

`load_release` reads RELEASE_DIR (release.json + each image's build output folder);
`build_report` turns that into a typed Report; `render_html` / `report_json` are pure.
The page has no script and no external file: styles and the chart (SVG) are inline, so it
works offline and from a CI artifact.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..outfolder import (
    ContractError,
    Manifest,
    SitePublication,
    TestResults,
    manifest_path,
    read_manifest,
    read_published,
    read_results,
    results_path,
)

RELEASE_FILE = "release.json"
STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class JobResult:
    id: str
    kind: str  # build | test | publish
    status: str  # ok | failed | skipped | not run
    seconds: float
    reason: str | None = None
    cached: bool = False
    image_id: str | None = None
    mb_per_s: float | None = None
    result: str | None = None  # publish: published | up to date | failed


@dataclass(frozen=True)
class FileInfo:
    disk_format: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Cell:
    """One image at one site."""

    site: str
    state: str  # published | up to date | failed | skipped | not published | not carried
    file: FileInfo | None
    publish: JobResult | None
    # What is new against the image this one replaced at the site (published.json)
    whats_new: str | None = None
    changes: tuple[tuple[str, str, str, str, str], ...] = ()  # what, name, change, old, new


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    requested: bool  # False: built only as a layer for its children
    version: str  # build time (UTC) of the image, from build-timestamp
    build_tag: str
    test: str  # passed | partial | failed | stale | not run
    test_detail: str
    build: JobResult
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Report:
    started: str
    finished: str
    sites: tuple[str, ...]
    rows: tuple[Row, ...]
    jobs: tuple[JobResult, ...]

    @property
    def failed(self) -> int:
        return sum(1 for j in self.jobs if j.status == "failed")


@dataclass(frozen=True)
class ReleaseData:
    """What is on disk, unvalidated beyond being JSON of the right shape."""

    release: Mapping[str, Any]
    manifests: Mapping[str, Manifest]  # image key -> its manifest
    tests: Mapping[str, TestResults]  # image key -> its test results
    published: Mapping[str, Mapping[str, SitePublication]] = field(default_factory=dict)


# -- reading -------------------------------------------------------------------------------------
def _read_release_file(path: Path) -> dict[str, Any]:
    """release.json, the release's own record (each image's folder is read by outfolder)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def load_release(folder: Path) -> ReleaseData:
    if not (folder / RELEASE_FILE).is_file():
        raise UsageError(f"{folder} has no {RELEASE_FILE}: not a release folder",
                         hint="give the folder `sage-image release` wrote")
    release = _read_release_file(folder / RELEASE_FILE)
    if release.get("schema") != 1:
        raise UsageError(f"{folder / RELEASE_FILE}: unsupported schema {release.get('schema')!r}")
    images = release.get("plan", {}).get("images")
    if not isinstance(images, list) or not isinstance(release.get("jobs"), dict):
        raise UsageError(f"{folder / RELEASE_FILE}: expected plan.images (list) and jobs (object)")
    manifests, tests, published = {}, {}, {}
    for image in images:
        key = str(image.get("key", ""))
        out = folder / key
        if manifest_path(out).is_file():  # absent when the build failed
            manifests[key] = read_manifest(out)
        try:
            results = read_results(results_path(out))
        except ContractError:  # another sage-image's results: not a test of this one
            results = None
        if results is not None:
            tests[key] = results
        published[key] = read_published(out).sites  # {} before (or without) publishing
    return ReleaseData(release=release, manifests=manifests, tests=tests, published=published)


# -- the model -----------------------------------------------------------------------------------
def _job(jobs: Mapping[str, Any], job_id: str) -> JobResult:
    raw = jobs.get(job_id) or {}
    status = raw.get("status", "not run")
    return JobResult(id=job_id, kind=job_id.split(":", 1)[0],
                     status=status if status in STATUSES else "not run",
                     seconds=float(raw.get("seconds") or 0.0), reason=raw.get("reason"),
                     cached=bool(raw.get("cached")), image_id=raw.get("image_id"),
                     mb_per_s=raw.get("mb_per_s"), result=raw.get("result"))


def build_report(data: ReleaseData, formats: Mapping[str, str]) -> Report:
    """formats: site -> the disk format that site takes (qcow2 / raw), from the catalog."""
    release = data.release
    jobs = release["jobs"]
    images = release["plan"]["images"]
    sites = tuple(dict.fromkeys(s for i in images for s in i.get("sites", [])))
    rows = tuple(_row(i, jobs, data, sites, formats) for i in images)
    ordered = [f"build:{i['key']}" for i in images] + [f"test:{i['key']}" for i in images
                                                       if i.get("requested", True)]
    ordered += [f"publish:{p['image']}@{p['site']}" for p in release["plan"].get("publishes", [])]
    return Report(started=str(release.get("started", "")), finished=str(release.get("finished", "")),
                  sites=sites, rows=rows, jobs=tuple(_job(jobs, j) for j in ordered))


def _row(image: Mapping[str, Any], jobs: Mapping[str, Any], data: ReleaseData,
         sites: tuple[str, ...], formats: Mapping[str, str]) -> Row:
    key = image["key"]
    manifest = data.manifests.get(key)  # None: not built

    test, detail = _test(data.tests.get(key), manifest, _job(jobs, f"test:{key}"))
    files = {fmt: FileInfo(fmt, f.size, f.sha256)
             for fmt, f in (manifest.files if manifest else {}).items()}
    cells = tuple(_with_news(_cell(key, site, image.get("sites", []), jobs, files, formats),
                             data.published.get(key, {}).get(site))
                  for site in sites)
    return Row(key=key, name=manifest.name if manifest else str(image.get("name", key)),
               requested=bool(image.get("requested", True)),
               version=_when(manifest.build_timestamp if manifest else None),
               build_tag=manifest.build_tag if manifest else "",
               test=test, test_detail=detail, build=_job(jobs, f"build:{key}"), cells=cells)


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _test(results: TestResults | None, manifest: Manifest | None,
          job: JobResult) -> tuple[str, str]:
    if results is None:
        return "not run", job.reason or ""
    checks = results.checks
    passed = sum(1 for c in checks if c.passed)
    shas = {f.sha512 for f in manifest.files.values()} if manifest else set()
    if results.tested_sha512 not in shas:  # the image was rebuilt after this test
        return "stale", "results are for other bytes than this build"
    if results.passed and results.restricted_by:
        # a pass of chosen checks (or of a VM left running) is not a pass of the image
        return "partial", (f"{passed}/{len(checks)} checks passed; not for publishing "
                           f"({' '.join(results.restricted_by)})")
    if results.passed:
        return "passed", f"{passed}/{len(checks)} checks, boot {results.boot_seconds or 0:.0f}s"
    first = next((c for c in checks if not c.passed), None)
    if first is None:
        return "failed", results.error or "failed"
    return "failed", f"{first.name}: {first.reason or 'failed'}"


def _cell(key: str, site: str, carried: list[str], jobs: Mapping[str, Any],
          files: Mapping[str, FileInfo], formats: Mapping[str, str]) -> Cell:
    if site not in carried:
        return Cell(site=site, state="not carried", file=None, publish=None)
    fmt = formats.get(site)
    file = files.get(fmt) if fmt else (next(iter(files.values())) if len(files) == 1 else None)
    job_id = f"publish:{key}@{site}"
    if job_id not in jobs:
        return Cell(site=site, state="not published", file=file, publish=None)
    job = _job(jobs, job_id)
    state = {"skipped": "skipped", "failed": "failed"}.get(job.status, job.result or "published")
    return Cell(site=site, state=state, file=file, publish=job)


def _with_news(cell: Cell, published: SitePublication | None) -> Cell:
    """Add what publish recorded as new at this site (against the image it replaced)."""
    if cell.state not in ("published", "up to date") or published is None:
        return cell
    previous = published.previous
    if previous is None:
        return replace(cell, whats_new="the first version at this site")
    if previous.changes is None:
        return replace(cell, whats_new=previous.error or "changes unknown")
    changes = previous.changes
    rows = tuple((section, str(c.get("name", "")), str(c.get("kind", "")), str(c.get("old") or ""),
                  str(c.get("new") or ""))
                 for section, items in (changes.get("changes") or {}).items() for c in items)
    return replace(cell, whats_new=str(changes.get("summary", "")), changes=rows)


def report_json(report: Report) -> dict[str, Any]:
    return {"schema": 1, **asdict(report), "failed": report.failed}


# -- the page ------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#5a6272;margin-bottom:16px}
table{border-collapse:collapse}th,td{border:1px solid #d5d9e0;padding:6px 8px;vertical-align:top}
th{background:#f2f4f7;text-align:left}td small,.mono{font-family:ui-monospace,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-weight:600;font-size:12px}
.s-published,.s-passed,.s-ok,.s-up-to-date{background:#dff3e4;color:#17612e}
.s-failed,.s-stale,.s-partial{background:#fbe1e1;color:#8d1c1c}
.s-skipped,.s-not-run,.s-not-published{background:#eceef2;color:#4a5160}
.s-not-carried{color:#9aa1ad}.layer{color:#5a6272;font-style:italic}
.legend span{margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""
COLORS = {"build": "#3b6fd8", "test": "#8a5cd1", "publish": "#2e9d6a"}


def _badge(state: str) -> str:
    return f'<span class="badge s-{state.replace(" ", "-")}">{html.escape(state)}</span>'


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _secs(s: float) -> str:
    return f"{int(s) // 60}m {s % 60:04.1f}s" if s >= 60 else f"{s:.1f}s"


def _cell_html(row: Row, cell: Cell) -> str:
    e = html.escape
    attrs = f'class="cell" data-image="{e(row.key)}" data-site="{e(cell.site)}" data-state="{e(cell.state)}"'
    if cell.state == "not carried":
        return f'<td {attrs}><span class="s-not-carried">&mdash;</span></td>'
    parts = [_badge(cell.state)]
    if cell.file:
        parts.append(f"{e(cell.file.disk_format)} {_size(cell.file.size)}")
        parts.append(f'<small title="sha256 {e(cell.file.sha256)}">sha256 {e(cell.file.sha256[:12])}</small>')
    job = cell.publish
    if job and job.image_id:
        parts.append(f'<small title="Glance image id">id {e(job.image_id[:13])}</small>')
    if job and job.status in ("ok", "failed"):
        speed = f", {job.mb_per_s:.0f} MB/s" if job.mb_per_s else ""
        parts.append(f"{_secs(job.seconds)}{speed}")
    if job and job.reason and cell.state in ("failed", "skipped"):
        parts.append(f'<small class="reason">{e(job.reason)}</small>')
    if cell.whats_new:
        parts.append(f'<small class="new">new: {e(cell.whats_new)}</small>')
    return f"<td {attrs}>" + "<br>".join(parts) + "</td>"


def _row_html(report: Report, row: Row) -> str:
    e = html.escape
    label = f"<b>{e(row.name)}</b><br><small>{e(row.key)}</small>"
    if not row.requested:
        label += '<br><span class="layer">layer only</span>'
    build = _badge(row.build.status) + f" {_secs(row.build.seconds)}"
    if row.build.cached:
        build += " <small>(base layer reused)</small>"
    if row.build.reason:
        build += f'<br><small class="reason">{e(row.build.reason)}</small>'
    version = f"{e(row.version)}<br><small>{e(row.build_tag)}</small>" if row.version else "&mdash;"
    test = (f'<td data-image="{e(row.key)}" data-field="test" data-state="{e(row.test)}">'
            f"{_badge(row.test)}<br><small>{e(row.test_detail)}</small></td>")
    cells = "".join(_cell_html(row, c) for c in row.cells)
    return (f'<tr data-image="{e(row.key)}"><th scope="row">{label}</th><td>{version}</td>{test}'
            f'<td data-image="{e(row.key)}" data-field="build" data-state="{e(row.build.status)}">'
            f"{build}</td>{cells}</tr>")


def chart_svg(jobs: tuple[JobResult, ...]) -> str:
    """Horizontal bars, one per job, length = seconds; failed jobs outlined in red."""
    shown = [j for j in jobs if j.status != "not run"]
    if not shown:
        return "<p>No job ran.</p>"
    longest = max(j.seconds for j in shown) or 1.0
    label_w, bar_w, row_h = 330, 520, 22
    height = row_h * len(shown) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="job times" '
           f'width="{label_w + bar_w + 90}" height="{height}" font-size="12" '
           f'font-family="system-ui,sans-serif">']
    for i, job in enumerate(shown):
        y = 10 + i * row_h
        width = max(2.0, bar_w * job.seconds / longest)
        stroke = ' stroke="#c62828" stroke-width="2"' if job.status == "failed" else ""
        opacity = ' fill-opacity="0.45"' if job.status == "skipped" or job.cached else ""
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{html.escape(job.id)}</text>'
                   f'<rect class="bar" data-job="{html.escape(job.id)}" x="{label_w}" y="{y + 2}" '
                   f'width="{width:.1f}" height="{row_h - 6}" fill="{COLORS.get(job.kind, "#888")}"'
                   f'{stroke}{opacity}><title>{html.escape(job.id)}: {job.status}, '
                   f'{job.seconds:.1f}s</title></rect>'
                   f'<text x="{label_w + width + 6:.1f}" y="{y + 14}">{_secs(job.seconds)}'
                   f'{"" if job.status == "ok" else f" ({job.status})"}</text>')
    axis_y = height - 12
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + bar_w}" y2="{axis_y}" stroke="#9aa1ad"/>'
               f'<text x="{label_w}" y="{axis_y + 11}">0</text>'
               f'<text x="{label_w + bar_w}" y="{axis_y + 11}" text-anchor="end">{_secs(longest)}</text>')
    out.append("</svg>")
    return "".join(out)


MAX_CHANGE_ROWS = 200  # per image and site; `sage-image diff` has them all


def whats_new_html(report: Report) -> str:
    """Per image, per site: the changes against the production image it replaced there."""
    e = html.escape
    out = []
    for row in report.rows:
        for cell in row.cells:
            if not cell.whats_new:
                continue
            out.append(f'<div class="whats-new" data-image="{e(row.key)}" data-site="{e(cell.site)}">'
                       f"<b>{e(row.name)}</b> at {e(cell.site)}: {e(cell.whats_new)}")
            if cell.changes:
                body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in change) + "</tr>"
                               for change in cell.changes[:MAX_CHANGE_ROWS])
                out.append(f"<details><summary>{len(cell.changes)} changes</summary><table>"
                           "<tr><th>what</th><th>name</th><th>change</th><th>old</th><th>new</th>"
                           f"</tr>{body}</table></details>")
            out.append("</div>")
    return "".join(out) or "<p>Nothing published, or published by a sage-image that did not " \
                           "record the image it replaced.</p>"


def render_html(report: Report, *, generator: str) -> str:
    e = html.escape
    heads = "".join(f'<th scope="col" data-site="{e(s)}">{e(s)}</th>' for s in report.sites)
    rows = "".join(_row_html(report, r) for r in report.rows)
    published = sum(1 for r in report.rows for c in r.cells if c.state in ("published", "up to date"))
    summary = (f"{sum(1 for r in report.rows if r.requested)} images, {published} published "
               f"image/site pairs, {report.failed} failed job(s)")
    legend = "".join(f'<span><i style="background:{c}"></i>{k}</span>' for k, c in COLORS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sage image release {e(report.started)}</title><style>{CSS}</style></head>
<body>
<h1>Sage image release</h1>
<div class="meta">started {e(report.started)} &middot; finished {e(report.finished)} &middot;
<span id="summary">{e(summary)}</span></div>
<h2>Images &times; sites</h2>
<table id="matrix"><thead><tr><th>image</th><th>version</th><th>test</th><th>build</th>{heads}</tr></thead>
<tbody>{rows}</tbody></table>
<h2>What's new in this version</h2>
{whats_new_html(report)}
<h2>Build, test and publish times</h2>
<div class="legend">{legend}<span>paler: skipped or from a cached layer; red outline: failed</span></div>
<div id="chart">{chart_svg(report.jobs)}</div>
<p class="meta">{e(generator)}</p>
</body></html>
"""
