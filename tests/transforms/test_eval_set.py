"""Evaluation set: answers come from the metadata, images match the shards, and a leak into train fails the run."""

import dataclasses
import io
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from PIL import Image, ImageDraw

from schemas.config.eval_set import EvalSetConfig
from schemas.config.near_dedup import NearDedupConfig
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.records.samples import ImageInfo, Sample
from tests.helpers import jpeg_bytes, make_photo
from transforms._leaks import ProbeIndex, probe_of
from transforms._parts import parquet_bytes
from transforms.eval_items import items_of
from transforms.eval_set import BuildEvalSet
from transforms.hashing import perceptual_hashes
from transforms.incremental import EarlierRun
from transforms.write_shards import SIDECAR_SCHEMA, sample_record, sidecar_row

NEAR = NearDedupConfig()
SEMANTIC = SemanticDedupConfig()
HASHES = NEAR.hash_names()


def _sample(key: str, image: Image.Image, split: str, metadata: dict, *, text: str = "", embedding=None, model=""):
    data = jpeg_bytes(image, quality=90)
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    info = ImageInfo(decoded.width, decoded.height, "JPEG", "RGB", len(data))
    return Sample(
        key=key,
        source=f"/data/{key}.jpg",
        path=f"/data/{key}.jpg",
        domain=metadata.get("domain", "factory"),
        metadata=metadata,
        image=data,
        image_ext="jpg",
        sha256=f"sha-{key}",
        pixel_sha256=f"px-{key}",
        original=info,
        normalised=info,
        text=text,
        text_source="title" if text else "",
        hashes=perceptual_hashes(decoded, HASHES),
        embedding=None if embedding is None else np.asarray(embedding, np.float16).tobytes(),
        annotations={"embedding_model": model} if model else {},
        split=split,
    )


def _shirt(colour: tuple[int, int, int]) -> Image.Image:
    """One product drawn in two colours: grayscale hashes cannot tell them apart, the colour signature can."""
    image = Image.new("RGB", (128, 128), (236, 236, 232))
    ImageDraw.Draw(image).polygon([(40, 30), (88, 30), (110, 55), (95, 65), (92, 120), (36, 120), (33, 65), (18, 55)],
                                  fill=colour)  # fmt: skip
    return image


def test_leak_check_uses_dedup_evidence_and_keeps_colour_variants_apart():
    base = make_photo(128, 96, seed=3)
    edited = base.copy()
    edited.putpixel((4, 4), (255, 0, 0))
    eval_image = _sample("e0", base, "test", {}, embedding=[1, 0, 0, 0], model="clip_vit_b_32")
    black, green = _sample("s0", _shirt((20, 20, 24)), "test", {}), _sample("t2", _shirt((40, 140, 60)), "train", {})
    assert (int(black.hashes["phash"], 16) ^ int(green.hashes["phash"], 16)).bit_count() <= NEAR.max_distance
    index = ProbeIndex([probe_of(eval_image, SEMANTIC), probe_of(black, SEMANTIC)], NEAR, SEMANTIC.threshold)
    train = [
        _sample("t1", edited, "train", {}),
        green,
        _sample("t3", make_photo(128, 96, seed=4), "train", {}),
        _sample("t4", make_photo(128, 96, seed=5), "train", {}, embedding=[0.99, 0.05, 0, 0], model="clip_vit_b_32"),
        _sample("t5", make_photo(128, 96, seed=6), "train", {}, embedding=[1, 0, 0, 0], model="clip_smoke"),
        dataclasses.replace(_sample("t6", make_photo(128, 96, seed=7), "train", {}), sha256="sha-e0"),
    ]
    leaks = {leak.train_key: leak for leak in index.leaks([probe_of(s, SEMANTIC) for s in train])}
    assert set(leaks) == {"t1", "t4", "t6"}
    assert (leaks["t1"].kind, leaks["t1"].evidence) == ("near", "phash")
    assert leaks["t1"].measure <= NEAR.max_distance
    assert (leaks["t4"].kind, leaks["t4"].evidence) == ("semantic", "clip_vit_b_32")
    assert leaks["t6"].kind == "exact"
    assert all(leak.eval_key == "e0" for leak in leaks.values())


