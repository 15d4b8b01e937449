"""Model ids, hub files and locating weights on local disk: never a download, and every failure explained."""

import json
import os
from pathlib import Path

import pytest
import torch

from schemas.config.clip_model import ClipModelConfig
from transforms.model_weights import (
    HF_CONFIG_FILE,
    HF_WEIGHT_FILES,
    ModelUnavailable,
    clip_model_id,
    forbid_downloads,
    hub_files,
    locate_weights,
    slug,
    tag_family,
)


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


def test_slug_keeps_lowercase_letters_and_digits():
    assert slug("ViT-B-32 / Plant.CLIP") == "vit_b_32_plant_clip"


def test_hub_files_of_a_hub_repository_and_of_a_pretrained_tag():
    files = hub_files("hf-hub:org/some-clip", None)
    assert (files.repo, files.required, files.weights) == ("org/some-clip", (HF_CONFIG_FILE,), HF_WEIGHT_FILES)
    tagged = hub_files("ViT-B-32", "laion2b_s34b_b79k")
    assert tagged.repo == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" and tagged.required == ()
    assert tagged.weights[0].endswith(".safetensors")


def test_a_checkpoint_file_and_a_complete_local_dir_are_found(tmp_path):
    checkpoint = tmp_path / "line3.pt"
    torch.save({"weight": torch.zeros(2)}, checkpoint)
    assert locate_weights("ViT-B-32", None, str(checkpoint), None) == str(checkpoint)
    folder = tmp_path / "Plant-CLIP"
    folder.mkdir()
    (folder / HF_CONFIG_FILE).write_text("{}")
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    assert locate_weights(f"local-dir:{folder}", None, None, None) is None


def test_a_hub_model_is_found_beside_its_config_in_the_cache(tmp_path):
    snapshot = tmp_path / "models--org--some-clip" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--some-clip" / "refs").mkdir()
    (tmp_path / "models--org--some-clip" / "refs" / "main").write_text("abc123")
    (snapshot / HF_CONFIG_FILE).write_text("{}")
    with pytest.raises(ModelUnavailable, match="hub repo org/some-clip"):
        locate_weights("hf-hub:org/some-clip", None, None, str(tmp_path))
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    found = locate_weights("hf-hub:org/some-clip", None, None, str(tmp_path))
    assert Path(found) == snapshot / "open_clip_pytorch_model.bin"


def test_forbidding_downloads_sets_the_hub_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    forbid_downloads()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def _safetensors(path: Path, data_bytes: int = 8) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(data_bytes))


def test_a_checkpoint_that_is_no_weights_file_is_refused_naming_the_key_without_loading_it(tmp_path):
    """``echo x > fake.pt`` failed after every image was read, torch advising to load it with weights_only=False."""
    fake = tmp_path / "fake.pt"
    fake.write_text("x\n")
    with pytest.raises(ModelUnavailable) as refused:
        locate_weights("ViT-B-32", None, str(fake), None, "clip")
    assert str(refused.value).startswith(f"clip.checkpoint: {fake} is not a weights file (it starts with b'x\\n'")
    assert "give the weights file again" in str(refused.value) and "weights_only" not in str(refused.value)
    with pytest.raises(ModelUnavailable, match=r"caption.captioner.checkpoint: .*coca.pt is empty"):
        (tmp_path / "coca.pt").write_bytes(b"")
        locate_weights("coca_ViT-B-32", None, str(tmp_path / "coca.pt"), None, "caption.captioner")

    cut = tmp_path / "cut.pt"
    torch.save({"weight": torch.zeros(64)}, cut)
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(ModelUnavailable, match="is a zip file cut short"):
        locate_weights("ViT-B-32", None, str(cut), None)
    _safetensors(tmp_path / "short.safetensors", data_bytes=4)
    with pytest.raises(ModelUnavailable, match="is a safetensors file cut short"):
        locate_weights("ViT-B-32", None, str(tmp_path / "short.safetensors"), None)

    _safetensors(tmp_path / "good.safetensors")
    legacy = tmp_path / "legacy.pt"
    torch.save({"weight": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    for good in (tmp_path / "good.safetensors", legacy):
        assert locate_weights("ViT-B-32", None, str(good), None) == str(good)


def test_the_launcher_refuses_a_corrupt_checkpoint_before_any_work(tmp_path):
    from pipeline.models import preflight
    from schemas.config.load import load_config

    (tmp_path / "fake.pt").write_text("x\n")
    (tmp_path / "run.toml").write_text('[clip]\ncheckpoint = "fake.pt"\n', encoding="utf-8")
    with pytest.raises(ModelUnavailable, match=f"clip.checkpoint: {tmp_path / 'fake.pt'} is not a weights file"):
        preflight(load_config(tmp_path / "run.toml"))
