"""What deduplication works on: ``Fingerprint`` (a sample without its image bytes) and the
``DuplicateCluster`` a dedup stage reports."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from schemas.compact import hex_bytes, hex_map_bytes, hex_map_text, hex_text, packed, unpacked
from schemas.records.samples import Sample
from schemas.records.values import content_metadata, richness


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """The light view of a sample that deduplication compares: no image bytes.

    Attributes:
        key: The sample key.
        source: The sample source; rejections are keyed by it.
        sha256: SHA-256 of the original bytes.
        pixel_sha256: SHA-256 of the normalised pixels.
        pixels: Original width times height, for survivor choice.
        file_size: Original file size in bytes.
        richness: Number of non-empty metadata fields, for survivor choice.
        domain: Data domain.
        metadata: Metadata values that scopes and label rules read.
        hashes: Perceptual hashes as hex strings.
        scores: Scores known so far (a CLIP score once model stages ran).
        shipped: True for a sample an earlier run already wrote to shards (incremental runs). Shipped fingerprints
            take part in deduplication so new images that duplicate them are rejected, are always preferred as
            survivors, and are never emitted again.
    """

    key: str
    source: str
    sha256: str
    pixel_sha256: str
    pixels: int
    file_size: int
    richness: int
    domain: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)
    shipped: bool = False

    def __reduce__(self) -> tuple:
        values = (
            hex_bytes(self.key),
            self.source,
            hex_bytes(self.sha256),
            hex_bytes(self.pixel_sha256),
            self.pixels,
            self.file_size,
            self.richness,
            self.domain,
            self.metadata,
            hex_map_bytes(self.hashes),
            self.scores,
            self.shipped,
        )
        return _fingerprint, (packed(values),)


def _fingerprint(blob: bytes) -> Fingerprint:
    key, source, sha, pixel_sha, *middle, hashes, scores, shipped = unpacked(blob)
    return Fingerprint(
        hex_text(key), source, hex_text(sha), hex_text(pixel_sha), *middle, hex_map_text(hashes), scores, shipped
    )


def fingerprint(sample: Sample) -> Fingerprint:
    """Return the light view of ``sample`` used by deduplication."""
    return Fingerprint(
        key=sample.key,
        source=sample.source,
        sha256=sample.sha256,
        pixel_sha256=sample.pixel_sha256,
        pixels=sample.original.width * sample.original.height,
        file_size=sample.original.bytes,
        richness=richness(sample.metadata),
        domain=sample.domain,
        metadata=content_metadata(sample.metadata),
        hashes=dict(sample.hashes),
        scores=dict(sample.scores),
    )


@dataclasses.dataclass(frozen=True)
class DuplicateCluster:
    """One group of near or semantic duplicates a dedup stage found, counted in images.

    Members are connected through verified pairs (a chain may link two members further apart than the threshold).
    Within a cluster, members whose ``keep_distinct`` labels differ are never removed in favour of each other, so a
    cluster can have several survivors; in ``report_only`` mode nothing is removed. Splits keep a cluster whole.

    Attributes:
        cluster_id: ``<stage>-<smallest member key>``; stable while the smallest member stays.
        stage: ``near_dedup`` or ``semantic_dedup``.
        scope: JSON list of the scope values all members share (``""`` when deduplicating globally).
        metric: What ``distances`` measure: ``phash_hamming`` (bits) or ``cosine_distance`` (1 - cosine).
        keys: Member keys, sorted (with ``sources`` as a tie-break).
        sources: Member sources, aligned with ``keys``.
        survivors: For each member, the key of the member that survives in its place (its own key for survivors).
        distances: For each member, its distance to that survivor (0 for survivors).
        removed: For each member, whether the stage rejected it (all false in ``report_only`` mode).
        report_only: The stage only reported this cluster.
        methods: For each member, what matched it on its way to its survivor (near dedup: ``phash``,
            ``keypoints``; empty for survivors); empty when the stage records none.
        evidence: For each member, that match's evidence as JSON text (``{"distance": 5}``, ``{"inliers": 48,
            "colour_distance": 3.1}``), aligned with ``methods``.
    """

    cluster_id: str
    stage: str
    scope: str
    metric: str
    keys: tuple[str, ...]
    sources: tuple[str, ...]
    survivors: tuple[str, ...]
    distances: tuple[float, ...]
    removed: tuple[bool, ...]
    report_only: bool = False
    methods: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.keys)

    def links(self) -> list[tuple[str, str]]:
        """``(first kept key, key)`` for every other member: a star joining the cluster for the split. Removed
        members are in it too: a pair ``related`` to one of them (near dedup) then reaches what was kept."""
        kept = next((key for key, removed in zip(self.keys, self.removed, strict=True) if not removed), self.keys[0])
        return [(kept, key) for key in self.keys if key != kept]

    def members(self) -> list[dict[str, Any]]:
        """One dict per member: ``key``, ``source``, ``survivor_key``, ``distance``, ``removed``, ``method`` and
        ``evidence`` (empty strings when the stage records no method)."""
        methods = self.methods or ("",) * self.size
        evidence = self.evidence or ("",) * self.size
        columns = (self.keys, self.sources, self.survivors, self.distances, self.removed, methods, evidence)
        names = ("key", "source", "survivor_key", "distance", "removed", "method", "evidence")
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
