"""The container-runner boundary: the one place that knows how a plugin is started.

DockerRunner is the node's way (the sage image, a user's machine). ProcessRunner runs the
plugin's Dockerfile entrypoint as a host process in its own user and mount namespace, with the
same environment and the same two mounts at the same paths (/run/waggle/uploads,
/run/waggle/data-config.json) - for hosts without Docker, and for the host tests (the booted
sage image tests the Docker path).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol

from . import proc
from .errors import CommandError, PluginError, UsageError
from .plugins import HOME_LABEL, ContainerSpec

IMAGE_COMPONENT = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# What Docker says of a container removed meanwhile: `inspect` ("Error: No such object: NAME"),
# `rm` ("Error response from daemon: No such container: NAME").
GONE = re.compile(r"No such (object|container)")
# What the plugin base's root file system needs to be an image like python:3.11: its venv
# (pywaggle) first on PATH, so `pip3 install` and `python3` in a Dockerfile use it.
BASE_CHANGES = ("--change", "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                            "/usr/bin:/sbin:/bin",
                "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]')


@dataclass(frozen=True)
class PluginState:
    name: str
    phase: str                   # Pending, Running, Succeeded, Failed (pod phases)
    exit_code: int | None
    started: datetime | None     # UTC
    finished: datetime | None


class Runner(Protocol):
    broker_host: str

    def build(self, app_dir: Path, extra: list[str], progress: BinaryIO) -> str: ...
    def create(self, spec: ContainerSpec) -> None: ...
    def start(self, name: str) -> None: ...
    def logs(self, name: str, *, follow: bool, out: BinaryIO) -> None: ...
    def wait(self, name: str) -> int: ...
    def remove(self, name: str) -> bool: ...
    def states(self) -> list[PluginState]: ...


def image_ref(app_dir: Path) -> str:
    """pluginctl build's reference for a folder: local/<folder name> (no tag: latest)."""
    name = app_dir.resolve().name
    if not IMAGE_COMPONENT.match(name):
        raise UsageError(f"{app_dir}: the folder's name {name!r} is not a valid image name "
                         "(lower-case letters, digits, '.', '_' or '-')")
    return f"local/{name}"


