"""The build output folder's readers and writers (sage_image/outfolder.py): every way a file can
be wrong is a one-line UsageError naming the file, and a write never leaves half a file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from sage_image import outfolder
from sage_image.errors import UsageError
from sage_image.outfolder import ImageIdentity, read_identity, read_json, write_json

IDENTITY = {"name": "Sage-VirtualWaggle-Debian12", "release": "bookworm", "variant": "sage",
            "arch": "amd64", "family": "debian", "os_version": "12"}


def _usage_error(call: Any) -> UsageError:
    with pytest.raises(UsageError) as caught:
        call()
    assert "\n" not in caught.value.message
    return caught.value


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    error = _usage_error(lambda: read_json(path))
    assert error.message == f"{path}: not found"
    assert "sage-image build" in (error.hint or "")


@pytest.mark.parametrize("text", ["{not json", "\udcff"], ids=["bad-json", "bad-utf8"])
def test_a_file_that_is_not_json_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "test-results.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    error = _usage_error(lambda: read_json(path))
    assert error.message.startswith(f"{path}: cannot read JSON: ")


def test_a_folder_in_place_of_the_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "published.json"
    path.mkdir()
    assert _usage_error(lambda: read_json(path)).message.startswith(f"{path}: cannot read JSON: ")


@pytest.mark.parametrize("text", ["[1, 2]", '"manifest"', "null"])
def test_json_that_is_not_an_object_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(text)
    assert _usage_error(lambda: read_json(path)).message == f"{path}: expected a JSON object"


def test_an_object_is_read(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"schema": 1, "name": "x"}')
    assert read_json(path) == {"schema": 1, "name": "x"}


def test_the_identity_is_read_from_a_manifest(tmp_path: Path) -> None:
    manifest = {"schema": 1, **IDENTITY, "os_version": 12, "packages": {}}
    identity = read_identity(manifest, path=tmp_path / "manifest.json")
    assert identity == ImageIdentity(**IDENTITY)  # os_version 12 (a number) is read as "12"
    assert asdict(identity) == IDENTITY


@pytest.mark.parametrize("key", outfolder.IDENTITY_KEYS)
def test_an_identity_key_missing_is_named_with_the_file(tmp_path: Path, key: str) -> None:
    path = tmp_path / "out" / "manifest.json"
    manifest = {k: v for k, v in IDENTITY.items() if k != key}
    error = _usage_error(lambda: read_identity(manifest, path=path))
    assert error.message == f"{path}: missing key '{key}'"
    assert error.hint == "see docs/manifest.md"


def test_the_identity_is_frozen() -> None:
    identity = ImageIdentity(**IDENTITY)
    with pytest.raises(AttributeError):
        identity.name = "other"  # type: ignore[misc]


def test_write_json_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}')
    assert write_json(path, {"b": 1, "a": [1, 2]}) == path
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_json_keeps_the_order_it_is_given_when_asked(tmp_path: Path) -> None:
    path = write_json(tmp_path / "test-results.json", {"schema": 1, "name": "x", "checks": []},
                      sort_keys=False)
    assert list(json.loads(path.read_text())) == ["schema", "name", "checks"]
    assert list(json.loads(write_json(path, {"schema": 1, "name": "x"}).read_text())) == \
        ["name", "schema"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "published.json"
    path.write_text('{"schema": 1, "sites": {}}')
    with pytest.raises(TypeError):
        write_json(path, {"sites": {"CHI@UC": object()}})  # not JSON: fails half-way
    assert path.read_text() == '{"schema": 1, "sites": {}}'
    assert [p.name for p in tmp_path.iterdir()] == ["published.json"]


def test_the_files_of_an_output_folder(tmp_path: Path) -> None:
    assert outfolder.manifest_path(tmp_path) == tmp_path / "manifest.json"
    assert outfolder.results_path(tmp_path) == tmp_path / "test-results.json"
    assert outfolder.published_path(tmp_path) == tmp_path / "published.json"
    assert outfolder.logs_folder(tmp_path / "test-results.json") == tmp_path / "test-logs"


def test_the_results_and_logs_of_a_bare_image_file_are_beside_it(tmp_path: Path) -> None:
    results = outfolder.results_beside(tmp_path / "my-results.raw")
    assert results == tmp_path / "my-results.raw.test-results.json"
    assert outfolder.logs_folder(results) == tmp_path / "my-results.raw.test-logs"


def test_results_and_published_before_the_stages_ran(tmp_path: Path) -> None:
    assert outfolder.read_results(tmp_path) is None
    assert outfolder.read_published(tmp_path) == {}


def test_results_and_published_are_read(tmp_path: Path) -> None:
    (tmp_path / "test-results.json").write_text('{"schema": 1, "passed": true}')
    (tmp_path / "published.json").write_text('{"schema": 1, "sites": {"CHI@UC": {"image_id": "i"}}}')
    assert outfolder.read_results(tmp_path) == {"schema": 1, "passed": True}
    assert outfolder.read_published(tmp_path) == {"CHI@UC": {"image_id": "i"}}


def test_a_broken_published_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "published.json").write_text("[]")
    error = _usage_error(lambda: outfolder.read_published(tmp_path))
    assert error.message == f"{tmp_path / 'published.json'}: expected a JSON object"
