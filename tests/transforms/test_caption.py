"""Caption: candidates from metadata templates, a captioner and OCR, reranked by CLIP against the stored embedding."""

import importlib.util
import io
import json
import os
from collections import defaultdict

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from PIL import Image, ImageDraw, ImageFont

from schemas.config.caption import CaptionConfig, CaptionerConfig, OcrConfig
from schemas.config.clip_model import ClipModelConfig
from tests.helpers import make_photo
from tests.transforms.model_samples import make_sample, solid
from transforms.caption import (
    Candidate,
    Caption,
    CaptionRequest,
    OpenClipRerankHandler,
    metadata_candidates,
    rank,
    render,
    usable,
)
from transforms.caption_models import CocaCaptionHandler, RapidOcrHandler
from transforms.clip_lookup import LookupClipModel
from transforms.clip_model import load_clip
from transforms.embed import encode_embedding

SMOKE = ClipModelConfig(smoke=True)
TEXTS = {"a red mug": [1, 0, 0], "a green mug": [0, 1, 0], "a blue mug": [0, 0, 1], "SALE": [0.5, 0.5, 0]}
TEMPLATES = {"marketing": ["{description}", "{color} {category}"], "default": ["{title}"]}
_COLLECTED: dict[str, list] = defaultdict(list)


class _Collect(beam.DoFn):
    def __init__(self, tag: str):
        self._tag = tag

    def process(self, element):
        _COLLECTED[self._tag].append(element)


class _FakeCaptioner:
    model_id = "coca_fake"

    def caption(self, images):
        return ["a green mug" if np.asarray(image)[..., 1].mean() > 150 else "" for image in images]


class _FakeReader:
    model_id = "ocr_fake"

    def read(self, images):
        return ["SALE" if np.asarray(image)[..., 0].mean() > 150 else "" for image in images]


def _embedded(sample, fake):
    image = Image.open(io.BytesIO(sample.image))
    vector = fake.encode_images([image])[0]
    return sample.__class__(
        **{**vars(sample), "embedding": encode_embedding(vector), "annotations": {"embedding_model": fake.model_id}}
    )


@pytest.fixture(scope="module")
def captioned():
    """One in-memory run of the caption stage on fakes: sources -> (samples, ledger rows)."""
    fake = LookupClipModel(TEXTS, dim=8, model_id="fake")
    samples = [
        make_sample(
            solid("red"),
            "red",
            metadata={"title": "a blue mug", "description": "a red mug"},
            text="a blue mug",
            text_source="metadata.title",
        ),
        make_sample(solid("green"), "green", metadata={"title": "a blue mug"}, text="a blue mug"),
        make_sample(solid("grey"), "grey", metadata={"color": "grey"}),
        make_sample(solid("blue"), "blue", domain="factory", metadata={"title": "a blue mug"}),
    ]
    _COLLECTED.clear()
    config = CaptionConfig(templates=TEMPLATES)
    with BeamTestPipeline() as pipeline:
        result = (
            pipeline
            | beam.Create([_embedded(s, fake) for s in samples])
            | Caption(
                config,
                SMOKE,
                rerank_handler=OpenClipRerankHandler(SMOKE, model=fake),
                captioner_handler=CocaCaptionHandler(config.captioner, SMOKE, model=_FakeCaptioner()),
                ocr_handler=RapidOcrHandler(config.ocr, model=_FakeReader()),
            )
        )
        _ = result.samples | "Samples" >> beam.ParDo(_Collect("samples"))
        _ = result.rejected | "Rejected" >> beam.ParDo(_Collect("rejected"))
    by_name = lambda items: {item.source.rsplit("/", 1)[-1].removesuffix(".jpg"): item for item in items}  # noqa: E731
    return by_name(_COLLECTED["samples"]), by_name(_COLLECTED["rejected"])


