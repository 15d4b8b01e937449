"""The shared CLIP model: smoke models, batch-independent outputs, model ids, and weights that are never downloaded."""

import json

import numpy as np
import pytest

from pipeline.launch import RunError
from schemas.config.clip_model import ClipModelConfig
from schemas.config.load import load_config
from tests.helpers import make_photo, run_job, write_sidecar
from transforms.clip_model import (
    SMOKE_CLIP,
    LookupClipModel,
    ModelUnavailable,
    clip_model_id,
    load_clip,
    locate_weights,
    tag_family,
)

SMOKE = ClipModelConfig(smoke=True)


@pytest.fixture(scope="module")
def photos():
    return [make_photo(96, 80, seed=seed) for seed in range(5)]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8-dynamic"])
def test_smoke_model_rows_are_unit_vectors_independent_of_batch_company(photos, precision):
    model = load_clip(ClipModelConfig(smoke=True, precision=precision))
    together = model.encode_images(photos, batch_size=4)
    apart = np.concatenate([model.encode_images(photos[:1], batch_size=4), model.encode_images(photos[1:], 4)])
    assert together.dtype == np.float32 and together.shape == (5, model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(together, apart)
    assert model.model_id == "clip_smoke_tiny_vit"
    assert model.precision == precision


def test_int8_rows_stay_close_to_fp32(photos):
    fp32 = load_clip(SMOKE).encode_images(photos)
    int8 = load_clip(ClipModelConfig(smoke=True, precision="int8-dynamic")).encode_images(photos)
    assert float(np.min(np.sum(fp32 * int8, axis=1))) > 0.99


def test_smoke_model_is_the_same_in_every_load_and_cached_per_config(photos):
    first, second = load_clip(SMOKE, cache=False), load_clip(SMOKE, cache=False)
    assert np.array_equal(first.encode_images(photos[:2]), second.encode_images(photos[:2]))
    assert load_clip(SMOKE) is load_clip(SMOKE)


def test_text_embeddings_keep_input_order_and_repeat_exactly():
    model = load_clip(SMOKE)
    texts = ["a red mug", "a steel sheet with scratches", "a red mug"]
    vectors = model.encode_texts(texts)
    assert vectors.shape == (3, model.embed_dim)
    assert np.array_equal(vectors[0], vectors[2])
    fresh = load_clip(SMOKE, cache=False)  # no cached vectors: the text is encoded again, with other company
    assert np.array_equal(fresh.encode_texts(["a steel sheet with scratches"])[0], vectors[1])
    assert model.encode_texts([]).shape == (0, model.embed_dim)


@pytest.mark.parametrize(
    "config, expected",
    [
        (ClipModelConfig(), "clip_vit_b_32_laion2b"),
        (ClipModelConfig(name="ViT-L-14", pretrained="datacomp_xl_s13b_b90k"), "clip_vit_l_14_datacomp_xl"),
        (ClipModelConfig(checkpoint="/models/line3-finetune.pt"), "clip_vit_b_32_line3_finetune"),
        (ClipModelConfig(name="local-dir:/models/Plant-CLIP"), "clip_plant_clip"),
        (ClipModelConfig(smoke=True), "clip_smoke_tiny_vit"),
        (ClipModelConfig(model_id="clip_custom"), "clip_custom"),
    ],
)
def test_model_id_names_architecture_and_weights(config, expected):
    assert clip_model_id(config) == expected


def test_tag_family_drops_training_sizes():
    tags = ("laion2b_s34b_b79k", "openai", "laion400m_e32")
    assert [tag_family(t) for t in tags] == ["laion2b", "openai", "laion400m"]


def test_missing_pretrained_weights_message_names_model_place_and_remedies(tmp_path):
    with pytest.raises(ModelUnavailable) as raised:
        locate_weights("ViT-B-32", "laion2b_s34b_b79k", None, str(tmp_path / "cache"), "clip")
    message = str(raised.value)
    assert "ViT-B-32 (pretrained laion2b_s34b_b79k)" in message
    assert f"looked in: {tmp_path / 'cache'}" in message and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "unishard models fetch ViT-B-32 --pretrained laion2b_s34b_b79k --cache-dir DIR" in message
    assert "--set clip.cache_dir=DIR" in message
    assert "--set clip.checkpoint=PATH" in message and "--smoke-models" in message


def test_missing_checkpoint_unknown_tag_and_empty_local_dir_are_explained(tmp_path):
    with pytest.raises(ModelUnavailable, match="weights file .*nope.pt for model ViT-B-32 does not exist"):
        locate_weights("ViT-B-32", None, str(tmp_path / "nope.pt"), None)
    with pytest.raises(ModelUnavailable, match="not a pretrained tag of open_clip model 'ViT-B-32'; known tags: "):
        locate_weights("ViT-B-32", "laion9z", None, None)
    with pytest.raises(ModelUnavailable, match="open_clip_config.json and a weights file"):
        locate_weights(f"local-dir:{tmp_path}", None, None, None)


def test_local_dir_model_loads_its_own_weights(tmp_path, photos):
    import torch

    smoke = load_clip(SMOKE)
    folder = tmp_path / "Plant-CLIP"
    folder.mkdir()
    torch.save(smoke._model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": SMOKE_CLIP}))
    loaded = load_clip(ClipModelConfig(name=f"local-dir:{folder}"), cache=False)
    assert loaded.model_id == "clip_plant_clip"
    np.testing.assert_allclose(loaded.encode_images(photos[:2]), smoke.encode_images(photos[:2]), atol=1e-5)


def test_run_without_weights_stops_before_reading_any_data(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    make_photo(seed=1).save(images / "a.jpg")
    write_sidecar(images / "a.jpg", title="a photo")
    with pytest.raises(RunError) as raised:
        run_job([images], tmp_path / "out", clip={"smoke": False, "cache_dir": str(tmp_path / "empty-cache")})
    assert "clip: model ViT-B-32 (pretrained laion2b_s34b_b79k) is not available" in str(raised.value)
    assert "unishard models fetch ViT-B-32" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_smoke_models_flag_and_config_key_agree(tmp_path):
    config = load_config(None, ["clip.smoke=true", "clip.precision=bf16"])
    assert config.clip.smoke and clip_model_id(config.clip) == "clip_smoke_tiny_vit"
    with pytest.raises(ValueError, match="int8-dynamic runs on CPU only"):
        ClipModelConfig(device="cuda", precision="int8-dynamic")


def test_lookup_model_maps_texts_and_colours_deterministically(photos):
    fake = LookupClipModel({"red": [1, 0, 0]}, dim=4)
    assert np.allclose(fake.encode_texts(["red"])[0], [1, 0, 0, 0])
    assert np.array_equal(fake.encode_texts(["other"]), LookupClipModel(dim=4).encode_texts(["other"]))
    assert fake.encode_images(photos[:2]).shape == (2, 4) and fake.image_encodes == 2
