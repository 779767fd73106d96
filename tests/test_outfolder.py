"""The build output folder's contract (sage_image/outfolder.py): each file is a typed record with
one writer and one reader; every way a file can be wrong is a one-line error naming the file and
the field, never a default made up by the reader; a write never leaves half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sage_image import outfolder
from sage_image.errors import UsageError
from sage_image.outfolder import (
    ContractError,
    PreviousImage,
    SitePublication,
    read_manifest,
    read_published,
    read_results,
    write_json,
    write_manifest,
    write_published,
)
from tests import contract


def _contract_error(call: Any) -> ContractError:
    with pytest.raises(ContractError) as caught:
        call()
    assert isinstance(caught.value, UsageError)  # bad input: exit 2
    assert "\n" not in caught.value.message
    return caught.value


def test_a_manifest_round_trips(tmp_path: Path) -> None:
    m = contract.manifest(files={"raw": contract.fake_file("x.raw")})
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == m
    assert read_manifest(tmp_path / "manifest.json") == m
    assert read_manifest(tmp_path).identity.name == m.name
    # on disk as docs/manifest.md says: `from` (a Python keyword) under layer, mapping keys sorted
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["layer"] == {"only": False, "from": None, "saved": None}
    assert list(data["packages"]) == sorted(data["packages"])


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    error = _contract_error(lambda: read_manifest(tmp_path))
    assert error.message == f"{path}: not found"
    assert "sage-image build" in (error.hint or "")


@pytest.mark.parametrize("text", ["{not json", "\udcff", "[1, 2]", "null"],
                         ids=["bad-json", "bad-utf8", "a-list", "null"])
def test_a_file_that_is_not_a_json_object_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert _contract_error(lambda: read_manifest(tmp_path)).message.startswith(f"{path}: ")


def test_a_folder_in_place_of_the_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "published.json").mkdir()
    error = _contract_error(lambda: read_published(tmp_path))
    assert error.message.startswith(f"{tmp_path / 'published.json'}: cannot read")


def _written(tmp_path: Path, edit: Any) -> Path:
    data = msgspec.to_builtins(contract.manifest(files={"raw": contract.fake_file("x.raw")}))
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("variant"), "variant: missing"),
    (lambda m: m.pop("qemu_arch"), "qemu_arch: missing"),
    (lambda m: m.update(os_version=12), "os_version: expected `str`, got `int`"),
    (lambda m: m["files"]["raw"].update(size="3"), "files[...].size: expected `int`, got `str`"),
    (lambda m: m["boot"].pop("cmdline"), "boot: object missing required field `cmdline`"),
    (lambda m: m.update(kernel="6.1"), "kernel: unknown field"),
    (lambda m: m.update(schema=1), "schema 1 (this sage-image reads 2)"),
    (lambda m: m["properties"].pop("build-tag"), "properties: missing build-tag"),
    (lambda m: m["properties"].update({"build-timestamp": "today"}),
     "properties: build-timestamp is not Unix seconds: 'today'"),
], ids=["no-variant", "no-qemu-arch", "number", "nested", "nested-missing", "unknown", "schema",
        "no-build-tag", "bad-timestamp"])
def test_a_missing_mistyped_or_unknown_field_is_named(tmp_path: Path, edit: Any,
                                                      message: str) -> None:
    error = _contract_error(lambda: read_manifest(_written(tmp_path, edit)))
    assert error.message == f"{tmp_path / 'manifest.json'}: {message}"


def test_records_are_frozen() -> None:
    m = contract.manifest()
    with pytest.raises(AttributeError):
        m.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        m.identity.name = "other"  # type: ignore[misc]


def test_results_round_trip_and_old_results_are_refused(tmp_path: Path) -> None:
    m = contract.manifest(files={"raw": contract.fake_file("x.raw")})
    r = contract.results(m)
    contract.write_test(tmp_path, r)
    assert read_results(tmp_path / "test-results.json") == r
    # results written before runs recorded what they ran (schema 1) say nothing about today's
    data = json.loads((tmp_path / "test-results.json").read_text()) | {"schema": 1}
    (tmp_path / "test-results.json").write_text(json.dumps(data))
    error = _contract_error(lambda: read_results(tmp_path / "test-results.json"))
    assert error.message.endswith("test-results.json: schema 1 (this sage-image reads 2)")


def test_results_and_published_before_the_stages_ran(tmp_path: Path) -> None:
    assert read_results(tmp_path / "test-results.json") is None
    assert read_published(tmp_path).sites == {}


def _site(image_id: str, previous: PreviousImage | None = None) -> SitePublication:
    return SitePublication(image_id=image_id, name="Img", cloud="chi-uc", status="published",
                           time="2026-12-05T00:00:00Z", previous=previous)


def test_published_is_merged_per_site(tmp_path: Path) -> None:
    write_published(tmp_path, {"CHI@UC": _site("a")})
    old = PreviousImage(image_id="old", build_tag="t", error="no record")
    write_published(tmp_path, {"KVM@TACC": _site("b", old)})
    assert read_published(tmp_path).sites == {"CHI@UC": _site("a"), "KVM@TACC": _site("b", old)}


def test_a_damaged_published_file_is_replaced_by_what_is_published_now(tmp_path: Path) -> None:
    (tmp_path / "published.json").write_text("[]")
    _contract_error(lambda: read_published(tmp_path))
    write_published(tmp_path, {"CHI@UC": _site("a")})
    assert read_published(tmp_path).sites == {"CHI@UC": _site("a")}


def test_write_json_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text('{"old": true}')
    assert write_json(path, {"b": 1, "a": [1, 2]}) == path
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["release.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text('{"schema": 1, "sites": {}}')
    with pytest.raises(TypeError):
        write_json(path, {"sites": {"CHI@UC": object()}})  # not JSON: fails half-way
    assert path.read_text() == '{"schema": 1, "sites": {}}'
    assert [p.name for p in tmp_path.iterdir()] == ["release.json"]


def test_the_files_of_an_output_folder(tmp_path: Path) -> None:
    assert outfolder.manifest_path(tmp_path) == tmp_path / "manifest.json"
    assert outfolder.results_path(tmp_path) == tmp_path / "test-results.json"
    assert outfolder.published_path(tmp_path) == tmp_path / "published.json"
    assert outfolder.logs_folder(tmp_path / "test-results.json") == tmp_path / "test-logs"


def test_the_results_and_logs_of_a_bare_image_file_are_beside_it(tmp_path: Path) -> None:
    results = outfolder.results_beside(tmp_path / "my-results.raw")
    assert results == tmp_path / "my-results.raw.test-results.json"
    assert outfolder.logs_folder(results) == tmp_path / "my-results.raw.test-logs"


def test_only_the_contract_module_parses_the_output_folder_files() -> None:
    """No other module reads manifest.json, test-results.json or published.json itself."""
    root = Path(__file__).resolve().parents[1] / "sage_image"
    readers = []
    for path in root.rglob("*.py"):
        if path.name == "outfolder.py":
            continue
        text = path.read_text()
        if "json.load" in text and any(n in text for n in ("MANIFEST", "TEST_RESULTS",
                                                           "PUBLISHED", "manifest.json")):
            readers.append(str(path.relative_to(root)))
    assert readers == []
