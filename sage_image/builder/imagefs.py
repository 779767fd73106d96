"""Read files from a built raw image without mounting it: debugfs, read-only, no loop device.

Used to inspect what a build produced (tests, and extracting a kernel for a direct boot when
the build's boot/ copies are missing). Nothing here can modify the image.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SageImageError
from ..runner import run

EXT_PARTITION_TYPES = {"83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}
MODE_RE = re.compile(r"Mode:\s+0?(\d+)")
OWNER_RE = re.compile(r"User:\s+(\d+)\s+Group:\s+(\d+)")


class ImageReadError(SageImageError):
    """A file could not be read from an image."""


@dataclass(frozen=True)
class FileStat:
    mode: int
    uid: int
    gid: int


class ImageFiles:
    """The root (ext) filesystem of a raw disk image, opened read-only through debugfs."""

    def __init__(self, raw: Path) -> None:
        self.raw = raw
        self.device = f"{raw}?offset={root_partition_offset(raw)}"

    def _debugfs(self, request: str) -> tuple[str, str]:
        proc = run(["debugfs", "-R", request, self.device], check=False)
        problem = [line for line in proc.stderr.splitlines() if not line.startswith("debugfs ")]
        return proc.stdout, "\n".join(problem)

    def read_text(self, path: str) -> str:
        out, problem = self._debugfs(f'cat "{path}"')
        if problem:
            raise ImageReadError(f"{self.raw}: cannot read {path}: {problem.strip()}")
        return out

    def exists(self, path: str) -> bool:
        _, problem = self._debugfs(f'stat "{path}"')
        return not problem

    def stat(self, path: str) -> FileStat:
        out, problem = self._debugfs(f'stat "{path}"')
        mode, owner = MODE_RE.search(out), OWNER_RE.search(out)
        if problem or not mode or not owner:
            raise ImageReadError(f"{self.raw}: cannot stat {path}: {problem.strip()}")
        return FileStat(mode=int(mode.group(1), 8), uid=int(owner.group(1)),
                        gid=int(owner.group(2)))

    def listdir(self, path: str) -> list[str]:
        out, problem = self._debugfs(f'ls -p "{path}"')
        if problem:
            raise ImageReadError(f"{self.raw}: cannot list {path}: {problem.strip()}")
        names = [line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6]
        return sorted(n for n in names if n not in (".", ".."))

    def dump(self, path: str, dest: Path) -> Path:
        _, problem = self._debugfs(f'dump "{path}" "{dest}"')
        if problem or not dest.exists():
            raise ImageReadError(f"{self.raw}: cannot copy {path} out: {problem.strip()}")
        return dest


def root_partition_offset(raw: Path) -> int:
    """Byte offset of the largest Linux partition (the root filesystem)."""
    try:
        table = json.loads(run(["sfdisk", "--json", raw]).stdout)["partitiontable"]
    except (ValueError, KeyError) as exc:
        raise ImageReadError(f"{raw}: no partition table") from exc
    sector = int(table.get("sectorsize", 512))
    linux = [p for p in table.get("partitions", []) if str(p.get("type", "")).upper()
             in EXT_PARTITION_TYPES]
    if not linux:
        raise ImageReadError(f"{raw}: no Linux partition")
    return int(max(linux, key=lambda p: int(p["size"]))["start"]) * sector
