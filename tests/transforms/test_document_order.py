"""Ordering a document's segments: positions, texts before images at one position, notes, repeats, placement."""

from schemas.config.documents import DocumentsConfig
from schemas.documents import DocumentImage, Segment
from schemas.records.samples import ImageInfo
from transforms.document_order import (
    MAX_TEXT_CHARS,
    TextPiece,
    bad_position,
    deduplicated,
    first_text,
    image_segments,
    order,
    place_unpositioned,
    position_of,
)

FACTS = ImageInfo(width=8, height=6, format="JPEG", mode="RGB", bytes=3)


def _image(source: str, position: float | None, **metadata) -> DocumentImage:
    return DocumentImage("k" + source, source, "d", position, "", "", "jpg", "0" * 64, FACTS, FACTS, metadata=metadata)


def test_positions_are_finite_numbers_or_none():
    assert [position_of({"position": v}, "position") for v in ("2", 3, "x", None, "nan", True)] == [
        2.0,
        3.0,
        None,
        None,
        None,
        None,
    ]


def test_positioned_segments_come_first_and_texts_precede_images_at_one_position():
    keys = {
        "image at 1": order(1.0, 1, "a"),
        "text at 1": order(1.0, 0, "z"),
        "text at 0": order(0.0, 0, "b"),
        "unpositioned text": order(None, 0, "a"),
    }
    assert sorted(keys, key=keys.get) == ["text at 0", "text at 1", "image at 1", "unpositioned text"]


def test_unpositioned_segments_follow_row_order_with_numbers_by_value():
    """Row ``f.csv#10`` came before ``f.csv#9`` (text order): an inspection record read view 1, view 10, view 2..."""
    sources = [f"/in/f.csv#{row}" for row in (10, 9, 2, 1, 11)] + ["/in/v10.jpg", "/in/v9.jpg", "/in/a.csv#3"]
    ordered = sorted(sources, key=lambda source: order(None, 1, source))
    rows = [f"/in/f.csv#{row}" for row in (1, 2, 9, 10, 11)]
    assert ordered == ["/in/a.csv#3", *rows, "/in/v9.jpg", "/in/v10.jpg"]


def test_a_position_that_is_no_number_is_named_with_a_hint_for_a_decimal_comma():
    assert bad_position({"position": "2,5"}, "position") == (
        "position '2,5' is not a number (write 2.5), so it is placed as a segment without a position"
    )
    assert bad_position({"position": "3a"}, "position").startswith("position '3a' is not a number, so")
    assert [bad_position({"position": v}, "position") for v in ("2", 3.5, None, "")] == ["", "", "", ""]


def test_the_first_field_holding_text_is_taken_cleaned_and_cut():
    assert first_text({"title": "", "body": "  Red   mug "}, ["title", "body"]) == "Red mug"
    assert first_text({}, ["title"]) == ""
    assert len(first_text({"body": "x " * MAX_TEXT_CHARS}, ["body"])) <= MAX_TEXT_CHARS


def test_an_image_s_note_follows_it_and_an_earlier_placement_travels_with_it():
    image = _image("i", 1.0, note="Scratch on the lid", placement_similarity=0.31)
    segments = image_segments(image, DocumentsConfig(image_text_fields=["note"]))
    assert [(s.kind, s.text, s.similarity) for s in segments] == [
        ("image", "", 0.31),
        ("text", "Scratch on the lid", None),
    ]


def test_empty_and_repeated_texts_are_dropped():
    image = Segment("image", image=_image("i", 1.0))
    texts = [Segment("text", text=t) for t in ("Note", "Note", "", "Other", "Note")]
    result = deduplicated([texts[0], texts[1], image, texts[2], texts[3], texts[4]])
    assert [s.text if s.kind == "text" else "<image>" for s in result] == ["Note", "<image>", "Other", "Note"]


def test_placement_says_why_it_could_not_run():
    images = [_image("i", None)]
    texts = [TextPiece("t", "d", 0.0, "A red mug.", {})]
    off = DocumentsConfig(placement={"enabled": False})
    assert place_unpositioned(images, texts, off, lambda: None) == (
        None,
        [],
        {"unpositioned": "appended in source order: documents.placement.enabled is false"},
    )
    placed, left, detail = place_unpositioned(images, [], DocumentsConfig(), lambda: None)
    assert (placed, left) == (None, []) and "no text rows" in detail["unpositioned"]
    placed, left, detail = place_unpositioned(images, texts, DocumentsConfig(), lambda: None)
    assert placed is None and "no embedding" in detail["unpositioned"]
