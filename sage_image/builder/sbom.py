"""The image's CycloneDX SBOM (`NAME.cdx.json`), made from the manifest by cyclonedx-python-lib.

`sbom_from_manifest` is pure (manifest -> Bom): the same manifest gives the same document, byte
for byte (the serial number is derived from the build, the timestamp is the build's), so its
sha256 in the manifest and on the Glance image identifies it.

What it lists: the image (metadata.component, with the image files' hashes as its hashes and as
file components), every Debian package (purl pkg:deb/<family>/NAME@VERSION?arch=A&distro=R),
every Python package (pkg:pypi/...), every pinned source (a component whose version is the
commit, with its URL as a VCS reference and `sage-image:*` properties saying where it is and
whether it is a stand-in), and the builder (metadata.tools: sage-image with its repository
commit, and diskimage-builder).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

SPEC = "1.6"
PROP = "sage-image:"  # namespace of our own properties (CycloneDX property taxonomy advice)
_HASHES = {"sha256": HashAlgorithm.SHA_256, "sha512": HashAlgorithm.SHA_512,
           "md5": HashAlgorithm.MD5}


def sbom_name(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['name']}.cdx.json"


def sbom_from_manifest(manifest: Mapping[str, Any]) -> Bom:
    props = manifest.get("properties") or {}
    bom = Bom(serial_number=_serial(manifest),
              metadata=BomMetaData(timestamp=_created(manifest), component=_image(manifest),
                                   properties=_build_properties(manifest)))
    bom.metadata.tools.components.update(_tools(manifest, props))
    parts = [*_file_components(manifest), *_deb_components(manifest),
             *_pypi_components(manifest), *_source_components(manifest)]
    bom.components.update(parts)
    bom.register_dependency(bom.metadata.component, parts)
    return bom


def sbom_json(manifest: Mapping[str, Any]) -> str:
    return JsonV1Dot6(sbom_from_manifest(manifest)).output_as_string(indent=2) + "\n"


def write_sbom(manifest: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """Write OUT/NAME.cdx.json; return the manifest's `sbom` entry (path and sha256)."""
    text = sbom_json(manifest).encode()
    path = out_dir / sbom_name(manifest)
    part = path.with_name(path.name + ".part")
    part.write_bytes(text)
    part.replace(path)
    return {"path": path.name, "sha256": hashlib.sha256(text).hexdigest(), "spec": SPEC}


# -- pieces ----------------------------------------------------------------------------------------
def _serial(manifest: Mapping[str, Any]) -> uuid.UUID:
    props = manifest.get("properties") or {}
    key = f"{manifest['name']}/{props.get('build-tag', '')}/{manifest.get('created', '')}"
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:sage-image:{key}")


