"""The ``[exact_dedup]`` section (``transforms/exact_dedup.py``)."""

from schemas.config.base import Section


class ExactDedupConfig(Section):
    enabled: bool = True
