"""The release plan: one build per image, layered on the parent variant, never one per site."""

from __future__ import annotations

import re

import pytest

from sage_image.catalog import load_catalog
from sage_image.errors import UsageError
from sage_image.release.plan import layer_key, plan_release
from sage_image.release.run import ReleaseOptions, layer_file, release_jobs

CATALOG = load_catalog()


def test_one_build_per_image_never_per_site():
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",),
                        sites=("CHI@UC", "CHI@TACC", "KVM@TACC"), publish=True)
    assert [i.key for i in plan.images] == ["bookworm-base-amd64", "bookworm-sage-amd64"]
    base, sage = plan.images
    assert not base.requested and base.sites == ()  # a layer for sage, not published
    assert sage.parent == base.key and sage.sites == ("CHI@UC", "CHI@TACC", "KVM@TACC")
    assert [p.site for p in plan.publishes] == ["CHI@UC", "CHI@TACC", "KVM@TACC"]


def test_graph_is_the_schedule():
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("base", "sage", "gpu"),
                        arches=("amd64",), sites=("CHI@UC",), publish=True)
    graph = plan.graph()
    assert graph["build:bookworm-base-amd64"] == ()
    assert graph["build:bookworm-sage-amd64"] == ("build:bookworm-base-amd64",)
    assert graph["build:bookworm-gpu-amd64"] == ("build:bookworm-sage-amd64",)
    assert graph["test:bookworm-gpu-amd64"] == ("build:bookworm-gpu-amd64",)
    assert graph["publish:bookworm-gpu-amd64@CHI@UC"] == ("test:bookworm-gpu-amd64",)


def test_full_matrix_respects_arches():
    plan = plan_release(CATALOG)
    keys = {i.key for i in plan.images}
    assert "jammy-gpu-arm64" not in keys and "jammy-sage-arm64" in keys
    for image in plan.images:
        if image.arch == "arm64":
            assert "KVM@TACC" not in image.sites and "CHI@NCAR" not in image.sites


def test_layer_keys_change_only_above_the_change(tmp_path):
    base = layer_key(CATALOG, "bookworm", "base", "amd64", "")
    sage = layer_key(CATALOG, "bookworm", "sage", "amd64", base)
    assert sage != layer_key(CATALOG, "bookworm", "sage", "amd64", "another-base")
    assert base != layer_key(CATALOG, "trixie", "base", "amd64", "")
    # a changed sage source commit changes sage's key but not base's
    text = CATALOG.path.read_text().replace("09a85ed3e1b7f1c5a3140c6fb894a139b5ea2f94", "f" * 40)
    (tmp_path / "catalog.yaml").write_text(text)
    changed = load_catalog(tmp_path / "catalog.yaml")
    assert layer_key(changed, "bookworm", "base", "amd64", "") == base
    assert layer_key(changed, "bookworm", "sage", "amd64", base) != sage


def test_jobs_use_layers_and_layer_only_parents(tmp_path):
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",),
                        sites=("CHI@UC",), publish=True)
    options = ReleaseOptions(out_dir=tmp_path / "out", cache_root=tmp_path / "cache", jobs=1,
                             publish=True)
    jobs = {j.id: j for j in release_jobs(plan, options)}
    base, sage = plan.images
    base_argv = jobs["build:bookworm-base-amd64"].argv
    assert "--layer-only" in base_argv
    assert str(layer_file(tmp_path / "cache", base.layer_key)) in base_argv
    sage_argv = jobs["build:bookworm-sage-amd64"].argv
    assert sage_argv[sage_argv.index("--from-layer") + 1] == str(layer_file(tmp_path / "cache", base.layer_key))
    assert "--save-layer" not in sage_argv  # nothing builds on sage here
    assert jobs["publish:bookworm-sage-amd64@CHI@UC"].needs == ("test:bookworm-sage-amd64",)
    assert not jobs["publish:bookworm-sage-amd64@CHI@UC"].heavy
    # an existing layer means the layer-only parent need not run
    layer_file(tmp_path / "cache", base.layer_key).parent.mkdir(parents=True)
    layer_file(tmp_path / "cache", base.layer_key).write_bytes(b"x")
    jobs = {j.id: j for j in release_jobs(plan, options)}
    assert jobs["build:bookworm-base-amd64"].cached


@pytest.mark.parametrize("kwargs,expected", [
    (dict(releases=("bookwrm",)), "unknown release 'bookwrm' (did you mean 'bookworm'?)"),
    (dict(variants=("sgae",)), "unknown variant 'sgae'"),
    (dict(sites=("CHI@XX",)), "unknown site 'CHI@XX'"),
    (dict(variants=("gpu",), arches=("arm64",)), "no image the catalog allows"),
])
def test_bad_selection_is_refused(kwargs, expected):
    with pytest.raises(UsageError, match=re.escape(expected)):
        plan_release(CATALOG, **kwargs)


def test_source_overrides_and_stand_ins_change_the_layers_they_go_into():
    from sage_image.release.plan import SourceInputs

    plain = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",))
    other = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",),
                         inputs=SourceInputs(("waggle-node=/srv/vw@" + "e" * 40,)))
    stand = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",),
                         inputs=SourceInputs(stand_ins=True))
    assert plain.images[0].layer_key == other.images[0].layer_key  # base has no waggle-node
    assert plain.images[1].layer_key != other.images[1].layer_key
    assert plain.images[0].layer_key != stand.images[0].layer_key  # cc-snapshot may be a stand-in


def test_each_build_gets_only_the_source_overrides_it_uses(tmp_path):
    plan = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",))
    options = ReleaseOptions(out_dir=tmp_path, cache_root=tmp_path, jobs=1,
                             sources=("cc-snapshot=/srv/cc", "waggle-node=/srv/vw"))
    jobs = {j.id: j.argv for j in release_jobs(plan, options)}
    assert "cc-snapshot=/srv/cc" in jobs["build:bookworm-base-amd64"]
    assert "waggle-node=/srv/vw" not in jobs["build:bookworm-base-amd64"]
    assert "waggle-node=/srv/vw" in jobs["build:bookworm-sage-amd64"]


def test_where_a_pinned_override_was_fetched_from_does_not_change_the_layer():
    from sage_image.release.plan import SourceInputs

    def key(location):
        plan = plan_release(CATALOG, releases=("bookworm",), variants=("sage",), arches=("amd64",),
                            inputs=SourceInputs((f"waggle-node={location}@{'e' * 40}",)))
        return plan.images[1].layer_key

    assert key("/tmp/session-1/vw") == key("/tmp/session-2/vw")
