"""`sage-node check`: an app folder against the Edge Code Repository's rules for sage.yaml
(waggle-sensor/sage-ecr 55a1a7e: ecr_api.py submit_app, config.py, ecrdb.py), in its order and
with its messages, as an app submitted through the portal meets them; then what the portal and
the build need beyond that (the Dockerfile the source names).

The ECR stops at its first error and answers HTTP 500 {"error": <message>}; so does
`check_spec`. The portal (sage-gui CreateApp.tsx) sets `namespace` to the logged-in user and
`source.url` / `source.branch` to the repository it read sage.yaml from, so those may be
missing from a sage.yaml; `check` fills them in the same way (namespace only when --namespace
is given - it is the portal user's name). The ECR's checks against its database (an app of the
same version exists, namespace permissions) and its git clone of the source are not made here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

VALID_FIELDS = ("namespace", "name", "version", "description", "keywords", "authors",
                "collaborators", "homepage", "funding", "license", "source", "depends_on",
                "baseCommand", "arguments", "inputs", "resources", "metadata", "frozen", "testing")
REQUIRED_FIELDS = {"description": "str", "source": "dict"}
ARCHITECTURES = ("linux/amd64", "linux/arm64", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8")
INPUT_FIELDS_EXPECTED = ("id", "type")
INPUT_FIELDS_VALID = ("id", "type", "description", "default")
INPUT_TYPES = ("boolean", "int", "long", "float", "double", "string", "File")
PORTAL_URL = "https://github.com/OWNER/REPOSITORY"   # stands for the repository the portal read
PORTAL_BRANCH = "main"


class Refused(Exception):
    """The ECR's answer: its message, as it would return it."""


def _namespace_rules(namespace: str) -> None:
    if not re.fullmatch(r"[a-z0-9]+", namespace, re.ASCII):
        raise Refused(f"Could not create namespace {namespace}: "
                      "Namespace can only contain numbers and lowercase letters")
    if not 4 <= len(namespace) <= 30:
        raise Refused(f"Could not create namespace {namespace}: "
                      "Namespace must be between 4 and 30 characters long")


def _repository_rules(namespace: str, name: str) -> None:
    where = f"Could not create repository {namespace}/{name}"
    if not re.fullmatch(r"[a-z0-9_-]+", name, re.ASCII):
        raise Refused(f"{where}: Repository can only contain numbers and lowercase letters")
    if not 2 <= len(name) <= 255:
        raise Refused(f"{where}: Repository must be between 2 and 255 characters long")


def _fields(spec: Mapping[str, Any]) -> None:
    for key, kind in REQUIRED_FIELDS.items():
        if key not in spec:
            raise Refused(f"Required field {key} is missing")
        value = spec[key]
        if type(value).__name__ != kind:
            raise Refused(f"Field {key} has to be of type {kind}, got {type(value).__name__}")
        if len(value) == 0:
            raise Refused(f"Required field {key} is missing")
    for key in spec:
        if key not in VALID_FIELDS:
            raise Refused(f"Field {key} not supported")


def _inputs(spec: Mapping[str, Any]) -> None:
    for app_input in spec.get("inputs", []):
        for field in app_input:
            if field not in INPUT_FIELDS_VALID:
                raise Refused(f"Input field {field} not supported")
        for expected in INPUT_FIELDS_EXPECTED:
            if expected not in app_input:
                raise Refused(f"Expected field {expected} missing")
            # upstream reads "type" here, inside the loop: a missing type fails as KeyError
            input_type = app_input["type"]
            if input_type not in INPUT_TYPES:
                raise Refused(f"Input type {input_type} not supported")


def _source(source: Mapping[str, Any]) -> None:
    if (source.get("url") or "") == "":
        raise Refused("url missing in source")
    if (source.get("branch") or "") == "" and (source.get("tag") or "") == "":
        raise Refused("Neither tag nor branch specified")
    architectures = source.get("architectures", [])
    if len(architectures) == 0:
        raise Refused("architectures missing in source")
    for arch in architectures:
        if arch not in ARCHITECTURES:
            raise Refused(f"Architecture {arch} not supported, valid values: "
                          + ",".join(ARCHITECTURES))
    build_args = source.get("build_args", {})
    if not isinstance(build_args, dict):
        raise Refused("build_args needs to be a dictionary")
    for value in build_args.values():
        if not isinstance(value, str):
            raise Refused("build_args values have to be strings")


def check_spec(spec: Mapping[str, Any]) -> None:
    """submit_app's checks, in its order; raise Refused with its message at the first failure."""
    try:
        namespace = spec.get("namespace", "")
        if not namespace:
            raise Refused("namespace missing")
        _namespace_rules(namespace)
        name = spec.get("name", "")
        if not name:
            raise Refused("repository name missing")
        _repository_rules(namespace, name)
        _fields(spec)
        if not spec.get("source"):
            raise Refused("Field source is missing")
        _inputs(spec)
        if not isinstance(spec.get("resources", []), list):
            raise Refused("Field resources has to be an array")
        if not isinstance(spec.get("metadata", {}), dict):
            raise Refused("metadata has to be an object")
        _source(spec["source"])
    except Refused:
        raise
    except Exception as exc:   # the ECR answers any other exception with str(exc)
        raise Refused(str(exc)) from None


def as_submitted(spec: Mapping[str, Any], *, namespace: str | None) -> dict[str, Any]:
    """The spec as the portal posts it: its user as namespace, its repository as the source."""
    posted = dict(spec)
    if namespace is not None:
        posted["namespace"] = namespace
    source = posted.get("source")
    if isinstance(source, dict):
        posted["source"] = {"url": PORTAL_URL, "branch": PORTAL_BRANCH} | {
            k: v for k, v in source.items() if v not in (None, "")}
    return posted


def load_spec(app_dir: Path) -> tuple[Path, Any]:
    path = app_dir / "sage.yaml"
    if not path.is_file():
        raise Refused(f"{path}: missing (the portal says: No sage.yaml configuration file found.)")
    try:
        return path, yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise Refused(f"{path}: Could not parse app spec ({str(exc).splitlines()[0]})") from None


def check_app(app_dir: Path, *, namespace: str | None = None) -> list[str]:
    """Every problem found (empty: the ECR and a build would accept the folder)."""
    try:
        path, spec = load_spec(app_dir)
    except Refused as exc:
        return [str(exc)]
    if not spec or not isinstance(spec, dict):
        return [f"{path}: Could not parse app spec"]
    problems = []
    posted = as_submitted(spec, namespace=namespace)
    if "namespace" not in posted:    # the portal supplies it; check the rest as it would
        posted["namespace"] = "portaluser"
    try:
        check_spec(posted)
    except Refused as exc:
        problems.append(f"{path}: {exc}")
    source = spec.get("source") if isinstance(spec.get("source"), dict) else {}
    directory = app_dir / (source.get("directory") or ".")
    dockerfile = directory / (source.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_file():
        problems.append(f"{dockerfile}: missing (source.dockerfile; the build needs it)")
    return problems
