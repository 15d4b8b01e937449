"""The launcher's checks: inputs that match, an output it can write, and books that add up before a commit."""

import json

import pytest

from pipeline.checks import check_books, check_inputs, check_lexicons, check_writable, shard_samples
from pipeline.job import RunError
from schemas.config.load import load_config
from tests.helpers import make_photo, run_job
from transforms.books import BOOKS, PROBLEMS


def test_no_inputs_or_an_input_matching_nothing_stops_the_run(tmp_path):
    with pytest.raises(RunError, match="no inputs"):
        check_inputs(load_config(None, []))
    missing = load_config(None, [f"ingest.inputs=[{{path='{tmp_path / 'nope'}/*.jpg'}}]"])
    with pytest.raises(RunError, match="matches no file"):
        check_inputs(missing)
    with pytest.raises(RunError, match="is a folder that holds no files"):
        check_inputs(load_config(None, [f"ingest.inputs=[{{path='{tmp_path}'}}]"]))
    (tmp_path / "a.jpg").write_bytes(b"x")
    check_inputs(load_config(None, [f"ingest.inputs=[{{path='{tmp_path}'}}]"]))


@pytest.mark.parametrize(
    "name, text", [("empty.csv", ""), ("header.csv", "path,caption\n"), ("empty.jsonl", "\n"), ("rows.json", "[]")]
)
def test_a_manifest_with_no_rows_stops_the_run_naming_it(tmp_path, name, text):
    """An empty or header-only manifest ran as 0 items, exit 0, without a word."""
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(RunError, match=rf"input '.*{name}' holds no rows \(an empty file, or only its header line\)"):
        check_inputs(load_config(None, [f"ingest.inputs=[{{path='{tmp_path / name}'}}]"]))
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "one.csv").write_text("path,caption\na.jpg,a plate\n", encoding="utf-8")
    check_inputs(load_config(None, [f"ingest.inputs=[{{path='{tmp_path / 'one.csv'}'}}]"]))


def test_an_input_of_only_links_whose_targets_are_gone_is_named_as_such(tmp_path):
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "a.jpg").symlink_to(tmp_path / "moved" / "a.jpg")
    with pytest.raises(RunError, match=r"matches only symbolic links whose target does not exist, such as .*a\.jpg"):
        check_inputs(load_config(None, [f"ingest.inputs=[{{path='{tmp_path / 'links'}'}}]"]))


def test_an_output_that_cannot_be_written_is_named(tmp_path):
    check_writable(str(tmp_path / "out"))
    (tmp_path / "a-file").write_bytes(b"x")
    blocked = tmp_path / "a-file" / "out"
    with pytest.raises(RunError, match=f"cannot write to the output folder {blocked}"):
        check_writable(str(blocked))


def _books(staging, **changes) -> dict:
    books = {
        "listed": 3,
        "carried": 0,
        "carried_kept": 0,
        "ledger_rows": 3,
        "sources_in_ledger": 3,
        "examples": {name: [] for name in PROBLEMS},
        **{name: 0 for name in PROBLEMS},
        **changes,
    }
    (staging / "_run").mkdir(parents=True, exist_ok=True)
    (staging / "_run" / BOOKS).write_text(json.dumps(books))
    return books


def _stats(staging, split: str, samples: int) -> None:
    folder = staging / "shards" / "pairs" / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shard-000000_stats.json").write_text(json.dumps({"samples": samples}))


def test_books_that_add_up_pass_and_kept_rows_must_match_the_shards(tmp_path):
    counts = {"items": 3, "by_status": {"kept": 2, "rejected": 1}}
    with pytest.raises(RunError, match="wrote no"):
        check_books(str(tmp_path), counts)
    _books(tmp_path)
    _stats(tmp_path, "train", 1)
    _stats(tmp_path, "test", 1)
    assert shard_samples(str(tmp_path)) == 2
    check_books(str(tmp_path), counts)
    _stats(tmp_path, "test", 0)
    with pytest.raises(RunError, match="the ledger has 2 kept rows from this run, but its shards hold 1 samples"):
        check_books(str(tmp_path), counts)


def test_a_ledger_short_of_the_listed_items_is_refused_naming_the_counts(tmp_path):
    _books(tmp_path, ledger_rows=2)
    _stats(tmp_path, "train", 2)
    with pytest.raises(RunError, match="ingest listed 3 items .* the ledger has 2 rows"):
        check_books(str(tmp_path), {"items": 3, "by_status": {"kept": 2}})


def test_a_lexicon_file_that_cannot_be_used_stops_the_run_naming_the_key_the_file_and_what_to_do(tmp_path):
    """A missing, Latin-1 or malformed lexicon crashed the job on a worker after every image was read."""
    latin1 = tmp_path / "terms.txt"
    latin1.write_bytes("rocket\ncaf\xe9\n".encode("latin-1"))
    broken = tmp_path / "audit.json"
    broken.write_text('{"gendered": {"female": ["she"]},\n "identity": {} "occupation": {}}', encoding="utf-8")
    shapeless = tmp_path / "shapeless.json"
    shapeless.write_text('{"gendered": ["she"]}', encoding="utf-8")
    cases = {
        f"safety.lexicons=['{tmp_path / 'nope.txt'}']": f"safety.lexicons: {tmp_path / 'nope.txt'} does not exist",
        f"safety.lexicons=['{latin1}']": f"safety.lexicons: {latin1} is not UTF-8 text (byte 0xe9 at offset 10): save",
        f"audit.lexicon='{broken}'": f"audit.lexicon: {broken} is not valid JSON: Expecting ',' delimiter at line 2",
        f"audit.lexicon='{shapeless}'": f"audit.lexicon: {shapeless} is not of the form: it needs 'gendered'",
        f"audit.lexicon='{tmp_path}'": f"audit.lexicon: {tmp_path} is a folder",
    }
    for override, message in cases.items():
        with pytest.raises(RunError) as stopped:
            check_lexicons(load_config(None, [override]))
        assert str(stopped.value).startswith(message)
        assert "\n" not in str(stopped.value)
    check_lexicons(load_config(None, [f"safety.lexicons=['{latin1}']", "safety.text_check=false"]))
    check_lexicons(load_config(None, [f"audit.lexicon='{broken}'", "audit.enabled=false"]))
    (tmp_path / "good.txt").write_text("\ufeffrocket\n", encoding="utf-8")
    check_lexicons(load_config(None, [f"safety.lexicons=['{tmp_path / 'good.txt'}']"]))


def test_a_run_with_a_missing_lexicon_stops_before_reading_any_image(tmp_path):
    (tmp_path / "in").mkdir()
    make_photo(seed=3).save(tmp_path / "in" / "a.jpg")
    missing = tmp_path / "terms.txt"
    with pytest.raises(RunError, match=f"safety.lexicons: {missing} does not exist"):
        run_job([tmp_path / "in"], tmp_path / "out", safety={"lexicons": [str(missing)]})
    assert not (tmp_path / "out").exists()
