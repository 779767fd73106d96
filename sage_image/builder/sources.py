"""External sources: fetched once into a cache keyed by URL, checked out at a pinned commit.

Fetching happens before diskimage-builder starts, so that an unreachable source is reported
in seconds (name, URL, commit, how to override it) instead of after a ten-minute build.
Concurrent builds share the cache safely: each URL's mirror is guarded by a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError, SourceError
from ..outfolder import SourceEntry
from ..runner import run
from .plan import PlannedSource

FETCH_TIMEOUT = 120.0
STANDIN_TEMPLATES = Path(__file__).with_name("standins")
# Fixed identity and dates make a stand-in's commit id the same on every machine.
STANDIN_GIT_ENV = {
    "GIT_AUTHOR_NAME": "sage-image stand-in", "GIT_AUTHOR_EMAIL": "stand-in@sage-image.invalid",
    "GIT_COMMITTER_NAME": "sage-image stand-in",
    "GIT_COMMITTER_EMAIL": "stand-in@sage-image.invalid",
    "GIT_AUTHOR_DATE": "2020-07-24T00:00:00Z", "GIT_COMMITTER_DATE": "2020-07-24T00:00:00Z",
}


@dataclass(frozen=True)
class FetchedSource:
    name: str
    url: str
    commit: str
    pinned: str
    path: str
    stand_in: bool

    def as_manifest(self) -> SourceEntry:
        return SourceEntry(url=self.url, commit=self.commit, pinned=self.pinned,
                           path=self.path, stand_in=self.stand_in)


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
                "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15"})
    return env


def git(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 60.0,
        extra_env: dict[str, str] | None = None) -> str:
    env = _git_env() | (extra_env or {})
    return run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, env=env,
               timeout=timeout).stdout.strip()


def normalise_location(url: str) -> str:
    """A local path becomes absolute (so the cache key does not depend on the cwd)."""
    if "://" in url or (":" in url and not url.startswith(("/", "."))):
        return url
    return str(Path(url).expanduser().resolve())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SourceCache:
    """Bare mirrors under ``root/git/<hash of URL>.git``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mirror(self, url: str) -> Path:
        return self.root / "git" / (hashlib.sha256(url.encode()).hexdigest()[:20] + ".git")

    def resolve(self, url: str, ref: str | None) -> str:
        """Make sure the mirror has ``ref`` (a commit id, branch or tag; None = HEAD); return the
        commit id. Raises CommandError when the URL cannot be fetched or has no such ref."""
        mirror = self.mirror(url)
        with _locked(mirror.with_suffix(".lock")):
            if not (mirror / "HEAD").exists():
                shutil.rmtree(mirror, ignore_errors=True)
                git("init", "--quiet", "--bare", mirror)
            if ref and len(ref) == 40:
                found = self._commit(mirror, ref)
                if found:
                    return found  # pinned and cached: no network needed
            git("fetch", "--quiet", "--force", "--tags", url,
                "+HEAD:refs/sage-image/head", "+refs/heads/*:refs/heads/*",
                cwd=mirror, timeout=FETCH_TIMEOUT)
            found = self._commit(mirror, ref or "refs/sage-image/head")
            if found is None and ref and len(ref) == 40:
                # Hosts that allow fetching an unadvertised commit by id (GitHub does).
                try:
                    git("fetch", "--quiet", url, ref, cwd=mirror, timeout=FETCH_TIMEOUT)
                    found = self._commit(mirror, ref)
                except CommandError:
                    found = None
            if found is None:
                raise CommandError(f"{url} has no commit or ref '{ref}'", argv=["git"],
                                   returncode=1)
            return found

    @staticmethod
    def _commit(mirror: Path, ref: str) -> str | None:
        try:
            return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=mirror)
        except CommandError:
            return None

    def export(self, url: str, commit: str, dest: Path, origin: str) -> None:
        """A normal (non-bare) clone at ``commit``, detached, with ``origin`` as its remote."""
        mirror = self.mirror(url)
        with _locked(mirror.with_suffix(".lock")):
            git("clone", "--quiet", "--no-checkout", mirror, dest)
        git("checkout", "--quiet", "--detach", commit, cwd=dest)
        git("remote", "set-url", "origin", origin, cwd=dest)


def make_stand_in(name: str, cache_root: Path) -> Path:
    """A deterministic local git repository standing in for source ``name``."""
    template = STANDIN_TEMPLATES / name
    if not template.is_dir():
        raise SourceError(f"no stand-in exists for source '{name}'")
    digest = hashlib.sha256()
    for path in sorted(p for p in template.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(template)).encode() + path.read_bytes())
    repo = cache_root / "standins" / f"{name}-{digest.hexdigest()[:12]}"
    with _locked(repo.with_suffix(".lock")):
        if not (repo / ".git").exists():
            shutil.rmtree(repo, ignore_errors=True)
            shutil.copytree(template, repo)
            git("init", "--quiet", "-b", "main", cwd=repo)
            git("add", "-A", cwd=repo)
            git("commit", "--quiet", "-m", f"STAND-IN for {name}: generated by sage-image",
                cwd=repo, extra_env=STANDIN_GIT_ENV)
    return repo


def fetch_sources(sources: tuple[PlannedSource, ...], cache: SourceCache, *,
                  allow_stand_ins: bool,
                  warn: Callable[[str], None]) -> tuple[FetchedSource, ...]:
    """Resolve every source to a commit in the cache, or fail before anything long starts."""
    fetched, unreachable = [], []
    for source in sources:
        result, reason = _fetch_one(source, cache, allow_stand_ins=allow_stand_ins)
        fetched.append(result)
        if reason:
            unreachable.append(f"  {source.name}: {source.url} ({reason})")
    if unreachable:
        warn("STAND-IN SOURCES: these upstreams are unreachable, so this image is built with "
             "generated stand-ins (recorded in manifest.json 'stand_ins' and the image property "
             "'build-stand-ins'; not for production):\n" + "\n".join(unreachable))
    return tuple(fetched)


def _fetch_one(source: PlannedSource, cache: SourceCache, *,
               allow_stand_ins: bool) -> tuple[FetchedSource, str | None]:
    """The fetched source, and why a stand-in replaced it (None when it did not)."""
    url = normalise_location(source.url)
    try:
        commit = cache.resolve(url, source.commit)
        return FetchedSource(name=source.name, url=url, commit=commit, pinned=source.pinned,
                             path=source.path, stand_in=False), None
    except CommandError as exc:
        if not allow_stand_ins or source.overridden:
            raise SourceError(
                f"source {source.name}: cannot fetch {url} at {source.commit or 'HEAD'}"
                f" ({exc.message})",
                hint=f"override it: --source {source.name}=URL_OR_PATH[@COMMIT]"
                     + ("" if source.overridden else " (or --allow-stand-ins for a demo build)"),
            ) from exc
        reason = exc.message
    stand_in = make_stand_in(source.name, cache.root)
    commit = cache.resolve(str(stand_in), None)
    return FetchedSource(name=source.name, url=str(stand_in), commit=commit, pinned=source.pinned,
                         path=source.path, stand_in=True), reason


def export_sources(fetched: tuple[FetchedSource, ...], cache: SourceCache, dest: Path) -> Path:
    """Check every source out under ``dest`` and write the list the pinned-sources element reads."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for source in fetched:
        cache.export(source.url, source.commit, dest / source.name, origin=source.url)
        lines.append(f"{source.name} {source.path}\n")
    (dest / "sources.list").write_text("".join(lines))
    return dest
