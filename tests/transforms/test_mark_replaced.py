"""Mark replaced: a rebuilt source whose content changed names its old key; other rows pass unchanged."""

import dataclasses
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import reasons
from schemas.records.ledger import LedgerRow, detail_json
from transforms.mark_replaced import MarkReplaced


def write_ledger(output, rows: list[LedgerRow]) -> str:
    (output / "ledger").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist([dataclasses.asdict(row) for row in rows]), output / "ledger" / "part-0.parquet"
    )
    return str(output)


def test_a_source_with_new_content_names_the_key_it_replaces_whatever_its_status(tmp_path):
    previous = write_ledger(
        tmp_path / "out",
        [
            LedgerRow("/in/a.jpg", "old", reasons.KEPT, "write_shards", "", "{}", "d"),
            LedgerRow("/in/b.jpg", "same", reasons.KEPT, "write_shards", "", "{}", "d"),
            LedgerRow("/in/c.jpg", "was", reasons.REJECTED, "quality", reasons.BLURRY, "{}", "d"),
        ],
    )
    now = [
        LedgerRow("/in/a.jpg", "new", reasons.REJECTED, "quality", reasons.BLURRY, '{"value": 0.1}', "d"),
        LedgerRow("/in/b.jpg", "same", reasons.KEPT, "write_shards", "", "{}", "d"),
        LedgerRow("/in/c.jpg", "other", reasons.KEPT, "write_shards", "", "{}", "d"),
    ]
    replaced = dataclasses.replace(now[0], detail=detail_json(value=0.1, replaces_key="old"))
    with BeamTestPipeline() as pipeline:
        marked = pipeline | beam.Create(now) | MarkReplaced(previous)
        assert_that(marked, equal_to([replaced, now[1], now[2]]), label="marked")
    assert json.loads(replaced.detail) == {"value": 0.1, "replaces_key": "old"}


def test_without_a_committed_output_the_rows_pass_unchanged():
    rows = [LedgerRow("/in/a.jpg", "k", reasons.KEPT, "write_shards", "")]
    with BeamTestPipeline() as pipeline:
        assert_that(pipeline | beam.Create(rows) | MarkReplaced(None), equal_to(rows), label="unchanged")


def test_an_old_key_still_kept_under_another_source_was_not_replaced(tmp_path):
    """Documents renumbered by a line inserted above them named keys still shipped under their next source."""
    previous = write_ledger(
        tmp_path / "out",
        [
            LedgerRow("docs#1:image0000", "k1", reasons.KEPT, "write_shards", "", "{}", "d"),
            LedgerRow("docs#2:image0000", "k2", reasons.KEPT, "write_shards", "", "{}", "d"),
        ],
    )
    now = [
        LedgerRow("docs#1:image0000", "k0", reasons.KEPT, "write_shards", "", "{}", "d"),
        LedgerRow("docs#2:image0000", "k1", reasons.KEPT, "write_shards", "", "{}", "d"),
        LedgerRow("docs#3:image0000", "k2", reasons.KEPT, "write_shards", "", "{}", "d"),
    ]
    with BeamTestPipeline() as pipeline:
        assert_that(pipeline | beam.Create(now) | MarkReplaced(previous), equal_to(now), label="unmarked")