def test_template_fills_cleaned_fields_and_skips_when_a_field_is_missing():
    metadata = {"title": "<b>Mug</b>  &amp; saucer", "category": ["kitchen", "cups"], "empty": "  "}
    assert render("{title}, {category}", metadata, 300) == "Mug & saucer, kitchen, cups"
    assert render("{title} from {line}", metadata, 300) == ""
    assert render("{title} {empty}", metadata, 300) == ""


def test_templates_with_attribute_access_or_bad_braces_are_config_errors():
    with pytest.raises(ValueError, match="fields must be plain names"):
        CaptionConfig(templates={"factory": ["{line.name}"]})
    with pytest.raises(ValueError, match="factory"):
        CaptionConfig(templates={"factory": ["{line"]})


def test_candidates_keep_source_order_drop_duplicates_and_short_texts():
    config = CaptionConfig(templates={"marketing": ["{title}", "{title} in {color}", "{missing}", "{code}"]})
    sample = make_sample(
        solid("red"),
        "m",
        metadata={"title": "Mug", "color": "red", "code": "ab"},
        text="Mug",
        text_source="metadata.title",
    )
    found = usable(metadata_candidates(sample, config), config)
    assert [(c.text, c.source) for c in found] == [("Mug", "metadata.title"), ("Mug in red", "template:marketing[1]")]
    other = make_sample(solid("red"), "o", domain="factory", metadata={"title": "Plate"})
    assert [c.source for c in metadata_candidates(other, CaptionConfig(templates={"default": ["{title}"]}))] == [
        "template:default[0]"
    ]


def test_rank_orders_by_cosine_and_keeps_candidate_order_on_ties():
    image = np.array([1.0, 0.0], np.float32)
    candidates = [Candidate("b", "x"), Candidate("a", "y"), Candidate("c", "z")]
    vectors = {"a": np.array([0.6, 0.8]), "b": np.array([0.6, -0.8]), "c": np.array([1.0, 0.0])}
    assert [(c.text, s) for c, s in rank(image, candidates, vectors)] == [("c", 1.0), ("b", 0.6), ("a", 0.6)]


def test_rerank_picks_the_caption_closest_to_the_image_with_provenance(captioned):
    samples, _ = captioned
    red = samples["red"]
    assert (red.text, red.text_source) == ("a red mug", "template:marketing[0]")
    record = red.annotations["caption"]
    assert record["model"] == "fake" and record["chosen"]["template"] == "{description}"
    assert red.scores["fake"] == record["chosen"]["score"] == record["candidates"][0]["score"]
    assert [c["score"] for c in record["candidates"]] == sorted(
        (c["score"] for c in record["candidates"]), reverse=True
    )
    assert record["source_text"] == {"text": "a blue mug", "source": "metadata.title", "raw": "a blue mug"}
    assert {c["source"] for c in record["candidates"]} == {"metadata.title", "template:marketing[0]", "ocr:ocr_fake"}


def test_captioner_and_ocr_candidates_compete_with_metadata(captioned):
    samples, _ = captioned
    assert (samples["green"].text, samples["green"].text_source) == ("a green mug", "captioner:coca_fake")
    assert samples["red"].annotations["caption"]["candidates"][-1]["text"] in ("SALE", "a blue mug")
    assert (samples["blue"].text, samples["blue"].text_source) == ("a blue mug", "template:default[0]")


def test_sample_without_usable_text_is_rejected_not_given_an_empty_caption(captioned):
    samples, rejected = captioned
    assert "grey" not in samples
    row = rejected["grey"]
    assert (row.status, row.stage, row.reason) == ("rejected", "caption", "no_caption")
    assert "caption.required=false" in json.loads(row.detail)["message"]


_TEXT_PASSES: list[int] = []


class _CountingModel(LookupClipModel):
    """Records how many texts each ``encode_texts`` call asks for (a real model pads every pass to a fixed size)."""

    def encode_texts(self, texts):
        _TEXT_PASSES.append(len(texts))
        return super().encode_texts(texts)


