"""Model names and weights on local disk: the id a model's scores carry, where its weights live on the hub, and
finding them in a cache without any download.

``clip_model_id`` names a configured model (``clip_vit_b_32_laion2b``) without loading it. ``hub_files`` says which
hub repository and files hold a model's weights; ``locate_weights`` finds them on local disk (a pretrained tag or an
``hf-hub:ORG/NAME`` repository in the hub cache or ``cache_dir``, a checkpoint file, or a ``local-dir:`` folder) and
raises ``ModelUnavailable`` with a message saying where it looked and how to provide them (``how_to_provide``); a
checkpoint file is checked from a few of its bytes (``weights_file_problem``), so a file that holds no weights is
named before any work rather than by torch's unpickler on a worker.
``forbid_downloads`` makes the hub library refuse the network. Used by ``transforms.clip_model`` and
``transforms.caption_models`` on workers, and by the launcher's preflight and ``unishard models fetch``.
"""

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from schemas.config.clip_model import ClipModelConfig

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HF_HUB_PREFIX = "hf-hub:"
HF_CONFIG_FILE = "open_clip_config.json"
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_TRAINING_SIZE = re.compile(r"^([sbe]\d+[a-z]?|\d+[kmb]?)$")


class ModelUnavailable(RuntimeError):
    """Weights of a configured model are not on this machine; the message says where we looked and what to do."""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def tag_family(tag: str) -> str:
    """The data part of a pretrained tag: ``laion2b_s34b_b79k`` -> ``laion2b``, ``datacomp_xl_s13b_b90k`` ->
    ``datacomp_xl``."""
    parts = []
    for part in slug(tag).split("_"):
        if _TRAINING_SIZE.match(part) and parts:
            break
        parts.append(part)
    return "_".join(parts)


def clip_model_id(config: ClipModelConfig, prefix: str = "clip") -> str:
    """The name of the configured model in score fields and annotations, known without loading it."""
    if config.model_id:
        return config.model_id
    if config.smoke:
        return f"{prefix}_smoke_tiny_vit"
    if config.name.startswith("local-dir:"):
        return f"{prefix}_{slug(Path(config.name[len('local-dir:') :]).name)}"
    if config.name.startswith(HF_HUB_PREFIX):
        return f"{prefix}_{slug(config.name.rsplit('/', 1)[-1])}"
    if config.checkpoint:
        return f"{prefix}_{slug(config.name)}_{slug(Path(config.checkpoint).stem)}"
    if config.pretrained:
        return f"{prefix}_{slug(config.name)}_{tag_family(config.pretrained)}"
    return f"{prefix}_{slug(config.name)}"


