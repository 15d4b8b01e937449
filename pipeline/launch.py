"""Launch a run: check inputs, run the Beam pipeline into a staging folder, then commit it to the output.

The pipeline writes everything under ``OUT/_staging/<run id>/``. Only after the job finished, and the failure ratio
read from the ledger counts is within bounds, does the launcher move the files to their final names and write
``OUT/_run/``. A killed or failed run therefore leaves its final outputs as they were.
"""

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from pipeline.assemble import build
from pipeline.profiles import resolve_options
from pipeline.progress import tracked
from pipeline.report import write_run_report
from schemas.config import UnishardConfig
from transforms._io import join, write_atomic
from transforms.ingest import input_kind

_LOG = logging.getLogger("unishard")
FINAL_TREES = ("shards", "ledger")
VERSIONED_PACKAGES = ("unishard", "apache-beam", "pyarrow", "pillow", "imagehash", "webdataset", "pydantic", "numpy")


class RunError(RuntimeError):
    """A run that cannot start or did not finish; the message says what to do."""


@dataclass(frozen=True)
class RunSummary:
    output: str
    counts: dict
    seconds: float


def check_inputs(config: UnishardConfig) -> None:
    """Fail before any work when an input matches nothing (a typo in a path is the usual cause)."""
    if not config.ingest.inputs:
        raise RunError("no inputs: give --input PATH or add [[ingest.inputs]] to the config")
    for spec in config.ingest.inputs:
        pattern = spec.path
        if input_kind(spec) == "files" and "://" not in pattern and os.path.isdir(pattern):
            pattern = os.path.join(pattern, "**")
        matched = FileSystems.match([pattern], limits=[1])[0].metadata_list
        if not matched:
            raise RunError(f"input {spec.path!r} matches no file; check the path or pattern")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _files_under(root: str) -> list[str]:
    if "://" not in root:
        return sorted(
            os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names if ".tmp-" not in name
        )
    return sorted(m.path for m in FileSystems.match([join(root, "**")])[0].metadata_list if ".tmp-" not in m.path)


def _remove_tree(root: str) -> None:
    if "://" not in root:
        shutil.rmtree(root, ignore_errors=True)
    elif FileSystems.exists(root):
        FileSystems.delete([root])


def commit(staging: str, output: str) -> None:
    """Move every staged file to its final name, replacing the previous run's shards and ledger."""
    staged = _files_under(staging)
    for tree in FINAL_TREES:
        _remove_tree(join(output, tree))
    for path in staged:
        target = join(output, os.path.relpath(path, staging)) if "://" not in path else output + path[len(staging) :]
        if "://" not in target:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
        else:
            FileSystems.rename([path], [target])
    _remove_tree(staging)


def _read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def _short(error: BaseException, keep: int = 25) -> str:
    lines = f"{type(error).__name__}: {error}".strip().rstrip(":").splitlines()
    return "\n".join(lines if len(lines) <= keep else [*lines[:5], "  ...", *lines[5 - keep :]])


def run_job(pipeline: beam.Pipeline, runner: str, staging: str) -> None:
    """Submit the job, report its state, and wait for it to finish; a failed or cancelled job raises ``RunError``.

    Ctrl-C cancels a job still running on a cluster, so it does not run on unattended.
    """
    result = None
    try:
        try:
            result = pipeline.run()
        except Exception as error:
            if runner in StandardOptions.LOCAL_RUNNERS:
                raise  # a local runner runs the whole job inside run()
            endpoint = pipeline.options.view_as(PortableOptions).job_endpoint
            raise RunError(
                f"could not submit the job to {runner}{f' at {endpoint}' if endpoint else ''}: {_short(error)}\n"
                "Check that the runner's service is up and answers within --job_server_timeout, and its address "
                "options (--job_endpoint, --flink_master, --spark_master_url, --project, --region)"
            ) from error
        _LOG.info("unishard: job submitted to %s; state %s", runner, result.state)
        state = result.wait_until_finish()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            if result is not None and not PipelineState.is_terminal(result.state):
                _LOG.warning("unishard: interrupted; cancelling the job on %s", runner)
                result.cancel()
        raise
    except RunError:
        raise
    except Exception as error:
        raise RunError(
            f"the Beam job failed on {runner}: {_short(error)}\nNothing was committed; the partial output is in "
            f"{staging}. The runner's log above names the failing step"
        ) from error
    _LOG.info("unishard: job finished on %s; state %s", runner, state)
    if state not in (PipelineState.DONE, None):
        raise RunError(f"the Beam job ended in state {state}; see the runner's log above for the failing step")


def run(
    config: UnishardConfig, beam_args: list[str], config_text: str = "", *, report: bool = True, progress: bool = True
) -> RunSummary:
    """Run the pipeline described by ``config`` with Beam options from ``beam_args``; return the counts.

    ``progress`` shows live progress while the job runs; ``report`` writes ``OUT/report/`` after the commit.

    Raises:
        RunError: Inputs missing, the job failed, or too many items failed.
    """
    check_inputs(config)
    output = config.run.output
    staging = join(output, "_staging", uuid.uuid4().hex)
    options = PipelineOptions(beam_args)
    runner = resolve_options(options)
    _LOG.info("unishard: running on %s into %s", runner, output)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build(pipeline, config, staging)
    with tracked(pipeline, staging + ".progress", enabled=progress):
        run_job(pipeline, runner, staging)
    counts = _read_json(join(staging, "_run", "counts.json"))
    failed = counts["by_status"].get("failed", 0)
    if counts["items"] and failed / counts["items"] > config.run.max_failure_ratio:
        raise RunError(
            f"{failed} of {counts['items']} items failed, above run.max_failure_ratio={config.run.max_failure_ratio}; "
            f"nothing was committed. The failed rows are in {join(staging, 'ledger')} (status 'failed', detail "
            "has the error)"
        )
    commit(staging, output)
    seconds = time.monotonic() - started
    run_dir = join(output, "_run")
    resolved = config.model_dump(mode="json")
    write_atomic(join(run_dir, "config.json"), json.dumps(resolved, indent=2, sort_keys=True).encode() + b"\n")
    write_atomic(join(run_dir, "versions.json"), json.dumps(versions(), indent=2, sort_keys=True).encode() + b"\n")
    run_info = {
        "runner": runner,
        "beam_args": beam_args,
        "wall_seconds": round(seconds, 3),
        "config_sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest(),
        "source_config": config_text,
    }
    write_atomic(join(run_dir, "run.json"), json.dumps(run_info, indent=2, sort_keys=True).encode() + b"\n")
    if report:
        write_run_report(output)
    return RunSummary(output=output, counts=counts, seconds=seconds)