def test_eval_set_files_hold_the_test_images_with_metadata_answers(tmp_path):
    samples = [
        _sample("d1", make_photo(64, 64, 11), "test", {"label": "dent", "domain": "factory"}, text="a dented panel"),
        _sample("d2", make_photo(64, 64, 12), "test", {"category": "mugs", "domain": "marketing"}, text="a mug"),
        _sample("d3", make_photo(64, 64, 13), "train", {"label": "none", "domain": "factory"}, text="clean"),
        _sample("d4", make_photo(64, 64, 14), "validation", {"label": "dent", "domain": "factory"}, text="dent"),
    ]
    with BeamTestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(samples)
            | BuildEvalSet(EvalSetConfig(), str(tmp_path), ("train", "validation", "test"), NEAR, SEMANTIC)
        )
    folder = tmp_path / "eval"
    understanding = [json.loads(line) for line in (folder / "understanding.jsonl").read_text().splitlines()]
    generation = [json.loads(line) for line in (folder / "generation.jsonl").read_text().splitlines()]
    by_key = {s.key: s for s in samples}
    assert {item["key"] for item in understanding + generation} == {"d1", "d2"}
    for item in understanding:
        assert by_key[item["key"]].metadata[item["answer_field"]] == item["answer"]
        assert (folder / item["image"]).read_bytes() == by_key[item["key"]].image
    labels = [item for item in understanding if item["answer_field"] == "label"]
    assert labels and all(item["choices"] == ["dent", "none"] for item in labels)  # answers from every split
    assert {(item["key"], item["prompt"]) for item in generation} == {("d1", "a dented panel"), ("d2", "a mug")}
    summary = json.loads((folder / "eval_set.json").read_text())
    assert summary["images"] == 2
    assert summary["leak_check"]["compared_samples"] == 1
    assert summary["leak_check"]["leaks"] == 0
    assert not (folder / "leaks.json").exists()


def test_an_eval_split_that_got_no_sample_gives_an_empty_eval_set(tmp_path):
    """A small run whose eval split drew no group: the leak index of no probe crashed the job (a reshape of 0)."""
    samples = [
        _sample(f"t{i}", make_photo(64, 64, 20 + i), "train", {"label": "dent"}, text="a panel") for i in range(3)
    ]
    with BeamTestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(samples)
            | BuildEvalSet(EvalSetConfig(), str(tmp_path), ("train", "validation", "test"), NEAR, SEMANTIC)
        )
    summary = json.loads((tmp_path / "eval" / "eval_set.json").read_text())
    assert (summary["images"], summary["leak_check"]["leaks"], summary["leak_check"]["compared_samples"]) == (0, 0, 3)
    assert (tmp_path / "eval" / "understanding.jsonl").read_text() == ""


def test_a_planted_leak_fails_the_run_naming_the_pair(tmp_path):
    """A test image whose one-pixel edit sits in train (dedup never linked them): the run fails and names both.
    The real pipeline writes the same pair to ``eval/leaks.json`` (``tests/transforms/test_split.py``)."""
    base = make_photo(128, 96, seed=21)
    copy = base.copy()
    copy.putpixel((3, 3), (0, 255, 0))
    samples = [
        _sample("held", base, "test", {"label": "none"}, text="held out"),
        _sample("reused", copy, "train", {"label": "none"}, text="reused"),
        _sample("other", make_photo(128, 96, seed=22), "train", {"label": "none"}, text="other"),
    ]
    with pytest.raises(
        Exception, match=r"(?s)1 evaluation leak.*eval held \(/data/held.jpg\) ~ train reused"
    ) as failure:
        with BeamTestPipeline() as pipeline:
            _ = (
                pipeline
                | beam.Create(samples)
                | BuildEvalSet(EvalSetConfig(), str(tmp_path), ("train", "test"), NEAR, SEMANTIC)
            )
    assert "EvalLeakError" in repr(failure.value) or "EvalLeakError" in str(failure.value)
    assert (tmp_path / "eval" / "leaks.json").exists()
    assert not (tmp_path / "eval" / "understanding.jsonl").exists()


