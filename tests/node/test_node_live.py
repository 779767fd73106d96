"""sage-node against a real RabbitMQ, Redis and data-sharing service, with pywaggle 0.56.3
plugins and the real sage-data-client. Each assertion helper is shown failing on a broken
input (the *_catches_* tests)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pika
import pytest
import redis
import sage_data_client
import yaml

from tests.node.harness import NODE_ID, SAGE_NODE, VSN, group_pids, leftovers, make_node

pytestmark = pytest.mark.node

EXIT3_MAIN = "import sys\nprint('failing on purpose', flush=True)\nsys.exit(3)\n"
SLEEP_MAIN = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"


def make_app(node, name: str, main: str | None = None) -> Path:
    parent = node.root / "apps"
    parent.mkdir(exist_ok=True)
    result = node.cli("new", name, "--dir", str(parent))
    assert result.returncode == 0, result.stderr
    if main is not None:
        (parent / name / "main.py").write_text(main)
    return parent / name


def enriched_problems(record: dict, *, task: str, plugin: str) -> list[str]:
    """What is wrong with a record that should carry the data-sharing service's metadata."""
    want = {"task": task, "plugin": plugin, "node": NODE_ID.lower(), "vsn": VSN.upper()}
    return [f"meta.{k}={record.get('meta', {}).get(k)!r}, want {v!r}" for k, v in want.items()
            if record.get("meta", {}).get(k) != v]


def test_enriched_problems_catches_missing_node_metadata():
    record = {"meta": {"task": "t", "plugin": "p", "node": NODE_ID.lower()}}
    assert enriched_problems(record, task="t", plugin="p") == ["meta.vsn=None, want 'W02E'"]
    assert enriched_problems({"meta": {}}, task="t", plugin="p") != []


