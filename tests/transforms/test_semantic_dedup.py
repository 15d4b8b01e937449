"""Semantic deduplication on synthetic CLIP embeddings: LSH candidates, exact cosine, survivors, scopes, smoke skip."""

import json
import pickle
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas import reasons
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.records.samples import ImageInfo, Sample
from transforms.embed import encode_embedding
from transforms.semantic_dedup import SemanticDeduplicate, hyperplanes, signatures, similar_pairs, vector

DIM = 64


def _near(base: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from unit ``base``."""
    noise = rng.standard_normal(base.shape)
    noise -= (noise @ base) * base
    noise /= np.linalg.norm(noise)
    return cosine * base + np.sqrt(1 - cosine**2) * noise


def _sample(name: str, embedding: np.ndarray | None, width: int = 100, model: str = "clip_test", **metadata) -> Sample:
    info = ImageInfo(width, 100, "JPEG", "RGB", 1000)
    return Sample(
        key=name.replace("/", "-"),
        source=name,
        path=name,
        domain="marketing",
        metadata=metadata,
        image=b"",
        image_ext="jpg",
        sha256=name,
        pixel_sha256=name,
        original=info,
        normalised=info,
        annotations={"embedding_model": model},
        embedding=None if embedding is None else encode_embedding(embedding),
    )


@pytest.fixture(scope="module")
def samples():
    """Per SKU: a photo, a near copy (cos 0.99, larger), a same-SKU other view (cos 0.8); plus loose ends."""
    rng = np.random.default_rng(3)
    found = []
    for sku in ("a", "b", "c"):
        base = rng.standard_normal(DIM)
        base /= np.linalg.norm(base)
        found.append(_sample(f"{sku}/photo", base, sku=sku, label="none"))
        found.append(_sample(f"{sku}/copy", _near(base, 0.99, rng), width=200, sku=sku, label="none"))
        found.append(_sample(f"{sku}/view", _near(base, 0.8, rng), sku=sku, label="none"))
    base = found[0].embedding
    found.append(_sample("b/twin-of-a", vector(base), width=50, sku="b", label="none"))
    found.append(_sample("a/other-label", vector(base), width=50, sku="a", label="defect"))
    found.append(_sample("x/no-embedding", None))
    found.append(_sample("x/smoke", vector(base), model="clip_smoke_tiny_vit"))
    return found


def _run(samples: list[Sample], out: Path, **config) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(runner="DirectRunner") as pipeline:
        result = pipeline | beam.Create(samples) | SemanticDeduplicate(SemanticDedupConfig(**config), str(out))
        _ = (
            result.rejected
            | beam.combiners.ToList()
            | beam.Map(
                lambda rows: (out / "rejected.pkl").write_bytes(pickle.dumps(sorted(rows, key=lambda row: row.source)))
            )
        )
    rejected = {row.source: row for row in pickle.loads((out / "rejected.pkl").read_bytes())}
    rows = pq.read_table(out / "dedup" / "semantic_dedup.parquet").to_pylist()
    return {
        "rejected": rejected,
        "rows": rows,
        "summary": json.loads((out / "dedup" / "semantic_dedup.json").read_text()),
    }


@pytest.fixture(scope="module")
def global_run(samples, tmp_path_factory):
    return _run(samples, tmp_path_factory.mktemp("semantic"))


def test_near_copies_are_rejected_naming_the_best_survivor_and_the_cosine(global_run):
    rejected = global_run["rejected"]
    assert set(rejected) == {"a/photo", "b/photo", "c/photo", "b/twin-of-a"}
    assert {row.reason for row in rejected.values()} == {reasons.SEMANTIC_DUPLICATE}
    detail = json.loads(rejected["b/photo"].detail)
    assert detail["survivor_source"] == "b/copy" and detail["survivor_key"] == "b-copy"
    assert detail["cosine"] == pytest.approx(0.99, abs=2e-3) and detail["cluster_id"].startswith("semantic_dedup-")


def test_other_views_labels_and_skipped_embeddings_are_kept(global_run):
    rows = {row["source"]: row for row in global_run["rows"]}
    assert "a/view" not in rows and "x/no-embedding" not in rows and "x/smoke" not in rows
    assert not rows["a/other-label"]["removed"] and rows["a/other-label"]["survivor_key"] == "a-other-label"
    summary = global_run["summary"]
    assert summary["skipped_smoke_embeddings"] == 1 and summary["skipped_without_embedding"] == 1
    assert summary["images_removed"] == 4 and summary["cluster_sizes"] == {"2": 2, "4": 1}


def test_scoped_dedup_never_crosses_scopes(samples, tmp_path):
    result = _run(samples, tmp_path, scope=["sku"], report_only=True)
    assert result["rejected"] == {}
    sku_of = {sample.source: sample.metadata.get("sku") for sample in samples}
    clusters: dict[str, set] = {}
    for row in result["rows"]:
        clusters.setdefault(row["cluster_id"], set()).add(sku_of[row["source"]])
        assert not row["removed"]
    assert len(clusters) == 3 and all(len(skus) == 1 for skus in clusters.values())


def test_signatures_are_a_pure_function_of_the_seed():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, DIM)).astype(np.float32)
    first = signatures(vectors, hyperplanes(7, 24, DIM), 3, 8)
    assert np.array_equal(first, signatures(vectors, hyperplanes(7, 24, DIM), 3, 8))
    assert not np.array_equal(first, signatures(vectors, hyperplanes(8, 24, DIM), 3, 8))
    assert first.shape == (5, 3) and first.max() < 256


def test_similar_pairs_are_exactly_the_pairs_at_or_above_the_threshold():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = vectors @ vectors.T
    expected = {(i, j) for i in range(40) for j in range(i + 1, 40) if cosines[i, j] >= 0.8}
    assert set(similar_pairs(vectors, 0.8)) == expected and expected
