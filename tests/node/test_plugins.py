"""What a plugin gets (env, mounts, labels, app meta) and pluginctl's output formats: pure."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from sage_node.config import NodeIdentity
from sage_node.control import go_duration, ps_rows, tabwrite
from sage_node.errors import CommandError, UsageError
from sage_node.plugins import PluginRequest, app_meta, container_spec, image_tag, parse_env, plugin_name
from sage_node.runners import DockerRunner, PluginState, create_argv, dockerfile_command

IDENTITY = NodeIdentity(node_id="000048b02d05a0a4", vsn="W02E")


def make_spec(tmp_path, **request):
    return container_spec(PluginRequest(**({"image": "local/hello"} | request)),
                          state_dir=tmp_path, identity=IDENTITY, broker_host="172.17.0.1",
                          broker_port=5672, data_config=tmp_path / "data-config.json",
                          app_id="11111111-2222-3333-4444-555555555555")


def test_the_environment_is_wess_and_its_values_win(tmp_path):
    spec = make_spec(tmp_path, name="hello",
                     env=(("GREETING", "hi"), ("WAGGLE_PLUGIN_HOST", "elsewhere")))
    env = spec.effective_env()
    assert env["GREETING"] == "hi"
    assert env["WAGGLE_PLUGIN_HOST"] == "172.17.0.1"      # the system value wins
    assert {k: env[k] for k in ("WAGGLE_PLUGIN_PORT", "WAGGLE_PLUGIN_USERNAME",
                                "WAGGLE_PLUGIN_PASSWORD", "WAGGLE_APP_ID", "HOST")} == {
        "WAGGLE_PLUGIN_PORT": "5672", "WAGGLE_PLUGIN_USERNAME": "plugin",
        "WAGGLE_PLUGIN_PASSWORD": "plugin", "WAGGLE_APP_ID": spec.app_id,
        "HOST": "000048b02d05a0a4.sage-node"}
    # WES sets none of these for a plugin
    assert not {"WAGGLE_NODE_ID", "WAGGLE_NODE_VSN", "WAGGLE_PLUGIN_NAME",
                "WAGGLE_PLUGIN_UPLOAD_PATH"} & set(env)
    # user values come first: a container runtime that lets the last one win gives WES's order
    assert [k for k, _ in spec.env].index("GREETING") < [k for k, _ in spec.env].index("HOST")


def test_mounts_labels_and_app_meta(tmp_path):
    spec = make_spec(tmp_path, name="hello", image="registry.sagecontinuum.org/ns/hello:1.2.3")
    assert spec.mounts == (
        (tmp_path / "uploads/Pluginctl/hello/1.2.3", "/run/waggle/uploads", False),
        (tmp_path / "data-config.json", "/run/waggle/data-config.json", True))
    assert spec.labels["sagecontinuum.org/plugin-task"] == "hello"
    assert spec.labels["app.kubernetes.io/created-by"] == "pluginctl"
    assert spec.labels["role"] == "plugin"
    assert app_meta(spec, IDENTITY) == {
        "host": "000048b02d05a0a4.sage-node", "job": "Pluginctl", "task": "hello",
        "plugin": "registry.sagecontinuum.org/ns/hello:1.2.3", "zone": "core"}


def test_docker_create_gets_exactly_the_spec(tmp_path):
    spec = make_spec(tmp_path, name="hello", args=("--value", "3"), entrypoint="python3")
    argv = create_argv(spec)
    assert argv[:3] == ["create", "--name", "hello"]
    assert argv[-3:] == ["local/hello", "--value", "3"]
    assert ["--entrypoint", "python3"] == argv[argv.index("--entrypoint"):][:2]
    assert f"type=bind,source={tmp_path}/data-config.json,target=/run/waggle/data-config.json," \
           "readonly" in argv
    envs = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert envs == [f"{k}={v}" for k, v in spec.env]


@pytest.mark.parametrize("image, tag", [("local/hello", "latest"), ("a/b:1.0", "1.0"),
                                        ("10.31.81.1:5000/local/x", "latest"),
                                        ("h:5000/ns/x:0.2.0", "0.2.0")])
def test_image_tag_is_the_upload_folders_tag(image, tag):
    assert image_tag(image) == tag


def test_plugin_names():
    assert plugin_name(PluginRequest(image="x", name="my-plugin-1")) == "my-plugin-1"
    generated = plugin_name(PluginRequest(image="waggle/plugin-iio:0.6.0"))
    assert generated.startswith("plugin-iio-0-6-0-") and len(generated) == len("plugin-iio-0-6-0-") + 8
    assert generated != plugin_name(PluginRequest(image="waggle/plugin-iio:0.6.0", args=("-x",)))
    with pytest.raises(UsageError, match="RFC1123"):
        plugin_name(PluginRequest(image="x", name="My_Plugin"))


def test_env_items():
    assert parse_env(["A=1", "B=x=y", "C="]) == (("A", "1"), ("B", "x=y"), ("C", ""))
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_env(["nope"])


def test_dockerfile_entrypoint_and_cmd(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text('FROM x\nENTRYPOINT ["python3", "main.py"]\nCMD ["--value", \\\n "2"]\n')
    assert dockerfile_command(path) == (["python3", "main.py"], ["--value", "2"])
    path.write_text("FROM x\nCMD python3 main.py --x\n")
    assert dockerfile_command(path) == ([], ["sh", "-c", "python3 main.py --x"])


def test_go_durations():
    assert [go_duration(n) for n in (0, 999, 1500, 2_500_000, 1_500_000_000, 62 * 10**9,
                                     3_723_100_000_000)] == [
        "0s", "999ns", "1.5µs", "2.5ms", "1.5s", "1m2s", "1h2m3.1s"]


def test_ps_table_as_pluginctls():
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    finished = datetime(2026, 1, 2, 3, 4, 7, 500000, tzinfo=timezone.utc)
    rows = ps_rows([PluginState("a", "Succeeded", 0, started, finished),
                    PluginState("bb", "Failed", 3, started, finished),
                    PluginState("c", "Running", None, started, None)],
                   "n1", now=datetime(2026, 1, 2, 3, 5, 5, tzinfo=timezone.utc))
    assert tabwrite(rows) == (
        "NAME STATUS    NODE START_TIME              RUNNING_TIME\n"
        "a    Succeeded n1   2026/01/02 03:04:05 UTC 2.5s\n"
        "bb   Failed    n1   2026/01/02 03:04:05 UTC \n"
        "c    Running   n1   2026/01/02 03:04:05 UTC 1m0s\n")


def test_spec_paths_are_absolute(tmp_path):
    assert all(isinstance(h, Path) and h.is_absolute() for h, _, _ in make_spec(tmp_path).mounts)


def test_a_plugin_is_not_started_where_rabbitmq_would_block_it(tmp_path, monkeypatch):
    """RabbitMQ's disk alarm (below 50 MB free) blocks every publisher and pywaggle then waits
    for ever - seen in the boot test's VM. The free space is faked here; the rest is real."""
    import shutil as real_shutil
    from collections import namedtuple

    from sage_node import control
    from sage_node.config import load_config
    from sage_node.errors import NodeError

    (tmp_path / "c.yaml").write_text(f"state_dir: {tmp_path}\n")
    config = load_config({"SAGE_NODE_CONFIG": str(tmp_path / "c.yaml")})
    control.check_disk(config)        # this machine has room
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(real_shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 60 * 2**20))
    with pytest.raises(NodeError, match="only 60 MB free .* RabbitMQ blocks publishers"):
        control.check_disk(config)


