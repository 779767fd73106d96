"""The broker's files: WES's definitions, with generated passwords and private listeners."""

from __future__ import annotations

import base64
import hashlib
import json

from sage_node import broker


def test_password_hash_is_rabbitmqs_salted_sha256():
    encoded = broker.password_hash("secret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(encoded)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04secret").digest()
    # a wrong password does not verify (the check above can fail)
    assert raw[4:] != hashlib.sha256(b"\x01\x02\x03\x04Secret").digest()


def test_definitions_have_wes_users_queues_exchanges_and_bindings():
    defs = broker.definitions(broker.Secrets("a", "s"), to_beehive_max_length=7)
    assert [u["name"] for u in defs["users"]] == ["admin", "service", "plugin"]
    assert {u["name"]: u["tags"] for u in defs["users"]}["admin"] == "administrator"
    assert all(p == {"user": p["user"], "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"} for p in defs["permissions"])
    assert {q["name"] for q in defs["queues"]} == {"data", "messages", "to-beehive",
                                                     "to-beekeeper", "resource-manager"}
    assert {(e["name"], e["type"]) for e in defs["exchanges"]} == {
        ("data.topic", "topic"), ("data.fanout", "fanout"), ("messages", "fanout"),
        ("to-node", "topic")}
    assert ("to-node", "resource-manager", "*.resource-manager") in {
        (b["source"], b["destination"], b["routing_key"]) for b in defs["bindings"]}
    policy, = defs["policies"]
    assert policy["pattern"] == "^to-beehive$" and policy["definition"]["max-length"] == 7
    # no password is in the file, only salted hashes; plugin/plugin verifies, as on a node
    text = json.dumps(defs)
    assert '"password"' not in text
    plugin = next(u for u in defs["users"] if u["name"] == "plugin")
    raw = base64.b64decode(plugin["password_hash"])
    assert raw[4:] == hashlib.sha256(raw[:4] + b"plugin").digest()


def test_passwords_are_generated_per_node():
    one, two = broker.Secrets.generate(), broker.Secrets.generate()
    assert one.admin_password != two.admin_password
    assert len(one.service_password) >= 20 and one.service_password not in ("service", "admin")


def test_listeners_only_on_the_given_addresses_management_on_loopback():
    conf = broker.rabbitmq_conf(broker.Listen(1, 2, 3, 4, ("127.0.0.1", "172.17.0.1")),
                                definitions_path="/d.json", service_password="pw")
    lines = conf.splitlines()
    assert "listeners.tcp.1 = 127.0.0.1:1" in lines and "listeners.tcp.2 = 172.17.0.1:1" in lines
    assert "mqtt.listeners.tcp.2 = 172.17.0.1:2" in lines
    assert "management.tcp.ip = 127.0.0.1" in lines and "prometheus.tcp.ip = 127.0.0.1" in lines
    assert not any("0.0.0.0" in line or "listeners.tcp.default" in line for line in lines)
    assert broker.enabled_plugins() == ("[rabbitmq_prometheus,rabbitmq_management,"
                                        "rabbitmq_management_agent,rabbitmq_auth_mechanism_ssl,"
                                        "rabbitmq_mqtt].\n")
