"""Model weights around a run: the preflight check, the run's model record, and ``unishard models fetch``.

A run never downloads weights. ``check_models`` runs on the launcher before any data is read: every model the
config will load (the CLIP model; the CoCa captioner and the OCR package when enabled) must be on local disk, or the
run stops with a message naming the model, where it looked and how to provide it. ``unishard models fetch NAME
[--pretrained TAG] [--cache-dir DIR]`` is the one command that uses the network: run it on a connected machine, copy
DIR to the air-gapped one and run with ``--set clip.cache_dir=DIR``. ``models_record`` is written to
``OUT/_run/models.json``: which models and precision produced the outputs, and whether they mean anything (a
``--smoke-models`` run uses random weights, so its scores and captions do not).
"""

import argparse
import importlib.util
import sys
from typing import Any, TextIO

from schemas.config import CaptionerConfig, ClipModelConfig, UnishardConfig
from transforms.clip_model import ModelUnavailable, clip_model_id, fetch_weights, locate_weights

SMOKE_NOTE = "smoke models (random weights): scores, captions and CLIP-based decisions are not meaningful"


def preflight(config: UnishardConfig) -> None:
    """Check that every model the run will load is on this machine.

    Raises:
        ModelUnavailable: A model or a package it needs is missing; the message says how to provide it.
    """
    clip = config.clip
    if not clip.smoke:
        locate_weights(clip.name, clip.pretrained, clip.checkpoint, clip.cache_dir, "clip")
    captioner = config.caption.captioner
    if captioner.enabled:
        _require_transformers()
        if not clip.smoke:
            locate_weights(
                captioner.name, captioner.pretrained, captioner.checkpoint, clip.cache_dir, "caption.captioner"
            )
    if config.caption.ocr.enabled and importlib.util.find_spec("rapidocr_onnxruntime") is None:
        raise ModelUnavailable(
            "caption.ocr is enabled but rapidocr-onnxruntime is not installed: pip install 'unishard[ocr]', or set "
            "caption.ocr.enabled=false"
        )


def check_models(config: UnishardConfig) -> None:
    """``preflight`` for the launcher: a missing model becomes a ``RunError`` before any data is read."""
    from pipeline.launch import RunError

    try:
        preflight(config)
    except ModelUnavailable as error:
        raise RunError(str(error)) from None


def _require_transformers() -> None:
    try:
        import transformers
    except ImportError:
        transformers = None
    version = tuple(int(p) for p in transformers.__version__.split(".")[:2]) if transformers else None
    if version is None or version >= (4, 56):
        found = f"transformers {transformers.__version__} is installed" if transformers else "transformers is missing"
        raise ModelUnavailable(
            f"caption.captioner (CoCa through open_clip's generate) needs transformers<4.56 and {found}: "
            "pip install 'unishard[captioner]', or set caption.captioner.enabled=false"
        )


def models_record(config: UnishardConfig) -> dict[str, Any]:
    """What ``OUT/_run/models.json`` says about the models of a run."""
    clip = config.clip
    record: dict[str, Any] = {
        "meaningful": not clip.smoke,
        "smoke": clip.smoke,
        "clip": {
            "model_id": clip_model_id(clip),
            "name": clip.name,
            "pretrained": None if clip.smoke or clip.checkpoint else clip.pretrained,
            "checkpoint": None if clip.smoke else clip.checkpoint,
            "precision": clip.precision,
            "device": clip.device,
            "threads": clip.threads,
        },
        "captioner": None,
        "ocr": config.caption.ocr.enabled,
    }
    if clip.smoke:
        record["note"] = SMOKE_NOTE
    if config.caption.captioner.enabled:
        from transforms.caption_models import captioner_id

        captioner = config.caption.captioner
        record["captioner"] = {"model_id": captioner_id(captioner, clip.smoke), "name": captioner.name}
    return record


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="fetch model weights for offline runs", allow_abbrev=False)
    actions = parser.add_subparsers(dest="models_command", required=True)
    fetch = actions.add_parser(
        "fetch", help="download an open_clip model's weights into a cache folder (needs internet)", allow_abbrev=False
    )
    fetch.add_argument("name", help="open_clip model name, e.g. ViT-B-32 or coca_ViT-B-32")
    fetch.add_argument("--pretrained", help="pretrained tag (default: the configured default for NAME)")
    fetch.add_argument("--cache-dir", help="folder to fill (default: the Hugging Face hub cache); copy it over")


def _default_tag(name: str) -> str | None:
    for section in (ClipModelConfig(), CaptionerConfig()):
        if section.name == name:
            return section.pretrained
    return None


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    tag = args.pretrained or _default_tag(args.name)
    if not tag:
        out.write(f"unishard: give --pretrained TAG for {args.name}\n")
        return 2
    try:
        path = fetch_weights(args.name, tag, args.cache_dir)
    except Exception as error:  # noqa: BLE001 - any download failure is reported to the user, not raised
        out.write(f"unishard: could not fetch {args.name} ({tag}): {error}\n")
        return 1
    where = args.cache_dir or "the Hugging Face hub cache"
    out.write(
        f"unishard: {args.name} ({tag}) is in {path}\n"
        f"Copy {where} to the machine that runs unishard and add --set clip.cache_dir=<that folder>.\n"
    )
    return 0