def forbid_downloads() -> None:
    """Make the hub library refuse the network in this process and in the worker processes it starts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


@dataclass(frozen=True)
class HubFiles:
    """Where a model's weights live on the Hugging Face hub.

    Attributes:
        repo: The hub repository, ``ORG/NAME``.
        required: Files that must all be there (``open_clip_config.json`` for an ``hf-hub:`` model).
        weights: Candidate weights files, preferred first; the first one the repository holds is used.
    """

    repo: str
    required: tuple[str, ...]
    weights: tuple[str, ...]


def hub_files(name: str, pretrained: str | None, section: str = "clip") -> HubFiles | None:
    """The hub repository and files of ``name`` (``hf-hub:ORG/NAME``, or an open_clip name with a pretrained tag).

    ``None`` for a tag whose weights are a plain URL rather than a hub repository. Reads no disk and no network.

    Raises:
        ModelUnavailable: ``pretrained`` is not a tag open_clip knows for ``name``; the message lists the known tags.
    """
    if name.startswith(HF_HUB_PREFIX):
        return HubFiles(repo=name[len(HF_HUB_PREFIX) :], required=(HF_CONFIG_FILE,), weights=HF_WEIGHT_FILES)
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = oc_pretrained.list_pretrained_tags_by_model(name)
        raise ModelUnavailable(
            f"{section}: {pretrained!r} is not a pretrained tag of open_clip model {name!r}; known tags: "
            f"{', '.join(tags) or 'none (is the model name right?)'}"
        )
    if not cfg.get("hf_hub"):
        return None
    repo, filename = os.path.split(cfg["hf_hub"])
    names = [filename] if filename else list(HF_WEIGHT_FILES)
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return HubFiles(repo=repo, required=(), weights=tuple(names))


def how_to_provide(name: str, pretrained: str | None, section: str) -> str:
    fetch = f"unishard models fetch {name}" + (f" --pretrained {pretrained}" if pretrained else "")
    cache_key = "clip.cache_dir"  # one cache folder serves every model of a run
    return (
        "  to provide it:\n"
        f"    - on a machine with internet access run `{fetch} --cache-dir DIR`, copy DIR to this machine and add "
        f"`--set {cache_key}=DIR`;\n"
        f"    - or point to a weights file for the {name} architecture: `--set {section}.checkpoint=PATH`;\n"
        "    - or check the pipeline offline with random weights (outputs not meaningful): `--smoke-models`."
    )


def locate_weights(
    name: str, pretrained: str | None, checkpoint: str | None, cache_dir: str | None, section: str = "clip"
) -> str | None:
    """The local weights file of a model, or ``None`` for a ``local-dir:`` folder (open_clip reads it itself).

    An ``hf-hub:`` model's weights file lies beside its ``open_clip_config.json`` in the cache. Only local disk is
    read. Raises:
        ModelUnavailable: The weights are not there; the message names the model, the places looked in and how to
            provide the weights.
    """
    tagged = pretrained and not checkpoint and not name.startswith((HF_HUB_PREFIX, "local-dir:"))
    what = f"model {name}" + (f" (pretrained {pretrained})" if tagged else "")
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :])
        weights = [p for p in folder.glob("*") if p.suffix in _WEIGHT_SUFFIXES] if folder.is_dir() else []
        if (folder / "open_clip_config.json").is_file() and weights:
            return None
        raise ModelUnavailable(
            f"{section}: {what} is not available: {folder} must be a folder holding open_clip_config.json and a "
            f"weights file (.safetensors, .bin or .pth).\n{how_to_provide(name, None, section)}"
        )
    hub_repo = name.startswith(HF_HUB_PREFIX)  # the repository is the name: no tag, no checkpoint
    if checkpoint and not hub_repo:
        if Path(checkpoint).is_file():
            if problem := weights_file_problem(checkpoint):
                raise ModelUnavailable(
                    f"{section}.checkpoint: {checkpoint} {problem}, so it holds no weights for {what}: give the "
                    f"weights file again (copy or download it anew), or unset {section}.checkpoint to use a "
                    "pretrained tag"
                )
            return checkpoint
        raise ModelUnavailable(
            f"{section}: weights file {checkpoint} for {what} does not exist.\n{how_to_provide(name, None, section)}"
        )
    tag = None if hub_repo else pretrained
    if not hub_repo and not tag:
        raise ModelUnavailable(f"{section}: {what} has no weights configured.\n{how_to_provide(name, None, section)}")
    path, looked = _cached_pretrained(name, tag, cache_dir, section)
    if path:
        return path
    raise ModelUnavailable(
        f"{section}: {what} is not available on this machine.\n"
        f"  looked in: {looked}\n{how_to_provide(name, tag, section)}"
    )


_ZIP_HEAD = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SPAN = 65_557  # the end-of-central-directory record and the longest comment zip allows after it


def weights_file_problem(path: str) -> str | None:
    """What is wrong with a weights file, judged from a few bytes (never loading it), or ``None`` when it looks like
    one torch or open_clip can read: a PyTorch zip checkpoint (``torch.save``), a legacy pickle checkpoint or a
    safetensors file. A zip cut short (an interrupted copy) has no end record."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty"
    with open(path, "rb") as handle:
        head = handle.read(16)
        if head.startswith(_ZIP_HEAD):
            handle.seek(max(0, size - _ZIP_END_SPAN))
            if _ZIP_END not in handle.read():
                return "is a zip file cut short (it has no end record: an interrupted copy or download?)"
            return None
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return None  # a pickle: torch.save's legacy format
        if len(head) >= 9 and head[8:9] == b"{":
            header = int.from_bytes(head[:8], "little")
            if 8 + header > size:
                return "is a safetensors file cut short (its header runs past the end of the file)"
            handle.seek(8)
            try:
                tensors = json.loads(handle.read(header))
                end = max(
                    (entry["data_offsets"][1] for name, entry in tensors.items() if name != "__metadata__"), default=0
                )
            except (ValueError, KeyError, TypeError, IndexError):
                return "is a safetensors file whose header cannot be read"
            if 8 + header + end > size:
                return "is a safetensors file cut short (its tensors run past the end of the file)"
            return None
    shown = head[:8]
    return (
        f"is not a weights file (it starts with {shown!r}; a PyTorch checkpoint starts with a zip or pickle header, a "
        "safetensors file with its header's length and '{')"
    )


def _cached_pretrained(name: str, tag: str | None, cache_dir: str | None, section: str) -> tuple[str | None, str]:
    files = hub_files(name, tag, section)
    if files:
        from huggingface_hub import constants as hub_constants
        from huggingface_hub import try_to_load_from_cache

        looked = f"{cache_dir or hub_constants.HF_HUB_CACHE} (hub repo {files.repo}, files "
        looked += " and ".join([*files.required, " or ".join(files.weights)]) + ")"
        cached = [try_to_load_from_cache(files.repo, required, cache_dir=cache_dir) for required in files.required]
        if not all(isinstance(found, str) for found in cached):
            return None, looked
        for candidate in files.weights:
            found = try_to_load_from_cache(files.repo, candidate, cache_dir=cache_dir)
            if isinstance(found, str):
                return found, ""
        return None, looked
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(name, tag)
    folder = cache_dir or os.path.expanduser("~/.cache/clip")
    target = os.path.join(folder, os.path.basename(cfg.get("url", "")))
    return (target if os.path.isfile(target) else None), target
