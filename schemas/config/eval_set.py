"""The ``[eval_set]`` section and its questions (``transforms/eval_set.py``)."""

import pydantic

from schemas.config.base import Section


class EvalQuestion(Section):
    """One understanding question whose answer is a trusted metadata field."""

    field: str
    question: str
    domains: list[str] = pydantic.Field(default_factory=list, description="Ask only in these domains; empty: all.")


def _default_questions() -> list[EvalQuestion]:
    return [
        EvalQuestion(field="label", question="Which defect class does this image show?", domains=["factory"]),
        EvalQuestion(field="category", question="Which product category does this image show?"),
        EvalQuestion(field="color", question="What is the main colour of the product?"),
        EvalQuestion(field="colour", question="What is the main colour of the product?"),
    ]


class EvalSetConfig(Section):
    """The evaluation set drawn from the held-out split (``transforms/eval_set.py``).

    Built only when splitting is on and produces ``split``. The leak check uses deduplication's own evidence and
    thresholds (``near_dedup``: pHash distance, second hash, colour signature; ``semantic_dedup.threshold`` for
    embeddings), so what dedup would call a duplicate is what counts as a leak.
    """

    enabled: bool = True
    split: str = pydantic.Field("test", description="The split the evaluation items come from.")
    questions: list[EvalQuestion] = pydantic.Field(default_factory=_default_questions)
    generation: bool = pydantic.Field(True, description="Write caption-to-image items with their reference image.")
    max_images: int = pydantic.Field(2000, gt=0, description="Images in the set at most, chosen by a hash of the key.")
    check_against: list[str] = pydantic.Field(
        default_factory=lambda: ["train"], description="Splits that must hold no copy or near copy of an eval image."
    )
    fail_on_leak: bool = pydantic.Field(True, description="Fail the run when an eval image leaks into train.")
