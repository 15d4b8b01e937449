"""Launch a run: check inputs, run the Beam pipeline into a staging folder, then commit it to the output.

The pipeline writes everything under ``OUT/_staging/<run id>/``. Only after the job finished, and the failure ratio
read from the ledger counts is within bounds, does the launcher move the files to their final names and write
``OUT/_run/``. A killed or failed run therefore leaves its final outputs as they were.

The checks before a run and before the commit: ``pipeline.checks``; submitting and following the job:
``pipeline.job``; what ``OUT/_run/`` records and how the next run reads it: ``pipeline.run_state``.
"""

import logging
import os
import time
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.assemble import build
from pipeline.checks import (
    check_books,
    check_inputs,
    check_lexicons,
    check_stores,
    check_writable,
    replaced_note,
    unlisted_kept_warning,
)
from pipeline.job import RunError, run_job
from pipeline.models import check_models, models_line
from pipeline.output_folder import ForeignFiles, check_output_folder
from pipeline.profiles import PARALLEL_FROM, RunOptions, resolve_options, sized_by_user, use_the_cores
from pipeline.progress import tracked
from pipeline.report import REPORT_FILES, write_run_report
from pipeline.run_state import STATE, earlier_run, merge_indexes, read_json, write_run_files
from pipeline.sdk_worker import local_runner
from pipeline.state import STAGING, commit, discard, output_lock, recover
from schemas.config.unishard import UnishardConfig
from transforms._io import join, pattern
from transforms._listing import count_items
from transforms.changed_content import changed_content, rebuild_reason
from transforms.count_changes import CHANGES
from transforms.image_store import store_folder
from transforms.incremental import EarlierRun
from transforms.model_weights import ModelUnavailable
from transforms.write_audit import crossed_bounds

_LOG = logging.getLogger("unishard")


@dataclass(frozen=True)
class RunSummary:
    output: str
    counts: dict
    seconds: float


class AuditFailed(RunError):
    """The audit crossed a bound with ``audit.fail_on_bounds`` set; the output was committed (``summary``)."""

    def __init__(self, summary: RunSummary, message: str):
        super().__init__(message)
        self.summary = summary


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
            run_job(pipeline, runner, staging, output)
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
    check_stores(config)
    check_inputs(config)
    check_lexicons(config)
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
        recovered = recover(output)
        for message in recovered:
            _LOG.info("unishard: %s", message)
        finished = any(message.startswith("finished the commit") for message in recovered)
        earlier = earlier_run(output, config, rebuild)
        ledger = FileSystems.match([pattern(output, "ledger", "part-*.parquet")])[0].metadata_list
        previous = output if ledger and FileSystems.exists(join(output, "_run", STATE)) else None
        started = time.monotonic()
        try:
            staging = _run_pipeline(config, options, runner, earlier, previous, progress)
        except RunError as error:
            if earlier is None or not (changed := changed_content(error)):
                raise
            _LOG.warning("%s; %s", changed, rebuild_reason(changed))
            discard(error.staging)
            earlier = None
            staging = _run_pipeline(config, options, runner, None, previous, progress)
        counts = read_json(join(staging, "_run", "counts.json"))
        books = check_books(staging, counts)
        if warning := unlisted_kept_warning(books):
            _LOG.warning("unishard: %s", warning)
        if note := replaced_note(books):
            _LOG.warning("unishard: %s", note)
        if note := _pin_conflicts(staging):
            _LOG.warning("unishard: %s", note)
        if note := _split_moves(staging):
            _LOG.warning("unishard: %s", note)
        failed = counts["by_status"].get("failed", 0)
        if counts["items"] and failed / counts["items"] > config.run.max_failure_ratio:
            raise RunError(
                f"{failed} of {counts['items']} items failed, above run.max_failure_ratio="
                f"{config.run.max_failure_ratio}; nothing was committed. The failed rows are in "
                f"{join(staging, 'ledger')} (status 'failed', detail has the error)"
            )
        seconds = time.monotonic() - started
        if earlier and read_json(join(staging, "_run", CHANGES))["changed_rows"] == 0:
            # every ledger row as before (an undecodable file read again and rejected again is no change):
            # the shards and side outputs would be too, so nothing is committed
            _LOG.info("unishard: no new, renamed, removed or failed items since the last run; %s is unchanged", output)
            discard(staging)
            if report and (finished or not all(FileSystems.exists(join(output, name)) for name in REPORT_FILES)):
                # the run that committed this output stopped before its report (killed in or after the commit), or
                # a report was written from the half-committed output in between: it is written again
                write_run_report(output)
            summary = RunSummary(output=output, counts=counts, seconds=seconds)
            _audit_gate(config, summary)  # the output is as the last run left it, its audit too
            return summary
        write_run_files(staging, config, earlier, runner, beam_args, seconds, config_text)
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
    summary = RunSummary(output=output, counts=counts, seconds=seconds)
    _audit_gate(config, summary)
    return summary


def _pin_conflicts(staging: str) -> str:
    """A warning when samples pinned to different splits share a group: all of it went to one of them."""
    path = join(staging, "splits", "splits.json")
    found = read_json(path) if FileSystems.exists(path) else {}
    if not found.get("pin_conflicts"):
        return ""
    example = found["pin_conflict_examples"][0]
    return (
        f"{found['pin_conflicts']} split group(s) hold samples pinned to different splits, and each went whole to "
        f"one split, so some pins were overruled (group {example['anchor']}: pins {example['pins']}, went to "
        f"{example['split']}); a group is a document or a duplicate cluster: see splits/splits.json"
    )


def _split_moves(staging: str) -> str:
    """A warning naming how many samples of the output a rebuild replaced left the split they shipped in."""
    path = join(staging, "splits", "splits.json")
    found = read_json(path) if FileSystems.exists(path) else {}
    moved = found.get("moved_since_earlier") or []
    if not moved:
        return ""
    shown = ", ".join(f"{move['samples']} {move['from']} -> {move['to']}" for move in moved)
    if found.get("earlier_assignments") == "kept":
        why = (
            "each is in a group that also holds a sample shipped in or pinned to a held-out split, and a group goes "
            "whole to one split (test before validation, train last); a model trained on the earlier train split "
            "has seen the samples that left it"
        )
    else:
        why = "the split settings changed since the output was written, so its assignments were not kept"
    total = sum(move["samples"] for move in moved)
    return f"{total} sample(s) left the split they shipped in ({shown}): {why}; see splits/splits.json"


def _audit_gate(config: UnishardConfig, summary: RunSummary) -> None:
    """Fail the run when ``audit.fail_on_bounds`` (``--fail-on-audit``) is set and the output's audit crossed a
    bound; the output stays committed, so the report shows why, and the error carries the run's ``summary``."""
    output = summary.output
    if config.audit.fail_on_bounds and (crossed := crossed_bounds(output)):
        raise AuditFailed(
            summary,
            f"the audit crossed {len(crossed)} bound(s) and audit.fail_on_bounds (--fail-on-audit) is set; the output "
            f"was committed, see {join(output, 'audit', 'audit.json')}:\n  " + "\n  ".join(crossed),
        )
