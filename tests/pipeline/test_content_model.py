"""A full run with a model whose embeddings mean something: semantic dedup and image safety decide for real.

Smoke models embed every image at random, so semantic dedup skips them and image safety is not enforced: no smoke
run ever exercises the ``DropSemanticDuplicates`` join or an ``unsafe_image`` rejection. Here every model stage
loads ``LookupClipModel`` instead (images embed by their mean colour, prompts by a lookup table), so two pictures of
different layout but the same colours are semantic duplicates, and a magenta picture matches the "unsafe" prompt.
The expected outcome follows from how the test draws each picture.
"""

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import pipeline.assemble
import pipeline.launch
import transforms.clip_model
from transforms.clip_lookup import LookupClipModel

UNSAFE_PROMPT = "a forbidden magenta thing"
# Image vectors are the mean colour centred on 0.5 (first three dimensions) plus 0.01 in the other five; each safe
# prompt points at a primary colour or at grey, the unsafe one at magenta.
SAFE_PROMPTS = {
    "an ordinary grey photo": [0, 0, 0, 1, 1, 1, 1, 1],
    "a red product": [0.5, -0.5, -0.5],
    "a green field": [-0.5, 0.5, -0.5],
    "a blue sky": [-0.5, -0.5, 0.5],
}
PROMPTS = {UNSAFE_PROMPT: [0.5, -0.5, 0.5], **SAFE_PROMPTS}


def _halves(path: Path, first: str, second: str, vertical: bool) -> None:
    image = Image.new("RGB", (96, 96), first)
    box = (48, 0, 96, 96) if vertical else (0, 48, 96, 96)
    ImageDraw.Draw(image).rectangle(box, fill=second)
    image.save(path)


def _pattern(path: Path, background: str, ink: str, shape: str) -> None:
    image = Image.new("RGB", (96, 96), background)
    draw = ImageDraw.Draw(image)
    if shape == "disc":
        draw.ellipse((20, 20, 76, 76), fill=ink)
    elif shape == "stripes":
        for x in range(0, 96, 24):
            draw.rectangle((x, 0, x + 11, 95), fill=ink)
    else:
        draw.polygon([(0, 0), (95, 0), (0, 95)], fill=ink)
    image.save(path)


@pytest.fixture
def content_model(monkeypatch):
    model = LookupClipModel(PROMPTS, model_id="clip_content_test")
    monkeypatch.setattr(transforms.clip_model, "load_clip", lambda config, cache=True: model)
    # The documents stage holds the loader it was built with: patched here too, or cloudpickle, finding the module's
    # name bound to another function, pickles the real one by value with its model cache (18 MB after test_embed).
    monkeypatch.setattr(pipeline.assemble, "load_clip", transforms.clip_model.load_clip)
    monkeypatch.setattr(pipeline.launch, "check_models", lambda config: None)
    return model


def test_semantic_duplicates_are_dropped_and_an_unsafe_image_rejected_in_a_full_run(tmp_path, run, content_model):
    folder = tmp_path / "in"
    folder.mkdir()
    # Same colours (red and orange halves), different layout: far apart in pHash, identical mean colour.
    _halves(folder / "twin_left_right.png", "#ff0000", "#ff8000", vertical=True)
    _halves(folder / "twin_top_bottom.png", "#ff0000", "#ff8000", vertical=False)
    _pattern(folder / "magenta.png", "#ff00ff", "#e000e0", "disc")
    _pattern(folder / "green.png", "#00a000", "#004000", "stripes")
    _pattern(folder / "grey.png", "#808080", "#909090", "triangle")
    _pattern(folder / "blue.png", "#0000c0", "#4040ff", "disc")

    out = run(
        [folder],
        output=tmp_path / "out",
        clip={"smoke": False, "name": "ViT-B-32"},
        text={"required": False},
        caption={"required": False},
        safety={"unsafe_prompts": [UNSAFE_PROMPT], "safe_prompts": list(SAFE_PROMPTS)},
        # Flat two-colour drawings are low-contrast by the quality stage's measure; this test is about the models.
        quality={"enabled": False},
    )

    rows = out.ledger_by_name()
    assert rows["magenta.png"]["status"] == "rejected"
    assert (rows["magenta.png"]["stage"], rows["magenta.png"]["reason"]) == ("safety", "unsafe_image")
    assert json.loads(rows["magenta.png"]["detail"])["score"] > 0.5
    twins = [rows["twin_left_right.png"], rows["twin_top_bottom.png"]]
    dropped = [row for row in twins if row["status"] == "rejected"]
    survivor = [row for row in twins if row["status"] == "kept"]
    assert len(dropped) == 1 and len(survivor) == 1
    assert (dropped[0]["stage"], dropped[0]["reason"]) == ("semantic_dedup", "semantic_duplicate")
    assert json.loads(dropped[0]["detail"])["survivor_key"] == survivor[0]["key"]
    for name in ("green.png", "grey.png", "blue.png"):
        assert rows[name]["status"] == "kept", rows[name]
    kept_keys = {sample["__key__"] for sample in out.samples()}
    assert kept_keys == {row["key"] for row in rows.values() if row["status"] == "kept"}
    assert content_model.image_encodes == 6  # one encode per image, reused by every later model stage