# Docker's own output for a plugin removed between `ps` and `inspect` (another sage-node's
# `run` removing its finished plugin; seen in the boot test, where two `run`s overlap). No
# Docker engine runs on the build host: the real one is the boot test's (sage-node-run and
# sage-node-exit-code run at the same time there).
FAKE_DOCKER = """#!/bin/sh
case "$1" in
  ps) printf 'fail3\\nhello\\n' ;;
  inspect) cat <<'JSON'
[{"Name": "/fail3", "State": {"Status": "exited", "ExitCode": 3,
  "StartedAt": "2026-12-05T07:00:00.1Z", "FinishedAt": "2026-12-05T07:00:01.2Z"}}]
JSON
    echo "$INSPECT_ERROR" >&2; exit 1 ;;
  rm) echo "Error response from daemon: No such container: $3" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    path = tmp_path / "docker"
    path.write_text(FAKE_DOCKER)
    path.chmod(0o755)
    return DockerRunner(home=tmp_path, broker_host="172.17.0.1", base_image="base",
                        base_archive=tmp_path / "base.tar", docker=str(path))


def test_a_plugin_removed_meanwhile_is_left_out(fake_docker, monkeypatch):
    monkeypatch.setenv("INSPECT_ERROR", "Error: No such object: hello")
    assert [(s.name, s.phase, s.exit_code) for s in fake_docker.states()] == [("fail3", "Failed", 3)]
    assert fake_docker.remove("fail3") is False  # gone before `rm` came


def test_other_docker_failures_still_fail(fake_docker, monkeypatch):
    monkeypatch.setenv("INSPECT_ERROR", "Cannot connect to the Docker daemon")
    with pytest.raises(CommandError, match="Cannot connect to the Docker daemon"):
        fake_docker.states()
