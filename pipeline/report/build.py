"""Build and write the report of a committed output: ``OUT/report/report.json`` and ``OUT/report/index.html``.

Reads only committed outputs: ``_run/*.json`` (config, versions, runner, wall time), the ledger (funnel, rejected
items, duplicate groups), the Parquet sidecars of the ``pairs`` view (distributions, kept samples), the tars (kept
thumbnails), ``dedup/<stage>.parquet`` and ``audit/audit.json`` when present, and the shards themselves (validation).
Rejected thumbnails are read back from the item's source while it is still readable; images rejected by a safety
stage are never shown. Every choice of items is a pure function of keys and sources, so two reports of the same
output differ only in wall time.

It writes nothing but ``OUT/report/report.json`` and ``OUT/report/index.html`` (``REPORT_FILES``), and refuses to
write over either when unishard did not write it or it lies behind a symbolic link (``pipeline.output_folder``).
``add_parser`` and ``main`` are the ``unishard report OUT`` command.
"""

import argparse
import logging
import sys
from typing import Any, TextIO

from pipeline.output_folder import ForeignFiles, describe, foreign_files, written_files
from pipeline.report.audit import warning_text
from pipeline.report.charts import distributions
from pipeline.report.data import build_funnel, read_ledger, read_sidecars, unchecked_shards
from pipeline.report.galleries import cluster_galleries, flagged_galleries, kept_gallery, rejected_galleries
from pipeline.report.page import render
from pipeline.report.run_info import run_info
from pipeline.report.thumbnails import Thumbnails
from pipeline.validate import exists, read_json, validate_output
from schemas.report import Funnel, Galleries, Report, RunInfo, Validation
from transforms._io import join, write_atomic

_LOG = logging.getLogger("unishard")
REPORT_FILES = ("report/report.json", "report/index.html")


def write_report(output: str, *, validate: bool = True, seed: int = 0) -> Report:
    """Build the report of the committed run in ``output`` and write ``report/report.json`` and ``index.html``.

    Raises:
        ForeignFiles: One of them is a file unishard did not write, or lies behind a symbolic link; nothing is written.
    """
    problems = foreign_files(output, written_files(output) or set(), list(REPORT_FILES))
    if problems:
        raise ForeignFiles(
            f"the report would write over files in {output} that unishard did not write:{describe(problems)}\n"
            "Move them out of the way and rerun `unishard report`; nothing was written"
        )
    report, thumbnails = build_report(output, validate=validate, seed=seed)
    json_path, html_path = (join(output, relative) for relative in REPORT_FILES)
    write_atomic(json_path, report.model_dump_json(indent=2).encode() + b"\n")
    write_atomic(html_path, render(report, thumbnails).encode("utf-8"))
    return report


def write_run_report(output: str) -> Report | None:
    """Write the report at the end of ``unishard run``; a failure is logged, never fatal (the run is committed)."""
    try:
        report = write_report(output)
    except Exception:  # noqa: BLE001 - the shards are committed; a report bug must not turn the run into a failure
        _LOG.exception(
            "unishard: the run finished but writing its report failed; retry with `unishard report %s`", output
        )
        return None
    _LOG.debug("unishard: report %s (%s)", join(output, "report", "index.html"), summary_line(report))
    return report


def build_report(output: str, *, validate: bool = True, seed: int = 0) -> tuple[Report, dict[str, str]]:
    """Return the report model and its thumbnails (``data:`` URIs by gallery item id)."""
    run = run_info(output)
    ledger = read_ledger(output)
    sidecar = read_sidecars(output)
    thumbs = Thumbnails(output, run.config)
    validation = validate_output(output) if validate else unchecked_shards(output)
    galleries = Galleries(
        kept=kept_gallery(sidecar, thumbs, seed),
        rejected=rejected_galleries(ledger, thumbs, seed) + flagged_galleries(sidecar, thumbs, seed),
        **cluster_galleries(output, ledger, sidecar, thumbs),
    )
    audit_path = join(output, "audit", "audit.json")
    audit = read_json(audit_path) if exists(audit_path) else None
    funnel = build_funnel(ledger)
    report = Report(
        run=run,
        funnel=funnel,
        distributions=distributions(sidecar, ledger, run.config),
        galleries=galleries,
        validation=validation,
        audit=audit if isinstance(audit, dict) else None,
        warnings=_warnings(run, funnel, validation, audit),
    )
    return report, thumbs.uris


def _warnings(run: RunInfo, funnel: Funnel, validation: Validation, audit: Any) -> list[str]:
    warnings = []
    if run.smoke_models:
        warnings.append(
            "This run used small randomly initialised smoke models: scores, captions and filters are NOT meaningful."
        )
    if funnel.failed:
        warnings.append(f"{funnel.failed} items failed with an unexpected error; see the failed rows below.")
    if not validation.ok:
        warnings.append(f"Shard validation found {len(validation.all_problems())} problems; see the shard table.")
    if isinstance(audit, dict):
        for warning in audit.get("warnings", []) or []:
            warnings.append(f"Audit: {warning_text(warning)}")
    return warnings


def summary_line(report: Report) -> str:
    """One line for the console: items kept, rejected and failed, and the shards with their validation state."""
    funnel = report.funnel
    shards = report.validation.shards if report.validation else []
    status = "not validated"
    if report.validation and any(s.checked for s in shards):
        status = "valid" if report.validation.ok else f"{len(report.validation.all_problems())} problems"
    return (
        f"{funnel.items} items, {funnel.kept} kept, {funnel.rejected} rejected, {funnel.failed} failed; "
        f"{len(shards)} shards ({status})"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``unishard report OUT [--no-validate]`` to the command line's subcommands."""
    parser = sub.add_parser("report", help="write OUT/report/index.html and report.json", allow_abbrev=False)
    parser.add_argument("output", help="a unishard output folder (the run.output of a run)")
    parser.add_argument("--no-validate", action="store_true", help="skip re-reading the shards (faster)")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``unishard report``: write the report of ``args.output`` and print where it is, with ``summary_line``.

    Returns:
        The exit code: 0, or 2 when ``args.output`` is no unishard output folder or the report would write over files
        unishard did not write (the reason goes to stderr).
    """
    out = out or sys.stdout
    output = args.output.rstrip("/") or args.output
    if not exists(join(output, "_run")) and not exists(join(output, "ledger")):
        print(f"unishard: {output} has no _run/ or ledger/: not a unishard output folder", file=sys.stderr)
        return 2
    try:
        report = write_report(output, validate=not args.no_validate)
    except ForeignFiles as error:
        print(f"unishard: {error}", file=sys.stderr)
        return 2
    out.write(f"unishard: {join(output, 'report', 'index.html')}: {summary_line(report)}\n")
    return 0
