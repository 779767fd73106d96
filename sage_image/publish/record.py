"""What publish records on a Glance image so a later build can be compared with it.

Glance keeps custom properties as strings of at most 255 characters each, and a deployment caps
how many an image may have (`image_property_quota`, 128 by default). A manifest (a few hundred
packages: 20-40 KB) does not fit one property, so publish stores:

- `sage-manifest-sha256`: the sha256 of the build's manifest.json (which build this is);
- `sage-packages-sha256`: the sha256 of the package list (`name=version` lines, sorted), so two
  images can be told to have the same packages without reading the list;
- `sage-sbom-sha256`: the sha256 of its CycloneDX SBOM, when the build wrote one;
- `sage-summary-00` ... `sage-summary-NN` and `sage-summary-chunks`: the part of the manifest
  `sage-image diff` compares (its `Snapshot`: packages, Python packages, sources, elements,
  checks, kernel, file sizes ...), as compact JSON, xz-compressed, base64, cut into 255-char
  chunks. The bookworm sage image (322 packages) takes 20 chunks, 777 packages 34 (8.5 KB).
  More than MAX_CHUNKS are not stored (the digests still are) rather than fail a publish over
  a record.

Image members (sharing) or a separate object store were the alternatives: members carry no
data, and a store is one more service and credential per site. Properties travel with the
image, through backdating, and are readable by anyone who can see the image.
"""

from __future__ import annotations

import base64
import hashlib
import lzma
from collections.abc import Mapping

import msgspec

from ..diff.diff import Snapshot
from ..errors import UsageError
from ..outfolder import Manifest

PROP_MANIFEST_SHA = "sage-manifest-sha256"
PROP_PACKAGES_SHA = "sage-packages-sha256"
PROP_SBOM_SHA = "sage-sbom-sha256"
PROP_CHUNKS = "sage-summary-chunks"
CHUNK_PREFIX = "sage-summary-"
CHUNK_CHARS = 255  # Glance's limit per property value
MAX_CHUNKS = 90  # the default quota is 128 properties; ~25 are provenance and Nova hints


class RecordError(UsageError):
    """A stored summary is missing or damaged."""


def packages_digest(packages: Mapping[str, str]) -> str:
    lines = "".join(f"{n}={v}\n" for n, v in sorted(packages.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def record_properties(manifest: Manifest, manifest_sha256: str) -> dict[str, str]:
    props = {PROP_MANIFEST_SHA: manifest_sha256, PROP_PACKAGES_SHA: packages_digest(manifest.packages)}
    if manifest.sbom:
        props[PROP_SBOM_SHA] = manifest.sbom.sha256
    chunks = encode_summary(Snapshot.of(manifest))
    if len(chunks) <= MAX_CHUNKS:
        props[PROP_CHUNKS] = str(len(chunks))
        props.update({f"{CHUNK_PREFIX}{i:02d}": c for i, c in enumerate(chunks)})
    return props


def encode_summary(summary: Snapshot) -> list[str]:
    text = msgspec.json.encode(summary, order="sorted")
    packed = base64.b64encode(lzma.compress(text, preset=9 | lzma.PRESET_EXTREME)).decode()
    return [packed[i:i + CHUNK_CHARS] for i in range(0, len(packed), CHUNK_CHARS)]


def summary_from_properties(props: Mapping[str, str], *, where: str) -> Snapshot:
    """The summary publish stored on an image; RecordError if it has none or it is damaged."""
    if PROP_CHUNKS not in props:
        raise RecordError(f"{where} has no recorded manifest summary (published by an older "
                          "sage-image, or the summary was too large to store)",
                          hint="images published by this sage-image carry one; compare two "
                               "build folders meanwhile: sage-image diff A B")
    try:
        count = int(props[PROP_CHUNKS])
        packed = "".join(props[f"{CHUNK_PREFIX}{i:02d}"] for i in range(count))
        summary = msgspec.json.decode(lzma.decompress(base64.b64decode(packed)), type=Snapshot)
    except (KeyError, ValueError, lzma.LZMAError, msgspec.DecodeError) as exc:
        raise RecordError(f"{where}: the recorded manifest summary is damaged ({exc})") from exc
    digest = props.get(PROP_PACKAGES_SHA)
    if digest and packages_digest(summary.packages) != digest:
        raise RecordError(f"{where}: the recorded manifest summary does not match its "
                          f"{PROP_PACKAGES_SHA}")
    return summary
