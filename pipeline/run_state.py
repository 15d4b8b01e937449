"""What a run records in ``OUT/_run/`` and how the next run reads it.

``write_run_files`` writes the resolved config, package versions, the run's state (generation and the fingerprint of
every config value that changes what is kept, ``what_fingerprint``), run details and the models used. ``earlier_run``
reads that state back to decide between an incremental and a full run; ``merge_indexes`` merges the shard indexes of
an incremental run with the committed ones.
"""

import hashlib
import importlib.metadata
import json
import platform
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipeline.job import RunError
from pipeline.models import models_record
from pipeline.state import files_under
from schemas.config.unishard import UnishardConfig
from schemas.profile import HOW_KEYS
from transforms._io import join, pattern, write_atomic
from transforms.incremental import EarlierRun
from transforms.shard_writer import canonical_json

STATE = "state.json"
VERSIONED_PACKAGES = ("unishard", "apache-beam", "pyarrow", "pillow", "imagehash", "webdataset", "pydantic", "numpy")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


# Keys that decide the run's exit code, not what it keeps: --fail-on-audit commits the same output either way.
EXIT_KEYS = (("audit", "fail_on_bounds"),)


INPUTS = "ingest.inputs"


def _kept_config(config: dict[str, Any]) -> dict[str, Any]:
    """A dumped config without ``run.*`` and ``EXIT_KEYS``."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items() if key != "run"}
    for section, key in EXIT_KEYS:
        data.get(section, {}).pop(key, None)
    return data


def what_fingerprint(config: UnishardConfig) -> str:
    """SHA-256 of every config value that changes what a run keeps (not ``run.*``, ``EXIT_KEYS`` or profile "how"
    keys)."""

    def strip(node):
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key not in HOW_KEYS}
        return node

    data = _kept_config(config.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(strip(data), sort_keys=True).encode()).hexdigest()


def _what_values(data: dict[str, Any]) -> dict[str, Any]:
    """Every value of a dumped config that changes what a run keeps, by dotted key (``clip_filter.threshold``)."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if key in HOW_KEYS:
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(_kept_config(data), "")
    return flat


def config_changes(earlier: dict[str, Any], config: UnishardConfig) -> list[str]:
    """What ``config`` keeps differently from the earlier run's (``_run/config.json``), one ``key: old -> new`` each.

    A key the earlier run's version did not have is no change while it holds its default: a key is added with the
    default that keeps what the versions before it kept. So an output stays incremental across an upgrade.
    """
    before, now = _what_values(earlier), _what_values(config.model_dump(mode="json"))
    defaults = _what_values(UnishardConfig().model_dump(mode="json"))
    inputs = _input_changes(before.pop(INPUTS, []), now.pop(INPUTS, []))
    changes = [
        f"{key}: {before[key]!r} -> {now[key]!r}" if key in before else f"{key}: (not set) -> {now[key]!r}"
        for key in sorted(now)
        if (before[key] != now[key] if key in before else key not in defaults or defaults[key] != now[key])
    ]
    return inputs + changes + [f"{key}: {before[key]!r} -> (not set)" for key in sorted(before.keys() - now.keys())]


def _input_changes(before: list[dict], now: list[dict]) -> list[str]:
    """How the inputs changed, one line per input, or none when inputs were only added after the earlier ones: an
    added input brings new items, as new files in an input folder do, and every earlier item keeps its settings."""
    if now[: len(before)] == before:
        return []
    by_path = {entry["path"]: entry for entry in now}
    lines = []
    for position, entry in enumerate(before):
        current = by_path.get(entry["path"])
        if current is None:
            lines.append(f"ingest.inputs: {entry['path']} removed (its items' samples would stay)")
        elif current != entry:
            settings = ", ".join(
                f"{key} {entry.get(key)!r} -> {current.get(key)!r}"
                for key in sorted(entry.keys() | current.keys())
                if entry.get(key) != current.get(key)
            )
            lines.append(f"ingest.inputs: {entry['path']} changed ({settings})")
        elif now.index(current) != position:
            lines.append(
                f"ingest.inputs: {entry['path']} moved from place {position + 1} to {now.index(current) + 1} (a file "
                "two inputs list takes the first one's settings)"
            )
    return lines or ["ingest.inputs: earlier inputs changed order"]


def earlier_run(output: str, config: UnishardConfig, rebuild: bool) -> EarlierRun | None:
    """The earlier run to build on, or ``None`` for a full run; refuses a kept-affecting config change."""
    state_path = join(output, "_run", STATE)
    if rebuild or not FileSystems.exists(state_path):
        return None
    state = read_json(state_path)
    if state.get("what_sha256") != what_fingerprint(config):
        recorded = join(output, "_run", "config.json")
        changes = config_changes(read_json(recorded), config) if FileSystems.exists(recorded) else [f"no {recorded}"]
        if changes:
            shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
            raise RunError(
                f"{output} was written with a config that keeps different things ({shown}; from {recorded}). An "
                "incremental run would mix both; rerun with --rebuild to reprocess everything, or choose another "
                "--output"
            )
    if not FileSystems.match([pattern(output, "ledger", "part-*.parquet")])[0].metadata_list:
        # An output of a run that listed nothing, written before such a run wrote an empty ledger part.
        return None
    has_shards = bool(FileSystems.match([pattern(output, "shards", "pairs", "*", "shard-*.parquet")])[0].metadata_list)
    return EarlierRun(output=output, generation=int(state["generation"]) + 1, has_shards=has_shards)


def merge_indexes(staging: str, output: str) -> set[str]:
    """Merge each staged shard index with the committed one; return the earlier shard files the commit keeps."""
    kept = {path for path in files_under(join(output, "shards")) if not path.endswith("index.json")}
    for relative in files_under(join(staging, "shards")):
        if not relative.endswith("index.json") or not FileSystems.exists(join(output, "shards", relative)):
            continue
        old, new = read_json(join(output, "shards", relative)), read_json(join(staging, "shards", relative))
        entries = {entry["url"]: entry for entry in [*old["shardlist"], *new["shardlist"]]}
        new["shardlist"] = [entries[url] for url in sorted(entries)]
        write_atomic(join(staging, "shards", relative), canonical_json(new) + b"\n")
    for relative in files_under(join(output, "shards")):
        if relative.endswith("index.json") and not FileSystems.exists(join(staging, "shards", relative)):
            kept.add(relative)
    return {join("shards", path) for path in kept}


def write_run_files(
    staging: str,
    config: UnishardConfig,
    earlier: EarlierRun | None,
    runner: str,
    beam_args: list[str],
    seconds: float,
    config_text: str,
) -> None:
    """Write ``_run/`` into the staging folder so it is committed together with the output it describes."""
    run_dir = join(staging, "_run")
    resolved = config.model_dump(mode="json")
    state = {"generation": earlier.generation if earlier else 0, "what_sha256": what_fingerprint(config)}
    run_info = {
        "runner": runner,
        "beam_args": beam_args,
        "wall_seconds": round(seconds, 3),
        "config_sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest(),
        "source_config": config_text,
        "incremental": earlier is not None,
    }
    for name, data in (
        ("config.json", resolved),
        ("versions.json", versions()),
        (STATE, state),
        ("run.json", run_info),
        ("models.json", models_record(config)),
    ):
        write_atomic(join(run_dir, name), json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
