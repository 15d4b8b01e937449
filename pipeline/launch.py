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
import time
import uuid
from dataclasses import dataclass

import apache_beam as beam
import grpc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PortableOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.assemble import build
from pipeline.models import check_models, models_line, models_record
from pipeline.output_folder import ForeignFiles, check_output_folder
from pipeline.profiles import PARALLEL_FROM, RunOptions, resolve_options, sized_by_user, use_the_cores
from pipeline.progress import tracked
from pipeline.report import REPORT_FILES, write_run_report
from pipeline.sdk_worker import local_runner
from pipeline.state import STAGING, commit, discard, files_under, output_lock, recover
from schemas import reasons
from schemas.config import UnishardConfig
from schemas.profile import HOW_KEYS
from transforms._io import join, write_atomic
from transforms._listing import count_items, input_kind
from transforms.books import BOOK_PROBLEMS, BOOKS, PROBLEMS
from transforms.image_store import store_folder
from transforms.incremental import CHANGES, EarlierRun, changed_content
from transforms.model_weights import ModelUnavailable
from transforms.write_audit import crossed_bounds
from transforms.write_shards import canonical_json

_LOG = logging.getLogger("unishard")
POLL_SECONDS = 10
STATE = "state.json"
VERSIONED_PACKAGES = ("unishard", "apache-beam", "pyarrow", "pillow", "imagehash", "webdataset", "pydantic", "numpy")


class RunError(RuntimeError):
    """A run that cannot start or did not finish; the message says what to do.

    Attributes:
        staging: The staging folder of a job that failed (``None`` before any job ran).
    """

    staging: str | None = None


@dataclass(frozen=True)
class RunSummary:
    output: str
    counts: dict
    seconds: float


def check_inputs(config: UnishardConfig) -> None:
    """Fail before any work when an input matches nothing (a typo in a path is the usual cause)."""
    if not config.ingest.inputs:
        raise RunError("no inputs: give --input PATH or add [[ingest.inputs]] to the config")
    for spec in [*config.ingest.inputs, *config.decontaminate.exclude]:
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


def _read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def _short(error: BaseException, keep: int = 25) -> str:
    lines = f"{type(error).__name__}: {error}".strip().rstrip(":").splitlines()
    return "\n".join(lines if len(lines) <= keep else [*lines[:5], "  ...", *lines[5 - keep :]])


