"""Safety: private metadata fields removed, unsafe text and unsafe images rejected with reason codes."""

import dataclasses
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.config.load import ConfigError, load_config
from schemas.config.safety import SafetyConfig
from schemas.records.samples import ImageInfo, Sample
from tests.helpers import make_photo, run_job, write_sidecar
from transforms.safety import FilterUnsafe, remove_private, texts_to_check, unsafe_matcher, unsafe_text

E = np.eye(8, dtype=np.float32)


class FakeClip:
    model_id = "fake_clip"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([E[0] if text.startswith("unsafe") else E[1] for text in texts])


def _sample(source: str, text: str = "a steel sheet", embedding: np.ndarray | None = None, **metadata) -> Sample:
    info = ImageInfo(64, 64, "JPEG", "RGB", 10)
    return Sample(
        key=source.encode().hex(),
        source=source,
        path="",
        domain="factory",
        metadata=metadata,
        image=b"",
        image_ext="jpg",
        sha256="",
        pixel_sha256="",
        original=info,
        normalised=info,
        text=text,
        embedding=None if embedding is None else (embedding / np.linalg.norm(embedding)).astype(np.float16).tobytes(),
        annotations={"embedding_model": "fake_clip"} if embedding is not None else {},
    )


def test_private_fields_are_removed_case_insensitively_and_named():
    metadata, removed = remove_private(
        {"Operator": "Jane Roe", "line": "line-1", "email": "x@y"}, ["operator", "EMAIL"]
    )
    assert metadata == {"line": "line-1"}
    assert removed == ["Operator", "email"]


def test_lexicon_matches_whole_words_and_phrases_only():
    matcher = unsafe_matcher(SafetyConfig())
    assert unsafe_text([("text", "Nude heels, a wire stripper and a screw")], matcher) == {}
    assert unsafe_text([("text", "Pornography!"), ("metadata.title", "classic tee")], matcher) == {
        "text": ["pornography"]
    }
    assert unsafe_text([("text", "no child porn here")], matcher) == {"text": ["child porn"]}
    custom = unsafe_matcher(SafetyConfig(extra_terms=["Scrap Metal"], allowed_terms=["porn"]))
    assert unsafe_text([("text", "porn and scrap   metal")], custom) == {"text": ["scrap metal"]}


def test_packaged_lexicon_states_its_source_and_licence():
    from transforms._lexicon import packaged_text

    header = packaged_text("unsafe_terms.txt")[:800]
    assert "Source:" in header and "Licence: Apache-2.0" in header


def _summary(sample: Sample) -> tuple:
    scores = {name: round(value, 3) for name, value in sample.scores.items()}
    return sample.source, dict(sample.metadata), scores, dict(sample.annotations).get("safety")


def _image_detail(row) -> tuple:
    detail = json.loads(row.detail)
    return row.source, detail["threshold"], detail["score"] > 0.99


def test_rejects_unsafe_images_and_text_with_reasons_and_scores_the_rest():
    config = SafetyConfig(
        unsafe_prompts=["unsafe a", "unsafe b"], safe_prompts=["safe a", "safe b"], image_threshold=0.5
    )
    other_model = dataclasses.replace(_sample("other-model", embedding=E[1]), annotations={"embedding_model": "b"})
    samples = [
        _sample("clean", embedding=E[1] + 0.1 * E[0], operator="Jane Roe", line="line-1"),
        _sample("explicit", embedding=E[0] + 0.1 * E[1]),
        _sample("rude-title", title="what the fuck"),
        _sample("rude-operator", operator="a shit name"),  # a private field is removed before the text check
        _sample("unscored"),
        other_model,
    ]
    with BeamTestPipeline() as p:
        out = p | beam.Create(samples) | FilterUnsafe(config, model=FakeClip())
        reasons = out.rejected | "Reasons" >> beam.Map(lambda row: (row.source, row.status, row.reason))
        expected = [
            ("explicit", "rejected", "unsafe_image"),
            ("rude-title", "rejected", "unsafe_text"),
            ("other-model", "failed", "exception"),
        ]
        assert_that(reasons, equal_to(expected), label="Reasons")
        images = out.rejected | "Images" >> beam.Filter(lambda row: row.reason == "unsafe_image")
        assert_that(images | "Detail" >> beam.Map(_image_detail), equal_to([("explicit", 0.5, True)]), label="Detail")
        kept = [
            ("clean", {"line": "line-1"}, {"unsafe_fake_clip": 0.0}, {"removed_fields": ["operator"]}),
            ("rude-operator", {}, {}, {"removed_fields": ["operator"], "image": "not_scored"}),
            ("unscored", {}, {}, {"image": "not_scored"}),
        ]
        assert_that(out.samples | "Summary" >> beam.Map(_summary), equal_to(kept), label="Kept")


def test_private_fields_are_removed_at_any_depth_and_named_by_their_path():
    metadata, removed = remove_private(
        {
            "label": "scratch",
            "details": {"Inspector": "Jane Roe", "station": 4},
            "contacts": [{"email": "jr@example.com", "team": "QA"}, "front desk"],
            "EMAIL": "qa@example.com",
        },
        ["inspector", "email"],
    )
    assert metadata == {"label": "scratch", "details": {"station": 4}, "contacts": [{"team": "QA"}, "front desk"]}
    assert removed == ["EMAIL", "contacts.email", "details.Inspector"]


