"""Write the audit: join every item's audit records with its final ledger row, sum counts, write ``audit.json``.

Input element type: ``AuditItem`` (from ``transforms.audit.AuditBias``), plus the final ledger rows and the
neutral-query rankings as side inputs of the constructor. Every item counts once, with its groups (from the
``input`` and ``population`` points) and its final status: kept, or rejected by which stage; the ``kept`` point
adds faces, caption terms and attribute pairs of the items that were written. Only aggregate counts cross the
final combine (one count per key, see ``transforms.audit_report``), so the report never holds per-item data.
Output file: ``OUT/audit/audit.json`` (``schemas.audit.AuditReport``). Config section: ``audit``.

An incremental run's audit covers the whole output, not only its new items. Beside ``audit.json`` a run writes the
summed counts (``audit/counts.json``), the top ``ndkl_k`` of every neutral query (``audit/rankings.json``) and, for
each item that was not kept, the count keys it added (``audit/items/``, Parquet parts spread like the ledger's: its
slices, which include perceived attributes of people when ``audit.attributes`` measures them). An incremental run
starts from the earlier counts, leaves items whose ledger row it carried unchanged as they were counted (a kept row
always is), takes out the earlier counts of rejected or failed items whose row changed (retried) or left the ledger,
counts every other item anew, and ranks its new samples together with the earlier top ``ndkl_k``. The result is
what a run over the whole output would count, except where the earlier run measured differently (a new name for
shipped content is not measured again).
"""

import json
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.audit import AuditItem, AuditReport
from schemas.config.audit import AuditConfig
from schemas.records.ledger import LedgerRow
from transforms._io import join, pattern, write_atomic
from transforms._parts import WriteParts
from transforms.audit import PERSON
from transforms.audit_report import build_report

STAGE = "write_audit"
AUDIT_FILE = ("audit", "audit.json")
RANKINGS_FILE = ("audit", "rankings.json")
COUNTS_FILE = ("audit", "counts.json")
NOT_KEPT = "not_kept"
ITEMS_FOLDER = ("audit", "items")
ITEMS_SCHEMA = pa.schema([("source", pa.string()), ("count_key", pa.string()), ("value", pa.int64())])


class WriteAudit(beam.PTransform):
    """Join audit records with the final ledger and write ``output/audit/audit.json``."""

    def __init__(
        self,
        config: AuditConfig,
        output: str,
        ledger: beam.PCollection,
        ranked: beam.PCollection,
        earlier: str | None = None,
        rows_per_part: int = 1_000_000,
    ):
        """``earlier``: the output an incremental run builds on; ``rows_per_part``: items per ``audit/items`` part."""
        super().__init__()
        self._config = config
        self._output = output
        self._ledger = ledger
        self._ranked = ranked
        self._earlier = earlier
        self._rows_per_part = rows_per_part

    def expand(self, measures: beam.PCollection):
        if not self._config.enabled:
            return measures.pipeline | "Nothing" >> beam.Create([])
        pipeline, earlier = measures.pipeline, self._earlier
        if earlier is not None and not FileSystems.exists(join(earlier, *COUNTS_FILE)):
            earlier = None  # written before per-item counts were kept: this run's items only
        joined = {
            "measures": measures | "MeasureBySource" >> beam.Map(lambda m: (m.source, m)),
            "outcome": self._ledger | "OutcomeBySource" >> beam.Map(lambda row: (row.source, row)),
        }
        ranked, earlier_totals = self._ranked, pipeline | "NoEarlierCounts" >> beam.Create([])
        if earlier is not None:
            joined["earlier_row"] = (
                pipeline
                | "ReadEarlierLedger" >> beam.io.ReadFromParquet(pattern(earlier, "ledger", "part-*.parquet"))
                | "EarlierRowBySource" >> beam.Map(lambda row: (row["source"], LedgerRow(**row)))
            )
            items = pattern(earlier, *ITEMS_FOLDER, "part-*.parquet")
            joined["earlier_counts"] = (
                pipeline | "ReadEarlierItems" >> beam.io.ReadFromParquet(items) | "EarlierCounts" >> beam.Map(_count)
                if FileSystems.match([items])[0].metadata_list
                else pipeline | "NoEarlierItems" >> beam.Create([])
            )
            earlier_output = pipeline | "EarlierOutput" >> beam.Create([earlier])
            earlier_totals = earlier_output | "EarlierTotals" >> beam.FlatMap(_earlier_totals)
            earlier_ranked = earlier_output | "EarlierRanked" >> beam.FlatMap(_earlier_ranked)
            ranked = (ranked, earlier_ranked) | "WithEarlierRanked" >> beam.Flatten()
        counted = (
            joined
            | "JoinOutcome" >> beam.CoGroupByKey()
            | "Contributions" >> beam.ParDo(_CountFn(self._config)).with_outputs(NOT_KEPT, main="counts")
        )
        _ = counted[NOT_KEPT] | "WriteItems" >> WriteParts(
            self._output, join(*ITEMS_FOLDER), ITEMS_SCHEMA, _source, _item_rows, "audit items", self._rows_per_part
        )
        counts = (
            (counted.counts, earlier_totals)
            | "WithEarlierTotals" >> beam.Flatten()
            | "Sum" >> beam.CombinePerKey(sum)
            | "NonZero" >> beam.Filter(lambda pair: pair[1] != 0)
            | "AllCounts" >> beam.combiners.ToList()
        )
        rankings = (
            ranked
            | "TopK" >> beam.combiners.Top.PerKey(self._config.ndkl_k)
            | "AllRankings" >> beam.combiners.ToList()
        )
        return counts | "Write" >> beam.Map(
            _write_report, rankings=beam.pvalue.AsSingleton(rankings), config=self._config, output=self._output
        )


