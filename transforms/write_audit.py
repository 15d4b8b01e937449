"""Write the audit: join every item's audit records with its final ledger row, sum counts, write ``audit.json``.

Input element type: ``AuditItem`` (from ``transforms.audit.AuditBias``), plus the final ledger rows and the
neutral-query rankings as side inputs of the constructor. Every item counts once, with its groups (from the
``input`` and ``population`` points) and its final status: kept, or rejected by which stage; the ``kept`` point
adds faces, caption terms and attribute pairs of the items that were written. Only aggregate counts cross the
final combine (one count per key, see ``transforms.audit_metrics``), so the report never holds per-item data.
Output file: ``OUT/audit/audit.json`` (``schemas.audit.AuditReport``). Config section: ``audit``.
"""

import json
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam

from schemas import reasons
from schemas.audit import AuditItem, AuditReport
from schemas.config import AuditConfig
from schemas.records import LedgerRow
from transforms._io import join, write_atomic
from transforms.audit import PERSON
from transforms.audit_metrics import build_report

STAGE = "write_audit"
AUDIT_FILE = ("audit", "audit.json")


class WriteAudit(beam.PTransform):
    """Join audit records with the final ledger and write ``output/audit/audit.json``."""

    def __init__(self, config: AuditConfig, output: str, ledger: beam.PCollection, ranked: beam.PCollection):
        super().__init__()
        self._config = config
        self._output = output
        self._ledger = ledger
        self._ranked = ranked

    def expand(self, measures: beam.PCollection):
        if not self._config.enabled:
            return measures.pipeline | "Nothing" >> beam.Create([])
        counts = (
            {
                "measures": measures | "MeasureBySource" >> beam.Map(lambda m: (m.source, m)),
                "outcome": self._ledger | "OutcomeBySource" >> beam.Map(_outcome),
            }
            | "JoinOutcome" >> beam.CoGroupByKey()
            | "Contributions" >> beam.FlatMap(contributions, config=self._config)
            | "Sum" >> beam.CombinePerKey(sum)
            | "AllCounts" >> beam.combiners.ToList()
        )
        rankings = (
            self._ranked
            | "TopK" >> beam.combiners.Top.PerKey(self._config.ndkl_k)
            | "AllRankings" >> beam.combiners.ToList()
        )
        return counts | "Write" >> beam.Map(
            _write_report, rankings=beam.pvalue.AsSingleton(rankings), config=self._config, output=self._output
        )


def _outcome(row: LedgerRow) -> tuple[str, tuple[str, str]]:
    return row.source, (row.status, row.stage)


def contributions(element: tuple[str, Mapping[str, Iterable]], config: AuditConfig) -> Iterator[tuple[tuple, int]]:
    """The count keys one item adds (see ``transforms.audit_metrics``): its groups with its final status."""
    _, grouped = element
    records = {record.point: record for record in grouped["measures"]}
    outcomes = list(grouped["outcome"])
    status, stage = outcomes[0] if outcomes else ("unaccounted", "")
    yield ("items", status), 1
    groups: dict[str, tuple[str, ...]] = {}
    for point in ("input", "population"):
        if point in records:
            yield ("measured", point), 1
            groups.update(records[point].groups)
    for dim, values in groups.items():
        for value in values:
            yield ("n", dim, value), 1
            if status == reasons.KEPT:
                yield ("kept", dim, value), 1
            elif status == reasons.REJECTED:
                yield ("x", dim, value, stage), 1
    kept = records.get("kept")
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
    return path


def crossed_bounds(output: str) -> list[str]:
    """The warnings of a written ``audit/audit.json`` (empty when there is none)."""
    from apache_beam.io.filesystems import FileSystems

    path = join(output, *AUDIT_FILE)
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as handle:
        report = AuditReport.model_validate_json(handle.read())
    return [f"{warning.code}: {warning.message}" for warning in report.warnings]
