"""Caption candidates and the request that carries a sample through the caption stage."""

import dataclasses
from collections.abc import Iterable

from schemas.records.samples import Sample


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One possible caption and where it came from.

    Attributes:
        text: The cleaned caption.
        source: ``metadata.FIELD``, ``template:DOMAIN[i]``, ``captioner:MODEL`` or ``ocr:MODEL``.
        template: The template text, for template candidates.
    """

    text: str
    source: str
    template: str = ""


@dataclasses.dataclass(frozen=True)
class CaptionRequest:
    """A sample on its way through the caption stage with the candidates gathered so far."""

    sample: Sample
    candidates: tuple[Candidate, ...] = ()

    @property
    def source(self) -> str:
        return self.sample.source

    @property
    def domain(self) -> str:
        return self.sample.domain

    @property
    def key(self) -> str:
        return self.sample.key

    def adding(self, candidates: Iterable[Candidate]) -> "CaptionRequest":
        return dataclasses.replace(self, candidates=(*self.candidates, *candidates))
