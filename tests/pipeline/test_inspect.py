"""``unishard inspect``: list a real shard, show one sample, extract its image, survive hostile text."""

import hashlib
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.inspect_shards import printable
from tests.pipeline.planted import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory)


@pytest.fixture(scope="module")
def shard(planted):
    return max(sorted((planted.path / "shards").rglob("*.tar")), key=lambda p: p.stat().st_size)


def test_lists_every_sample_of_a_shard(shard, capsys):
    assert main(["inspect", str(shard)]) == 0
    printed = capsys.readouterr().out
    rows = pq.read_table(shard.with_suffix(".parquet")).to_pylist()
    assert f"{len(rows)} samples" in printed.splitlines()[0]
    for row in rows:
        line = next(line for line in printed.splitlines() if line.startswith(row["key"]))
        assert "json:" in line and "txt:" in line and row["domain"] in line


def test_shows_one_sample_and_extracts_its_image(shard, tmp_path, capsys):
    row = pq.read_table(shard.with_suffix(".parquet")).to_pylist()[0]
    assert main(["inspect", str(shard), row["key"], "--extract", str(tmp_path / "images")]) == 0
    printed = capsys.readouterr().out
    assert f"key: {row['key']}" in printed and f'"source": {json.dumps(row["source"])}' in printed
    assert printed.split("text:\n", 1)[1].startswith(row["text"])
    (image,) = (tmp_path / "images").iterdir()
    assert image.name.startswith(row["key"] + ".")
    assert hashlib.sha256(image.read_bytes()).hexdigest() == row["image_sha256"]


def test_extracts_every_image_without_a_key(shard, tmp_path, capsys):
    assert main(["inspect", str(shard), "--extract", str(tmp_path)]) == 0
    keys = {row["key"] for row in pq.read_table(shard.with_suffix(".parquet")).to_pylist()}
    assert {path.name.split(".")[0] for path in tmp_path.iterdir()} == keys


def test_extract_never_writes_over_a_file_already_there_or_through_a_link(shard, tmp_path, capsys):
    key = pq.read_table(shard.with_suffix(".parquet")).to_pylist()[0]["key"]
    folder = tmp_path / "images"
    assert main(["inspect", str(shard), key, "--extract", str(folder)]) == 0
    (image,) = folder.iterdir()
    image.write_bytes(b"mine")
    theirs = tmp_path / "theirs.jpg"
    theirs.write_bytes(b"theirs")
    capsys.readouterr()

    assert main(["inspect", str(shard), key, "--extract", str(folder)]) == 0
    assert f"skipped {image}" in capsys.readouterr().out
    image.unlink()
    image.symlink_to(theirs)
    assert main(["inspect", str(shard), key, "--extract", str(folder)]) == 0

    assert f"skipped {image}" in capsys.readouterr().out
    assert theirs.read_bytes() == b"theirs" and image.is_symlink()


def test_extract_onto_a_file_says_so_instead_of_a_traceback(shard, tmp_path, capsys):
    notes = tmp_path / "run.toml"
    notes.write_text("[run]\n")
    assert main(["inspect", str(shard), "--extract", str(notes)]) == 2
    assert f"--extract {notes}: cannot write images there" in capsys.readouterr().err
    assert notes.read_text() == "[run]\n"


def test_unknown_key_and_broken_shard_fail_with_a_message(shard, tmp_path, capsys):
    assert main(["inspect", str(shard), "0" * 32]) == 1
    assert "is not in" in capsys.readouterr().err
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar at all" * 64)
    assert main(["inspect", str(broken)]) == 1
    assert "not a readable tar" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.tar")]) == 2


def test_terminal_control_characters_in_shard_text_are_escaped():
    assert printable("red\x1b[31m mug\u202eevil\x07") == "red\\x1b[31m mug\\u202eevil\\x07"
    assert printable("two\nlines\ttab", keep_newlines=True) == "two\nlines\ttab"
    assert printable("two\nlines") == "two\\nlines"


def test_a_reader_that_stops_early_ends_the_listing_quietly(shard):
    """``unishard inspect SHARD | head`` printed a BrokenPipeError traceback once head had its lines."""
    command = [sys.executable, "-m", "pipeline", "inspect", str(shard)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line is written
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0 and "Traceback" not in error, error
