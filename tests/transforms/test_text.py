"""Text: the first non-empty configured field, cleaned, through a real run; shards read back with webdataset."""

import json

import pytest

from schemas import reasons
from schemas.records.ledger import RejectItem
from tests.helpers import make_photo, write_sidecar


def test_each_sample_gets_its_first_non_empty_field_as_clean_plain_text(tmp_path, run):
    folder = tmp_path / "photos"
    folder.mkdir()
    metadata = {
        "html": {"description": "<p>Soft <b>organic cotton</b> shirt &amp; belt.&nbsp;Washable.</p>"},
        "control": {"title": "Steel\x00plate\x07 from\u0085an old export"},
        "order": {"caption": "  ", "title": "the title wins over an empty caption", "label": "scratch"},
        "labels": {"label": ["scratch", "", "dent", None]},
        "long": {"title": "word " * 30},
        "blank": {"title": " \n\t ", "label": []},
        "measures": {"title": "Scratch width < 0.2 mm, length > 3 mm"},
        "comment": {"title": "<!-- exported --><STYLE>p {margin: 0}</style><div\nclass='x'>Coil</div>"},
    }
    for seed, (name, fields) in enumerate(metadata.items()):
        make_photo(200, 160, seed=120 + seed).save(folder / f"{name}.jpg")
        write_sidecar(folder / f"{name}.jpg", **fields)

    out = run([folder], text={"max_chars": 40}, quality={"enabled": False})

    rows = out.ledger_by_name()
    assert (rows["blank.jpg"]["stage"], rows["blank.jpg"]["reason"]) == ("text", reasons.NO_TEXT)
    # What the text stage chose, as the caption stage records it (the shard's caption is that stage's own pick).
    records = [json.loads(sample["json"]) for sample in out.samples()]
    chosen = {
        record["source"].rsplit("/", 1)[-1]: record["annotations"]["caption"]["source_text"] for record in records
    }
    assert {name: (text["text"], text["source"]) for name, text in chosen.items()} == {
        "html.jpg": ("Soft organic cotton shirt & belt.", "metadata.description"),  # cut at a space within 40
        "control.jpg": ("Steel plate from an old export", "metadata.title"),
        "order.jpg": ("the title wins over an empty caption", "metadata.title"),
        "labels.jpg": ("scratch, dent", "metadata.label"),
        "long.jpg": ("word word word word word word word word", "metadata.title"),
        "measures.jpg": ("Scratch width < 0.2 mm, length > 3 mm", "metadata.title"),  # was "Scratch width 3 mm"
        "comment.jpg": ("Coil", "metadata.title"),
    }
    assert chosen["control.jpg"]["raw"] == "Steel\x00plate\x07 from\x85an old export"  # the metadata as given


