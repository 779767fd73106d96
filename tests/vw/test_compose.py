"""`--from-compose`: the Virtual Waggle compose fixture converts like the built-in stack, each
decision that differs from kompose is explained, and unknown features are errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sage_image.errors import UsageError
from sage_image.vw import k8s, validate
from sage_image.vw.compose import convert
from sage_image.vw.model import default_stack

FIXTURES = Path(__file__).with_name("fixtures")
COMPOSE = FIXTURES / "docker-compose.yml"
# The fixture key's one secret-looking line: no output or YAML file may ever contain it.
KEY_MARKER = "TEST-ONLY-NOT-A-REAL-KEY"



def write_compose(tmp_path: Path, body: str) -> Path:
    (tmp_path / "waggle-node.env").write_text("WAGGLE_NODE_ID=0000000000000001\n")
    path = tmp_path / "docker-compose.yml"
    path.write_text(body)
    return path


def test_fixture_converts_to_the_built_in_shape() -> None:
    conv = convert(COMPOSE)
    shape = [(w.name, w.kind, tuple(c.name for c in w.containers), w.aliases) for w in conv.stack]
    built_in = [(w.name, w.kind, tuple(c.name for c in w.containers), w.aliases)
                for w in default_stack()]
    assert sorted(shape) == sorted(built_in)
    broker = next(w for w in conv.stack if w.name == "rabbitmq")
    assert {p.port for p in broker.service_ports} == {5672, 15672}
    assert dict(conv.env)["WAGGLE_BEEHIVE_HOST"] == "host.docker.internal"  # replaced per node


def test_every_kompose_failure_has_an_explained_decision() -> None:
    decisions = convert(COMPOSE).decisions
    text = "\n".join(f"{d.service} {d.kompose} {d.here} {d.why}" for d in decisions)
    for expected in ("never resolved", "bare Pod", "restarts the one-shot forever",
                     "Job with restartPolicy OnFailure", "Pending without a default StorageClass",
                     "ReadWriteOnce", "Secret waggle-registration-key", "host.docker.internal",
                     "NetworkPolicy", "pinned image"):
        assert expected in text, expected


def test_converted_manifests_pass_the_checks(make_plan: Callable[..., k8s.Plan]) -> None:
    conv = convert(COMPOSE)
    objs = list(make_plan(nodes=2, stack=conv.stack, extra_env=conv.env).objects())
    assert validate.problems(objs) == []
    config = next(o for o in objs if o["kind"] == "ConfigMap")["data"]
    assert config["WAGGLE_BEEHIVE_HOST"] == "beehive"


def test_generic_service_follows_the_generic_rules(tmp_path: Path,
                                                   make_plan: Callable[..., k8s.Plan]) -> None:
    path = write_compose(tmp_path, """
services:
  rabbitmq: {image: "waggle/rabbitmq:nc", restart: always}
  camera:
    image: example/camera:1.2
    restart: unless-stopped
    ports: ["8080"]
    environment: {UPSTREAM: "http://host.docker.internal:9000", BROKER: "amqp://rabbitmq"}
    volumes: ["./media:/media:ro"]
  once: {image: "example/setup:0.1", command: "setup --now"}
""")
    conv = convert(path)
    kinds = {w.name: w.kind for w in conv.stack}
    assert kinds == {"rabbitmq": "StatefulSet", "camera": "Deployment", "once": "Job"}
    camera = next(w for w in conv.stack if w.name == "camera").containers[0]
    assert dict(camera.env)["UPSTREAM"] == "http://beehive:9000"
    assert camera.readiness is not None and camera.ports[0].port == 8080
    objs = list(make_plan(stack=conv.stack).objects())
    assert validate.problems(objs) == []


@pytest.mark.parametrize(("body", "message"), [
    ("services:\n  a:\n    image: x/y:1\n    privileged: true\n",
     r"docker-compose.yml:4: services.a.privileged: unknown compose feature 'privileged'"),
    ("services:\n  a:\n    build: .\n", r":3: services.a.build: unknown compose feature 'build'"),
    ("services:\n  a:\n    image: x/y:1\n    extra_hosts: ['h:1.2.3.4']\n",
     r"unknown compose feature 'extra_hosts'"),
    ("services:\n  a: {image: x/y:1}\nconfigs: {}\n", r":3: configs: unknown compose feature"),
    ("services:\n  a: {image: example/thing}\n", r"not pinned by tag"),
    ("services:\n  a: {image: 'x/y:1', ports: ['53:53/udp']}\n", r"only TCP ports"),
    ("services:\n  a: {image: 'x/y:1', volumes: ['/var/run/docker.sock:/var/run/docker.sock']}\n",
     r"host device or socket"),
    ("services:\n  a: {image: 'x/y:1', restart: sometimes}\n", r"unknown restart policy"),
    ("services:\n  A_b: {image: 'x/y:1'}\n", r"not a valid Kubernetes name"),
    ("services:\n  a: {image: 'x/y:1', env_file: missing.env}\n", r"cannot read .*missing.env"),
    ("services:\n  a: {image: 'x/y:1', environment: [FROM_SHELL]}\n", r"from the shell"),
    ("services:\n  r1: {image: 'waggle/rabbitmq:nc'}\n  r2: {image: 'waggle/rabbitmq:nc'}\n",
     r"more than one rabbitmq"),
    ("services: {}\n", r"non-empty 'services'"),
    ("services: [\n", r"not valid YAML"),
])
def test_unknown_or_unsupported_compose_is_a_clear_error(tmp_path: Path, body: str,
                                                         message: str) -> None:
    with pytest.raises(UsageError, match=message):
        convert(write_compose(tmp_path, body))


def test_missing_compose_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        convert(tmp_path / "nope.yml")