def _deadline_exceeded(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def poll_state(result: PipelineResult, runner: str) -> str:
    """Follow a job by polling its state until it ends; return the final state.

    Beam's portable runners (PortableRunner, FlinkRunner, SparkRunner) give the job's state and message streams the
    ``--job_server_timeout`` deadline, so the driver loses them after that long while the job runs on.
    """
    _LOG.info("unishard: the job's state stream reached --job_server_timeout; polling the job state instead")
    seen = None
    while True:
        state = result.state
        if state != seen:
            _LOG.info("unishard: job on %s: state %s", runner, state)
            seen = state
        if PipelineState.is_terminal(state):
            return state
        time.sleep(POLL_SECONDS)


def _chatter(runner: str) -> int:
    """The level of job state lines: INFO where the job runs elsewhere (a cluster), DEBUG (``-v``) for a local one."""
    return logging.DEBUG if runner in StandardOptions.LOCAL_RUNNERS else logging.INFO


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
        _LOG.log(_chatter(runner), "unishard: job submitted to %s; state %s", runner, result.state)
        try:
            state = result.wait_until_finish()
        except Exception as error:
            if not _deadline_exceeded(error):
                raise
            state = poll_state(result, runner)
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
    _LOG.log(_chatter(runner), "unishard: job finished on %s; state %s", runner, state)
    if state not in (PipelineState.DONE, None):
        raise RunError(f"the Beam job ended in state {state}; see the runner's log above for the failing step")


def shard_samples(folder: str) -> int:
    """The samples the ``pairs`` shards under ``folder`` hold, as their ``_stats.json`` files count them."""
    matched = FileSystems.match([join(folder, "shards", "pairs", "*", "*_stats.json")])[0].metadata_list
    return sum(int(_read_json(found.path)["samples"]) for found in matched)


def check_books(staging: str, counts: dict) -> None:
    """Refuse to commit a run whose books do not add up (``transforms.books``); the message names the losses.

    Every listed input must have exactly one ledger row, and the kept rows of this run must equal the samples in
    its shards. A difference means the run lost or invented items, whatever the cause (a stage, the runner).
    """
    books_path = join(staging, "_run", BOOKS)
    if not FileSystems.exists(books_path):
        raise RunError(f"the job wrote no {books_path}: the ledger cannot be checked; nothing was committed")
    books = _read_json(books_path)
    problems = []
    if books["ledger_rows"] != counts["items"] or any(books[name] for name in PROBLEMS):
        problems.append(
            f"ingest listed {books['listed']} items and {books['carried']} ledger rows were carried from the earlier "
            f"run; the ledger has {books['ledger_rows']} rows ({counts['items']} counted) for "
            f"{books['sources_in_ledger']} sources"
        )
    for name in PROBLEMS:
        if books[name]:
            shown = "\n    ".join(books["examples"][name])
            problems.append(f"{books[name]} sources {BOOK_PROBLEMS[name]}, among them:\n    {shown}")
    kept_now = counts["by_status"].get(reasons.KEPT, 0) - books["carried_kept"]
    samples = shard_samples(staging)
    if kept_now != samples:
        problems.append(f"the ledger has {kept_now} kept rows from this run, but its shards hold {samples} samples")
    if problems:
        raise RunError(
            "the run's books do not add up; nothing was committed:\n  "
            + "\n  ".join(problems)
            + f"\nThe staged output is in {staging}. This is a bug (in a stage or in the runner): please report it "
            "with the command line and the runner's log"
        )


def check_writable(output: str) -> None:
    """Fail before any work when the output folder cannot be written, naming it and the reason."""
    if "://" in output:
        return
    probe = os.path.join(output, f".unishard-write-test-{uuid.uuid4().hex}")
    try:
        os.makedirs(output, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        os.remove(probe)
    except OSError as error:
        raise RunError(
            f"cannot write to the output folder {output}: {error.strerror or error}. Choose another --output or "
            "make it writable; nothing was written"
        ) from None


def what_fingerprint(config: UnishardConfig) -> str:
    """SHA-256 of every config value that changes what a run keeps (not ``run.*`` and not profile "how" keys)."""

    def strip(node):
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key not in HOW_KEYS}
        return node

    data = config.model_dump(mode="json")
    data.pop("run", None)
    return hashlib.sha256(json.dumps(strip(data), sort_keys=True).encode()).hexdigest()


def earlier_run(output: str, config: UnishardConfig, rebuild: bool) -> EarlierRun | None:
    """The earlier run to build on, or ``None`` for a full run; refuses a kept-affecting config change."""
    state_path = join(output, "_run", STATE)
    if rebuild or not FileSystems.exists(state_path):
        return None
    state = _read_json(state_path)
    if state.get("what_sha256") != what_fingerprint(config):
        raise RunError(
            f"{output} was written with a config that keeps different things (thresholds, models, rules differ "
            f"from {join(output, '_run', 'config.json')}). An incremental run would mix both; rerun with --rebuild "
            "to reprocess everything, or choose another --output"
        )
    has_shards = bool(FileSystems.match([join(output, "shards", "pairs", "*", "*.parquet")])[0].metadata_list)
    return EarlierRun(output=output, generation=int(state["generation"]) + 1, has_shards=has_shards)


def merge_indexes(staging: str, output: str) -> set[str]:
    """Merge each staged shard index with the committed one; return the earlier shard files the commit keeps."""
    kept = {path for path in files_under(join(output, "shards")) if not path.endswith("index.json")}
    for relative in files_under(join(staging, "shards")):
        if not relative.endswith("index.json") or not FileSystems.exists(join(output, "shards", relative)):
            continue
        old, new = _read_json(join(output, "shards", relative)), _read_json(join(staging, "shards", relative))
        entries = {entry["url"]: entry for entry in [*old["shardlist"], *new["shardlist"]]}
        new["shardlist"] = [entries[url] for url in sorted(entries)]
        write_atomic(join(staging, "shards", relative), canonical_json(new) + b"\n")
    for relative in files_under(join(output, "shards")):
        if relative.endswith("index.json") and not FileSystems.exists(join(staging, "shards", relative)):
            kept.add(relative)
    return {join("shards", path) for path in kept}


def _write_run_files(
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


def _run_pipeline(
    config: UnishardConfig,
    options: RunOptions,
    runner: str,
    earlier: EarlierRun | None,
    previous: str | None,
    progress: bool,
) -> str:
    """Build and run the pipeline into a new staging folder under the output; return the folder.

    Raises:
        RunError: The job failed; its ``staging`` attribute names the folder with the partial output.
    """
    output = config.run.output
    staging = join(output, STAGING, uuid.uuid4().hex)
    mode = f"incremental run (generation {earlier.generation})" if earlier else "full run"
    inputs = f"{len(config.ingest.inputs)} input{'s' if len(config.ingest.inputs) != 1 else ''}"
    _LOG.info("unishard: %s of %s on %s into %s; models: %s", mode, inputs, runner, output, models_line(config))
    pipeline = beam.Pipeline(runner=local_runner(runner, options), options=options)
    build(pipeline, config, staging, earlier, previous)
    try:
        with tracked(pipeline, staging + ".progress", enabled=progress):
            run_job(pipeline, runner, staging)
    except RunError as error:
        error.staging = staging
        raise
    finally:
        discard(store_folder(staging))  # the shards hold the images now; a failed run needs none of them
    return staging


def run(
    config: UnishardConfig,
    beam_args: list[str],
    config_text: str = "",
    *,
    report: bool = True,
    progress: bool = True,
    rebuild: bool = False,
    force: bool = False,
) -> RunSummary:
    """Run the pipeline described by ``config`` with Beam options from ``beam_args``; return the counts.

    ``progress`` shows live progress while the job runs; ``report`` writes ``OUT/report/`` after the commit. When
    ``OUT`` holds an earlier run with the same kept-affecting config, only new content is processed (incremental);
    ``rebuild`` reprocesses everything. ``OUT`` must be unishard's (``pipeline.output_folder``) unless ``force``;
    files unishard did not write are never deleted or replaced, forced or not.

    Raises:
        ForeignOutput: ``OUT`` holds files unishard did not write and ``force`` is not set (before any work).
        RunError: Inputs missing, the job failed, too many items failed, or the commit would replace a foreign file.
    """
    check_inputs(config)
    try:
        check_models(config)
    except ModelUnavailable as error:
        raise RunError(str(error)) from None
    output = config.run.output
    check_output_folder(output, force)
    check_writable(output)
    options = RunOptions(beam_args)
    runner = resolve_options(options)
    if not sized_by_user(beam_args):
        listed = sum(count_items(spec, PARALLEL_FROM) for spec in config.ingest.inputs)
        if workers := use_the_cores(options, beam_args, listed, os.cpu_count()):
            _LOG.info(
                "unishard: %d or more inputs: %d worker processes, one per core (--direct_num_workers=1 runs in one "
                "process)",
                PARALLEL_FROM,
                workers,
            )
    with output_lock(output):
        for message in recover(output):
            _LOG.info("unishard: %s", message)
        earlier = earlier_run(output, config, rebuild)
        ledger = FileSystems.match([join(output, "ledger", "part-*.parquet")])[0].metadata_list
        previous = output if ledger and FileSystems.exists(join(output, "_run", STATE)) else None
        started = time.monotonic()
        try:
            staging = _run_pipeline(config, options, runner, earlier, previous, progress)
        except RunError as error:
            if earlier is None or not (changed := changed_content(error)):
                raise
            _LOG.warning(
                "unishard: %s; an incremental run cannot take an old sample out of its shard, so the whole output is "
                "rebuilt and the new content replaces it (the ledger's detail names the old key as replaces_key)",
                changed,
            )
            discard(error.staging)
            earlier = None
            staging = _run_pipeline(config, options, runner, None, previous, progress)
        counts = _read_json(join(staging, "_run", "counts.json"))
        check_books(staging, counts)
        failed = counts["by_status"].get("failed", 0)
        if counts["items"] and failed / counts["items"] > config.run.max_failure_ratio:
            raise RunError(
                f"{failed} of {counts['items']} items failed, above run.max_failure_ratio="
                f"{config.run.max_failure_ratio}; nothing was committed. The failed rows are in "
                f"{join(staging, 'ledger')} (status 'failed', detail has the error)"
            )
        seconds = time.monotonic() - started
        if earlier and _read_json(join(staging, "_run", CHANGES))["changed_rows"] == 0:
            # every ledger row as before (an undecodable file read again and rejected again is no change):
            # the shards and side outputs would be too, so nothing is committed
            _LOG.info("unishard: no new, renamed, removed or failed items since the last run; %s is unchanged", output)
            discard(staging)
            return RunSummary(output=output, counts=counts, seconds=seconds)
        _write_run_files(staging, config, earlier, runner, beam_args, seconds, config_text)
        keep = set()
        if earlier:
            keep = merge_indexes(staging, output)
        try:
            commit(staging, output, keep=keep, reserved=REPORT_FILES)
        except ForeignFiles as error:
            raise RunError(f"{error}. The staged output is in {staging}") from None
        except OSError as error:
            raise RunError(f"committing the output to {output} failed: {error}. Rerun to finish the commit") from error
    if report:
        write_run_report(output)
    if config.audit.fail_on_bounds and (crossed := crossed_bounds(output)):
        raise RunError(
            f"the audit crossed {len(crossed)} bound(s) and audit.fail_on_bounds (--fail-on-audit) is set; the output "
            f"was committed, see {join(output, 'audit', 'audit.json')}:\n  " + "\n  ".join(crossed)
        )
    return RunSummary(output=output, counts=counts, seconds=seconds)
