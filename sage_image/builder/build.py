"""Carrying out a build plan: preflight, sources, diskimage-builder, formats, manifest.

Whatever happens - success, a failed step, Ctrl-C, SIGTERM - the work folder is swept (mounts,
partition mappings, loop devices) and removed, and no half-written image is left in the
output folder. Only ``build.log`` stays behind on failure, for the post-mortem.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import diskimage_builder.version as dib_version
import msgspec

from .. import __version__
from ..catalog.model import Layout
from ..errors import BuildError
from ..folders import check_file, check_folder, make_folder
from ..outfolder import (
    MANIFEST_SCHEMA,
    BootFiles,
    FirewallEntry,
    ImageFile,
    LayerInfo,
    LayoutEntry,
    Manifest,
    NtpEntry,
    PartitionEntry,
    manifest_path,
    write_json,
    write_manifest,
)
from ..waiting import poll_until
from . import artifacts, devmapper, preflight, pythonlock, sbom
from .dib import BuildPaths, prepare_layered_cache, run_dib, write_shims
from .plan import BuildPlan
from .sources import FetchedSource, SourceCache, export_sources, fetch_sources

LOG = "build.log"


@dataclass(frozen=True)
class BuildOptions:
    cache_root: Path
    allow_stand_ins: bool = False
    check_mirror: bool = True


@dataclass
class Reporter:
    """How the build tells the outside world what it is doing (the CLI draws it)."""

    phase: Callable[[str], None] = lambda phase: None
    warn: Callable[[str], None] = lambda message: None


@dataclass
class _Timer:
    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str, reporter: Reporter) -> Iterator[None]:
        reporter.phase(name)
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - start, 2)


def build_image(plan: BuildPlan, options: BuildOptions, reporter: Reporter) -> Manifest:
    """Build the image the plan describes; return the manifest (also written to the output)."""
    timer = _Timer()
    out_dir = plan.out_dir
    with timer.phase("preflight", reporter):
        _preflight(plan, options)
    make_folder(out_dir, option="--out")
    cache = SourceCache(options.cache_root)
    with timer.phase("sources", reporter):
        fetched = fetch_sources(plan.sources, cache, allow_stand_ins=options.allow_stand_ins,
                                warn=reporter.warn)
    properties = _final_properties(plan, fetched)
    _remove_outputs(plan)
    image = plan.identity
    (out_dir / LOG).write_text(f"# sage-image {__version__}: {image.name} "
                               f"({image.release}/{image.variant}/{image.arch})\n")
    with _work_area(options.cache_root, plan) as paths:
        try:
            export_sources(fetched, cache, paths.sources)
            write_json(paths.provenance, properties)
            write_shims(paths)
            prepare_layered_cache(plan, paths)
            dib_phases = run_dib(plan, paths, out_dir / LOG, on_phase=reporter.phase,
                                 clock=time.monotonic)
            timer.phases.update({k: round(v, 2) for k, v in dib_phases.items()})
            installed = _installed(paths)
            described: dict[str, ImageFile] = {}
            if not plan.layer_only:
                with timer.phase("formats", reporter):
                    described = artifacts.produce_files(paths.image_base.with_suffix(".raw"),
                                                        plan, out_dir)
                _copy_boot_files(paths, out_dir)
        except BaseException:
            _remove_outputs(plan)
            raise
    manifest = _manifest(plan, fetched, properties, described, installed, timer.phases)
    # The SBOM describes the manifest (files, packages, sources); the manifest then records the
    # SBOM's sha256. Written last, so a manifest never names an SBOM that is not there.
    manifest = msgspec.structs.replace(manifest, sbom=sbom.write_sbom(manifest, out_dir))
    write_manifest(out_dir, manifest)
    return manifest


@dataclass(frozen=True)
class _Installed:
    """What the finished root holds, read from the artifacts the build-artifacts element saved."""

    packages: dict[str, str]
    package_arch: dict[str, str]
    python_packages: dict[str, str]
    node_python_packages: dict[str, str]
    kernel_version: str | None


def _installed(paths: BuildPaths) -> _Installed:
    status = paths.artifacts / "dpkg-status"
    return _Installed(packages=artifacts.installed_packages(status),
                      package_arch=artifacts.package_architectures(status),
                      python_packages=artifacts.installed_python_packages(
                          paths.artifacts / "python-packages"),
                      node_python_packages=artifacts.installed_python_packages(
                          paths.artifacts / "node-python-packages"),
                      kernel_version=_kernel_version(paths))


def _kernel_version(paths: BuildPaths) -> str | None:
    version = paths.artifacts / "boot" / "version"
    if not version.exists():
        return None
    return version.read_text().strip() or None


def _preflight(plan: BuildPlan, options: BuildOptions) -> None:
    preflight.check_root()
    check_folder(plan.out_dir, option="--out")
    check_folder(options.cache_root, option="--cache")
    if plan.save_layer:  # written last, after the whole build: refuse a bad one now
        check_file(plan.save_layer, option="--save-layer")
    preflight.check_tools()
    preflight.check_loop_devices()
    preflight.check_free_disk(plan, plan.out_dir, options.cache_root)
    preflight.check_layer(plan)
    preflight.check_python_lock(plan)
    preflight.check_cuda(plan)
    preflight.check_emulation(plan)
    if options.check_mirror:
        preflight.check_mirror(plan)


def _final_properties(plan: BuildPlan, fetched: tuple[FetchedSource, ...]) -> dict[str, str]:
    """cc-snapshot copies provenance.json into its snapshot's properties after deleting all
    whitespace and braces and splitting on commas: no value may hold a comma or whitespace, so a
    list is one key per item (build-source-NAME) or joined with '+' (build-stand-ins)."""
    properties = dict(plan.properties)
    for source in fetched:
        properties[f"build-source-{source.name}"] = source.commit
    properties["build-stand-ins"] = "+".join(s.name for s in fetched if s.stand_in)
    if plan.python and plan.python.lock:
        # One value pins every Python package (the lock is /opt/sage/requirements.txt too).
        properties["build-python-lock"] = pythonlock.lock_digest(plan.python.lock)
    if plan.node_python and plan.node_python.lock:
        properties["build-node-python-lock"] = pythonlock.lock_digest(plan.node_python.lock)
    return properties


def _remove_outputs(plan: BuildPlan) -> None:
    """Drop a previous or half-written image, manifest and boot files (never the log)."""
    for suffix in (".qcow2", ".raw", ".qcow2.part", ".cdx.json"):
        (plan.out_dir / f"{plan.identity.name}{suffix}").unlink(missing_ok=True)
    manifest_path(plan.out_dir).unlink(missing_ok=True)
    shutil.rmtree(plan.out_dir / "boot", ignore_errors=True)


def _copy_boot_files(paths: BuildPaths, out_dir: Path) -> None:
    boot = out_dir / "boot"
    boot.mkdir(exist_ok=True)
    for name in ("vmlinuz", "initrd.img", "version"):
        shutil.copyfile(paths.artifacts / "boot" / name, boot / name)


def _manifest(plan: BuildPlan, fetched: tuple[FetchedSource, ...], properties: dict[str, str],
              files: dict[str, ImageFile], installed: _Installed,
              phases: dict[str, float]) -> Manifest:
    image = plan.identity
    return Manifest(
        schema=MANIFEST_SCHEMA, name=image.name, release=image.release, variant=image.variant,
        arch=image.arch, family=image.family, os_version=image.os_version,
        qemu_arch=plan.qemu_arch, elements=plan.elements, sites=plan.sites,
        sources={s.name: s.as_manifest() for s in fetched},
        stand_ins=tuple(s.name for s in fetched if s.stand_in),
        dib_version=dib_version.version_info.version_string(),
        builder_version=__version__, properties=properties, files=files,
        boot=BootFiles(kernel="boot/vmlinuz", initrd="boot/initrd.img",
                       root=plan.boot_cmdline.split()[0].removeprefix("root="),
                       cmdline=plan.boot_cmdline, kernel_version=installed.kernel_version),
        layer=LayerInfo(only=plan.layer_only,
                        from_=str(plan.from_layer) if plan.from_layer else None,
                        saved=str(plan.save_layer) if plan.save_layer else None),
        layout=layout_manifest(plan.layout) if plan.layout else None,
        checks=plan.checks, packages=installed.packages,
        package_arch=installed.package_arch, python_packages=installed.python_packages,
        node_python_packages=installed.node_python_packages,
        phases=phases, ntp=NtpEntry(servers=plan.ntp_servers, pool=plan.ntp_pool),
        firewall={r.kind: FirewallEntry(virt=r.virt, enabled=r.enabled) for r in plan.firewall},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), sbom=None)


def layout_manifest(layout: Layout) -> LayoutEntry:
    """The disk layout as built: what the partition-table check and publish's firmware read."""
    return LayoutEntry(name=layout.name, label=layout.label, firmware=layout.firmware,
                       partitions=tuple(PartitionEntry(name=p.name, role=p.role,
                                                       type=layout.type_id(p.role), size=p.size,
                                                       fs=p.fs, mount=p.mount)
                                        for p in layout.partitions))


