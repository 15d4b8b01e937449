"""One shard sample's members checked on their own: a sound pairs sample passes, every kind of damage is named."""

import hashlib
import json

from pipeline.sample_checks import DOCS_VIEW, PAIRS_VIEW, document_problems, sample_problems
from schemas.records.samples import ImageInfo
from schemas.shard import SampleRecord

KEY = "ab" * 16
IMAGE = b"\xff\xd8 an image \xff\xd9"


def _pairs_sample(**changes) -> dict[str, bytes]:
    info = ImageInfo(4, 3, "JPEG", "RGB", len(IMAGE))
    record = SampleRecord(
        key=KEY,
        source="/in/a.jpg",
        path="/in/a.jpg",
        domain="factory",
        split="train",
        text="a steel sheet",
        text_source="sidecar",
        image_member=f"{KEY}.jpg",
        sha256="0" * 64,
        pixel_sha256="0" * 64,
        image_sha256=hashlib.sha256(IMAGE).hexdigest(),
        original=info,
        image=info,
    )
    members = {"json": record.model_dump_json().encode(), "txt": b"a steel sheet", "jpg": IMAGE}
    return {**members, **changes}


def test_a_sound_pairs_sample_has_no_problem():
    assert sample_problems(KEY, _pairs_sample(), PAIRS_VIEW) == []


def test_a_pairs_sample_names_each_damage():
    assert sample_problems(KEY, {"txt": b"x"}, PAIRS_VIEW) == [f"sample {KEY} has no json member"]
    assert sample_problems(KEY, _pairs_sample(json=b"{"), PAIRS_VIEW)[0].startswith(f"sample {KEY}: json member is")
    assert sample_problems(KEY, _pairs_sample(json=b"{}"), PAIRS_VIEW)[0].startswith(
        f"sample {KEY}: json does not match the sample schema"
    )
    assert sample_problems(KEY, _pairs_sample(txt=b"other"), PAIRS_VIEW) == [
        f"sample {KEY}: txt member differs from the json text"
    ]
    assert sample_problems(KEY, _pairs_sample(jpg=b"tampered"), PAIRS_VIEW) == [
        f"sample {KEY}: image bytes do not match image_sha256 in its json (tampered or corrupted)"
    ]
    assert sample_problems(KEY, _pairs_sample(png=b"extra"), PAIRS_VIEW) == [
        f"sample {KEY} has unexpected members ['png']"
    ]
    assert sample_problems("cd" * 16, _pairs_sample(), PAIRS_VIEW) == [f"sample {'cd' * 16}: json names key {KEY!r}"]


def test_other_views_check_every_image_the_json_names():
    record = {"key": KEY, "source": {"member": "source.jpg", "image_sha256": hashlib.sha256(b"a").hexdigest()}}
    record["target"] = {"member": "target.jpg", "image_sha256": hashlib.sha256(b"b").hexdigest()}
    members = {"json": json.dumps(record).encode(), "source.jpg": b"a", "target.jpg": b"b"}
    assert sample_problems(KEY, members, "edit") == []
    problems = sample_problems(KEY, {**members, "target.jpg": b"changed"}, "edit")
    assert problems == [
        f"sample {KEY}: target.jpg bytes do not match image_sha256 in its json (tampered or corrupted)"
    ]
    del members["source.jpg"]
    assert sample_problems(KEY, members, "edit") == [f"sample {KEY} has no member 'source.jpg' that its json names"]


def test_a_docs_sample_must_be_a_document():
    assert document_problems({"0.jpg": b"x"}) == ["no json member"]
    assert document_problems({"json": b"{}"})[0].startswith("json does not parse as a document")
    problems = sample_problems(KEY, {"json": json.dumps({"key": KEY}).encode()}, DOCS_VIEW)
    assert problems[0].startswith(f"sample {KEY}: json does not parse as a document")
