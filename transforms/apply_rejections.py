"""Apply deduplication decisions to the heavy samples in one join.

Deduplication stages decide on light ``Fingerprint`` records; this transform drops the samples they rejected.
Input: samples (``Sample``) and the rejections (``LedgerRow``) of any number of decision stages. Output: the
samples no stage rejected. The rejected rows themselves go to the ledger from the deciding stage, not from here.
This is the one shuffle that moves image bytes before shard writing.
"""

from collections.abc import Iterator

import apache_beam as beam

STAGE = "apply_rejections"


class DropRejected(beam.PTransform):
    """Keep the samples whose source appears in no rejection."""

    def __init__(self, rejections: beam.PCollection):
        super().__init__()
        self._rejections = rejections

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        return (
            {
                "samples": samples | "SampleBySource" >> beam.Map(lambda s: (s.source, s)),
                "rejected": self._rejections | "RejectionBySource" >> beam.Map(lambda row: (row.source, True)),
            }
            | "Join" >> beam.CoGroupByKey()
            | "Keep" >> beam.FlatMap(_survivors)
        )


def _survivors(element: tuple) -> Iterator:
    _, grouped = element
    if not list(grouped["rejected"]):
        yield from grouped["samples"]
