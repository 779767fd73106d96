"""runner.run gives every tool the English, UTF-8 locale (sage_image/runner.py): the code matches
tools' English messages. Shown with real tools under a real German locale, compiled into a
temporary folder (LOCPATH) so the machine's locales are not touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sage_image.errors import CommandError
from sage_image.runner import run


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's environment in German: every variable that can choose the language."""
    where = tmp_path_factory.mktemp("locale")
    # localedef (libc-bin) from the sources of Debian's `locales` (scripts/apt-packages.txt)
    subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(where / "de_DE.UTF-8")],
                   check=True, capture_output=True)
    return {"LOCPATH": str(where), "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8",
            "LC_MESSAGES": "de_DE.UTF-8", "LANGUAGE": "de"}


def git_in_missing_folder(tmp_path: Path) -> list[str]:
    return ["git", "-C", str(tmp_path / "missing"), "status"]


def test_the_user_locale_would_translate_git(german: dict[str, str], tmp_path: Path) -> None:
    """The twin that shows the test below can fail: without runner, git speaks German here."""
    proc = subprocess.run(git_in_missing_folder(tmp_path), capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"} | german)
    assert proc.returncode == 128
    assert not proc.stderr.startswith("fatal:"), proc.stderr  # "Schwerwiegend: ..."


def test_run_gives_tools_english_whatever_the_user_locale(
        german: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in german.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CommandError) as caught:
        run(git_in_missing_folder(tmp_path))
    # the most telling line is found because git's "fatal:" is not translated
    assert caught.value.message.startswith("git failed (exit 128): fatal: cannot change to")
    # an environment the caller builds gets it too; LANGUAGE cannot bring German back
    proc = run(["ls", str(tmp_path / "missing")], env={"PATH": "/usr/bin:/bin"} | german,
               check=False)
    assert "No such file or directory" in proc.stderr, proc.stderr
