"""Model weights around a run: fetch and check on the launcher, the run's model record, ``unishard models fetch``.

``check_models`` runs on the launcher before any data is read. A model the config will load (the CLIP model; the
CoCa captioner when enabled) whose weights are not on this machine is fetched from the hub into the hub cache (or
``clip.cache_dir``) once, with a progress bar (``pipeline/models_fetch.py``), unless ``HF_HUB_OFFLINE`` is set; then
every model (and the OCR package when enabled) must be on local disk, or the run stops with a message naming the
model, where it looked, what the hub said and how to provide it. After the check the launcher forbids downloads, so
workers never download: they find the weights where the launcher put them (on a cluster: the worker image or a
shared ``clip.cache_dir``, see ``runners/README.md``). ``unishard models fetch NAME [--pretrained TAG] [--cache-dir
DIR]`` fills a cache folder for an air-gapped machine: copy DIR over and run with ``--set clip.cache_dir=DIR``.
``models_record`` is written to ``OUT/_run/models.json``: which models and precision produced the outputs, and whether
they mean anything (a ``--smoke-models`` run uses random weights, so its scores and captions do not).
"""

import argparse
import importlib.util
import sys
from typing import Any, TextIO

from pipeline.models_fetch import FetchError, fetch, hub_offline
from schemas.config.caption import CaptionerConfig
from schemas.config.clip_model import ClipModelConfig
from schemas.config.unishard import UnishardConfig
from transforms.model_weights import (
    HF_HUB_PREFIX,
    ModelUnavailable,
    clip_model_id,
    forbid_downloads,
    hub_files,
    locate_weights,
)

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
    """Fetch missing weights, then ``preflight``, on the launcher, before any data is read.

    From then on this process and the workers it starts never download.

    Raises:
        ModelUnavailable: A model is missing and could not be fetched; the message says how to provide it.
    """
    try:
        fetch_missing(config)
        preflight(config)
    finally:
        forbid_downloads()


def fetch_missing(config: UnishardConfig) -> None:
    """Download from the hub the weights of every configured model that is not on this machine, unless offline.

    Raises:
        ModelUnavailable: A model is missing and could not be fetched; the message says why and how to provide it.
    """
    clip = config.clip
    if clip.smoke:
        return
    wanted = [(clip.name, clip.pretrained, clip.checkpoint, "clip")]
    captioner = config.caption.captioner
    if captioner.enabled:
        wanted.append((captioner.name, captioner.pretrained, captioner.checkpoint, "caption.captioner"))
    for name, pretrained, checkpoint, section in wanted:
        if checkpoint or name.startswith("local-dir:") or not (pretrained or name.startswith(HF_HUB_PREFIX)):
            continue  # nothing on the hub to fetch: preflight explains what is missing
        try:
            locate_weights(name, pretrained, checkpoint, clip.cache_dir, section)
            continue
        except ModelUnavailable as missing:
            if hub_files(name, pretrained, section) is None:
                raise
            head, _, rest = str(missing).partition("\n")
            if hub_offline():
                note = "HF_HUB_OFFLINE is set (without it, `unishard run` fetches missing weights from the hub once)"
                raise ModelUnavailable(f"{head}\n  not downloaded: {note}\n{rest}") from None
        try:
            fetch(name, pretrained, clip.cache_dir, section)
        except FetchError as error:
            if error.unreachable:
                raise ModelUnavailable(f"{head}\n  not downloaded: {error}\n{rest}") from None
            raise ModelUnavailable(str(error)) from None


def models_line(config: UnishardConfig) -> str:
    """The models of a run in a few words, for the console: ``clip_vit_b_32_laion2b (fp32)``."""
    clip = config.clip
    smoke = ", random weights: outputs not meaningful" if clip.smoke else ""
    words = f"{clip_model_id(clip)} ({clip.precision}{smoke})"
    if config.caption.captioner.enabled:
        from transforms.caption_models import captioner_id

        words += f", {captioner_id(config.caption.captioner, clip.smoke)}"
    if config.caption.ocr.enabled:
        words += ", rapidocr"
    return words


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
            "pretrained": None if clip.smoke or clip.checkpoint or ":" in clip.name else clip.pretrained,
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
    fetcher = actions.add_parser(
        "fetch", help="download an open_clip model's weights into a cache folder (needs internet)", allow_abbrev=False
    )
    fetcher.add_argument("name", help="open_clip model name, e.g. ViT-B-32, coca_ViT-B-32 or hf-hub:ORG/NAME")
    fetcher.add_argument("--pretrained", help="pretrained tag (default: the configured default for NAME)")
    fetcher.add_argument("--cache-dir", help="folder to fill (default: the Hugging Face hub cache); copy it over")


def _default_tag(name: str) -> str | None:
    for section in (ClipModelConfig(), CaptionerConfig()):
        if section.name == name:
            return section.pretrained
    return None


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    hub_name = args.name.startswith(HF_HUB_PREFIX)
    tag = None if hub_name else args.pretrained or _default_tag(args.name)
    if not tag and not hub_name:
        print(f"unishard: give --pretrained TAG for {args.name}", file=sys.stderr)
        return 2
    try:
        path = fetch(args.name, tag, args.cache_dir)
    except (FetchError, ModelUnavailable) as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 1
    where = args.cache_dir or "the Hugging Face hub cache"
    out.write(
        f"unishard: {args.name}{f' ({tag})' if tag else ''} is in {path}\n"
        f"unishard run on this machine finds it there; for another machine, copy {where} over and add "
        "--set clip.cache_dir=<that folder>.\n"
    )
    return 0