def _ship(output: Path, samples: list[Sample]) -> None:
    """Lay out what an earlier run left: pairs sidecars of its samples, and its eval set from its test split."""
    for split in {s.split for s in samples}:
        rows = [sidecar_row(sample_record(s)) for s in samples if s.split == split]
        folder = output / "shards" / "pairs" / split
        folder.mkdir(parents=True)
        (folder / "shard-000000.parquet").write_bytes(parquet_bytes(rows, SIDECAR_SCHEMA))
    folder = output / "eval"
    (folder / "images").mkdir(parents=True)
    lines = {"understanding.jsonl": [], "generation.jsonl": []}
    for sample in (s for s in samples if s.split == "test"):
        (folder / "images" / f"{sample.key}.jpg").write_bytes(sample.image)
        for item in items_of(sample, EvalSetConfig().questions, generation=True):
            name = "understanding.jsonl" if hasattr(item, "answer") else "generation.jsonl"
            lines[name].append(item.model_dump_json())
    for name, content in lines.items():
        (folder / name).write_text("".join(line + "\n" for line in content))


def test_an_incremental_run_carries_the_earlier_eval_set_and_checks_shipped_train(tmp_path):
    earlier = tmp_path / "earlier"
    old_test = _sample("f1", make_photo(64, 64, 31), "test", {"label": "dent"}, text="old dent")
    base = make_photo(96, 80, seed=33)
    _ship(earlier, [old_test, _sample("f2", base, "train", {"label": "none"}, text="old clean")])
    run = EarlierRun(output=str(earlier), generation=1, has_shards=True)
    new_test = _sample("g1", make_photo(64, 64, 32), "test", {"label": "scratch"}, text="new scratch")
    out = tmp_path / "out"
    with BeamTestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([new_test])
            | BuildEvalSet(EvalSetConfig(), str(out), ("train", "validation", "test"), NEAR, SEMANTIC, run)
        )
    understanding = [json.loads(line) for line in (out / "eval" / "understanding.jsonl").read_text().splitlines()]
    assert {(item["key"], item["answer"]) for item in understanding} == {("f1", "dent"), ("g1", "scratch")}
    assert (out / "eval" / "images" / "f1.jpg").read_bytes() == old_test.image
    assert json.loads((out / "eval" / "eval_set.json").read_text())["leak_check"]["compared_samples"] == 1

    edited = base.copy()
    edited.putpixel((2, 2), (9, 9, 9))
    leaking = _sample("g2", edited, "test", {"label": "none"}, text="a copy of shipped train")
    with pytest.raises(Exception, match="g2.*~ train f2"):
        with BeamTestPipeline() as pipeline:
            _ = (
                pipeline
                | beam.Create([leaking])
                | BuildEvalSet(EvalSetConfig(), str(tmp_path / "x"), ("train", "test"), NEAR, SEMANTIC, run)
            )


def test_an_incremental_run_s_choices_hold_the_answers_of_shipped_samples_as_a_full_run_s_do(tmp_path):
    """An incremental run's choices came from its new samples and the eval items only (4 where a full run had 9)."""
    earlier = tmp_path / "earlier"
    shipped = [
        _sample("f1", make_photo(64, 64, 41), "test", {"label": "dent"}, text="old dent"),
        _sample("f2", make_photo(64, 64, 42), "train", {"label": "rust"}, text="old rust"),
        _sample("f3", make_photo(64, 64, 43), "validation", {"label": "crack"}, text="old crack"),
    ]
    _ship(earlier, shipped)
    new = [_sample("g1", make_photo(64, 64, 44), "test", {"label": "scratch"}, text="new scratch")]
    run = EarlierRun(output=str(earlier), generation=1, has_shards=True)
    splits = ("train", "validation", "test")
    for name, samples, earlier_run in (("incremental", new, run), ("full", [*shipped, *new], None)):
        with BeamTestPipeline() as pipeline:
            _ = (
                pipeline
                | name >> beam.Create(samples)
                | BuildEvalSet(EvalSetConfig(), str(tmp_path / name), splits, NEAR, SEMANTIC, earlier_run)
            )
    choices = {
        name: [json.loads(line) for line in (tmp_path / name / "eval" / "understanding.jsonl").open()]
        for name in ("incremental", "full")
    }
    assert choices["incremental"] == choices["full"]
    assert {item["key"]: item["choices"] for item in choices["full"]} == {
        key: ["crack", "dent", "rust", "scratch"] for key in ("f1", "g1")
    }
