"""What stops an incremental job: a kept source with new content, a grown document, and the sentence the launcher
finds in a failed job's error."""

import pytest

from schemas import reasons
from schemas.records.ledger import LedgerRow
from transforms.changed_content import (
    CHANGED,
    ChangedContent,
    changed_content,
    kept_source_key,
    rebuild_reason,
    refuse_changed_content,
    refuse_changed_texts,
    refuse_grown_document,
)


class RunError(RuntimeError):
    """Stands in for the launcher's error wrapping a failed job."""


def test_a_changed_file_is_recognised_inside_any_runner_s_wrapping_of_the_error():
    sentence = "/in/a.jpg changed content since it was written to /out (key 1a is now 2b)"
    remote = RuntimeError(
        f"Traceback (most recent call last):\n  ...\ntransforms.changed_content.ChangedContent: {sentence} "
        "[while running 'SkipKnown/RefuseChanged']\n"
    )
    wrapped = RunError("the Beam job failed")
    wrapped.__cause__ = remote
    assert changed_content(wrapped) == sentence
    assert changed_content(ChangedContent(sentence)) == sentence
    assert changed_content(RunError("the Beam job failed: out of disk")) is None


def _row(source: str, status: str) -> LedgerRow:
    return LedgerRow(source, "k1", status, "ingest", "", "{}", "d")


def test_only_kept_rows_name_the_key_their_source_shipped():
    assert list(kept_source_key(("k1", _row("/in/a.jpg", reasons.KEPT)))) == [("/in/a.jpg", "k1")]
    assert list(kept_source_key(("k1", _row("/in/a.jpg", reasons.REJECTED)))) == []


def test_a_kept_source_with_other_content_stops_the_job_naming_both_keys():
    with pytest.raises(ChangedContent, match=CHANGED) as raised:
        refuse_changed_content(("/in/a.jpg", {"now": ["2b"], "kept": ["1a"]}), output="/out")
    assert changed_content(raised.value) == "/in/a.jpg changed content since it was written to /out (key 1a is now 2b)"


@pytest.mark.parametrize(
    "keys",
    [
        {"now": ["1a"], "kept": ["1a"]},
        {"now": ["2b"], "kept": []},
        {"now": [], "kept": ["1a"]},
        {"now": ["1a", "2b"], "kept": ["1a"]},
    ],
)
def test_same_content_a_new_source_or_a_deleted_file_goes_on(keys):
    assert refuse_changed_content(("/in/a.jpg", keys), output="/out") is None


def test_a_new_member_of_a_decided_document_stops_the_job_and_a_new_document_does_not():
    with pytest.raises(ChangedContent, match="document d1 changed content since it was written to /out"):
        refuse_grown_document(("d1", {"new": ["/in/b.jpg", "/in/a.jpg"], "earlier": [True]}), output="/out")
    assert refuse_grown_document(("d2", {"new": ["/in/c.jpg"], "earlier": []}), output="/out") is None
    assert refuse_grown_document(("d1", {"new": [], "earlier": [True]}), output="/out") is None


def test_the_launcher_s_reason_to_rebuild_fits_the_stop():
    with pytest.raises(ChangedContent) as file_stop:
        refuse_changed_content(("/in/a.jpg", {"now": ["2b"], "kept": ["1a"]}), output="/out")
    with pytest.raises(ChangedContent) as document_stop:
        refuse_grown_document(("PAGE-1", {"new": ["/in/c.jpg"], "earlier": [True]}), output="/out")
    assert "replaces_key" in rebuild_reason(changed_content(file_stop.value))
    assert "assembled again with every image" in rebuild_reason(changed_content(document_stop.value))


@pytest.mark.parametrize(
    ("now", "earlier"), [(["t2"], ["t1"]), (["t1"], []), ([], ["t1"])], ids=["edited", "added", "removed"]
)
def test_changed_text_rows_of_a_decided_document_stop_the_job_and_say_why(now, earlier):
    with pytest.raises(ChangedContent, match="document d1 changed content since it was written to /out") as stop:
        refuse_changed_texts(("d1", {"now": now, "earlier": earlier, "decided": [True]}), output="/out")
    assert "text rows it has now" in rebuild_reason(changed_content(stop.value))


def test_text_rows_of_an_undecided_document_or_unchanged_ones_go_on():
    assert refuse_changed_texts(("d1", {"now": ["t1"], "earlier": ["t1"], "decided": [True]}), output="/out") is None
    assert refuse_changed_texts(("d2", {"now": ["t1"], "earlier": [], "decided": []}), output="/out") is None
    assert refuse_changed_texts(("d3", {"now": [], "earlier": [], "decided": [True]}), output="/out") is None
