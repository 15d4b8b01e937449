"""Reading inputs: retries of transient errors, missing files, tar members at an offset, sidecars, second reads."""

import json

import pytest

from schemas import reasons
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from transforms._reading import READ_ATTEMPTS, read_again, read_bytes, read_member, read_sidecar


def test_a_transient_error_is_retried_and_the_attempts_counted(tmp_path, flaky):
    (tmp_path / "a.bin").write_bytes(b"abc")
    flaky["a.bin"] = READ_ATTEMPTS - 1
    assert read_bytes(str(tmp_path / "a.bin")) == (b"abc", READ_ATTEMPTS)


def test_a_read_failing_every_attempt_is_unreadable_and_a_missing_file_is_missing(tmp_path, flaky):
    (tmp_path / "a.bin").write_bytes(b"abc")
    flaky["a.bin"] = 99
    with pytest.raises(RejectItem) as caught:
        read_bytes(str(tmp_path / "a.bin"))
    assert caught.value.reason == reasons.UNREADABLE_INPUT and caught.value.detail["attempts"] == READ_ATTEMPTS
    with pytest.raises(RejectItem) as caught:
        read_bytes(str(tmp_path / "gone.bin"))
    assert caught.value.reason == reasons.MISSING_FILE and "space" not in str(caught.value)
    with pytest.raises(RejectItem) as caught:
        read_bytes(str(tmp_path / " a.bin "))  # a manifest cell padded with spaces
    assert caught.value.reason == reasons.MISSING_FILE and "starts or ends with a space" in str(caught.value)


def test_a_folder_is_unreadable_at_once_saying_it_is_a_folder(tmp_path, monkeypatch):
    """A manifest row naming a folder was read three times, with waits, and said only [Errno 21]."""
    slept = []
    monkeypatch.setattr("transforms._reading.time.sleep", slept.append)
    with pytest.raises(RejectItem) as caught:
        read_bytes(str(tmp_path))
    assert caught.value.reason == reasons.UNREADABLE_INPUT and "is a folder, not an image file" in str(caught.value)
    assert slept == []


def test_a_member_is_read_at_its_offset_and_a_short_file_is_unreadable(tmp_path):
    (tmp_path / "t.tar").write_bytes(b"0123456789")
    assert read_member(str(tmp_path / "t.tar"), 3, 4) == b"3456"
    with pytest.raises(RejectItem) as caught:
        read_member(str(tmp_path / "t.tar"), 8, 4)
    assert caught.value.reason == reasons.UNREADABLE_INPUT


def test_sidecars_merge_a_json_object_and_a_caption_and_anything_else_is_malformed(tmp_path):
    stem = str(tmp_path / "a")
    assert read_sidecar(stem, ()) == {}
    (tmp_path / "a.TXT").write_text("  a caption \n")
    assert read_sidecar(stem, (".TXT",)) == {"caption": "a caption"}
    (tmp_path / "a.json").write_text(json.dumps({"title": "t"}))
    assert read_sidecar(stem, (".json", ".TXT")) == {"title": "t", "caption": "a caption"}
    (tmp_path / "a.json").write_text(json.dumps({"caption": "from JSON"}))
    assert read_sidecar(stem, (".json", ".TXT")) == {"caption": "from JSON"}
    for text in ("{not json", "[1, 2]"):
        (tmp_path / "a.json").write_text(text)
        with pytest.raises(RejectItem) as caught:
            read_sidecar(stem, (".json",))
        assert caught.value.reason == reasons.MALFORMED_SIDECAR


def test_a_sidecar_outside_the_roots_is_never_read(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(RejectItem) as caught:
        read_sidecar(str(tmp_path / "in" / ".." / "a"), (".json",), roots=(str(tmp_path / "in"),))
    assert caught.value.reason == reasons.OUTSIDE_ROOT


def test_a_second_read_fills_the_bytes_and_leaves_inline_bytes_alone(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"first")
    listed = InputItem(source="a", path=str(tmp_path / "a.jpg"), domain="d")
    assert read_again(listed).data == b"first"
    inline = InputItem(source="b", path="", domain="d", data=b"inline")
    assert read_again(inline) is inline
    (tmp_path / "a.jpg").unlink()
    with pytest.raises(RejectItem) as caught:
        read_again(listed)
    assert caught.value.reason == reasons.MISSING_FILE
