"""Count changes: the ledger rows an incremental run changed, written to ``_run/changes.json``."""

import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, is_empty

from schemas import reasons
from schemas.records.ledger import LedgerRow
from tests.transforms.test_mark_replaced import write_ledger
from transforms.count_changes import CHANGES, CountChanges
from transforms.incremental import EarlierRun


def test_renamed_deleted_and_changed_rows_count_and_equal_rows_do_not(tmp_path):
    same = LedgerRow("/in/a.jpg", "ka", reasons.KEPT, "write_shards", "", "{}", "d")
    gone = LedgerRow("/in/b.jpg", "kb", reasons.KEPT, "write_shards", "", "{}", "d")
    earlier = write_ledger(tmp_path / "earlier", [same, gone])
    renamed = LedgerRow("/in/b2.jpg", "kb", reasons.REJECTED, "exact_dedup", reasons.EXACT_DUPLICATE, "{}", "d")
    output = tmp_path / "out"
    with BeamTestPipeline() as pipeline:
        _ = pipeline | beam.Create([same, renamed]) | CountChanges(EarlierRun(earlier, 1, True), str(output))
    assert json.loads((output / "_run" / CHANGES).read_text()) == {"changed_rows": 2}


def test_a_run_that_is_not_incremental_writes_nothing(tmp_path):
    rows = [LedgerRow("/in/a.jpg", "k", reasons.KEPT, "write_shards", "")]
    with BeamTestPipeline() as pipeline:
        assert_that(pipeline | beam.Create(rows) | CountChanges(None, str(tmp_path)), is_empty(), label="nothing")
    assert not (tmp_path / "_run").exists()
