"""The ``[clip]`` section: the open_clip model every model stage shares (``transforms/clip_model.py``)."""

from typing import Literal

import pydantic

from schemas.config.base import Section

ClipPrecision = Literal["fp32", "bf16", "int8-dynamic"]


class ClipModelConfig(Section):
    """The open_clip image/text model shared by every model stage (``transforms/clip_model.py``).

    Weights come from one of: ``name`` + ``pretrained`` tag, or ``name = "hf-hub:ORG/NAME"`` (a hub repository with
    ``open_clip_config.json`` and weights), found in ``cache_dir`` or the hub cache, where the launcher downloads them
    before a run unless ``HF_HUB_OFFLINE`` is set (``unishard models fetch`` fills a folder for offline machines); a
    ``checkpoint`` file for the ``name`` architecture; or ``name = "local-dir:PATH"`` (a folder with
    ``open_clip_config.json`` and weights). Workers never download. ``smoke = true``
    (``--smoke-models``) builds a small randomly initialised model of the same family instead: for offline checks
    and CI only, its outputs are not meaningful.
    """

    name: str = pydantic.Field("ViT-B-32", description="open_clip architecture, hf-hub:ORG/NAME or local-dir:PATH.")
    pretrained: str | None = pydantic.Field("laion2b_s34b_b79k", description="open_clip pretrained tag.")
    checkpoint: str | None = pydantic.Field(None, description="Local weights file for `name`; overrides pretrained.")
    cache_dir: str | None = pydantic.Field(
        None, description="Where pretrained weights are looked up (default: the Hugging Face hub cache)."
    )
    model_id: str | None = pydantic.Field(
        None, description="Name of the model in score fields; default derived, e.g. clip_vit_b_32_laion2b."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: ClipPrecision = pydantic.Field(
        "fp32", description="bf16 weights or int8 dynamic quantization (CPU only) roughly double CPU throughput."
    )
    threads: int = pydantic.Field(
        1,
        ge=0,
        description="torch intra-op threads in each worker process, for every model. 1 keeps embeddings the same "
        "bits on any machine and with any worker count (a different thread count can change their last bits) and "
        "lets one worker process per core use the cores without oversubscribing them; 0 keeps torch's default (one "
        "thread per core, in every process).",
    )
    smoke: bool = pydantic.Field(False, description="Random small model of the same family; outputs not meaningful.")

    @pydantic.model_validator(mode="after")
    def _check_device(self) -> "ClipModelConfig":
        if self.precision == "int8-dynamic" and self.device == "cuda":
            raise ValueError("clip.precision int8-dynamic runs on CPU only; use bf16 on cuda")
        return self
