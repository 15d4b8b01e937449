"""The leak check behind the evaluation set: is an eval image duplicated in a training split?

Deduplication's own evidence and thresholds decide: identical original bytes or normalised pixels; near dedup's
verification (``transforms._hash_match.close_pairs``: pHash distance, the optional second hash and the colour
signature, so colour variants of a product are not duplicates); and embedding cosine at or above semantic dedup's
threshold where both images carry an embedding of the same model that semantic dedup would compare (not a smoke
model). ``ProbeIndex`` holds the eval images (a side input, at most ``eval_set.max_images``); training samples stream
past it in batches.
"""

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np

from schemas.config.near_dedup import NearDedupConfig
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.records.samples import Sample
from schemas.splits import Leak
from transforms._hash_match import HashArrays, HashFeatures, Limits, close_pairs
from transforms.hashing import COLOUR, PHASH, hash_int
from transforms.semantic_dedup import EMBEDDING_MODEL, skip_reason, vector

STAGE = "eval_set"


class EvalLeakError(RuntimeError):
    """An evaluation image has an exact, near or semantic duplicate in a training split."""


@dataclasses.dataclass(frozen=True)
class Probe:
    """What the leak check compares: an image's content hashes, perceptual hashes and embedding; no pixels."""

    key: str
    source: str
    sha256: str
    pixel_sha256: str
    hashes: Mapping[str, str]
    embedding: bytes | None = None
    embedding_model: str = ""
    split: str = ""


def probe_of(sample: Sample, semantic: SemanticDedupConfig) -> Probe:
    """The probe of a sample; its embedding only where semantic dedup would compare it (enabled, not a smoke model)."""
    compared = semantic.enabled and skip_reason(sample, semantic) is None
    return Probe(
        sample.key,
        sample.source,
        sample.sha256,
        sample.pixel_sha256,
        dict(sample.hashes),
        sample.embedding if compared else None,
        str(sample.annotations.get(EMBEDDING_MODEL, "")) if compared else "",
        sample.split,
    )


