"""Two builds at once never share diskimage-builder's cache: each locks its own slot."""

from __future__ import annotations

from sage_image.builder.build import _dib_cache_slot


def test_a_second_concurrent_build_gets_another_slot(tmp_path):
    with _dib_cache_slot(tmp_path) as first:
        with _dib_cache_slot(tmp_path) as second:
            assert first != second
            assert {first.name, second.name} == {"slot-0", "slot-1"}
    with _dib_cache_slot(tmp_path) as again:  # released: the warm slot is reused
        assert again.name == "slot-0"
