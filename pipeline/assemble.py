"""The whole dataflow on one screen: one labelled step per stage.

Every decision (deduplication, splits, documents) is made on light records, and so is everything else: normalise
writes each image once into the run's image store and samples carry its path (``transforms.image_store``), so no
image bytes cross a shuffle (ingest lists tar members by offset; incremental runs decide on content keys and read
the new items again). README's Architecture section lists the shuffles with what each moves.
"""

import functools

import apache_beam as beam

from pipeline.stage_hints import with_stage_hints
from schemas.config.unishard import UnishardConfig
from schemas.records.dedup import DuplicateCluster, fingerprint
from transforms.apply_rejections import DropRejected
from transforms.audit import AuditBias
from transforms.books import CheckBooks
from transforms.caption import Caption
from transforms.clip_filter import ClipFilter
from transforms.clip_model import load_clip
from transforms.contamination import AuditContamination
from transforms.count_changes import CountChanges
from transforms.decontaminate import Decontaminate
from transforms.document_ledger import WriteDocumentLedger
from transforms.documents import AssembleDocuments
from transforms.embed import EmbedImages
from transforms.eval_set import BuildEvalSet
from transforms.exact_dedup import DeduplicateExact
from transforms.faces import BlurFaces
from transforms.image_store import store_folder
from transforms.incremental import EarlierRun, SkipKnown
from transforms.ingest import ReadInputs
from transforms.ledger import WriteLedger
from transforms.mark_replaced import MarkReplaced
from transforms.model_weights import clip_model_id
from transforms.near_dedup import NearDeduplicate
from transforms.normalise import Normalise
from transforms.quality import FilterLowQuality
from transforms.safety import FilterUnsafe
from transforms.semantic_dedup import SemanticDeduplicate
from transforms.split import AssignSplits, ReadShippedSplits, split_names
from transforms.text import ChooseText
from transforms.write_audit import WriteAudit
from transforms.write_documents import WriteDocuments
from transforms.write_edits import WriteEditPairs
from transforms.write_shards import WriteShards