def test_a_field_holding_an_object_is_not_text_and_a_dotted_field_names_one_of_its_keys(tmp_path, run):
    """A catalogue export's localised ``{"title": {"en": ..., "de": ...}}`` became the caption
    ``{'en': 'Red mug', 'de': 'Rote Tasse'}``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    metadata = {
        "localised": {"title": {"de": "Rote Tasse", "en": "Red mug on a white table"}},
        "nested": {"product": {"name": {"en": "Steel coil, grade B"}}},
        "labels": {"label": ["scratch", {"code": 7}, ["dent"], "rust"]},
        "both": {"title": "A plain title", "product": {"name": {"en": "the dotted field comes first"}}},
    }
    for seed, (name, fields) in enumerate(metadata.items()):
        make_photo(200, 160, seed=130 + seed).save(folder / f"{name}.jpg")
        write_sidecar(folder / f"{name}.jpg", **fields)

    fields = ["product.name.en", "title.en", "label"]
    out = run([folder], text={"fields": fields}, quality={"enabled": False})
    records = {
        json.loads(sample["json"])["source"].rsplit("/", 1)[-1]: json.loads(sample["json"]) for sample in out.samples()
    }
    chosen = {name: record["annotations"]["caption"]["source_text"] for name, record in records.items()}
    assert {name: (text["text"], text["source"], text["raw"]) for name, text in chosen.items()} == {
        "localised.jpg": ("Red mug on a white table", "metadata.title.en", "Red mug on a white table"),
        "nested.jpg": ("Steel coil, grade B", "metadata.product.name.en", "Steel coil, grade B"),
        "labels.jpg": ("scratch, rust", "metadata.label", ["scratch", {"code": 7}, ["dent"], "rust"]),
        "both.jpg": ("the dotted field comes first", "metadata.product.name.en", "the dotted field comes first"),
    }

    undotted = run([folder], output=tmp_path / "plain", text={"fields": ["title"]}, quality={"enabled": False})
    rows = undotted.ledger_by_name()
    assert rows["localised.jpg"]["reason"] == reasons.NO_TEXT
    message = json.loads(rows["localised.jpg"]["detail"])["message"]
    assert "title holds an object with keys de, en: name one, as text.fields = ['title.de']" in message
    assert undotted.texts_by_name() == {"both.jpg": "A plain title"}


def test_a_no_text_rejection_names_the_keys_that_hold_words_and_its_advice_keeps_them(tmp_path, run):
    # A Hugging Face captioning folder: metadata.jsonl rows of file_name and text (diffusers' default caption column).
    folder = tmp_path / "captions"
    folder.mkdir()
    rows = [
        {"file_name": "0001.jpg", "text": "a welded seam on a steel pipe", "sku": "PIPE-0001", "sha": "4ca697fe47"},
        {"file_name": "0002.jpg", "text": "two bolts on a grey flange", "sku": "FL-22", "sha": "9f3e2ab1c0"},
    ]
    for seed, row in enumerate(rows):
        make_photo(200, 160, seed=140 + seed).save(folder / row["file_name"])
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    out = run([folder], quality={"enabled": False})
    message = json.loads(out.ledger_by_name()["0001.jpg"]["detail"])["message"]
    assert "its metadata has words under 'text':" in message and "'sku'" not in message and "'sha'" not in message
    advice = message.split("--set '", 1)[1].split("'", 1)[0]
    assert advice == 'text.fields=["text"]'

    fields = json.loads(advice.split("=", 1)[1])
    again = run([folder], output=tmp_path / "again", text={"fields": fields}, quality={"enabled": False})
    assert again.texts_by_name() == {row["file_name"]: row["text"] for row in rows}


def test_a_dotted_field_reaches_into_a_list_of_objects():
    """``tags.name`` of ``{"tags": [{"name": ...}]}`` (as safety names a nested field) found nothing."""
    from transforms.text import choose_text, field_value

    metadata = {"tags": [{"name": "steel"}, {"name": "coil"}, {"id": 3}], "title": {"en": "plate"}}
    assert field_value(metadata, "tags.name") == ["steel", "coil"]
    assert field_value(metadata, "tags.id.x") is None
    assert choose_text(metadata, ["tags.name", "title.en"], 100) == ("steel, coil", "tags.name")


def test_with_the_captioner_on_an_image_without_text_is_captioned_not_rejected(tmp_path, run):
    """The README says the captioner's caption is text enough, yet text-less images were rejected no_text before it."""
    from open_clip import coca_model

    if not coca_model._has_transformers:
        pytest.skip("needs the captioner extra: pip install -e '.[captioner]'")
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(2):
        make_photo(160, 128, seed=140 + seed).save(folder / f"bare{seed}.jpg")
    make_photo(160, 128, seed=150).save(folder / "titled.jpg")
    write_sidecar(folder / "titled.jpg", title="a steel plate on a bench")

    out = run([folder], caption={"captioner": {"enabled": True, "max_tokens": 6}}, quality={"enabled": False})

    assert {name: row["status"] for name, row in out.ledger_by_name().items()} == {
        "bare0.jpg": "kept",
        "bare1.jpg": "kept",
        "titled.jpg": "kept",
    }
    sources = {name: json.loads(sample["json"])["text_source"] for name, sample in out.samples_by_name().items()}
    assert sources["bare0.jpg"] == sources["bare1.jpg"] == "captioner:coca_smoke_tiny_vit"
    assert all(text for text in out.texts_by_name().values())


def test_without_the_captioner_the_no_text_rejection_says_how_to_get_text():
    from schemas.config.text import TextConfig
    from tests.transforms.model_samples import make_sample
    from transforms.text import with_text

    bare = make_sample(make_photo(32, 32), "bare")
    with pytest.raises(RejectItem) as rejected:
        with_text(bare, TextConfig())
    assert rejected.value.reason == reasons.NO_TEXT
    assert "let the captioner write one (caption.captioner.enabled=true)" in str(rejected.value)
    assert with_text(bare, TextConfig(), captioner=True).text == ""