def test_rerank_encodes_the_captions_of_batch_size_samples_per_call():
    fake = _CountingModel(dim=8, model_id="fake")
    samples = [
        make_sample(solid("red"), f"mug{index}", metadata={"title": f"mug number {index}"}) for index in range(40)
    ]
    _TEXT_PASSES.clear()
    with BeamTestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([_embedded(s, fake) for s in samples])
            | Caption(CaptionConfig(batch_size=16), SMOKE, rerank_handler=OpenClipRerankHandler(SMOKE, 16, model=fake))
        )
    # One title each: 40 texts in calls of 16 samples. Growing batches from one sample up made a call for 1, 2, 4...
    assert sorted(_TEXT_PASSES, reverse=True)[:2] == [16, 16] and sum(_TEXT_PASSES) == 40
    assert len(_TEXT_PASSES) <= 4


def test_real_rerank_handler_with_random_weights_picks_the_argmax():
    model = load_clip(SMOKE)
    photo = make_sample(
        make_photo(160, 120, seed=3), "photo", metadata={"title": "a steel sheet"}, text="a steel sheet"
    )
    embedding = model.encode_images([Image.open(io.BytesIO(photo.image))])[0]
    photo = photo.__class__(
        **{**vars(photo), "embedding": encode_embedding(embedding), "annotations": {"embedding_model": model.model_id}}
    )
    texts = ["a steel sheet", "a red mug on a table", "scratches on a metal plate"]
    request = CaptionRequest(photo, tuple(Candidate(t, f"s{i}") for i, t in enumerate(texts)))
    handler = OpenClipRerankHandler(SMOKE)
    (result,) = handler.run_inference([request], handler.load_model())
    cosines = model.encode_texts(texts) @ (np.frombuffer(photo.embedding, np.float16).astype(np.float32))
    assert result.text == texts[int(np.argmax(cosines))]
    assert result.scores["clip_smoke_tiny_vit"] == pytest.approx(
        float(cosines.max()) / np.linalg.norm(embedding), 1e-3
    )


def _extra_or_skip(installed: bool, extra: str) -> None:
    """Skip without the optional extra, except in CI (``CI`` set), which installs every extra: fail there."""
    if not installed:
        if os.environ.get("CI"):
            pytest.fail(f"the {extra} extra is not installed, but CI installs it (.ci/run): the handler must run")
        pytest.skip(f"needs the {extra} extra: pip install -e '.[{extra}]'")


def test_real_coca_handler_with_random_weights_gives_batch_independent_captions():
    from open_clip import coca_model

    _extra_or_skip(coca_model._has_transformers, "captioner")
    handler = CocaCaptionHandler(CaptionerConfig(enabled=True, batch_size=2, max_tokens=8), SMOKE)
    model = handler.load_model()
    requests = [CaptionRequest(make_sample(make_photo(96, 96, seed=s), f"p{s}")) for s in range(3)]
    together = handler.run_inference(requests, model)
    alone = handler.run_inference(requests[2:], model)
    assert model.model_id == "coca_smoke_tiny_vit"
    assert together[2].candidates == alone[0].candidates
    assert all(c.source == "captioner:coca_smoke_tiny_vit" for r in together for c in r.candidates)


def test_real_ocr_handler_reads_a_banner():
    _extra_or_skip(importlib.util.find_spec("rapidocr_onnxruntime") is not None, "ocr")
    banner = Image.new("RGB", (480, 160), "white")
    ImageDraw.Draw(banner).text((30, 40), "SUMMER SALE", fill="black", font=ImageFont.load_default(size=64))
    handler = RapidOcrHandler(OcrConfig(enabled=True))
    (request,) = handler.run_inference([CaptionRequest(make_sample(banner, "banner"))], handler.load_model())
    (candidate,) = request.candidates
    assert "SALE" in candidate.text.upper() and candidate.source.startswith("ocr:rapidocr_onnxruntime_")