class _CountFn(beam.DoFn):
    """The counts one item changes (``(count key, +-n)``), and, for an item not kept, ``(source, its count keys)``.

    An item whose row the run carried unchanged was counted before and changes nothing (a rejected or failed one
    keeps its earlier keys in ``audit/items``); an earlier rejected or failed item whose row changed or left the
    ledger gives its earlier counts back; every other item with a row is counted from this run's records.
    """

    def __init__(self, config: AuditConfig):
        self._config = config

    def process(self, element: tuple[str, Mapping[str, Iterable]]) -> Iterator:
        source, grouped = element
        outcomes = list(grouped["outcome"])
        earlier_counts = sorted(grouped.get("earlier_counts", ()))
        if outcomes and list(grouped.get("earlier_row", ())) == outcomes:
            if earlier_counts:
                yield pvalue.TaggedOutput(NOT_KEPT, (source, earlier_counts))
            return
        for key, value in earlier_counts:
            yield key, -value
        if not outcomes:
            return  # an earlier item whose row left the ledger (or a record with no row: the books check names it)
        fresh = sorted(contributions(element, self._config))
        yield from fresh
        if outcomes[0].status != reasons.KEPT:
            yield pvalue.TaggedOutput(NOT_KEPT, (source, fresh))


def contributions(element: tuple[str, Mapping[str, Iterable]], config: AuditConfig) -> Iterator[tuple[tuple, int]]:
    """The count keys one item adds (see ``transforms.audit_report``): its groups with its final status."""
    _, grouped = element
    records = {record.point: record for record in grouped["measures"]}
    outcomes = [(row.status, row.stage) for row in grouped["outcome"]]
    status, stage = outcomes[0] if outcomes else ("unaccounted", "")
    yield ("items", status), 1
    groups: dict[str, tuple[str, ...]] = {}
    for point in ("input", "population"):
        if point in records:
            yield ("measured", point), 1
            groups.update(records[point].groups)
    kept = records.get("kept")
    # Faces are detected after the population point: an image with a face shows a person whatever CLIP said there,
    # so the faces stage's rejections and the blurred kept images count against the group "person".
    face = (kept is not None and bool(kept.faces)) or any(
        row.reason == reasons.FACE_PRESENT for row in grouped["outcome"]
    )
    if face and "person" in groups:
        groups["person"] = (PERSON,)
    for dim, values in groups.items():
        for value in values:
            yield ("n", dim, value), 1
            if status == reasons.KEPT:
                yield ("kept", dim, value), 1
            elif status == reasons.REJECTED:
                yield ("x", dim, value, stage), 1
    if kept is None or status != reasons.KEPT:
        return
    yield ("measured", "kept"), 1
    yield from _kept_contributions(kept, config)