# -- the work area: isolated per build, always swept -------------------------------------------

@contextmanager
def _work_area(cache_root: Path, plan: BuildPlan) -> Iterator[BuildPaths]:
    reap_stale_work(cache_root)
    work_root = cache_root / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    image = plan.identity
    work = work_root / f"{image.release}-{image.variant}-{image.arch}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "owner").write_text(str(os.getpid()))
    with _dib_cache_slot(cache_root / "dib") as dib_cache:
        paths = BuildPaths(work=work, dib_cache=dib_cache)
        paths.tmp.mkdir()
        try:
            yield paths
        finally:
            with _signals_deferred():
                _clean_work(paths.work)


def _clean_work(work: Path) -> None:
    left = devmapper.sweep(work, work / "dm-state")
    shutil.rmtree(work, ignore_errors=True)
    if work.exists() or devmapper.mounts_under(work) or devmapper.loops_backed_by(work):
        raise BuildError(f"could not clean up {work} ({'; '.join(left) or 'busy'})",
                         hint="check 'losetup -a' and /proc/mounts, then remove it by hand")


def reap_stale_work(cache_root: Path) -> list[Path]:
    """Sweep work folders of builds whose process died without cleaning up (kill -9, power)."""
    reaped = []
    for owner in (cache_root / "work").glob("*/owner"):
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError, OSError):
            continue
        _stop_orphaned_dib(owner.parent / "dib.pgid")
        _clean_work(owner.parent)
        reaped.append(owner.parent)
    return reaped


def _stop_orphaned_dib(pgid_file: Path) -> None:
    """DIB runs in its own process group: it outlives a SIGKILLed sage-image. Stop it."""
    try:
        pgid = int(pgid_file.read_text())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if poll_until(lambda: not _group_alive(pgid), timeout=20):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def _dib_cache_slot(root: Path) -> Iterator[Path]:
    """DIB's cache (debootstrap tarballs, the shared apt archive) is not safe for two builds at
    once, so each build locks a slot; a second concurrent build gets its own slot."""
    root.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        handle = open(root / f"slot-{index}.lock", "a")  # noqa: SIM115 - held while building
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.close()
            index += 1
    try:
        slot = root / f"slot-{index}"
        slot.mkdir(exist_ok=True)
        yield slot
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Clean-up must finish: hold SIGINT/SIGTERM until it has, then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []

    def remember(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt
