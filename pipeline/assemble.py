"""The whole dataflow on one screen: one labelled step per stage.

Image bytes cross two shuffles: ``DropDuplicates`` (decisions made on light fingerprints meet the samples) and
``WriteShards`` (samples grouped into their shard). Everything else moves fingerprints or ledger rows.
"""

import apache_beam as beam

from schemas.config import UnishardConfig
from schemas.records import fingerprint
from transforms.apply_rejections import DropRejected
from transforms.embed import EmbedImages
from transforms.exact_dedup import DeduplicateExact
from transforms.ingest import ReadInputs
from transforms.ledger import WriteLedger
from transforms.normalise import Normalise
from transforms.text import ChooseText
from transforms.write_shards import WriteShards


def build(pipeline: beam.Pipeline, config: UnishardConfig, output: str) -> None:
    """Add every stage of a unishard run to ``pipeline``, writing under ``output``."""
    ingested = pipeline | "Ingest" >> ReadInputs(config.ingest)
    normalised = ingested.items | "Normalise" >> Normalise(config.normalise)
    texted = normalised.samples | "Text" >> ChooseText(config.text)
    fingerprints = texted.samples | "Fingerprint" >> beam.Map(fingerprint)
    exact = fingerprints | "ExactDedup" >> DeduplicateExact(config.exact_dedup)
    unique = texted.samples | "DropDuplicates" >> DropRejected(exact.rejected)
    embedded = unique | "Embed" >> EmbedImages(config.embed, config.clip)
    written = embedded.samples | "WriteShards" >> WriteShards(config.shards, output)
    ledger = (
        ingested.rejected,
        normalised.rejected,
        texted.rejected,
        exact.rejected,
        embedded.rejected,
        written.kept,
    ) | "AllLedgerRows" >> beam.Flatten()
    _ = ledger | "WriteLedger" >> WriteLedger(output, config.shards.ledger_rows_per_part)
