"""Evaluation items: answers from the named metadata field, generation prompts, and the choices of a question."""

import dataclasses

from PIL import Image

from schemas.config.eval_set import EvalQuestion, EvalSetConfig
from schemas.records.samples import Sample
from tests.transforms.model_samples import make_sample
from transforms.eval_items import (
    MAX_CHOICES,
    answer_text,
    answers_of,
    items_of,
    single_answer_questions,
    with_choices,
)


def _sample(key: str, metadata: dict, *, text: str = "") -> Sample:
    sample = make_sample(Image.new("RGB", (8, 8)), key, metadata.get("domain", "factory"), metadata, text, "title")
    return dataclasses.replace(sample, key=key, split="test", text_source="title" if text else "")


def test_answer_text_joins_lists_collapses_spaces_and_refuses_mappings_and_booleans():
    assert answer_text("  dark   green ") == "dark green"
    assert answer_text(["red", "", ["blue", None], 3]) == "red, blue, 3"
    assert [answer_text(value) for value in ({"a": 1}, True, None, "")] == ["", "", "", ""]
    assert answer_text(2.5) == "2.5"


def test_answers_of_pairs_each_answered_question_with_its_answer():
    questions = [
        EvalQuestion(field="label", question="Which defect?", domains=["factory"]),
        EvalQuestion(field="color", question="Which colour?"),
    ]
    factory = _sample("a1", {"label": "dent", "color": "red"})
    marketing = _sample("b2", {"label": "dent", "color": "", "domain": "marketing"})
    assert answers_of(factory, questions) == [
        (("Which defect?", "label"), "dent"),
        (("Which colour?", "color"), "red"),
    ]
    assert answers_of(marketing, questions) == []


def test_answers_come_from_the_named_metadata_field_and_questions_respect_domains():
    questions = EvalSetConfig().questions
    factory = _sample("a1", {"label": "scratches", "domain": "factory", "color": ""})
    marketing = _sample(
        "b2",
        {"label": "ignored here", "category": "apparel", "color": " dark  green ", "domain": "marketing"},
        text="Classic t-shirt in green",
    )
    (understanding,) = items_of(factory, questions, generation=True)
    assert (understanding.answer, understanding.answer_field) == ("scratches", "label")
    assert understanding.image == "images/a1.jpg"
    items = items_of(marketing, questions, generation=True)
    answers = {item.answer_field: item.answer for item in items if hasattr(item, "answer")}
    assert answers == {"category": "apparel", "color": "dark green"}
    (generation,) = [item for item in items if hasattr(item, "prompt")]
    assert (generation.prompt, generation.prompt_field, generation.reference_image) == (
        "Classic t-shirt in green",
        "title",
        "images/b2.jpg",
    )


def test_choices_list_every_answer_given_to_the_same_question():
    question = [EvalQuestion(field="label", question="Which defect?")]
    samples = [_sample(k, {"label": v}) for k, v in [("c1", "dent"), ("c2", "none"), ("c3", "dent")]]
    items = with_choices(item for s in samples for item in items_of(s, question, generation=False))
    assert [item.id for item in items] == ["c1-label", "c2-label", "c3-label"]
    assert all(item.choices == ["dent", "none"] for item in items)
    vocabulary = {("Which defect?", "label"): ["crack", "dent"]}
    assert with_choices(items, vocabulary)[0].choices == ["crack", "dent", "none"]
    many = {("Which defect?", "label"): [f"class-{i}" for i in range(30)]}
    assert with_choices(items, many)[0].choices == []  # an open question
    at_most = {("Which defect?", "label"): [f"class-{i}" for i in range(MAX_CHOICES - 2)]}
    assert len(with_choices(items, at_most)[0].choices) == MAX_CHOICES


def test_a_question_with_one_answer_in_the_whole_data_set_is_left_out_and_named():
    """Every product was category ``Men``: the eval asked "Which product category?" with the choices ``["Men"]``."""
    questions = [EvalQuestion(field="category", question="Which category?"), EvalQuestion(field="label", question="?")]
    samples = [_sample(k, {"category": "Men", "label": v}) for k, v in [("c1", "dent"), ("c2", "none")]]
    items = [item for s in samples for item in items_of(s, questions, generation=False)]

    assert [item.id for item in with_choices(items)] == ["c1-label", "c2-label"]
    assert single_answer_questions(items) == {"Which category? (category)": "Men"}
    vocabulary = {("Which category?", "category"): ["Men", "Women"]}  # the train split has another answer
    assert [item.choices for item in with_choices(items, vocabulary)][0] == ["Men", "Women"]
    assert single_answer_questions(items, vocabulary) == {}
