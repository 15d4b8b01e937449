"""The shared CLIP model: smoke models, batch-independent outputs, local-dir weights, and a run without weights
stopping before reading any data (model ids and locating weights: ``test_model_weights.py``)."""

import json

import numpy as np
import pytest

from pipeline.launch import RunError
from schemas.config.clip_model import ClipModelConfig
from schemas.config.load import load_config
from tests.helpers import make_photo, run_job, write_sidecar
from transforms.clip_model import SMOKE_CLIP, load_clip
from transforms.model_weights import clip_model_id

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


def test_loading_a_model_sets_torch_to_clip_threads_one_by_default():
    import torch

    # One fixed thread count in every worker process: a thread count can change an embedding's last bits.
    assert ClipModelConfig().threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        load_clip(ClipModelConfig(smoke=True), cache=False)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        load_clip(ClipModelConfig(smoke=True, threads=0), cache=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