def _created(manifest: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(manifest["created"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return datetime.fromtimestamp(0, tz=timezone.utc)


def _hashes(entry: Mapping[str, Any]) -> list[HashType]:
    return [HashType(alg=alg, content=entry[key]) for key, alg in _HASHES.items() if entry.get(key)]


def _image(manifest: Mapping[str, Any]) -> Component:
    props = manifest.get("properties") or {}
    files = manifest.get("files") or {}
    first = next(iter(files.values()), {})
    return Component(type=ComponentType.OPERATING_SYSTEM, name=manifest["name"],
                     version=props.get("build-tag") or None, bom_ref=f"image:{manifest['name']}",
                     description=(f"{manifest.get('family', '')} {manifest.get('os_version', '')} "
                                  f"{manifest.get('variant', '')} image "
                                  f"({manifest.get('arch', '')})").strip(),
                     hashes=_hashes(first))


def _build_properties(manifest: Mapping[str, Any]) -> list[Property]:
    boot = manifest.get("boot") or {}
    layer = manifest.get("layer") or {}
    values = {"release": manifest.get("release"), "variant": manifest.get("variant"),
              "arch": manifest.get("arch"), "elements": " ".join(manifest.get("elements") or []),
              "kernel": boot.get("kernel_version"), "stand-ins": ",".join(
                  manifest.get("stand_ins") or []), "layer-only": str(bool(layer.get("only"))).lower()}
    return [Property(name=PROP + k, value=str(v)) for k, v in values.items() if v not in (None, "")]


def _tools(manifest: Mapping[str, Any], props: Mapping[str, str]) -> list[Component]:
    repo = props.get("build-repo")
    builder = Component(
        type=ComponentType.APPLICATION, name="sage-image", group="sage-image-builder",
        version=str(manifest.get("builder_version") or "") or None, bom_ref="tool:sage-image",
        external_references=[ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(repo))]
        if repo else [],
        properties=[Property(name=PROP + "repo-commit", value=props["build-repo-commit"])]
        if props.get("build-repo-commit") else [])
    dib = Component(type=ComponentType.APPLICATION, name="diskimage-builder",
                    version=str(manifest.get("dib_version") or "") or None,
                    bom_ref="tool:diskimage-builder",
                    purl=PackageURL("pypi", name="diskimage-builder",
                                    version=str(manifest.get("dib_version") or "") or None))
    return [builder, dib]


def _file_components(manifest: Mapping[str, Any]) -> list[Component]:
    return [Component(type=ComponentType.FILE, name=str(f["path"]), bom_ref=f"file:{fmt}",
                      hashes=_hashes(f),
                      properties=[Property(name=PROP + "disk-format", value=fmt),
                                  Property(name=PROP + "size", value=str(f.get("size", "")))])
            for fmt, f in (manifest.get("files") or {}).items()]


def _deb_components(manifest: Mapping[str, Any]) -> list[Component]:
    family = str(manifest.get("family") or "debian")
    default_arch = str(manifest.get("arch") or "")
    arches = manifest.get("package_arch") or {}
    out = []
    for name, version in (manifest.get("packages") or {}).items():
        arch = arches.get(name) or default_arch
        qualifiers = {k: v for k, v in (("arch", arch), ("distro", manifest.get("release")))
                      if v}
        purl = PackageURL("deb", namespace=family, name=name, version=version or None,
                          qualifiers=qualifiers)
        out.append(Component(type=ComponentType.LIBRARY, name=name, version=version or None,
                             purl=purl, bom_ref=purl.to_string(),
                             properties=[Property(name=PROP + "arch", value=arch)] if arch else []))
    return out


def _pypi_components(manifest: Mapping[str, Any]) -> list[Component]:
    """The Sage tools venv's packages, then sage-node's venv's (a package in both, at the same
    version, is one component; at another version, two)."""
    out, seen = [], set()
    for key in ("python_packages", "node_python_packages"):
        for name, version in (manifest.get(key) or {}).items():
            purl = PackageURL("pypi", name=re.sub(r"[-_.]+", "-", name).lower(),
                              version=version or None)
            if purl.to_string() in seen:
                continue
            seen.add(purl.to_string())
            out.append(Component(type=ComponentType.LIBRARY, name=name, version=version or None,
                                 purl=purl, bom_ref=purl.to_string()))
    return out


def _source_components(manifest: Mapping[str, Any]) -> list[Component]:
    out = []
    for name, s in (manifest.get("sources") or {}).items():
        url, commit = str(s.get("url") or ""), str(s.get("commit") or "")
        stand_in = bool(s.get("stand_in"))
        qualifiers = {"vcs_url": f"git+{url}@{commit}"} if url and "://" in url else {}
        purl = PackageURL("generic", name=name, version=commit or None, qualifiers=qualifiers)
        properties = {"path": s.get("path"), "pinned": s.get("pinned"),
                      "stand-in": str(stand_in).lower(), "url": url}
        out.append(Component(
            type=ComponentType.APPLICATION, name=name, version=commit or None, purl=purl,
            bom_ref=f"source:{name}",
            description="a generated STAND-IN: the upstream was unreachable at build time"
            if stand_in else None,
            external_references=[ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(url))]
            if url else [],
            properties=[Property(name=PROP + k, value=str(v)) for k, v in properties.items() if v]))
    return out
