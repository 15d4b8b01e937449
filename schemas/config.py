"""The run configuration: one pydantic model per stage section, validated once on the launcher.

A config is a TOML file. Unknown keys are errors (a typo never silently falls back to a default). Relative paths in
``ingest.inputs`` and ``run.output`` resolve against the config file's folder. ``--set section.key=value`` overrides
are applied to the raw TOML before validation, so they are checked the same way.
"""

import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic


class Section(pydantic.BaseModel):
    """Base of every config section: frozen, and unknown keys are errors."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class InputSpec(Section):
    """One input: a file pattern, a manifest, or WebDataset tars.

    ``kind = "auto"`` picks ``manifest`` for ``.csv``/``.jsonl``/``.parquet``, ``webdataset`` for ``.tar``, and
    ``files`` otherwise.
    """

    path: str
    kind: Literal["auto", "files", "manifest", "webdataset"] = "auto"
    domain: str | None = None
    path_column: str = "path"
    roots: list[str] = pydantic.Field(
        default_factory=list,
        description="Folders a manifest's paths may point into; default: the manifest's own folder.",
    )


class IngestConfig(Section):
    inputs: list[InputSpec] = pydantic.Field(default_factory=list)
    default_domain: str = "unknown"
    domain_column: str = "domain"
    sidecar_extensions: list[str] = pydantic.Field(default_factory=lambda: [".json", ".txt"])


class NormaliseConfig(Section):
    max_pixels: int = pydantic.Field(
        50_000_000, gt=0, description="Images whose header claims more pixels are rejected as decompression bombs."
    )
    max_side: int = pydantic.Field(1024, gt=0, description="Longer side after resizing; images are never upscaled.")
    min_side: int = pydantic.Field(32, ge=1, description="Images whose shorter side is smaller are rejected.")
    format: Literal["jpg", "png", "webp"] = "jpg"
    quality: int = pydantic.Field(90, ge=1, le=100)
    background: tuple[int, int, int] = (255, 255, 255)
    draft: bool = pydantic.Field(True, description="Let JPEG decoding skip detail the resize would drop anyway.")


class TextConfig(Section):
    fields: list[str] = pydantic.Field(
        default_factory=lambda: ["caption", "alt_text", "title", "description", "label"],
        description="Metadata fields tried in order for a sample's text; the first non-empty one wins.",
    )
    required: bool = pydantic.Field(True, description="Reject samples with no text (reason no_text).")
    max_chars: int = pydantic.Field(2000, gt=0, description="Longer text is cut at a word boundary.")


class ExactDedupConfig(Section):
    enabled: bool = True


class ShardsConfig(Section):
    samples_per_shard: int = pydantic.Field(1000, gt=0)
    bytes_per_shard: int = pydantic.Field(512 * 1024 * 1024, gt=0)
    min_shards: int = pydantic.Field(1, ge=1, description="At least this many shards (loader workers x nodes).")
    ledger_rows_per_part: int = pydantic.Field(1_000_000, gt=0)


class RunConfig(Section):
    output: str = "out"
    max_failure_ratio: float = pydantic.Field(
        0.05, ge=0.0, le=1.0, description="The run fails when more than this share of inputs failed."
    )


class UnishardConfig(Section):
    """The whole run configuration, one section per stage."""

    run: RunConfig = RunConfig()
    ingest: IngestConfig = IngestConfig()
    normalise: NormaliseConfig = NormaliseConfig()
    exact_dedup: ExactDedupConfig = ExactDedupConfig()
    text: TextConfig = TextConfig()
    shards: ShardsConfig = ShardsConfig()


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, or kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set normalise.max_side=512")
    dotted, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return dotted.strip().split("."), value


def _apply_override(data: dict, dotted: list[str], value: Any) -> None:
    node = data
    for part in dotted[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(dotted)}: {part!r} is not a section")
    node[dotted[-1]] = value


def _resolve_paths(data: dict, base: Path) -> None:
    for spec in data.get("ingest", {}).get("inputs", []):
        if isinstance(spec, dict) and "path" in spec and "://" not in str(spec["path"]):
            spec["path"] = str((base / spec["path"]).resolve())
            spec["roots"] = [str((base / root).resolve()) for root in spec.get("roots", [])]
    run = data.get("run", {})
    if isinstance(run, dict) and "output" in run and "://" not in str(run["output"]):
        run["output"] = str((base / run["output"]).resolve())


def _describe(error: pydantic.ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (see `unishard config --schema` for the keys that exist)")
        else:
            lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> UnishardConfig:
    """Read, override and validate a config file.

    Args:
        path: A TOML file, or ``None`` for the defaults.
        overrides: ``section.key=value`` strings, applied in order.

    Raises:
        ConfigError: The file is missing or malformed, or a key or value is invalid; the message names both.
    """
    data: dict = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        _resolve_paths(data, path.parent.resolve())
    for text in overrides:
        dotted, value = parse_override(text)
        _apply_override(data, dotted, value)
        if dotted[:2] == ["run", "output"] and "://" not in str(value):
            data["run"]["output"] = str(Path(value).resolve())
    try:
        return UnishardConfig.model_validate(data)
    except pydantic.ValidationError as error:
        raise ConfigError(_describe(error, origin)) from None
