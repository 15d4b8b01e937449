"""The items of the evaluation set: what a sample's metadata answers, its generation prompt, multiple choices.

Pure functions used by ``transforms/eval_set.py``. An understanding item (``UnderstandingItem``) is an image with a
question whose answer is a trusted metadata value (``eval_set.questions``: the defect class, the product category,
the colour; ``answer_text`` cleans it), with the field the answer came from; ``with_choices`` gives it, as
``choices``, every answer that question has anywhere in the data (none when there are more than ``MAX_CHOICES``: an
open question). A generation item (``GenerationItem``) is the sample's text as a prompt with its reference image and
the field the text came from. Images are named ``images/<key>.<ext>`` under ``eval/``.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.config.eval_set import EvalQuestion
from schemas.records.samples import Sample
from schemas.splits import GenerationItem, Model, UnderstandingItem

MAX_CHOICES = 20


def answer_text(value: Any) -> str:
    """A metadata value as an answer: strings and numbers as text, lists joined; mappings are not answers."""
    if isinstance(value, (list, tuple)):
        return ", ".join(answer_text(part) for part in value if answer_text(part))
    if value is None or isinstance(value, (dict, bool)):
        return ""
    return " ".join(str(value).split())


def items_of(sample: Sample, questions: Iterable[EvalQuestion], generation: bool) -> list[Model]:
    """The understanding items the sample's metadata answers, and its generation item."""
    image = f"images/{sample.key}.{sample.image_ext}"
    items: list[Model] = []
    for question in questions:
        if question.domains and sample.domain not in question.domains:
            continue
        answer = answer_text(sample.metadata.get(question.field))
        if answer:
            items.append(
                UnderstandingItem(
                    id=f"{sample.key}-{question.field}",
                    key=sample.key,
                    source=sample.source,
                    domain=sample.domain,
                    image=image,
                    question=question.question,
                    answer=answer,
                    answer_field=question.field,
                )  # fmt: skip
            )
    if generation and sample.text.strip():
        items.append(
            GenerationItem(
                id=sample.key,
                key=sample.key,
                source=sample.source,
                domain=sample.domain,
                prompt=sample.text,
                prompt_field=sample.text_source,
                reference_image=image,
            )  # fmt: skip
        )
    return items


def answers_of(sample: Sample, questions: Iterable[EvalQuestion]) -> list[tuple[tuple[str, str], str]]:
    """``((question, field), answer)`` for every question the sample's metadata answers."""
    return answers_in(sample.domain, sample.metadata, questions)


def answers_in(
    domain: str, metadata: Mapping[str, Any], questions: Iterable[EvalQuestion]
) -> list[tuple[tuple[str, str], str]]:
    """``((question, field), answer)`` for every question a sample's ``domain`` and ``metadata`` answer (a shipped
    sample's come from its sidecar row)."""
    return [
        ((q.question, q.field), answer)
        for q in questions
        if not q.domains or domain in q.domains
        if (answer := answer_text(metadata.get(q.field)))
    ]


def _answers(
    items: list[UnderstandingItem], vocabulary: Mapping[tuple[str, str], list[str]] | None
) -> dict[tuple[str, str], set[str]]:
    """Every answer of each ``(question, field)`` the items ask: theirs and the data set's (``vocabulary``)."""
    answers: dict[tuple[str, str], set[str]] = {}
    for item in items:
        answers.setdefault((item.question, item.answer_field), set()).add(item.answer)
    for question, values in (vocabulary or {}).items():
        if question in answers:
            answers[question].update(values)
    return answers


def with_choices(
    items: Iterable[UnderstandingItem], vocabulary: Mapping[tuple[str, str], list[str]] | None = None
) -> list[UnderstandingItem]:
    """Give each item the options of a multiple-choice eval: every answer its question has across the data set
    (``vocabulary``; the eval items' own answers when absent), or none when there are more than ``MAX_CHOICES``
    (an open question). A question with one answer in the whole data set (every product of category ``Men``) cannot
    be answered wrong: its items are left out (``single_answer_questions`` names them)."""
    items = list(items)
    answers = _answers(items, vocabulary)
    return [
        item.model_copy(update={"choices": sorted(choices) if len(choices) <= MAX_CHOICES else []})
        for item in sorted(items, key=lambda item: item.id)
        for choices in [answers[(item.question, item.answer_field)]]
        if len(choices) > 1
    ]


def single_answer_questions(
    items: Iterable[UnderstandingItem], vocabulary: Mapping[tuple[str, str], list[str]] | None = None
) -> dict[str, str]:
    """``"question (field)": answer`` for each question whose items all share one answer across the data set."""
    answers = _answers(list(items), vocabulary)
    return {f"{question} ({field})": min(found) for (question, field), found in answers.items() if len(found) == 1}