def _kept_contributions(item: AuditItem, config: AuditConfig) -> Iterator[tuple[tuple, int]]:
    groups, terms = item.groups, item.terms
    if item.model_id:
        yield ("model", item.model_id), 1
    for concept, attribute in config.skew:
        for value in groups.get(concept, ()):
            for group in groups.get(attribute, ()):
                yield ("pair", concept, value, attribute, group), 1
    yield ("captions",), 1
    for category, found in terms.items():
        for term in found:
            yield ("term", category, term), 1
    genders = [key.split(":", 1)[1] for key in terms if key.startswith("gendered:")]
    for gender in genders:
        yield ("gender", gender), 1
    for role in groups.get("occupation", ()):
        yield ("role", role), 1
        for gender in genders:
            yield ("cooc", role, gender), 1
    yield ("people", "images"), 1
    if item.faces:
        yield ("people", "with_faces"), 1
        yield ("people", "faces"), item.faces
    if groups.get("person") == (PERSON,):
        yield ("people", "with_person"), 1
        for name in config.attributes:
            for label in groups.get(name, ()):
                yield ("people_attr", name, label), 1


def report_from(counts: Iterable[tuple[tuple, int]], rankings: Iterable, config: AuditConfig) -> AuditReport:
    """Build the report from summed counts and ``((query, attribute), [(score, source, label), ...])`` rankings."""
    totals = dict(counts)
    models = sorted((-count, key[1]) for key, count in totals.items() if key[0] == "model")
    ranked = {key: [label for _, _, label in sorted(top, reverse=True)] for key, top in rankings}
    return build_report(totals, ranked, config, models[0][1] if models else None)


def _write_report(counts: list, rankings: list, config: AuditConfig, output: str) -> str:
    report = report_from(counts, rankings, config)
    path = join(output, *AUDIT_FILE)
    write_atomic(path, json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n")
    totals = [[list(key), value] for key, value in sorted(counts)]
    write_atomic(join(output, *COUNTS_FILE), json.dumps(totals, ensure_ascii=False).encode() + b"\n")
    listed = [[list(key), [list(entry) for entry in sorted(top, reverse=True)]] for key, top in sorted(rankings)]
    write_atomic(join(output, *RANKINGS_FILE), json.dumps(listed, ensure_ascii=False).encode() + b"\n")
    return path


def _source(item: tuple[str, list]) -> str:
    return item[0]


def _item_rows(item: tuple[str, list[tuple[tuple, int]]]) -> list[dict]:
    source, counted = item
    return [{"source": source, "count_key": json.dumps(key, ensure_ascii=False), "value": n} for key, n in counted]


def _count(row: dict) -> tuple[str, tuple[tuple, int]]:
    """``(source, (count key, value))`` from a row of an earlier run's ``audit/items`` part."""
    return row["source"], (_as_tuple(json.loads(row["count_key"])), row["value"])


def _earlier_totals(output: str) -> Iterator[tuple[tuple, int]]:
    with FileSystems.open(join(output, *COUNTS_FILE)) as handle:
        for key, value in json.loads(handle.read()):
            yield _as_tuple(key), value


def _earlier_ranked(output: str) -> Iterator[tuple[tuple, tuple]]:
    path = join(output, *RANKINGS_FILE)
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as handle:
        for key, top in json.loads(handle.read()):
            for entry in top:
                yield tuple(key), tuple(entry)


def _as_tuple(value):
    return tuple(_as_tuple(item) for item in value) if isinstance(value, list) else value


def crossed_bounds(output: str) -> list[str]:
    """The warnings of a written ``audit/audit.json`` (empty when there is none)."""
    path = join(output, *AUDIT_FILE)
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as handle:
        report = AuditReport.model_validate_json(handle.read())
    return [f"{warning.code}: {warning.message}" for warning in report.warnings]
