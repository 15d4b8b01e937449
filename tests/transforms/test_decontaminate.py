"""Decontamination against eval images: exact and near copies rejected naming the eval item, the rest kept."""

import io
import json
import pickle
from pathlib import Path

import apache_beam as beam
import pytest
from PIL import Image, ImageDraw

from pipeline.checks import check_inputs
from pipeline.launch import RunError
from schemas import reasons
from schemas.config.decontaminate import DecontaminateConfig
from schemas.config.load import load_config
from schemas.config.normalise import NormaliseConfig
from schemas.config.unishard import UnishardConfig
from schemas.records.dedup import fingerprint
from schemas.records.inputs import InputItem
from tests.helpers import make_photo
from transforms._hash_match import Limits
from transforms.decontaminate import Decontaminate, Match, bucket_matches, data_point
from transforms.normalise import Normalise

HASHES = ["phash", "colour"]


def _garment(colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (240, 280), (236, 236, 232))
    ImageDraw.Draw(image).polygon([(70, 60), (170, 60), (210, 100), (175, 250), (65, 250), (30, 100)], fill=colour)
    return image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("decontaminate")
    data, evals = root / "data", root / "eval"
    data.mkdir()
    evals.mkdir()
    make_photo(320, 240, seed=11).save(data / "a-exact.jpg", quality=92)
    (evals / "eval-a.jpg").write_bytes((data / "a-exact.jpg").read_bytes())
    make_photo(320, 240, seed=12).save(data / "b-near.jpg", quality=92)
    buffer = io.BytesIO()
    make_photo(320, 240, seed=12).resize((256, 192)).save(buffer, format="JPEG", quality=70)
    (evals / "eval-b.jpg").write_bytes(buffer.getvalue())
    make_photo(320, 240, seed=13).save(data / "c-clean.jpg", quality=92)
    _garment((40, 140, 60)).save(data / "d-green.png")
    _garment((200, 60, 60)).save(evals / "eval-red.png")
    # The same pixels in two PNG encodings (different bytes), and a picture with one pixel changed.
    make_photo(320, 240, seed=14).save(data / "e-pixel.png", compress_level=1)
    make_photo(320, 240, seed=14).save(evals / "eval-e.png", compress_level=9)
    assert (data / "e-pixel.png").read_bytes() != (evals / "eval-e.png").read_bytes()
    changed = make_photo(320, 240, seed=15)
    changed.putpixel((100, 100), tuple(255 - v for v in changed.getpixel((100, 100))))
    changed.save(data / "f-one-pixel.png")
    make_photo(320, 240, seed=15).save(evals / "eval-f.png")
    (evals / "eval-broken.jpg").write_bytes(b"not an image")
    return {"data": data, "eval": evals, "out": root / "out"}


def _save(rows: list, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(sorted(rows, key=lambda row: row.source)))


@pytest.fixture(scope="module")
def decided(files):
    """The data files normalised and fingerprinted by the pipeline's own stages, then decontaminated."""
    items = [
        InputItem(str(path), str(path), "marketing", data=path.read_bytes())
        for path in sorted(files["data"].iterdir())
    ]
    config = DecontaminateConfig(exclude=[str(files["eval"])])
    out = files["out"]
    with beam.Pipeline(runner="DirectRunner") as pipeline:
        fps = (
            pipeline | beam.Create(items) | Normalise(NormaliseConfig(), HASHES)
        ).samples | "Fingerprint" >> beam.Map(fingerprint)
        result = fps | Decontaminate(config, NormaliseConfig(), HASHES, str(out))
        outputs = (("fingerprints", fps), ("survivors", result.survivors), ("rejected", result.rejected))
        for name, pcoll in outputs:
            _ = pcoll | f"List{name}" >> beam.combiners.ToList() | f"Save{name}" >> beam.Map(_save, out / name)
    return {name: pickle.loads((out / name).read_bytes()) for name, _ in outputs}


def test_exact_and_near_copies_of_eval_items_are_rejected_naming_the_eval_item(decided):
    rows = {Path(row.source).name: row for row in decided["rejected"]}
    assert set(rows) == {"a-exact.jpg", "b-near.jpg", "e-pixel.png", "f-one-pixel.png"}
    for row in rows.values():
        assert (row.status, row.stage, row.reason) == ("rejected", "decontaminate", reasons.EVAL_CONTAMINATION)
    exact, near = json.loads(rows["a-exact.jpg"].detail), json.loads(rows["b-near.jpg"].detail)
    assert exact["match"] == "exact" and exact["distance"] == 0 and exact["eval_source"].endswith("eval-a.jpg")
    assert near["match"] == "near" and near["eval_source"].endswith("eval-b.jpg") and near["eval_key"]


def test_the_pixel_hash_matches_two_encodings_of_the_same_pixels_and_not_one_changed_pixel(decided):
    rows = {Path(row.source).name: json.loads(row.detail) for row in decided["rejected"]}
    # Different bytes, same pixels: a pixel match. One pixel changed: only the perceptual hash still matches.
    assert (rows["e-pixel.png"]["match"], rows["e-pixel.png"]["distance"]) == ("pixel", 0)
    assert rows["e-pixel.png"]["eval_source"].endswith("eval-e.png")
    assert rows["f-one-pixel.png"]["match"] == "near" and rows["f-one-pixel.png"]["eval_source"].endswith("eval-f.png")


def test_clean_samples_and_colour_variants_of_eval_items_pass(decided):
    assert sorted(Path(fp.source).name for fp in decided["survivors"]) == ["c-clean.jpg", "d-green.png"]


def test_summary_counts_eval_items_read_unreadable_and_matched(decided, files):
    summary = json.loads((files["out"] / "dedup" / "decontaminate.json").read_text())
    assert summary["eval_items"] == 5 and summary["eval_items_unreadable"] == 1
    assert summary["contaminated_samples"] == 4 and summary["eval_items_matched"] == 4
    assert summary["by_match"] == {"exact": 1, "pixel": 1, "near": 2}


def test_closest_eval_item_is_named_when_several_match(decided):
    data = next(fp for fp in decided["fingerprints"] if fp.source.endswith("a-exact.jpg"))
    point = next(data_point(data))
    far = point._replace(is_eval=True, source="z-eval", sha256="x", pixel_sha256="y")
    same = point._replace(is_eval=True, source="a-eval")
    matches = [m for _, m in bucket_matches(((0, 0), [far, point, same]), Limits(8, colour=8.0))]
    assert min(matches, key=Match.order).eval_source == "a-eval"


def test_exclude_accepts_plain_paths_resolved_against_the_config_file(tmp_path):
    (tmp_path / "run.toml").write_text('[decontaminate]\nexclude = ["eval", {path = "holdout.csv"}]\n')
    config = load_config(tmp_path / "run.toml")
    assert [spec.path for spec in config.decontaminate.exclude] == [
        str((tmp_path / "eval").resolve()),
        str((tmp_path / "holdout.csv").resolve()),
    ]


def test_an_exclude_path_matching_nothing_fails_before_any_work(files, tmp_path):
    config = UnishardConfig.model_validate(
        {
            "ingest": {"inputs": [{"path": str(files["data"])}]},
            "decontaminate": {"exclude": [str(tmp_path / "no-such-eval-set")]},
        }
    )
    with pytest.raises(RunError, match="no-such-eval-set"):
        check_inputs(config)
