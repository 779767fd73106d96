"""Fixtures for the build stage: catalog copies to break, local git repositories as sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sage_image.catalog import DEFAULT_CATALOG, load_catalog


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture
def catalog_text() -> str:
    return DEFAULT_CATALOG.read_text()


@pytest.fixture
def write_catalog(tmp_path: Path):
    """Write a (possibly broken) catalog and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "catalog.yaml"
        path.write_text(text)
        return path

    return write


def make_git_repo(path: Path, files: dict[str, str], message: str = "initial") -> str:
    """A real local git repository with one commit; returns the commit id."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        if content.startswith("#!"):
            target.chmod(0o755)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "PATH": "/usr/bin:/bin", "HOME": str(path)}
    if not (path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=path, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, env=env,
                          capture_output=True, text=True).stdout.strip()
