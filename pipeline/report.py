"""``unishard report OUT/``: gather what a run kept, dropped and wrote into ``report.json`` and ``index.html``.

Reads only committed outputs: ``_run/*.json`` (config, versions, runner, wall time), the ledger (funnel, rejected
items, duplicate groups), the Parquet sidecars of the ``pairs`` view (distributions, kept samples), the tars (kept
thumbnails), ``dedup/<stage>.parquet`` and ``audit/audit.json`` when present, and the shards themselves (validation).
Rejected thumbnails are read back from the item's source while it is still readable; images rejected by a safety
stage are never shown. Every choice of items is a pure function of keys and sources, so two reports of the same
output differ only in wall time.

It writes nothing but ``OUT/report/report.json`` and ``OUT/report/index.html`` (``REPORT_FILES``), and refuses to
write over either when unishard did not write it or it lies behind a symbolic link (``pipeline.output_folder``).
"""

import argparse
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.output_folder import ForeignFiles, describe, foreign_files, written_files
from pipeline.report_galleries import Thumbnails, cluster_galleries, kept_gallery, rejected_galleries, stage_rank
from pipeline.validate import (
    PAIRS_VIEW,
    exists,
    list_files,
    read_json,
    shard_parts,
    validate_output,
)
from schemas.report import (
    DomainCount,
    Funnel,
    FunnelStep,
    Galleries,
    ModelInfo,
    ReasonCount,
    Report,
    RunInfo,
    ShardCheck,
    Validation,
)
from transforms._io import join, write_atomic

_LOG = logging.getLogger("unishard")
REPORT_FILES = ("report/report.json", "report/index.html")


def write_report(output: str, *, validate: bool = True, seed: int = 0) -> Report:
    """Build the report of the committed run in ``output`` and write ``report/report.json`` and ``index.html``.

    Raises:
        ForeignFiles: One of them is a file unishard did not write, or lies behind a symbolic link; nothing is written.
    """
    from pipeline.report_html import render

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
    from pipeline.report_charts import distributions

    run = run_info(output)
    ledger = read_ledger(output)
    sidecar = read_sidecars(output)
    thumbs = Thumbnails(output, run.config)
    validation = validate_output(output) if validate else unchecked_shards(output)
    galleries = Galleries(
        kept=kept_gallery(sidecar, thumbs, seed),
        rejected=rejected_galleries(ledger, thumbs, seed),
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


def read_ledger(output: str) -> pa.Table:
    """All ledger rows (``source, key, status, stage, reason, detail, domain, split``), sorted by source."""
    parts = list_files(join(output, "ledger"), ".parquet")
    tables = []
    for path in parts:
        with FileSystems.open(path) as handle:
            tables.append(pq.read_table(handle))
    if not tables:
        names = ("source", "key", "status", "stage", "reason", "detail", "domain", "split")
        return pa.table({name: pa.array([], pa.string()) for name in names})
    table = pa.concat_tables(tables, promote_options="default")
    return table.sort_by("source")


SIDECAR_COLUMNS = (
    "key",
    "source",
    "domain",
    "text",
    "width",
    "height",
    "image_bytes",
    "original_width",
    "original_height",
    "original_bytes",
    "scores",
)


def read_sidecars(output: str) -> pa.Table:
    """The sidecar columns the report uses, for every sample of the pairs view, plus its tar in ``shard``."""
    tables = []
    for path in list_files(join(output, "shards", PAIRS_VIEW), ".parquet"):
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            names = [name for name in SIDECAR_COLUMNS if name in parquet.schema_arrow.names]
            table = parquet.read(columns=names)
        tar = path[: -len(".parquet")] + ".tar"
        tables.append(table.append_column("shard", pa.array([tar] * table.num_rows, pa.string())))
    if not tables:
        return pa.table({"key": pa.array([], pa.string()), "shard": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default").sort_by("key")


def build_funnel(ledger: pa.Table) -> Funnel:
    """Items per stage (entered, rejected, failed, remaining), per reason and per domain, from the ledger."""
    grouped = (
        ledger.select(["status", "stage", "reason", "domain", "source"])
        .group_by(["status", "stage", "reason", "domain"])
        .aggregate([("source", "count")])
        .to_pylist()
    )
    tally: Counter = Counter()
    domains: dict[str, Counter] = defaultdict(Counter)
    by_status: Counter = Counter()
    for row in grouped:
        count = row["source_count"]
        tally[(row["status"], row["stage"], row["reason"] or "")] += count
        domains[row["domain"] or ""][row["status"]] += count
        by_status[row["status"]] += count
    items = sum(by_status.values())
    removed: dict[str, Counter] = defaultdict(Counter)
    for (status, stage, _), count in tally.items():
        if status != "kept":
            removed[stage][status] += count
    steps, remaining = [], items
    for stage in sorted(removed, key=stage_rank):
        rejected, failed = removed[stage]["rejected"], removed[stage]["failed"]
        steps.append(
            FunnelStep(
                stage=stage,
                entered=remaining,
                rejected=rejected,
                failed=failed,
                remaining=remaining - rejected - failed,
            )
        )
        remaining -= rejected + failed
    reasons = [
        ReasonCount(status=status, stage=stage, reason=reason, count=count)
        for (status, stage, reason), count in sorted(tally.items(), key=lambda i: (stage_rank(i[0][1]), -i[1], i[0]))
        if status != "kept"
    ]
    return Funnel(
        items=items,
        kept=by_status["kept"],
        rejected=by_status["rejected"],
        failed=by_status["failed"],
        steps=steps,
        reasons=reasons,
        domains=[
            DomainCount(
                domain=domain,
                items=sum(counts.values()),
                kept=counts["kept"],
                rejected=counts["rejected"],
                failed=counts["failed"],
            )
            for domain, counts in sorted(domains.items(), key=lambda i: (-sum(i[1].values()), i[0]))
        ],
    )


def unchecked_shards(output: str) -> Validation:
    """The shard table from ``_stats.json`` files alone, without reading the tars."""
    checks = []
    for path in list_files(join(output, "shards"), ".tar"):
        view, split = shard_parts(output, path)
        stats_path = path[: -len(".tar")] + "_stats.json"
        stats = read_json(stats_path) if exists(stats_path) else {}
        checks.append(
            ShardCheck(
                path=path,
                view=view,
                split=split,
                samples=int(stats.get("samples", 0)),
                bytes=int(stats.get("bytes", 0)),
                image_bytes=stats.get("image_bytes"),
                domains=stats.get("domains", {}),
                checked=False,
            )
        )
    return Validation(output=output, shards=checks, problems=[])


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
        from pipeline.report_audit import warning_text

        for warning in audit.get("warnings", []) or []:
            warnings.append(f"Audit: {warning_text(warning)}")
    return warnings


def summary_line(report: Report) -> str:
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
    parser = sub.add_parser("report", help="write OUT/report/index.html and report.json", allow_abbrev=False)
    parser.add_argument("output", help="a unishard output folder (the run.output of a run)")
    parser.add_argument("--no-validate", action="store_true", help="skip re-reading the shards (faster)")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
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