def data_records(node, *args: str) -> list[dict]:
    result = node.cli("data", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_status_reports_every_part_running_and_the_data_api(live_node):
    status = live_node.status()
    assert status["up"] is True
    assert [p["name"] for p in status["parts"] if p["running"]] == [
        "epmd", "redis", "rabbitmq", "data-sharing-service", "data"]
    assert status["data_api"] == f"http://127.0.0.1:{live_node.ports['data_api']}/api/v1/query"
    assert (status["node_id"], status["vsn"]) == (NODE_ID.lower(), VSN.upper())
    assert f"127.0.0.1:{live_node.ports['amqp']}" in status["listening"]
    secrets = live_node.state / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert json.loads(secrets.read_text())["admin_password"] not in json.dumps(status)


def ss_listeners(pids: set[int], ss_output: str) -> list[tuple[str, int]]:
    """(address, port) of the LISTEN sockets `ss -ltnpH` shows for these pids."""
    found = []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 6 or not any(f"pid={pid}," in fields[-1] for pid in pids):
            continue
        address, port = fields[3].rsplit(":", 1)
        found.append((address.strip("[]"), int(port)))
    return found


def public(listeners: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(a, p) for a, p in listeners if a not in ("127.0.0.1", "::1")]


def test_listener_check_catches_a_public_address():
    ss = ('LISTEN 0 128 0.0.0.0:5672 0.0.0.0:* users:(("beam.smp",pid=42,fd=3))\n'
          'LISTEN 0 128 127.0.0.1:15672 0.0.0.0:* users:(("beam.smp",pid=42,fd=4))\n'
          'LISTEN 0 128 *:6379 *:* users:(("redis-server",pid=7,fd=6))\n')
    assert public(ss_listeners({42, 7}, ss)) == [("0.0.0.0", 5672), ("*", 6379)]
    assert ss_listeners({99}, ss) == []


def test_every_node_port_listens_on_loopback_only(live_node):
    leaders = [p["pid"] for p in live_node.status()["parts"]]
    pids = set(group_pids(leaders))
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = ss_listeners(pids, ss)
    # every configured port is among them (so the check saw the node's sockets) ...
    ports = {port for _, port in found}
    assert set(live_node.ports.values()) <= ports, (live_node.ports, found)
    # ... and none is on another address
    assert public(found) == []


def test_a_plugin_publishes_and_uploads_through_the_real_data_path(live_node):
    app = make_app(live_node, "hello")
    run = live_node.cli("run", "-n", "hello", str(app))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Scheduled the plugin hello successfully \n")
    assert "published hello.value=21.5" in run.stdout
    assert "Successfully built plugin" in run.stderr

    published = [r for r in data_records(live_node, "--name", "hello.*")]
    assert [r["value"] for r in published] == [21.5]
    assert enriched_problems(published[0], task="hello", plugin="local/hello") == []
    assert published[0]["meta"]["units"] == "example"

    frame = sage_data_client.query(start="-10m", filter={"name": "hello.value"},
                                   endpoint=live_node.status()["data_api"])
    assert list(frame["value"]) == [21.5]
    row = frame.iloc[0]
    assert (row["meta.task"], row["meta.plugin"], row["meta.node"], row["meta.vsn"]) == (
        "hello", "local/hello", NODE_ID.lower(), VSN.upper())

    uploads = json.loads(live_node.cli("uploads", "--json").stdout)
    upload, = [u for u in uploads if u["task"] == "hello"]
    assert upload["filename"] == "hello.txt" and upload["tag"] == "latest"
    assert upload["labels"]["kind"] == "example"
    assert Path(upload["path"], "data").read_text().startswith("hello from hello")
    assert upload["url"] == ("https://storage.sagecontinuum.org/api/v1/data/Pluginctl/"
                             f"sage-hello-latest/{NODE_ID.lower()}/{upload['timestamp']}-hello.txt")
    assert live_node.cli("ps").stdout.splitlines()[1:] == []   # run removed it


def publish_raw(node, name: str, app_id: str) -> None:
    params = pika.ConnectionParameters("127.0.0.1", node.ports["amqp"],
                                       credentials=pika.PlainCredentials("plugin", "plugin"))
    connection = pika.BlockingConnection(params)
    body = json.dumps({"name": name, "ts": time.time_ns(), "meta": {}, "val": 1})
    connection.channel().basic_publish(
        "to-validator", "all", body.encode(),
        pika.BasicProperties(delivery_mode=2, user_id="plugin", app_id=app_id))
    connection.close()


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_a_message_without_app_meta_is_dropped_as_the_dss_drops_it(live_node):
    app_id = str(uuid.uuid4())
    publish_raw(live_node, "test.noappmeta", app_id)
    log = live_node.state / "logs" / "data-sharing-service.log"
    assert wait_for(lambda: f"reject msg: no app meta: '{app_id}'" in log.read_text())
    # the same message with its app meta in the cache gets through: the check above can fail
    meta = {"host": "h", "job": "j", "task": "with-meta", "plugin": "p:1", "zone": "core"}
    redis.Redis(port=live_node.ports["redis"]).set(f"app-meta.{app_id}", json.dumps(meta))
    publish_raw(live_node, "test.withappmeta", app_id)
    assert wait_for(lambda: data_records(live_node, "--name", "test.withappmeta"))
    assert data_records(live_node, "--name", "test.noappmeta") == []


def test_run_exits_with_the_plugins_exit_code(live_node):
    app = make_app(live_node, "exit-three", EXIT3_MAIN)
    run = live_node.cli("run", str(app))
    assert run.returncode == 3, run.stderr
    assert "failing on purpose" in run.stdout


def test_a_deployed_plugin_that_exits_3_shows_in_ps_and_logs(live_node):
    app = make_app(live_node, "deployed-three", EXIT3_MAIN)
    ref = live_node.cli("build", str(app))
    assert (ref.returncode, ref.stdout) == (0, "local/deployed-three\n"), ref.stderr
    deploy = live_node.cli("deploy", "-n", "fail3", ref.stdout.strip())
    assert deploy.returncode == 0, deploy.stderr
    assert deploy.stdout.splitlines() == ["Launched the plugin fail3 successfully ",
                                          "You may check the log: sage-node logs fail3",
                                          "To terminate the job: sage-node rm fail3"]

    def phase():
        rows = [line.split() for line in live_node.cli("ps").stdout.splitlines()[1:]]
        return {row[0]: row[1] for row in rows}.get("fail3")
    assert wait_for(lambda: phase() == "Failed"), phase()
    assert json.loads(live_node.cli("ps", "--json").stdout)[0]["exit_code"] == 3
    assert "failing on purpose" in live_node.cli("logs", "fail3").stdout
    assert live_node.cli("rm", "fail3").stdout == "Terminated the plugin fail3 successfully\n"
    gone = live_node.cli("rm", "fail3")
    assert gone.returncode == 1 and "no plugin named fail3" in gone.stderr


def test_ctrl_c_stops_and_removes_a_running_plugin(live_node):
    app = make_app(live_node, "sleeper", SLEEP_MAIN)
    proc = subprocess.Popen([str(SAGE_NODE), "run", "-n", "sleeper", str(app)],
                            env=live_node.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "Scheduled the plugin sleeper successfully \n"
        assert proc.stdout.readline() == "sleeping\n"
        record = json.loads((live_node.state / "plugins" / "sleeper.json").read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    assert "interrupted" in proc.stderr.read()
    assert live_node.cli("ps").stdout.splitlines()[1:] == []
    assert not Path(f"/proc/{record['proc']['pid']}").exists() or \
        " Z " in Path(f"/proc/{record['proc']['pid']}/stat").read_text()


def test_data_follow_prints_new_data(live_node):
    proc = subprocess.Popen([str(SAGE_NODE), "data", "--follow", "--json", "--name", "follow.*"],
                            env=live_node.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        app = make_app(live_node, "follower",
                       "from waggle.plugin import Plugin\nwith Plugin() as p:\n"
                       "    p.publish('follow.me', 7)\n")
        assert live_node.cli("run", str(app)).returncode == 0
        record = json.loads(proc.stdout.readline())
        assert (record["name"], record["value"]) == ("follow.me", 7)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()


def test_check_refuses_a_spec_without_description_with_the_ecrs_message(live_node):
    app = make_app(live_node, "no-description")
    assert live_node.cli("check", str(app)).returncode == 0    # the skeleton passes ...
    spec = yaml.safe_load((app / "sage.yaml").read_text())
    del spec["description"]
    (app / "sage.yaml").write_text(yaml.safe_dump(spec))
    result = live_node.cli("check", str(app))                  # ... without description not
    assert result.returncode == 1
    assert result.stderr == (f"sage-node: check: {app / 'sage.yaml'}: "
                             "Required field description is missing\n")


def test_plugin_verbs_need_the_node_up(tmp_path, dss_python):
    node = make_node(tmp_path, dss_python)
    result = node.cli("run", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == "sage-node: run: the node is not up\n  hint: start it: sage-node up\n"


def test_up_refuses_a_port_in_use_and_starts_nothing(tmp_path, dss_python):
    node = make_node(tmp_path, dss_python)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", node.ports["redis"]))
        busy.listen()
        result = node.cli("up")
    assert result.returncode == 2
    assert f"redis: 127.0.0.1:{node.ports['redis']} is in use" in result.stderr
    assert "ports.redis" in result.stderr
    assert not (node.state / "node.json").exists()
    assert leftovers(node, []) == []


def test_a_part_that_fails_stops_the_others_and_names_itself(tmp_path, dss_python):
    node = make_node(tmp_path, dss_python, programs={"redis_server": "/bin/false"})
    result = node.cli("up")
    assert result.returncode == 1
    assert "sage-node: up: redis: exited with 1 while starting" in result.stderr
    assert not (node.state / "node.json").exists()
    assert leftovers(node, []) == []
    assert not any(f"RABBITMQ_MNESIA_BASE={node.state}" in _environ(pid) for pid in _all_pids())


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", "\n")
    except OSError:
        return ""