class ProbeIndex:
    """The eval images' evidence, arranged to compare a batch of training samples against all of them at once."""

    def __init__(self, probes: Iterable[Probe], near: NearDedupConfig, min_cosine: float):
        self.probes = sorted(probes, key=lambda p: p.key)
        self.second_hash = near.second_hash
        self.colour = near.max_colour_distance is not None
        self.limits = Limits(near.max_distance, near.second_max_distance if near.second_hash else None)
        self.limits = self.limits._replace(colour=near.max_colour_distance)
        self.min_cosine = min_cosine
        self.by_sha: dict[str, list[int]] = {}
        self.by_pixels: dict[str, list[int]] = {}
        for i, probe in enumerate(self.probes):
            self.by_sha.setdefault(probe.sha256, []).append(i)
            self.by_pixels.setdefault(probe.pixel_sha256, []).append(i)
        hashed = [(i, f) for i, p in enumerate(self.probes) if (f := self.features(p)) is not None]
        self.hashed = np.array([i for i, _ in hashed], dtype=np.int64)
        self.arrays = HashArrays.of([f for _, f in hashed])
        by_model: dict[str, list[int]] = {}
        for i, probe in enumerate(self.probes):
            if probe.embedding is not None:
                by_model.setdefault(probe.embedding_model, []).append(i)
        self.vectors = {
            model: (np.array(rows), np.stack([vector(self.probes[i].embedding) for i in rows]))
            for model, rows in by_model.items()
        }

    def features(self, probe: Probe) -> HashFeatures | None:
        """The features near dedup compares, read from the probe's hashes exactly as near dedup reads them."""
        if PHASH not in probe.hashes:
            return None
        second = probe.hashes.get(self.second_hash) if self.second_hash else None
        colour = probe.hashes.get(COLOUR) if self.colour else None
        return HashFeatures(hash_int(probe.hashes[PHASH]), hash_int(second) if second else None, colour)

    def leaks(self, batch: Sequence[Probe]) -> list[Leak]:
        """Every (eval image, training sample) pair that deduplication would call duplicates, strongest evidence
        first per pair: identical bytes, identical pixels, near (pHash bits), semantic (embedding cosine)."""
        found: dict[tuple[int, int], tuple[tuple, str, str, float]] = {}

        def note(row: int, col: int, kind: str, evidence: str, measure: float, order: float) -> None:
            rank = (("exact", "pixel", "near", "semantic").index(kind), order)
            if (row, col) not in found or rank < found[row, col][0]:
                found[row, col] = (rank, kind, evidence, measure)

        for row, probe in enumerate(batch):
            for col in self.by_sha.get(probe.sha256, []):
                note(row, col, "exact", "sha256", 0.0, 0.0)
            for col in self.by_pixels.get(probe.pixel_sha256, []):
                note(row, col, "pixel", "pixel_sha256", 0.0, 0.0)
        rows = [(row, f) for row, probe in enumerate(batch) if (f := self.features(probe)) is not None]
        if rows and len(self.hashed):
            i, j, bits, _ = close_pairs(HashArrays.of([f for _, f in rows]), self.arrays, self.limits, upper=False)
            for a, b, d in zip(i.tolist(), j.tolist(), bits.tolist(), strict=True):
                note(rows[a][0], int(self.hashed[b]), "near", PHASH, float(d), float(d))
        for model, (indices, vectors) in sorted(self.vectors.items()):
            embedded = [row for row, p in enumerate(batch) if p.embedding is not None and p.embedding_model == model]
            if not embedded:
                continue
            cosines = np.stack([vector(batch[row].embedding) for row in embedded]) @ vectors.T
            for a, b in zip(*np.nonzero(cosines >= self.min_cosine), strict=True):
                cosine = round(float(cosines[a, b]), 6)
                note(embedded[a], int(indices[b]), "semantic", model or "embedding", cosine, -cosine)
        return [
            Leak(
                eval_key=self.probes[col].key,
                eval_source=self.probes[col].source,
                train_key=batch[row].key,
                train_source=batch[row].source,
                train_split=batch[row].split,
                kind=kind,
                evidence=evidence,
                measure=measure,
            )  # fmt: skip
            for (row, col), (_, kind, evidence, measure) in sorted(found.items())
            if self.probes[col].key != batch[row].key
        ]


class FindLeaksFn(beam.DoFn):
    """Batches of training probes in, every ``Leak`` against the side-input ``ProbeIndex`` out."""

    def __init__(self):
        self._leaks = beam.metrics.Metrics.counter(STAGE, "leaks")

    def process(self, batch: list[Probe], index: ProbeIndex) -> Iterator[Leak]:
        for leak in index.leaks(batch):
            self._leaks.inc()
            yield leak


LEAKS_FOUND = "evaluation leak(s): eval images duplicated in"


def describe(leaks: list[Leak], near_linked: bool = True, limit: int = 10) -> str:
    """A message naming the leaking pairs, for the run's error; ``near_linked`` is false when near dedup is off, so
    near copies were never linked into one split group."""
    lines = [f"{len(leaks)} {LEAKS_FOUND} {sorted({x.train_split for x in leaks})}"]
    for leak in leaks[:limit]:
        lines.append(
            f"  eval {leak.eval_key} ({leak.eval_source}) ~ {leak.train_split} {leak.train_key} "
            f"({leak.train_source}): {leak.kind} by {leak.evidence}"
            + (f" = {leak.measure:g}" if leak.kind in ("near", "semantic") else "")
        )
    if len(leaks) > limit:
        lines.append(f"  ... and {len(leaks) - limit} more in eval/leaks.json")
    if not near_linked:
        lines.append(
            "near_dedup is off in this run (near_dedup.enabled = false), so near copies were never linked into one "
            "split group: turn it on (near_dedup.report_only = true keeps both copies, in one split)"
        )
    lines.append(
        "group them (split.group_by) or link them as duplicates so they share a split, or drop one; nothing was "
        "committed (eval_set.fail_on_leak = false writes the output and lists them in eval/leaks.json)"
    )
    return "\n".join(lines)
