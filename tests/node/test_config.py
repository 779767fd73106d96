"""sage-node's configuration: one table, errors that name the file and the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_node.config import RunnerKind, load_config, read_identity
from sage_node.errors import ConfigError


def config_from(tmp_path: Path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config({"SAGE_NODE_CONFIG": str(path)})


def test_defaults_are_wes_ports_and_the_image_paths(tmp_path):
    config = config_from(tmp_path, "")
    assert config.ports.amqp == 5672 and config.ports.redis == 6379
    assert config.ports.management == 15672 and config.ports.mqtt == 1883
    assert config.runner is RunnerKind.DOCKER
    assert config.waggle_dir == Path("/etc/waggle")
    assert config.dss_checkout == Path("/opt/wes-data-sharing-service")
    assert config.data_api_url == "http://127.0.0.1:10000/api/v1/query"


def test_settings_override_and_nest(tmp_path):
    config = config_from(tmp_path, "runner: process\nports: {amqp: 5999}\ndata: {max_mb: 3}\n"
                                   "state_dir: ~/x\n")
    assert config.runner is RunnerKind.PROCESS and config.ports.amqp == 5999
    assert config.data_max_mb == 3 and config.state_dir == Path("~/x").expanduser()


@pytest.mark.parametrize("text, message", [
    ("prots: {amqp: 1}\n", "unknown setting 'prots' (did you mean 'ports'?)"),
    ("ports: {amqp: 70000}\n", "ports.amqp: 70000 must be a port number"),
    ("ports: {amqp: 1234, redis: 1234}\n", "ports.redis: 1234 is also ports.amqp"),
    ("runner: podman\n", "runner: 'podman' must be one of docker, process"),
    ("ready_timeout: 0\n", "ready_timeout: 0 must be a positive number"),
    ("[1, 2]\n", "must be a mapping of settings"),
    ("ports: {amqp: [\n", "not valid YAML"),
])
def test_bad_settings_name_the_file_and_setting(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        config_from(tmp_path, text)
    assert message in info.value.message
    assert str(tmp_path / "config.yaml") in info.value.message


def test_an_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({"SAGE_NODE_CONFIG": str(tmp_path / "missing.yaml")})


def test_identity_is_lower_case_id_and_upper_case_vsn_as_wes(tmp_path):
    (tmp_path / "node-id").write_text("000048B02D05A0A4\n")
    (tmp_path / "vsn").write_text("w02e\n")
    identity = read_identity(tmp_path)
    assert (identity.node_id, identity.vsn) == ("000048b02d05a0a4", "W02E")


@pytest.mark.parametrize("node_id, vsn, message", [
    (None, "W001", "node-id: missing"),
    ("xyz", "W001", "is not a node id"),
    ("0000000000000001", None, "vsn: missing"),
    ("0000000000000001", "W 1", "is not a VSN"),
])
def test_bad_identity_is_refused(tmp_path, node_id, vsn, message):
    for name, value in (("node-id", node_id), ("vsn", vsn)):
        if value is not None:
            (tmp_path / name).write_text(value + "\n")
    with pytest.raises(ConfigError, match=message):
        read_identity(tmp_path)