def build(
    pipeline: beam.Pipeline,
    config: UnishardConfig,
    output: str,
    earlier: EarlierRun | None = None,
    previous: str | None = None,
) -> None:
    """Add every stage of a run to ``pipeline``, writing under ``output``; ``earlier`` makes the run incremental.

    ``previous`` is the committed output a full run replaces: the ledger names the old key of every file whose
    content changed since, and samples keep the split they shipped in.
    """
    ingested = pipeline | "Ingest" >> ReadInputs(config.ingest, config.documents, config.run.output)
    known = ingested.items | "SkipKnown" >> SkipKnown(
        earlier, output, config.documents, config.shards.ledger_rows_per_part, ingested.texts
    )
    quality_side = config.quality.side if config.quality.enabled else None
    normalised = known.new | "Normalise" >> Normalise(
        config.normalise, config.near_dedup.hash_names(), store_folder(output), quality_side
    )
    texted = normalised.samples | "Text" >> ChooseText(config.text, config.caption.captioner.enabled)
    checked = texted.samples | "Quality" >> FilterLowQuality(config.quality, output, earlier and earlier.output)
    fingerprints = (
        checked.kept | "Fingerprint" >> beam.Map(fingerprint),
        known.shipped,
    ) | "WithShipped" >> beam.Flatten()
    exact = fingerprints | "ExactDedup" >> DeduplicateExact(config.exact_dedup)
    clean = exact.survivors | "Decontaminate" >> Decontaminate(
        config.decontaminate, config.normalise, config.near_dedup.hash_names(), output
    )
    comparable = (clean.survivors, known.shipped) | "WithShippedNear" >> beam.Flatten()
    near = comparable | "NearDedup" >> NearDeduplicate(
        config.near_dedup, output, samples=checked.kept, earlier=earlier and earlier.output
    )
    rejections = (exact.rejected, clean.rejected, near.rejected) | "FingerprintRejections" >> beam.Flatten()
    unique = checked.kept | "DropDuplicates" >> DropRejected(rejections)
    embed = with_stage_hints(EmbedImages(config.embed, config.clip), pipeline, "embed")
    embedded = unique | "Embed" >> embed
    semantic = embedded.samples | "SemanticDedup" >> SemanticDeduplicate(
        config.semantic_dedup, output, earlier and earlier.output
    )
    distinct = (
        embedded.samples | "DropSemanticDuplicates" >> DropRejected(semantic.rejected)
        if config.semantic_dedup.enabled
        else embedded.samples
    )
    caption = with_stage_hints(Caption(config.caption, config.clip), pipeline, "caption")
    captioned = distinct | "Caption" >> caption
    filtered = captioned.samples | "ClipFilter" >> ClipFilter(
        config.clip_filter,
        clip_model_id(config.clip),
        output,
        earlier and earlier.output,
        config.shards.ledger_rows_per_part,
    )
    faced = filtered.kept | "Faces" >> BlurFaces(config.faces, config.normalise)
    safe = faced.samples | "Safety" >> FilterUnsafe(config.safety, config.clip)
    audited = safe.samples | "Audit" >> AuditBias(
        config.audit, config.clip, inputs=ingested.items, population=embedded.samples
    )
    clusters = (near.clusters, semantic.clusters) | "DuplicateClusters" >> beam.Flatten()
    links = (
        clusters | "DuplicateLinks" >> beam.FlatMap(DuplicateCluster.links),
        near.related,
    ) | "SplitLinks" >> beam.Flatten()
    shipped_splits = pipeline | "ShippedSplits" >> ReadShippedSplits(earlier)
    documents = audited.samples | "Documents" >> AssembleDocuments(
        config.documents,
        ingested.texts,
        known.new,
        functools.partial(load_clip, config.clip),
        ingested.rejected,
        known.documents,
    )
    split = documents.samples | "Split" >> AssignSplits(
        config.split, output, links=links, shipped=shipped_splits, previous=None if earlier else previous
    )
    _ = split.samples | "EvalSet" >> BuildEvalSet(
        config.eval_set, output, split_names(config.split), config.near_dedup, config.semantic_dedup, earlier
    )
    _ = clean.found | "ContaminationAudit" >> AuditContamination(
        config.decontaminate, config.split, output, split.tokens
    )
    generation, views = (earlier.generation if earlier else 0), config.views
    written = split.samples | "WriteShards" >> WriteShards(views.shards(config.shards), output, generation=generation)
    ledger = (
        (
            ingested.rejected,
            known.carried,
            normalised.rejected,
            texted.rejected,
            checked.rejected,
            exact.rejected,
            clean.rejected,
            near.rejected,
            embedded.rejected,
            semantic.rejected,
            captioned.rejected,
            filtered.rejected,
            faced.rejected,
            safe.rejected,
            written.kept,
        )
        | "AllLedgerRows" >> beam.Flatten()
        | "MarkReplaced" >> MarkReplaced(None if earlier else previous)
    )
    _ = ledger | "CheckBooks" >> CheckBooks(output, ingested, known.carried)
    _ = ledger | "LedgerChanges" >> CountChanges(earlier, output)
    _ = audited.measures | "WriteAudit" >> WriteAudit(
        config.audit, output, ledger, audited.ranked, earlier and earlier.output, config.shards.ledger_rows_per_part
    )
    docs = split.samples | "WriteDocuments" >> WriteDocuments(
        views.docs, views.shards(config.shards, views.docs), output, documents.documents, generation
    )
    _ = split.samples | "WriteEdits" >> WriteEditPairs(
        views.edit, views.shards(config.shards, views.edit), output, generation
    )
    doc_rows = (documents.rejected, docs.ledger, known.documents) | "AllDocumentRows" >> beam.Flatten()
    _ = doc_rows | "WriteDocumentLedger" >> WriteDocumentLedger(output, config.shards.ledger_rows_per_part, ledger)
    _ = ledger | "WriteLedger" >> WriteLedger(output, config.shards.ledger_rows_per_part)
