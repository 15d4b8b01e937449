"""A runner profile says how a job runs (runner, parallelism, workers, batch sizes, device), never what it keeps.

A profile is a TOML file, shipped in ``runners/`` or anywhere on disk::

    [profile]
    engine = "Apache Flink"
    description = "A Flink cluster runs the job through Beam's Flink job server."

    [profile.requires]            # Beam options the user must give on the command line, and what they are
    flink_master = "the Flink JobManager REST address, e.g. flink-jobmanager:8081"

    [beam]                         # Beam pipeline options, named as on the command line without the leading --
    runner = "FlinkRunner"
    parallelism = 8

    [config.embed]                 # "how" keys of the job config only: see HOW_KEYS
    batch_size = 64
    [config.clip]
    device = "cuda"

    [resource_hints.embed]         # Beam resource hints for one stage, named by its config section
    accelerator = "type:nvidia-l4;count:1;install-nvidia-driver"
    min_ram = "16GB"

Everything that decides what a run keeps (thresholds, models, inputs, outputs, shard layout) belongs to the job
config, so the same config gives the same shards on every runner. A profile that sets any of it is refused with a
``ProfileError`` naming the file and the key.
"""

from typing import Any

import pydantic

from schemas.config.load import ConfigError

HOW_KEYS = frozenset(
    {
        "batch_size",
        "min_batch_size",
        "max_batch_size",
        "max_batch_duration_secs",
        "device",
        "threads",
    }
)
"""Config keys (the last part of ``section.key``) a profile may set: speed and placement, never a decision.

They become part of the resolved config in ``OUT/_run/config.json``. A model's float results can differ in the last
bits between devices, batch sizes or thread counts (``transforms/clip_model.py``), so compare the outputs of runs
whose resolved configs are equal.
"""

UNISHARD_FLAGS = frozenset({"config", "input", "output", "set", "profile"})
"""unishard's own command-line flags, which say what a job reads and keeps: never accepted under ``[beam]``."""

TABLES = ("profile", "beam", "config", "resource_hints")

BeamValue = str | int | float | bool | list[str | int | float]
HintValue = str | int


class ProfileError(ConfigError):
    """A runner profile that cannot be used; the message names the file and the key."""


class ProfileInfo(pydantic.BaseModel):
    """What a profile is for, shown in ``runners/README.md`` and in errors."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    engine: str
    description: str
    requires: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="Beam options the user must supply (option name -> what it is), unless [beam] sets them.",
    )


class RunnerProfile(pydantic.BaseModel):
    """One way of running a job, validated; ``origin`` is the file it came from."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    name: str
    origin: str
    profile: ProfileInfo
    beam: dict[str, BeamValue] = pydantic.Field(default_factory=dict)
    config: dict[str, str | int | float | bool] = pydantic.Field(
        default_factory=dict, description="Dotted job-config keys (section.key) whose last part is in HOW_KEYS."
    )
    resource_hints: dict[str, dict[str, HintValue]] = pydantic.Field(
        default_factory=dict, description="Stage (config section name) -> Beam resource hint -> value."
    )

    def config_overrides(self) -> list[str]:
        """The ``[config]`` keys as ``--set section.key=value`` strings, read the same way as the command line."""
        return [f"{key}={_toml_value(value)}" for key, value in sorted(self.config.items())]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _refuse_what(data: dict, origin: str) -> None:
    why = "a profile sets how a job runs, never what it keeps"
    for table in data:
        if table not in TABLES:
            raise ProfileError(
                f"{origin}: {table}: not a profile table ({', '.join(TABLES)}); {why}: job settings such as "
                "thresholds, models and inputs belong in the job config"
            )
    for key in data.get("beam", {}):
        if key.lstrip("-") in UNISHARD_FLAGS:
            raise ProfileError(f"{origin}: beam.{key}: --{key.lstrip('-')} says what a job reads or keeps; {why}")
    for key in _flatten(data.get("config", {})):
        if "." not in key or key.rsplit(".", 1)[1] not in HOW_KEYS:
            allowed = ", ".join(f"*.{name}" for name in sorted(HOW_KEYS))
            raise ProfileError(
                f"{origin}: config.{key}: {why}; a profile may only set {allowed}. "
                f"Put {key} in the job config or pass --set {key}=VALUE"
            )


def parse_profile(data: dict, name: str, origin: str) -> RunnerProfile:
    """Validate a profile read from TOML.

    Raises:
        ProfileError: An unknown table or key, a "what" key (threshold, model, input...), or a bad value.
    """
    _refuse_what(data, origin)
    fields = {**data, "config": _flatten(data.get("config", {})), "name": name, "origin": origin}
    try:
        return RunnerProfile.model_validate(fields)
    except pydantic.ValidationError as error:
        lines = [f"{origin}: invalid runner profile"]
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"])
            lines.append(f"  {where}: {'unknown key' if item['type'] == 'extra_forbidden' else item['msg']}")
        raise ProfileError("\n".join(lines)) from None