def _parse_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds); its zero time means never."""
    if not text or text.startswith("0001-"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    if not match:
        return None
    micros = (match.group(2) or ".0")[1:7].ljust(6, "0")
    return datetime.fromisoformat(match.group(1)).replace(microsecond=int(micros),
                                                          tzinfo=timezone.utc)


def create_argv(spec: ContainerSpec) -> list[str]:
    """`docker create` for a plugin: its name, labels, environment (in order: a later
    duplicate wins, as in a pod), the two mounts, entrypoint, image and arguments."""
    argv = ["create", "--name", spec.name]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    for key, value in spec.env:
        argv += ["--env", f"{key}={value}"]
    for host, target, read_only in spec.mounts:
        argv += ["--mount", f"type=bind,source={host},target={target}"
                 + (",readonly" if read_only else "")]
    if spec.entrypoint:
        argv += ["--entrypoint", spec.entrypoint]
    return [*argv, spec.image, *spec.args]


class DockerRunner:
    def __init__(self, *, home: Path, broker_host: str, base_image: str, base_archive: Path,
                 docker: str = "docker") -> None:
        self.home = home
        self.broker_host = broker_host
        self.base_image = base_image
        self.base_archive = base_archive
        self.docker = docker

    def _run(self, *args: str, timeout: float | None = 60.0) -> str:
        return proc.run([self.docker, *args], timeout=timeout).stdout

    def ensure_base(self, app_dir: Path, progress: BinaryIO) -> None:
        """Import the offline plugin base (a root file system tarball: docker import, never a
        pull) when a Dockerfile starts FROM it and Docker does not have it yet."""
        dockerfile = app_dir / "Dockerfile"
        text = dockerfile.read_text() if dockerfile.is_file() else ""
        if not re.search(rf"^\s*FROM\s+{re.escape(self.base_image)}(\s|$)", text, re.M | re.I):
            return
        if proc.run([self.docker, "image", "inspect", self.base_image], check=False).returncode == 0:
            return
        if not self.base_archive.is_file():
            raise PluginError(f"{self.base_image} is not in Docker and {self.base_archive} is "
                              "missing", hint="point plugin_base.archive at its root file system "
                                              "tarball")
        progress.write(f"importing {self.base_image} from {self.base_archive}\n".encode())
        progress.flush()
        self._run("import", *BASE_CHANGES, str(self.base_archive), self.base_image, timeout=900)

    def build(self, app_dir: Path, extra: list[str], progress: BinaryIO) -> str:
        ref = image_ref(app_dir)
        self.ensure_base(app_dir, progress)
        argv = [self.docker, "build", "-t", ref, *extra, str(app_dir)]
        code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=progress,
                              stderr=progress).returncode
        if code != 0:
            raise PluginError(f"docker build of {app_dir} failed (exit {code})")
        return ref

    def create(self, spec: ContainerSpec) -> None:
        for host, _, read_only in spec.mounts:
            if not read_only:
                host.mkdir(parents=True, exist_ok=True)
        try:
            self._run(*create_argv(spec))
        except CommandError as exc:
            if "already in use" in exc.output_tail:
                raise PluginError(f"a plugin named {spec.name} exists",
                                  hint=f"remove it first: sage-node rm {spec.name}") from None
            raise PluginError(f"cannot create the plugin {spec.name}: {exc.message}") from None

    def start(self, name: str) -> None:
        self._run("start", name)

    def logs(self, name: str, *, follow: bool, out: BinaryIO) -> None:
        argv = [self.docker, "logs", *(["--follow"] if follow else []), name]
        code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode
        if code != 0 and not self._exists(name):
            raise PluginError(f"no plugin named {name}")

    def wait(self, name: str) -> int:
        return int(self._run("wait", name, timeout=None).strip() or 1)

    def _exists(self, name: str) -> bool:
        return any(s.name == name for s in self.states())

    def remove(self, name: str) -> bool:
        if not self._exists(name):
            return False
        # it can go meanwhile (another sage-node removing the same finished plugin)
        result = proc.run([self.docker, "rm", "--force", name], check=False)
        if result.returncode != 0 and not GONE.search(result.stderr):
            raise proc.failed(result)
        return result.returncode == 0

    def states(self) -> list[PluginState]:
        names = self._run("ps", "--all", "--filter", f"label={HOME_LABEL}={self.home}",
                          "--format", "{{.Names}}").split()
        if not names:
            return []
        # A container can go between `ps` and `inspect` (another sage-node's `run` removing
        # its finished plugin): inspect still prints the others, and exits 1 for the gone one.
        result = proc.run([self.docker, "inspect", *names], check=False)
        if result.returncode != 0 and not GONE.search(result.stderr):
            raise proc.failed(result)
        found = []
        for item in json.loads(result.stdout or "[]"):
            state = item["State"]
            status, code = state.get("Status"), state.get("ExitCode")
            phase = {"created": "Pending", "running": "Running", "restarting": "Running",
                     "paused": "Running"}.get(status) or ("Succeeded" if code == 0 else "Failed")
            found.append(PluginState(name=item["Name"].lstrip("/"), phase=phase,
                                     exit_code=code if status in ("exited", "dead") else None,
                                     started=_parse_time(state.get("StartedAt", "")),
                                     finished=_parse_time(state.get("FinishedAt", ""))))
        return sorted(found, key=lambda s: s.name)


class ProcessRunner:
    """Plugins as processes: `build` remembers the folder, `run` starts its entrypoint there."""

    def __init__(self, *, home: Path, python: Path) -> None:
        self.home = home
        self.python = python
        self.broker_host = "127.0.0.1"
        self.images = home / "process-images.json"
        self.dir = home / "plugins"

    def _images(self) -> dict[str, str]:
        return json.loads(self.images.read_text()) if self.images.exists() else {}

    def build(self, app_dir: Path, extra: list[str], progress: BinaryIO) -> str:
        ref = image_ref(app_dir)
        if not (app_dir / "Dockerfile").is_file():
            raise PluginError(f"{app_dir}: no Dockerfile")
        images = self._images() | {ref: str(app_dir.resolve())}
        self.home.mkdir(parents=True, exist_ok=True)
        self.images.write_text(json.dumps(images, indent=2))
        progress.write(f"process runner: {ref} is {app_dir.resolve()}\n".encode())
        return ref

    def _command(self, spec: ContainerSpec, app_dir: Path) -> list[str]:
        entry, cmd = dockerfile_command(app_dir / "Dockerfile")
        if spec.entrypoint:
            entry, cmd = [spec.entrypoint], []
        argv = entry + (list(spec.args) if spec.args else cmd)
        if not argv:
            raise PluginError(f"{app_dir}/Dockerfile has no ENTRYPOINT or CMD")
        if argv[0] in ("python", "python3"):
            argv[0] = str(self.python)
        return argv

    def _record(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def create(self, spec: ContainerSpec) -> None:
        app_dir = self._images().get(spec.image)
        if app_dir is None:
            raise PluginError(f"no image {spec.image} (process runner: build its folder first)")
        if self._record(spec.name).exists():
            raise PluginError(f"a plugin named {spec.name} exists",
                              hint=f"remove it first: sage-node rm {spec.name}")
        for host, _, read_only in spec.mounts:
            if not read_only:
                host.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"spec": {"name": spec.name, "image": spec.image, "env": spec.env,
                           "mounts": [[str(h), t, ro] for h, t, ro in spec.mounts],
                           "argv": self._command(spec, Path(app_dir)), "cwd": app_dir},
                  "created": time.time()}
        self._record(spec.name).write_text(json.dumps(record))

    def start(self, name: str) -> None:
        path = self._record(name)
        record = json.loads(path.read_text())
        spec = record["spec"]
        exit_file = self.dir / f"{name}.exit"
        # In the new namespaces: a private /run with the two mounts where a container has
        # them, then the entrypoint; the shell outside records its exit code.
        script = ["mount -t tmpfs -o mode=0755 sage-node /run", "mkdir -p /run/waggle"]
        for host, target, read_only in spec["mounts"]:
            if read_only:
                script.append(f"touch {shlex.quote(target)}")
            else:
                script.append(f"mkdir -p {shlex.quote(target)}")
            script.append(f"mount --bind {shlex.quote(host)} {shlex.quote(target)}")
            if read_only:
                script.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        script.append(f"cd {shlex.quote(spec['cwd'])}")
        script.append("exec " + shlex.join(spec["argv"]))
        inner = ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-ec",
                 "; ".join(script)]
        outer = ["sh", "-c", f'"$@"; echo $? > {shlex.quote(str(exit_file))}', "sh", *inner]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": "/root"} | dict((k, v) for k, v in spec["env"])
        running, _ = proc.spawn(outer, env=env, log_path=self.dir / f"{name}.log")
        record |= {"proc": running.as_json(), "started": time.time()}
        path.write_text(json.dumps(record))

    def _load(self, name: str) -> dict[str, object]:
        path = self._record(name)
        if not path.exists():
            raise PluginError(f"no plugin named {name}")
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def _running(self, record: dict[str, object]) -> bool:
        data = record.get("proc")
        return isinstance(data, dict) and proc.Proc.from_json(data).alive()

    def logs(self, name: str, *, follow: bool, out: BinaryIO) -> None:
        record = self._load(name)
        log_path = self.dir / f"{name}.log"
        with open(log_path, "ab+") as handle:
            handle.seek(0)
            while True:
                chunk = handle.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                elif not follow or not self._running(record):
                    out.write(handle.read())
                    break
                else:
                    time.sleep(0.2)

    def wait(self, name: str) -> int:
        record = self._load(name)
        while self._running(record):
            time.sleep(0.2)
        exit_file = self.dir / f"{name}.exit"
        return int(exit_file.read_text().strip()) if exit_file.exists() else 137

    def remove(self, name: str) -> bool:
        path = self._record(name)
        if not path.exists():
            return False
        data = json.loads(path.read_text()).get("proc")
        if data:
            proc.stop(proc.Proc.from_json(data), timeout=5)
        for suffix in (".json", ".log", ".exit"):
            (self.dir / f"{name}{suffix}").unlink(missing_ok=True)
        return True

    def states(self) -> list[PluginState]:
        found = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            record = json.loads(path.read_text())
            name = path.stem
            exit_file = self.dir / f"{name}.exit"
            started = record.get("started")
            if "proc" not in record:
                phase, code, finished = "Pending", None, None
            elif self._running(record):
                phase, code, finished = "Running", None, None
            else:
                code = int(exit_file.read_text().strip()) if exit_file.exists() else 137
                phase = "Succeeded" if code == 0 else "Failed"
                finished = exit_file.stat().st_mtime if exit_file.exists() else None
            found.append(PluginState(
                name=name, phase=phase, exit_code=code,
                started=datetime.fromtimestamp(started, timezone.utc) if started else None,
                finished=datetime.fromtimestamp(finished, timezone.utc) if finished else None))
        return found


def dockerfile_command(dockerfile: Path) -> tuple[list[str], list[str]]:
    """ENTRYPOINT and CMD of a Dockerfile (the last of each; shell form runs under sh -c)."""
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise PluginError(f"{dockerfile}: cannot read ({exc.strerror})") from None
    found: dict[str, list[str]] = {"ENTRYPOINT": [], "CMD": []}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        match = re.match(r"\s*(ENTRYPOINT|CMD)\s+(.*)$", line, re.I)
        if not match:
            continue
        value = match.group(2).strip()
        try:
            parsed = json.loads(value)
            exec_form = isinstance(parsed, list) and all(isinstance(x, str) for x in parsed)
        except json.JSONDecodeError:
            exec_form = False
        found[match.group(1).upper()] = parsed if exec_form else ["sh", "-c", value]
    return found["ENTRYPOINT"], found["CMD"]


def make_runner(kind: str, *, home: Path, broker_host: str | None, base_image: str,
                base_archive: Path, python: Path) -> Runner:
    if kind == "process":
        return ProcessRunner(home=home, python=python)
    return DockerRunner(home=home, broker_host=broker_host or "", base_image=base_image,
                        base_archive=base_archive)

