"""`check` and `new`: the ECR's rules and messages for sage.yaml, the cookiecutter's for names."""

from __future__ import annotations

import pytest
import yaml

from sage_node.appspec import Refused, check_app, check_spec
from sage_node.errors import UsageError
from sage_node.skeleton import NAME_ERROR, VERSION_ERROR, new_app

GOOD = {"namespace": "waggle", "name": "hello", "version": "0.1.0",
        "description": "says hello",
        "source": {"url": "https://github.com/x/y", "branch": "main",
                   "architectures": ["linux/amd64", "linux/arm64"]}}


def spec(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def refused(data) -> str:
    with pytest.raises(Refused) as info:
        check_spec(data)
    return str(info.value)


def test_a_good_spec_passes():
    check_spec(spec())


@pytest.mark.parametrize("changes, message", [
    ({"namespace": None}, "namespace missing"),
    ({"namespace": "Waggle"}, "Could not create namespace Waggle: Namespace can only contain "
                              "numbers and lowercase letters"),
    ({"namespace": "abc"}, "Could not create namespace abc: Namespace must be between 4 and 30 "
                           "characters long"),
    ({"name": None}, "repository name missing"),
    ({"name": "Hello"}, "Could not create repository waggle/Hello: Repository can only contain "
                        "numbers and lowercase letters"),
    ({"name": "h"}, "Could not create repository waggle/h: Repository must be between 2 and 255 "
                    "characters long"),
    ({"description": None}, "Required field description is missing"),
    ({"description": ""}, "Required field description is missing"),
    ({"description": 5}, "Field description has to be of type str, got int"),
    ({"source": None}, "Required field source is missing"),
    ({"source": "https://x"}, "Field source has to be of type dict, got str"),
    ({"colour": "red"}, "Field colour not supported"),
    ({"inputs": [{"id": "a", "type": "string", "unit": "m"}]}, "Input field unit not supported"),
    ({"inputs": [{"type": "string"}]}, "Expected field id missing"),
    ({"inputs": [{"id": "a"}]}, "'type'"),
    ({"inputs": [{"id": "a", "type": "str"}]}, "Input type str not supported"),
    ({"resources": {"cpu": 1}}, "Field resources has to be an array"),
    ({"metadata": ["x"]}, "metadata has to be an object"),
    ({"source": {"branch": "main", "architectures": ["linux/amd64"]}}, "url missing in source"),
    ({"source": {"url": "u", "architectures": ["linux/amd64"]}}, "Neither tag nor branch specified"),
    ({"source": {"url": "u", "tag": "v1"}}, "architectures missing in source"),
    ({"source": {"url": "u", "tag": "v1", "architectures": ["linux/riscv64"]}},
     "Architecture linux/riscv64 not supported, valid values: linux/amd64,linux/arm64,"
     "linux/arm/v6,linux/arm/v7,linux/arm/v8"),
    ({"source": {"url": "u", "tag": "v1", "architectures": ["linux/amd64"], "build_args": []}},
     "build_args needs to be a dictionary"),
    ({"source": {"url": "u", "tag": "v1", "architectures": ["linux/amd64"],
                 "build_args": {"A": 1}}}, "build_args values have to be strings"),
])
def test_each_rule_refuses_with_the_ecrs_message(changes, message):
    assert refused(spec(**changes)) == message


def test_rules_apply_in_the_ecrs_order():
    # both missing: the ECR names the description first, then unknown fields, then source
    assert refused(spec(description=None, colour="red")) == "Required field description is missing"
    assert refused(spec(colour="red", resources={})) == "Field colour not supported"


def write_app(tmp_path, data, dockerfile=True):
    app = tmp_path / "app"
    app.mkdir()
    (app / "sage.yaml").write_text(yaml.safe_dump(data))
    if dockerfile:
        (app / "Dockerfile").write_text("FROM python:3.11\n")
    return app


def test_check_fills_in_what_the_portal_sets(tmp_path):
    # namespace (the portal user), source.url and source.branch come from the portal
    data = spec(namespace=None, source={"architectures": ["linux/amd64"]})
    assert check_app(write_app(tmp_path, data)) == []


def test_check_refuses_a_spec_without_description_with_the_ecrs_message(tmp_path):
    app = write_app(tmp_path, spec(description=None))
    assert check_app(app) == [f"{app / 'sage.yaml'}: Required field description is missing"]


def test_check_wants_the_dockerfile_the_source_names(tmp_path):
    app = write_app(tmp_path, spec(), dockerfile=False)
    assert check_app(app) == [f"{app / 'Dockerfile'}: missing (source.dockerfile; the build "
                              "needs it)"]


def test_check_uses_the_portal_users_namespace(tmp_path):
    app = write_app(tmp_path, spec())
    assert check_app(app, namespace="cc") == [
        f"{app / 'sage.yaml'}: Could not create namespace cc: Namespace must be between 4 and "
        "30 characters long"]


@pytest.mark.parametrize("text, message", [("", "Could not parse app spec"),
                                           ("a: [", "Could not parse app spec"),
                                           (None, "missing")])
def test_check_an_unreadable_spec(tmp_path, text, message):
    app = tmp_path / "app"
    app.mkdir()
    if text is not None:
        (app / "sage.yaml").write_text(text)
    problems = check_app(app)
    assert len(problems) == 1 and message in problems[0]


def test_new_writes_an_app_that_passes_check(tmp_path):
    app = new_app("hello-world", parent=tmp_path, version="1.2.3", base_image="base:1")
    assert sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()) == [
        "Dockerfile", "README.md", "ecr-meta/ecr-science-description.md", "main.py",
        "requirements.txt", "sage.yaml"]
    assert yaml.safe_load((app / "sage.yaml").read_text())["version"] == "1.2.3"
    assert "FROM base:1\n" in (app / "Dockerfile").read_text()
    assert (app / "requirements.txt").read_text() == "pywaggle==0.56.3\n"
    compile((app / "main.py").read_text(), "main.py", "exec")
    assert check_app(app) == []


@pytest.mark.parametrize("name, version, message", [
    ("Hello", "0.1.0", NAME_ERROR), ("1hello", "0.1.0", NAME_ERROR),
    ("h", "0.1.0", NAME_ERROR), ("hello_world", "0.1.0", NAME_ERROR),
    ("hello", "1.0", VERSION_ERROR), ("hello", "v1.0.0", VERSION_ERROR)])
def test_new_refuses_names_and_versions_as_the_cookiecutter(tmp_path, name, version, message):
    with pytest.raises(UsageError) as info:
        new_app(name, parent=tmp_path, version=version, base_image="b")
    assert info.value.message == message
    assert list(tmp_path.iterdir()) == []
