"""What every stage shares: tagged outputs for rejections and failures, and a DoFn base that routes them.

A stage's per-item logic raises ``RejectItem`` for expected bad input; any other exception on one item is caught,
counted and emitted as a ``failed`` ledger row, so one bad item never stops the run.
"""

import logging
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from schemas.records.ledger import RejectItem, failed, rejected
from transforms.image_store import StagingError

REJECTED = "rejected"
FAILED = "failed"

_LOG = logging.getLogger(__name__)


class StageFn(beam.DoFn):
    """A DoFn whose ``apply`` handles one element; rejections and failures leave through tagged outputs.

    Subclasses set ``stage`` and implement ``apply(element)``, yielding outputs for the main tag. The element must
    have ``source`` and ``domain`` attributes; ``key`` is used when present.
    """

    stage = ""

    def __init__(self):
        self._rejected = beam.metrics.Metrics.counter(self.stage, "rejected")
        self._failed = beam.metrics.Metrics.counter(self.stage, "failed")

    def apply(self, element: Any) -> Iterable[Any]:
        raise NotImplementedError

    def process(self, element: Any) -> Iterable[Any]:
        key = getattr(element, "key", None)
        try:
            # Materialise here so an exception half-way through yields nothing for the main output.
            outputs = list(self.apply(element))
        except RejectItem as reject:
            self._rejected.inc()
            yield pvalue.TaggedOutput(
                REJECTED, rejected(self.stage, reject.reason, element.source, key, element.domain, **reject.detail)
            )
            return
        except StagingError:
            raise  # the run's own storage failed: no item can be trusted, so the run stops
        except Exception as error:  # noqa: BLE001 - any per-item error becomes a ledger row, never a crashed run
            self._failed.inc()
            _LOG.warning("%s failed on %s: %s: %s", self.stage, element.source, type(error).__name__, error)
            yield pvalue.TaggedOutput(FAILED, failed(self.stage, element.source, error, key, element.domain))
            return
        yield from outputs


def apply_stage(pcoll: beam.PCollection, label: str, fn: StageFn) -> tuple[Any, beam.PCollection]:
    """Run ``fn`` over ``pcoll``; return its main output and one PCollection of ledger rows (rejected or failed)."""
    result = pcoll | label >> beam.ParDo(fn).with_outputs(REJECTED, FAILED, main="main")
    dropped = (result[REJECTED], result[FAILED]) | f"{label}Dropped" >> beam.Flatten()
    return result.main, dropped
