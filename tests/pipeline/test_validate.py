"""``unishard validate`` on a real run's shards, and on copies damaged in every way a shard set goes bad."""

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.validate import check_shard, validate_output
from tests.pipeline.planted import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory)


@pytest.fixture
def copy(planted, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(planted.path, out)
    return out


def _biggest_shard(out: Path) -> Path:
    return max(sorted((out / "shards").rglob("*.tar")), key=lambda p: (len(_members(p)), p.name))


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def _rewrite(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def truncate_mid_member(out: Path) -> Path:
    shard = _biggest_shard(out)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 100])
    return shard


def truncate_at_member_boundary(out: Path) -> Path:
    shard = _biggest_shard(out)
    with tarfile.open(shard) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + (last.size + 511) // 512 * 512
    shard.write_bytes(shard.read_bytes()[:end])
    return shard


def drop_txt_member(out: Path) -> Path:
    shard = _biggest_shard(out)
    members = _members(shard)
    first_txt = next(info.name for info, _ in members if info.name.endswith(".txt"))
    _rewrite(shard, [(info, data) for info, data in members if info.name != first_txt])
    return shard


def tamper_image(out: Path) -> Path:
    shard = _biggest_shard(out)
    with tarfile.open(shard) as tar:
        image = next(m for m in tar.getmembers() if m.name.endswith((".jpg", ".png", ".webp")))
    data = bytearray(shard.read_bytes())
    middle = image.offset_data + image.size // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    shard.write_bytes(bytes(data))
    return shard


def drop_sidecar_row(out: Path) -> Path:
    shard = _biggest_shard(out)
    sidecar = shard.with_suffix(".parquet")
    table = pq.read_table(sidecar)
    pq.write_table(table.slice(1), sidecar)
    return shard


def _change_sidecar(out: Path, field: str, value: str) -> Path:
    shard = _biggest_shard(out)
    sidecar = shard.with_suffix(".parquet")
    rows = pq.read_table(sidecar).to_pylist()
    rows[0][field] = value
    pq.write_table(pq.read_table(sidecar).from_pylist(rows, schema=pq.read_schema(sidecar)), sidecar)
    return shard


def change_sidecar_text(out: Path) -> Path:
    return _change_sidecar(out, "text", "something else")


def uppercase_key(out: Path) -> Path:
    shard = _biggest_shard(out)
    members = _members(shard)
    key = members[0][0].name.split(".", 1)[0]
    for info, _ in members:
        if info.name.startswith(key + "."):
            info.name = key.upper() + info.name[len(key) :]
    _rewrite(shard, members)
    return shard


def wrong_index_count(out: Path) -> Path:
    shard = _biggest_shard(out)
    index_path = shard.parent / "index.json"
    index = json.loads(index_path.read_text())
    entry = next(e for e in index["shardlist"] if e["url"] == shard.name)
    entry["nsamples"] += 1
    index_path.write_text(json.dumps(index))
    return shard


def change_json_split(out: Path) -> Path:
    shard = _biggest_shard(out)
    members = _members(shard)
    index = next(i for i, (info, _) in enumerate(members) if info.name.endswith(".json"))
    record = json.loads(members[index][1])
    record["split"] = "validation" if record["split"] != "validation" else "train"
    members[index] = (members[index][0], json.dumps(record).encode())
    _rewrite(shard, members)
    return shard


def change_sidecar_domain(out: Path) -> Path:
    return _change_sidecar(out, "domain", "elsewhere")


def change_stats_domains(out: Path) -> Path:
    shard = _biggest_shard(out)
    stats_path = shard.with_name(shard.stem + "_stats.json")
    stats = json.loads(stats_path.read_text())
    stats["domains"] = {"elsewhere": stats["samples"]}
    stats_path.write_text(json.dumps(stats))
    return shard


def cut_embeddings(out: Path) -> Path:
    shard = _biggest_shard(out)
    npy = shard.with_suffix(".npy")
    np.save(npy.with_suffix(""), np.load(npy)[:1])  # np.save adds the .npy
    return shard


def swap_sidecar_rows(out: Path) -> Path:
    shard = _biggest_shard(out)
    sidecar = shard.with_suffix(".parquet")
    table = pq.read_table(sidecar)
    pq.write_table(table.take([1, 0, *range(2, table.num_rows)]), sidecar)
    return shard


def change_sidecar_width(out: Path) -> Path:
    return _change_sidecar(out, "width", 1)


def widen_embeddings(out: Path) -> Path:
    shard = _biggest_shard(out)
    npy = shard.with_suffix(".npy")
    np.save(npy.with_suffix(""), np.load(npy).astype(np.float32))
    return shard


CORRUPTIONS = {
    "sidecar rows out of order": (swap_sidecar_rows, "sidecar rows are not in the tar's order"),
    "sidecar width differs": (change_sidecar_width, "width differs from the tar's json"),
    "embeddings not float16": (widen_embeddings, "holds float32 of 2 dimensions, not float16 rows"),
    "json names another split": (change_json_split, "say another split than this folder's"),
    "sidecar domain differs": (change_sidecar_domain, "domain differs from the tar's json"),
    "stats domains differ": (change_stats_domains, "_stats.json counts domains"),
    "embeddings cut short": (cut_embeddings, "has 1 embeddings for"),
    "truncated in a member": (truncate_mid_member, "truncated or corrupted"),
    "end-of-archive cut off": (truncate_at_member_boundary, "no clean end-of-archive marker"),
    "missing member": (drop_txt_member, "has no txt member"),
    "tampered image": (tamper_image, "image bytes do not match image_sha256"),
    "sidecar row missing": (drop_sidecar_row, "sidecar has no row for tar samples"),
    "sidecar text differs": (change_sidecar_text, "text differs from the tar's json"),
    "key not lowercase hex": (uppercase_key, "is not lowercase hex"),
    "index count wrong": (wrong_index_count, "index.json says"),
}


