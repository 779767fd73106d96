"""`sage-image vw k8s` through sage_image.cli.main: exit codes, one-line errors, --json,
--apply with a stand-in kubectl, and the registration key never in the output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sage_image.cli import main

FIXTURES = Path(__file__).with_name("fixtures")
COMPOSE = FIXTURES / "docker-compose.yml"
KEY_MARKER = "TEST-ONLY-NOT-A-REAL-KEY"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["vw", "k8s", *argv])
    out, err = capsys.readouterr()
    assert KEY_MARKER not in out + err
    return code, out, err


def with_beehive(key: Path, out: Path) -> list[str]:
    return ["--beehive", "beehive.example.org", "--register-key", str(key), "--out", str(out)]


def test_generates_and_says_how_to_deploy(tmp_path: Path, key: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--nodes", "3", *with_beehive(key, tmp_path / "o"))
    assert code == 0, err
    assert "vw-node-0000000000000003" in out
    assert f"kubectl apply -k {tmp_path / 'o'}" in out
    assert (tmp_path / "o" / "kustomization.yaml").exists()
    assert err == ""


def test_json_output(tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--json", "--nodes", "2", *with_beehive(key, tmp_path / "o"))
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["applied"] is False
    assert [n["node_id"] for n in data["nodes"]] == ["0000000000000001", "0000000000000002"]
    assert data["waggle_node"]["commit"] and data["objects"] == 24


def test_from_compose_explains_its_decisions(tmp_path: Path, key: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--from-compose", str(COMPOSE),
                           *with_beehive(key, tmp_path / "o"))
    assert code == 0
    assert "where this differs from kompose" in out and "  kompose: " in out
    code, out, _ = run_cli(capsys, "--json", "--from-compose", str(COMPOSE),
                           *with_beehive(key, tmp_path / "o"))
    assert {"service", "kompose", "here", "why"} == set(json.loads(out)["decisions"][0])


def test_local_only_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--out", str(tmp_path / "o"))
    assert code == 0 and "local-only" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "0"], "--nodes must be at least 1, got 0"),
    (["--beehive", "host.docker.internal", "--register-key", "KEY"], "means nothing in a pod"),
    (["--beehive", "bee hive", "--register-key", "KEY"], "not a valid host name"),
    (["--beehive", "beehive.example.org", "--register-key", "/nonexistent/register.pem"],
     "no such file"),
    (["--beehive", "beehive.example.org"], "--beehive and --register-key go together"),
    (["--register-key", "KEY"], "--beehive and --register-key go together"),
    (["--namespace-prefix", "VW"], "--namespace-prefix"),
    (["--from-compose", "BAD_COMPOSE"], "unknown compose feature 'privileged'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, key: Path,
                                          capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  a:\n    image: x/y:1\n    privileged: true\n")
    args = [str(key) if a == "KEY" else str(bad) if a == "BAD_COMPOSE" else a for a in args]
    code, out, err = run_cli(capsys, *args, "--out", str(tmp_path / "o"))
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith("sage-image: error: ") and message in lines[0]
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "o").exists()  # nothing written on bad input


def test_bad_input_in_json_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--json", "--nodes", "0", "--out", str(tmp_path / "o"))
    assert code == 2 and json.loads(out)["ok"] is False


def test_help_ends_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["vw", "k8s", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert out.rstrip().splitlines()[-1].strip().startswith("sage-image vw k8s --nodes")


# -- --apply -------------------------------------------------------------------------------------
def fake_kubectl(bin_dir: Path, log: Path, *, fail_on: str | None = None) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "kubectl"
    fail = f'case "$*" in *"{fail_on}"*) echo "error: timed out" >&2; exit 1;; esac\n' \
        if fail_on else ""
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{fail}exit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_apply_without_kubectl_is_a_clear_error(tmp_path: Path, key: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "--apply", *with_beehive(key, tmp_path / "o"))
    assert code == 2
    assert err.splitlines()[0] == ("sage-image: error: --apply needs kubectl on PATH, "
                                   "and there is none")


def test_apply_runs_kubectl_apply_and_waits(tmp_path: Path, key: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "kubectl.log"
    fake_kubectl(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run_cli(capsys, "--apply", "--nodes", "2", *with_beehive(key, tmp_path / "o"))
    assert code == 0, err
    calls = log.read_text().splitlines()
    assert calls[0] == f"apply -k {tmp_path / 'o'}"
    ns = "vw-node-0000000000000002"
    assert any(c.startswith(f"-n {ns} rollout status statefulset/rabbitmq --timeout=")
               for c in calls)
    assert any(c.startswith(f"-n {ns} wait --for=condition=complete job/shovelctl")
               for c in calls)
    assert len(calls) == 1 + 2 * 4
    assert "applied and ready" in out


def test_apply_failure_is_exit_1(tmp_path: Path, key: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_kubectl(tmp_path / "bin", tmp_path / "log", fail_on="job/shovelctl")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_cli(capsys, "--apply", *with_beehive(key, tmp_path / "o"))
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("sage-image: error: ")]
    assert errors == ["sage-image: error: kubectl failed (exit 1): error: timed out"]
    assert "Traceback" not in err


def test_generation_never_calls_kubectl(tmp_path: Path, key: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "kubectl.log"
    fake_kubectl(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    code, _, _ = run_cli(capsys, *with_beehive(key, tmp_path / "o"))
    assert code == 0 and not log.exists()
