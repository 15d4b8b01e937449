"""The ``[semantic_dedup]`` section (``transforms/semantic_dedup.py``)."""

import pydantic

from schemas.config.base import DuplicateRules


class SemanticDedupConfig(DuplicateRules):
    """Semantic duplicates by CLIP image-embedding cosine (``transforms/semantic_dedup.py``).

    Candidates come from random-hyperplane LSH: ``tables`` tables of ``bits`` hyperplanes each. A pair at cosine
    0.95 (18 degrees) shares one table's bucket with probability 0.9^bits, so 16 tables of 12 bits find it 99.5% of
    the time; every candidate is verified on the exact cosine.
    """

    threshold: float = pydantic.Field(0.95, gt=0.0, le=1.0, description="Cosine similarity of duplicates.")
    tables: int = pydantic.Field(16, ge=1, le=64)
    bits: int = pydantic.Field(12, ge=1, le=62)
    seed: int = pydantic.Field(0, ge=0, description="Seed of the random hyperplanes (fixed: output is deterministic).")
    use_smoke_embeddings: bool = pydantic.Field(
        False,
        description="Deduplicate on embeddings of a smoke model too (its id contains 'smoke'). Random weights put "
        "distinct images at cosine 0.8-0.99, so by default such samples are left alone and counted as skipped.",
    )
