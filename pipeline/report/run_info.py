"""What ``_run/`` says about a run: config, versions, runner, wall time and the models it used.

``run_info`` reads ``_run/config.json``, ``versions.json``, ``run.json`` and ``models.json``; a missing or unreadable
file counts as empty, so a report can still be written for a run that stopped early. Models come from ``run.json``
and ``models.json``, else from any config section naming one (``find_models``). A run counts as a smoke run (random
weights, outputs not meaningful) when any of those files says so.
"""

from collections.abc import Iterable
from typing import Any

from pipeline.validate import exists, read_json
from schemas.report import ModelInfo, RunInfo
from transforms._io import join


def run_info(output: str) -> RunInfo:
    """What ``_run/`` says about the run: config, versions, runner, wall time and the models it used."""

    def load(name: str) -> dict:
        path = join(output, "_run", name)
        try:
            loaded = read_json(path) if exists(path) else {}
        except ValueError:
            loaded = {}
        return loaded if isinstance(loaded, dict) else {}

    config, versions, run = load("config.json"), load("versions.json"), load("run.json")
    recorded = load("models.json")
    models = [*_models_from(run.get("models")), *_models_from(_model_entries(recorded))]
    models = models or find_models(config)
    smoke = (
        bool(recorded.get("smoke"))
        or recorded.get("meaningful") is False
        or bool(run.get("smoke_models"))
        or any(_truthy_smoke(k, v) for k, v in _walk(config))
        or any(_truthy_smoke(k, v) for k, v in _walk(run))
    )
    return RunInfo(
        output=output,
        runner=str(run.get("runner", "")),
        beam_args=[str(a) for a in run.get("beam_args", [])],
        wall_seconds=run.get("wall_seconds"),
        config_sha256=str(run.get("config_sha256", "")),
        smoke_models=smoke,
        models=_unique_models(models),
        versions={str(k): str(v) for k, v in versions.items()},
        config=config,
    )


def _model_entries(recorded: dict) -> dict:
    """The model sections of ``_run/models.json`` (``{"clip": {...}, "captioner": null, "smoke": true, ...}``)."""
    return {k: v for k, v in recorded.items() if isinstance(v, dict)}


def _walk(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, value
            yield from _walk(value, path)


def _truthy_smoke(path: str, value: Any) -> bool:
    return "smoke" in path.rsplit(".", 1)[-1] and value is True


_MODEL_KEYS = ("model", "model_name", "model_id", "checkpoint", "architecture", "arch")


def find_models(config: dict) -> list[ModelInfo]:
    """Models named in config sections: any section holding a ``model``-like key, with precision and device."""
    found = []
    for path, value in _walk(config):
        if not isinstance(value, dict):
            continue
        name_key = next((k for k in _MODEL_KEYS if isinstance(value.get(k), str) and value.get(k)), None)
        if name_key is None:
            continue
        name = value[name_key]
        if isinstance(value.get("pretrained"), str) and value["pretrained"]:
            name = f"{name} / {value['pretrained']}"
        found.append(
            ModelInfo(
                section=path,
                name=name,
                precision=str(value.get("precision", value.get("dtype", "")) or ""),
                device=str(value.get("device", "") or ""),
            )
        )
    return found


def _models_from(value: Any) -> list[ModelInfo]:
    items = value.items() if isinstance(value, dict) else enumerate(value or [])
    models = []
    for section, entry in items:
        if isinstance(entry, dict):
            name = entry.get("model_id") or entry.get("name") or entry.get("model") or str(section)
            models.append(
                ModelInfo(
                    section=str(entry.get("stage", section)),
                    name=str(name),
                    precision=str(entry.get("precision", "")),
                    device=str(entry.get("device", "")),
                )
            )
        elif isinstance(entry, str):
            models.append(ModelInfo(section=str(section), name=entry))
    return models


def _unique_models(models: list[ModelInfo]) -> list[ModelInfo]:
    seen, unique = set(), []
    for model in models:
        if (model.section, model.name) not in seen:
            seen.add((model.section, model.name))
            unique.append(model)
    return unique
