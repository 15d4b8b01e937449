"""Embed: one CLIP encode per surviving image, stored on the sample and beside the shards."""

import io
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from schemas.config.caption import CaptionConfig
from schemas.config.clip_filter import ClipFilterConfig
from schemas.config.clip_model import ClipModelConfig
from schemas.config.embed import EmbedConfig
from tests.helpers import make_photo, write_sidecar
from tests.transforms.model_samples import make_sample, solid
from transforms.caption import Caption, OpenClipRerankHandler
from transforms.clip_filter import ClipFilter
from transforms.clip_lookup import LookupClipModel
from transforms.clip_model import load_clip
from transforms.embed import EmbedImages, OpenClipEmbedHandler, decode_embedding

SMOKE = ClipModelConfig(smoke=True)


def _counter(result, namespace: str, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return sum(item.committed for item in found)


class _NoImages(LookupClipModel):
    """A fake whose image encoder must never be called."""

    def encode_images(self, images, batch_size=None):
        raise AssertionError("a later model stage encoded an image again")


class _Broken(LookupClipModel):
    def encode_images(self, images, batch_size=None):
        raise RuntimeError("out of memory on the accelerator")


def test_fake_handler_attaches_float16_unit_vectors_and_model_id():
    samples = [make_sample(solid(colour), colour) for colour in ("red", "green", "blue")]
    fake = LookupClipModel(dim=8, model_id="clip_fake")
    expected = {
        s.source: np.round(fake.encode_images([Image.open(io.BytesIO(s.image))])[0], 2).tolist() for s in samples
    }
    handler = OpenClipEmbedHandler(SMOKE, batch_size=2, model=fake)
    pipeline = BeamTestPipeline()
    embedded = pipeline | beam.Create(samples) | EmbedImages(EmbedConfig(), SMOKE, model_handler=handler)
    got = embedded.samples | beam.Map(
        lambda s: (s.source, s.annotations["embedding_model"], np.round(decode_embedding(s.embedding), 2).tolist())
    )
    assert_that(got, equal_to([(src, "clip_fake", vector) for src, vector in expected.items()]), label="vectors")
    assert_that(embedded.rejected, equal_to([]), label="no failures")
    result = pipeline.run()
    result.wait_until_finish()
    assert _counter(result, "embed", "image_encodes") == 3


def test_failed_batch_becomes_failed_ledger_rows_with_the_error():
    samples = [make_sample(solid("grey"), "grey"), make_sample(solid("red"), "red")]
    handler = OpenClipEmbedHandler(SMOKE, batch_size=2, model=_Broken())
    with BeamTestPipeline() as pipeline:
        embedded = pipeline | beam.Create(samples) | EmbedImages(EmbedConfig(), SMOKE, model_handler=handler)
        rows = embedded.rejected | beam.Map(
            lambda r: (r.source, r.status, r.stage, r.reason, "out of memory" in json.loads(r.detail)["error"])
        )
        expected = [(s.source, "failed", "embed", "exception", True) for s in samples]
        assert_that(rows, equal_to(expected), label="failed rows")
        assert_that(embedded.samples, equal_to([]), label="no samples")


def test_each_image_is_encoded_once_across_all_model_stages():
    texts = {"a red mug": [1, 0, 0], "a green mug": [0, 1, 0], "a blue mug": [0, 0, 1]}
    samples = [
        make_sample(solid(c), c, metadata={"title": f"a {c} mug"}, text=f"a {c} mug", text_source="metadata.title")
        for c in ("red", "green", "blue", "grey")
    ]
    embed_handler = OpenClipEmbedHandler(SMOKE, batch_size=3, model=LookupClipModel(texts, dim=8, model_id="fake"))
    rerank = OpenClipRerankHandler(SMOKE, model=_NoImages(texts, dim=8, model_id="fake"))
    pipeline = BeamTestPipeline()
    embedded = pipeline | beam.Create(samples) | EmbedImages(EmbedConfig(), SMOKE, model_handler=embed_handler)
    captioned = embedded.samples | Caption(CaptionConfig(templates={}), SMOKE, rerank_handler=rerank)
    filtered = captioned.samples | ClipFilter(ClipFilterConfig(threshold=-1.0), "fake")
    assert_that(filtered.kept | beam.Map(lambda s: s.source), equal_to([s.source for s in samples]), label="kept")
    assert_that(captioned.rejected, equal_to([]), label="caption never failed")
    result = pipeline.run()
    result.wait_until_finish()
    assert _counter(result, "embed", "image_encodes") == len(samples)
    assert _counter(result, "caption", "reranked") == len(samples)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One real run on smoke models: six products, an exact copy, a picture without text."""
    from tests.helpers import run_job

    root = tmp_path_factory.mktemp("embed")
    images = root / "images"
    images.mkdir()
    for seed in range(6):
        path = images / f"product{seed}.jpg"
        make_photo(200, 150, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"Product {seed}", category="posters", color="red", domain="marketing")
    (images / "zcopy.jpg").write_bytes((images / "product0.jpg").read_bytes())
    write_sidecar(images / "zcopy.jpg", title="Product 0 again", domain="marketing")
    make_photo(200, 150, seed=50).save(images / "bare.jpg", quality=90)
    return run_job(
        [images],
        root / "out",
        text={"required": False},
        clip_filter={"keep_fraction": 0.5},
        shards={"samples_per_shard": 2},
    )


def test_run_stores_one_embedding_per_kept_sample_beside_each_shard(smoke_run):
    """The real handler on random weights: the stored vectors are the model's, computed once per image."""
    model = load_clip(SMOKE)
    by_key = {s["__key__"]: s for s in smoke_run.samples()}
    assert by_key
    for tar in smoke_run.shard_paths():
        import pyarrow.parquet as pq

        keys = pq.read_table(tar.with_suffix(".parquet")).column("key").to_pylist()
        matrix = np.load(tar.with_suffix(".npy"))
        assert matrix.dtype == np.float16 and matrix.shape == (len(keys), model.embed_dim)
        images = [Image.open(io.BytesIO(by_key[key]["jpg"])) for key in keys]
        direct = model.encode_images(images, batch_size=EmbedConfig().batch_size).astype(np.float16)
        assert np.array_equal(matrix, direct)
    record = json.loads(next(iter(by_key.values()))["json"])
    assert record["annotations"]["embedding_model"] == "clip_smoke_tiny_vit"


def test_run_accounts_for_model_stage_rejections_and_marks_smoke_outputs(smoke_run):
    ledger = smoke_run.ledger_by_name()
    assert len(ledger) == 8
    assert ledger["zcopy.jpg"]["reason"] == "exact_duplicate"
    assert (ledger["bare.jpg"]["stage"], ledger["bare.jpg"]["reason"]) == ("caption", "no_caption")
    low = [row for row in ledger.values() if row["reason"] == "low_clip_score"]
    kept = [row for row in ledger.values() if row["status"] == "kept"]
    assert (len(low), len(kept)) == (3, 3)
    (threshold,) = {json.loads(row["detail"])["threshold"] for row in low}
    for sample in smoke_run.samples():
        record = json.loads(sample["json"])
        assert record["scores"]["clip_smoke_tiny_vit"] >= threshold
        assert sample["txt"].decode() == record["annotations"]["caption"]["chosen"]["text"]
    models = json.loads((smoke_run.path / "_run" / "models.json").read_text())
    assert models["meaningful"] is False and models["clip"]["model_id"] == "clip_smoke_tiny_vit"