def test_a_sound_run_validates_and_the_cli_exits_zero(planted, capsys):
    validation = validate_output(str(planted.path))
    assert validation.ok, validation.all_problems()
    assert sum(shard.samples for shard in validation.shards) == 12
    assert main(["validate", str(planted.path)]) == 0
    assert "4 shards, 12 samples, all valid" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_damaged_shards_are_caught_with_a_clear_message(name, copy, capsys):
    damage, expected = CORRUPTIONS[name]
    shard = damage(copy)
    validation = validate_output(str(copy))
    problems = validation.all_problems()
    assert not validation.ok
    assert any(expected in problem and shard.name in problem for problem in problems), problems
    assert all(s.ok for s in validation.shards if s.path != str(shard)), "only the damaged shard is reported"
    assert main(["validate", str(copy)]) == 1
    printed = capsys.readouterr().out
    assert expected in printed and shard.name in printed


def test_a_deleted_shard_breaks_the_index_and_the_ledger_count(copy):
    shard = _biggest_shard(copy)
    samples = len({info.name.split(".")[0] for info, _ in _members(shard)})
    shard.unlink()
    problems = validate_output(str(copy)).all_problems()
    assert any(f"lists {shard.name}, which does not exist" in p for p in problems), problems
    assert any(f"the ledger counts 12 kept items but the pairs shards hold {12 - samples}" in p for p in problems)


def test_a_deleted_ledger_or_view_and_a_pending_commit_are_named(copy, capsys):
    """Each passed as "all valid" with exit 0: the ledger's kept count came from _run/counts.json, nothing compared
    the output's record of its files with the folder, and a pending journal went unmentioned."""
    shutil.rmtree(copy / "ledger")
    dedup = sorted((copy / "dedup").iterdir())[0]
    dedup.unlink()
    journal = copy / "_staging" / ("0" * 32) / "_commit.json"
    journal.parent.mkdir(parents=True)
    journal.write_text("{}")

    problems = validate_output(str(copy)).all_problems()

    assert any(p.startswith("ledger/ holds no part-*.parquet") for p in problems), problems
    assert f"dedup/{dedup.name}: listed in _run/files.json but missing (deleted or moved?)" in problems
    assert any("an interrupted commit is pending" in p and "run `unishard run` again" in p for p in problems)
    assert main(["validate", str(copy)]) == 1


def test_garbage_is_not_a_shard(tmp_path):
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(b"\x00garbage" * 100)
    check = check_shard(str(path), "pairs", "all")
    assert check.problems and "truncated or corrupted" in check.problems[0]


def test_other_views_check_every_image_their_json_names(tmp_path):
    import hashlib

    key = "ab" * 16
    record = {
        "key": key,
        "images": [
            {"member": "0.jpg", "image_sha256": hashlib.sha256(b"first").hexdigest()},
            {"member": "1.jpg", "image_sha256": hashlib.sha256(b"second").hexdigest()},
        ],
    }
    path = tmp_path / "shard-000000.tar"
    members = [
        (tarfile.TarInfo(f"{key}.json"), json.dumps(record).encode()),
        (tarfile.TarInfo(f"{key}.0.jpg"), b"tampered"),
    ]
    _rewrite(path, members)
    problems = check_shard(str(path), "edit", "train").problems
    assert any("0.jpg bytes do not match image_sha256" in p for p in problems), problems
    assert any("has no member '1.jpg'" in p for p in problems), problems
    # the docs view holds documents: a JSON that is not a DocumentRecord is named as such
    problems = check_shard(str(path), "docs", "train").problems
    assert any(f"sample {key}: json does not parse as a document" in p for p in problems), problems


def test_validating_the_shards_folder_instead_of_the_output_names_the_output(planted):
    problems = validate_output(str(planted.path / "shards")).all_problems()
    assert problems == [
        f"{planted.path / 'shards'} holds no shards and no _run/counts.json: not a unishard output folder; give the "
        f"output folder itself, {planted.path}"
    ]


@pytest.mark.parametrize("view, column, value", [("docs", "split", "test"), ("edit", "source_key", "0" * 32)])
def test_the_sidecars_of_the_other_views_are_checked_against_their_json(tmp_path, view, column, value):
    """Only the pairs view's sidecar was compared with its JSON: a docs or edit sidecar could say anything."""
    from tests.documents_run import documents_run

    out = tmp_path / "out"
    shutil.copytree(documents_run().path, out)
    assert validate_output(str(out)).ok
    shard = _biggest_shard_of(out, view)
    sidecar = shard.with_suffix(".parquet")
    rows = pq.read_table(sidecar).to_pylist()
    rows[0][column] = value
    pq.write_table(pq.read_table(sidecar).from_pylist(rows, schema=pq.read_schema(sidecar)), sidecar)

    problems = validate_output(str(out)).all_problems()
    assert any(f"sidecar row {rows[0]['key']}: {column} differs from the tar's json" in p for p in problems), problems


def _biggest_shard_of(out: Path, view: str) -> Path:
    return max((out / "shards" / view).rglob("*.tar"), key=lambda path: (path.stat().st_size, path.name))
