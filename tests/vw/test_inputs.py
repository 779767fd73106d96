"""Bad input to `vw k8s` and a bad catalog `kubernetes` section: one clear error each."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_image.catalog.model import load_catalog
from sage_image.errors import ConfigError, UsageError
from sage_image.vw import model

CATALOG = Path(__file__).parents[2] / "sage_image" / "catalog" / "catalog.yaml"


@pytest.mark.parametrize("nodes", [0, -3, model.MAX_NODES + 1])
def test_node_count_out_of_range(nodes: int) -> None:
    with pytest.raises(UsageError, match="--nodes must be"):
        model.check_nodes(nodes)


@pytest.mark.parametrize("host", ["host.docker.internal", "HOST.DOCKER.INTERNAL", "172.17.0.1",
                                  "gateway.docker.internal"])
def test_docker_host_aliases_are_refused(host: str) -> None:
    with pytest.raises(UsageError, match="means nothing in a pod network"):
        model.parse_beehive(host)


@pytest.mark.parametrize("host", ["bee hive", "-beehive.org", "beehive..org", "a" * 64 + ".org",
                                  "beehive.org/x", "http://beehive.org", "10.0.0.999", ""])
def test_invalid_host_names_are_refused(host: str) -> None:
    with pytest.raises(UsageError, match="not a valid host name"):
        model.parse_beehive(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1"])
def test_unreachable_addresses_are_refused(host: str) -> None:
    with pytest.raises(UsageError, match="not an address a pod can reach"):
        model.parse_beehive(host)


@pytest.mark.parametrize(("host", "expected"), [
    ("Beehive.Example.ORG.", model.Beehive("beehive.example.org", False)),
    ("beehive", model.Beehive("beehive", False)),
    ("10.1.2.3", model.Beehive("10.1.2.3", True)),
    ("2001:db8::1", model.Beehive("2001:db8::1", True)),
])
def test_valid_hosts(host: str, expected: model.Beehive) -> None:
    assert model.parse_beehive(host) == expected


def test_missing_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        model.check_key(tmp_path / "register.pem")


def test_key_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a regular file"):
        model.check_key(tmp_path)


def test_unreadable_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "register.pem"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    # root reads any file whatever its mode, so the denial is simulated
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(UsageError, match="cannot read: Permission denied"):
        model.check_key(key)


def test_key_that_is_no_key(tmp_path: Path) -> None:
    key = tmp_path / "register.pem"
    key.write_text("hello\n")
    with pytest.raises(UsageError, match="does not look like an SSH private key"):
        model.check_key(key)


@pytest.mark.parametrize("prefix", ["VW", "vw_node", "-vw", "vw-", "x" * 47])
def test_bad_namespace_prefix(prefix: str) -> None:
    with pytest.raises(UsageError, match="--namespace-prefix"):
        model.check_prefix(prefix)


@pytest.mark.parametrize("text", ["xyz", "1" * 17, ""])
def test_bad_first_node_id(text: str) -> None:
    with pytest.raises(UsageError, match="--first-node-id"):
        model.parse_node_id(text)


def test_node_ids_must_fit_16_hex_digits(make_request: object) -> None:
    request = make_request(nodes=2, first_node_id=16 ** 16 - 1)  # type: ignore[operator]
    with pytest.raises(UsageError, match="runs past ffffffffffffffff"):
        model.node_specs(request)


def test_bad_storage_class() -> None:
    with pytest.raises(UsageError, match="--storage-class"):
        model.check_storage_class("Fast SSD")


# -- the catalog's kubernetes section ----------------------------------------------------------
def catalog_with(tmp_path: Path, old: str, new: str) -> Path:
    text = CATALOG.read_text()
    assert old in text
    path = tmp_path / "catalog.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ('versions: ["1.29", "1.32", "1.35"]', 'versions: ["1.29", "latest"]',
     r"kubernetes.versions\[1\]: expected MAJOR.MINOR"),
    ("rabbitmq: waggle/rabbitmq:nc", "rabbitmq: waggle/rabbitmq",
     r"kubernetes.images.rabbitmq: pin by a tag"),
    ("rabbitmq: waggle/rabbitmq:nc", "rabbitmq: waggle/rabbitmq:latest",
     r"kubernetes.images.rabbitmq: pin by a tag other than latest"),
    ("job_backoff_limit: 6", "job_backoff_limit: many",
     r"kubernetes.job_backoff_limit: expected 0..20"),
    ("volume_size: 1Gi", "volume_size: big",
     r"kubernetes.volume_size: expected a Kubernetes quantity"),
    ("    default: {requests: {cpu: 50m,", "    default: {requests: {cpu: fast,",
     r"kubernetes.resources.default.requests.cpu: expected a Kubernetes quantity"),
    ("  job_backoff_limit: 6\n", "  job_backoff_limit: 6\n  replicas: 2\n",
     r"kubernetes.replicas: unknown setting 'replicas'"),
])
def test_bad_kubernetes_section_names_file_line_and_setting(tmp_path: Path, old: str, new: str,
                                                             message: str) -> None:
    with pytest.raises(ConfigError, match=r"catalog.yaml:\d+: " + message):
        load_catalog(catalog_with(tmp_path, old, new))


def test_catalog_without_kubernetes_section_is_a_clear_error(tmp_path: Path) -> None:
    text = CATALOG.read_text()
    path = tmp_path / "catalog.yaml"
    path.write_text(text[:text.index("\n# Virtual Waggle on Kubernetes")] + "\n")
    catalog = load_catalog(path)
    assert catalog.kubernetes is None
    with pytest.raises(ConfigError, match="no 'kubernetes' section"):
        model.kubernetes_config(catalog)
