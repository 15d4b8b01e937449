"""What the report reads from a committed output besides ``_run/``: ledger, sidecars, funnel and shard table.

``read_ledger`` reads every ledger row, ``read_sidecars`` the columns the report uses from the pairs view's sidecars,
``build_funnel`` adds the ledger up per stage, reason and domain, and ``unchecked_shards`` lists the shards from their
``_stats.json`` files alone (for ``--no-validate``). ``stage_rank`` orders stages as the dataflow runs them.

Every reader returns rows in a fixed order (the ledger by source, the sidecars by key), so what is built from them
does not depend on the order the files were listed in. An output without ledger parts or sidecars gives empty tables
with the expected columns.
"""

import posixpath
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.validate import PAIRS_VIEW, exists, list_files, read_json, shard_parts
from schemas import reasons
from schemas.report import DomainCount, Funnel, FunnelStep, ReasonCount, ShardCheck, Validation
from schemas.stages import STAGE_NAMES, WITHIN
from transforms._io import join


def stage_rank(stage: str) -> tuple[int, str]:
    """Position of a stage in the dataflow (``schemas.stages``; a module that runs inside another stage's step right
    after it); unknown stages go just before shard writing."""
    if stage in STAGE_NAMES:
        return STAGE_NAMES.index(stage), ""
    if stage in WITHIN:
        return STAGE_NAMES.index(WITHIN[stage]), stage
    return STAGE_NAMES.index("write_shards") - 1, stage


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
    "annotations",
)


def read_sidecars(output: str) -> pa.Table:
    """The sidecar columns the report uses, for every sample of the pairs view, plus its tar in ``shard``."""
    tables = []
    for path in list_files(join(output, "shards", PAIRS_VIEW), ".parquet"):
        if not posixpath.basename(path).startswith("shard-"):  # a file someone dropped there: not a shard's
            continue
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
        if status != reasons.KEPT:
            removed[stage][status] += count
    steps, remaining = [], items
    for stage in sorted(removed, key=stage_rank):
        rejected, failed = removed[stage][reasons.REJECTED], removed[stage][reasons.FAILED]
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
    counts = [
        ReasonCount(status=status, stage=stage, reason=reason, count=count)
        for (status, stage, reason), count in sorted(tally.items(), key=lambda i: (stage_rank(i[0][1]), -i[1], i[0]))
        if status != reasons.KEPT
    ]
    return Funnel(
        items=items,
        kept=by_status[reasons.KEPT],
        rejected=by_status[reasons.REJECTED],
        failed=by_status[reasons.FAILED],
        steps=steps,
        reasons=counts,
        domains=[
            DomainCount(
                domain=domain,
                items=sum(statuses.values()),
                kept=statuses[reasons.KEPT],
                rejected=statuses[reasons.REJECTED],
                failed=statuses[reasons.FAILED],
            )
            for domain, statuses in sorted(domains.items(), key=lambda i: (-sum(i[1].values()), i[0]))
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
