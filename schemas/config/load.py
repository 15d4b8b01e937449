"""Reading a config: the TOML file, ``--set section.key=value`` overrides, then one validation."""

import difflib
import tomllib
from pathlib import Path
from typing import Any

import pydantic

from schemas.config.unishard import UnishardConfig


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
            if spec.get("base") and "://" not in str(spec["base"]):
                spec["base"] = str((base / spec["base"]).resolve())
    exclude = data.get("decontaminate", {}).get("exclude", [])
    for index, spec in enumerate(exclude if isinstance(exclude, list) else []):
        spec = {"path": spec} if isinstance(spec, str) else spec
        if isinstance(spec, dict) and "path" in spec and "://" not in str(spec["path"]):
            spec["path"] = str((base / spec["path"]).resolve())
            spec["roots"] = [str((base / root).resolve()) for root in spec.get("roots", [])]
        exclude[index] = spec
    run = data.get("run", {})
    if isinstance(run, dict) and "output" in run and "://" not in str(run["output"]):
        run["output"] = str((base / run["output"]).resolve())
    for *section, key in _FILE_KEYS:
        table = _table(data, section)
        if key in table:
            value = table[key]
            table[key] = [_resolved(v, base) for v in value] if isinstance(value, list) else _resolved(value, base)
    for section in _MODEL_SECTIONS:
        table = _table(data, section)
        name = table.get("name")
        if isinstance(name, str) and name.startswith(_LOCAL_DIR):
            table["name"] = _LOCAL_DIR + _resolved(name[len(_LOCAL_DIR) :], base)


# Keys naming a local file or folder besides inputs, exclusions and the output, and the model sections whose
# ``name = "local-dir:PATH"`` names a folder.
_FILE_KEYS = (
    ("safety", "lexicons"),
    ("audit", "lexicon"),
    ("clip", "checkpoint"),
    ("clip", "cache_dir"),
    ("caption", "captioner", "checkpoint"),
)
_MODEL_SECTIONS = (("clip",), ("caption", "captioner"))
_LOCAL_DIR = "local-dir:"


def _table(data: dict, section: list[str] | tuple[str, ...]) -> dict:
    """The table at ``section`` of a config file's data, or an empty one (a wrong type is validation's to name)."""
    for part in section:
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data if isinstance(data, dict) else {}


def _resolved(value: Any, base: Path) -> Any:
    """``value`` resolved against ``base`` when it is a local relative path; an empty value (a packaged default),
    ``none`` (unset), an object store's address and what is not text are left as they are."""
    if not isinstance(value, str) or not value.strip() or value.strip().lower() == "none" or "://" in value:
        return value
    return str((base / value).resolve())


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(f"{outer}.")


def _describe(error: pydantic.ValidationError, origin: str, overrides: list[str] = ()) -> str:
    """One line per invalid key; a key an override set names the ``--set`` that set it, and a section's error names
    the ``--set`` given inside that section (it may or may not be the cause)."""
    lines = [f"{origin}: invalid configuration"]
    given = {".".join(parse_override(text)[0]): text for text in overrides}
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not where:  # the whole config's checks (a key naming a private field): the message names the keys
            lines += [f"  {line}" for line in message.split("\n")]
            continue
        inner = [text for key, text in given.items() if _within(key, where) and key != where]
        setter = next((text for key, text in given.items() if _within(where, key)), None)
        if setter is None and item["type"] == "extra_forbidden" and inner:
            setter = inner[0]  # an unknown section: the --set inside it made it
        shown = where
        if setter:
            shown = f"{where} (from --set {setter})"
        elif inner:
            shown = f"{where} (with --set {', --set '.join(inner)})"
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _keys_at(item["loc"][:-1]), n=1)
            hint = f"did you mean {'.'.join([*map(str, item['loc'][:-1]), close[0]])}? " if close else ""
            lines.append(f"  {shown}: unknown key ({hint}see `unishard config --schema` for the keys that exist)")
        elif item["type"] == "list_type":
            written = f'--set \'{where}=["a", "b"]\'' if setter else f'{item["loc"][-1]} = ["a", "b"]'
            lines.append(f"  {shown}: {item['msg']}, written in TOML: {written}")
        else:
            lines.append(f"  {shown}: {message}")
    return "\n".join(lines)


def _keys_at(loc: tuple) -> list[str]:
    """The keys of the config section at ``loc`` (a validation error's location without its last part)."""
    model: Any = UnishardConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            return []
    return list(model.model_fields)


def load_config(path: str | Path | None, overrides: list[str] = (), typed: list[str] | None = None) -> UnishardConfig:
    """Read, override and validate a config file.

    Args:
        path: A TOML file, or ``None`` for the defaults.
        overrides: ``section.key=value`` strings, applied in order.
        typed: The overrides a person typed as ``--set`` (the command line adds others for flags such as
            ``--fail-on-audit``): an error names these only. ``None``: all of ``overrides``.

    Raises:
        ConfigError: The file is missing or malformed, or a key or value is invalid; the message names both.
    """
    data: dict = {}
    # A key an override set says so on its own line; the command line turns flags such as --output into overrides,
    # so "with --set" here named a --set nobody typed.
    origin = "the defaults"
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
        raise ConfigError(_describe(error, origin, overrides if typed is None else typed)) from None