def test_no_output_file_holds_a_private_value_nested_in_a_sidecar(tmp_path):
    """A sidecar's ``{"details": {"inspector": ...}}`` reached the shards' JSON and Parquet with the default config."""
    planted = ["NESTED-Inspector-7", "nested7@example.com", "listed7@example.com", "TOP7@example.com"]
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(3):
        path = folder / f"plate{seed}.jpg"
        make_photo(seed=500 + seed).save(path, quality=90)
        sidecar = {
            "label": "scratch",
            "details": {"inspector": planted[0], "email": planted[1], "station": seed},
            "contacts": [{"email": planted[2]}],
            "Email": planted[3],
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")

    out = run_job([{"path": str(folder), "domain": "factory"}], tmp_path / "out")

    assert len(out.samples()) == 3
    files = [path for path in out.path.rglob("*") if path.is_file()]
    assert any(path.name == "index.html" for path in files)  # the report too
    leaks = {str(path): value for path in files for value in planted if value.encode() in path.read_bytes()}
    assert leaks == {}
    record = json.loads(out.samples()[0]["json"])
    assert record["metadata"]["details"] == {"station": record["metadata"]["details"]["station"]}
    assert record["annotations"]["safety"]["removed_fields"] == [
        "Email",
        "contacts.email",
        "details.email",
        "details.inspector",
    ]


def test_unsafe_terms_are_found_at_any_depth_of_the_metadata_and_named_by_their_path():
    """Terms inside an object or a list of objects were never checked and shipped in the shards."""
    metadata = {
        "title": {"en": "retina scan", "de": "Netzhaut porn"},
        "details": {"note": "fuck this shot", "station": 4},
        "tags": [{"name": "porn"}, {"name": "space"}, "sky"],
    }
    pairs = texts_to_check(_sample("nested", text="cat on sofa"), metadata, None)
    assert unsafe_text(pairs, unsafe_matcher(SafetyConfig())) == {
        "metadata.details.note": ["fuck"],
        "metadata.tags.name": ["porn"],
        "metadata.title.de": ["porn"],
    }


def test_text_fields_name_nested_fields_as_text_fields_does():
    """``safety.text_fields=["details.note", "title.de"]`` checked nothing: dotted names were looked up as keys."""
    metadata = {
        "title": {"en": "retina porn", "de": "Netzhaut porn"},
        "details": {"note": "fuck this shot"},
        "tags": [{"name": "porn"}],
        "description": "porn",
    }
    fields = ["details.note", "title.de", "tags.name", "tittle"]
    pairs = texts_to_check(_sample("nested", text="cat on sofa"), metadata, fields)
    assert unsafe_text(pairs, unsafe_matcher(SafetyConfig())) == {
        "metadata.details.note": ["fuck"],
        "metadata.title.de": ["porn"],
        "metadata.tags.name": ["porn"],
    }


def test_a_run_rejects_unsafe_words_nested_in_sidecars_naming_the_field(tmp_path):
    """Sidecars with the term in ``details.note``, ``tags[].name`` or ``title.de`` were kept, the term in the shard."""
    folder = tmp_path / "in"
    folder.mkdir()
    sidecars = {
        "nested": {"title": "cat on sofa", "details": {"note": "fuck this shot"}},
        "listed": {"title": "space photo", "tags": [{"name": "porn"}]},
        "localised": {"title": {"en": "retina scan", "de": "Netzhaut porn"}, "caption": "retina scan"},
        "clean": {"title": "astronaut portrait", "details": {"note": "fine shot"}},
    }
    for seed, (name, metadata) in enumerate(sidecars.items()):
        make_photo(seed=700 + seed).save(folder / f"{name}.jpg", quality=90)
        write_sidecar(folder / f"{name}.jpg", **metadata)

    out = run_job([folder], tmp_path / "out", quality={"enabled": False})

    rows = out.ledger_by_name()
    assert {name: row["reason"] for name, row in rows.items()} == {
        "nested.jpg": "unsafe_text",
        "listed.jpg": "unsafe_text",
        "localised.jpg": "unsafe_text",
        "clean.jpg": "",
    }
    assert json.loads(rows["nested.jpg"]["detail"])["terms"] == {"metadata.details.note": ["fuck"]}
    assert "metadata.tags.name: porn" in json.loads(rows["listed.jpg"]["detail"])["message"]
    assert list(out.samples_by_name()) == ["clean.jpg"]


@pytest.mark.parametrize("key", ["unsafe_prompts", "safe_prompts"])
def test_an_empty_prompt_set_is_refused_naming_the_key_unless_images_are_not_scored(key):
    """An empty prompt set was accepted, then every item failed with numpy's 'need at least one array to stack'."""
    with pytest.raises(ConfigError) as refused:
        load_config(None, [f"safety.{key}=[]"])
    assert f"safety.{key} holds no prompt" in str(refused.value)
    assert "safety.image_check=false" in str(refused.value)
    assert load_config(None, ["safety.image_check=false", f"safety.{key}=[]"]).safety.image_check is False
