"""unishard deletes or replaces only what it wrote: a person's folder is refused, ``--force`` writes beside what it
finds, a rerun replaces only the files its previous commit listed, and no deletion goes through a symbolic link.

Every run goes through the real command line (``pipeline.cli.main``) on the smoke models.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.helpers import make_photo, write_sidecar

PERSONS_FILES = {
    "notes.txt": b"my notes\n",
    "shards/labels.csv": b"key,label\n1,cat\n",
    "ledger/2025.xlsx": b"PK\x03\x04 not really a spreadsheet",
    "report/draft.md": b"# Draft\n",
    "audit/findings.txt": b"nothing found\n",
}


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` without following links: file bytes, ``link -> target``, or ``folder``."""
    found: dict[str, bytes | str] = {}
    for folder, folders, names in os.walk(root):
        for name in [*folders, *names]:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                found[relative] = "folder"
            else:
                found[relative] = path.read_bytes()
    return found


def _plant(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)


def _run(inputs: Path, output: Path, *flags: str) -> int:
    return main(
        [
            "run", "--input", str(inputs), "--output", str(output), "--smoke-models", "--no-progress",
            "--set", "shards.samples_per_shard=2", *flags, "--runner=DirectRunner",
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for seed in range(4):
        path = folder / f"photo{seed}.jpg"
        make_photo(200, 150, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo {seed}", domain="marketing")
    return folder


@pytest.fixture(scope="module")
def earlier(inputs, tmp_path_factory) -> Path:
    """An output written by one plain run (shared: tests copy it before changing anything)."""
    output = tmp_path_factory.mktemp("earlier") / "out"
    assert _run(inputs, output) == 0
    return output


@pytest.fixture
def own(earlier, tmp_path) -> Path:
    output = tmp_path / "own"
    shutil.copytree(earlier, output, symlinks=True)
    return output


def _elsewhere(tmp_path: Path) -> tuple[Path, dict[str, bytes | str]]:
    """A folder outside the output holding files named as unishard names its own."""
    folder = tmp_path / "elsewhere"
    _plant(folder, {"audit.json": b"{}\n", "shard-000000.tar": b"precious", "index.json": b"[]"})
    return folder, _tree(folder)


def test_a_folder_with_a_persons_files_is_refused_and_left_intact(inputs, tmp_path, capsys):
    project = tmp_path / "project"
    _plant(project, PERSONS_FILES)
    before = _tree(project)

    assert _run(inputs, project) == 2

    error = capsys.readouterr().err
    assert str(project.resolve()) in error and "--force" in error and "--output" in error
    assert _tree(project) == before


def test_a_forced_run_writes_beside_a_persons_files_and_leaves_them_intact(inputs, tmp_path, capsys):
    project = tmp_path / "project"
    _plant(project, PERSONS_FILES)

    assert _run(inputs, project, "--force") == 0

    after = _tree(project)
    assert {name: after.get(name) for name in PERSONS_FILES} == PERSONS_FILES
    assert list(project.glob("shards/pairs/*/shard-*.tar")) and (project / "report" / "index.html").exists()
    listed = set(json.loads((project / "_run" / "files.json").read_text())["files"])
    assert not listed & set(PERSONS_FILES)
    capsys.readouterr()
    assert main(["validate", str(project)]) == 1
    assert "shards/labels.csv: not written by unishard" in capsys.readouterr().out


def test_a_forced_run_stops_before_committing_over_a_persons_file(inputs, tmp_path, capsys):
    project = tmp_path / "project"
    theirs = {**PERSONS_FILES, "ledger/part-00000.parquet": b"their own parquet"}
    _plant(project, theirs)

    assert _run(inputs, project, "--force") == 1

    theirs_path = project.resolve() / "ledger" / "part-00000.parquet"
    assert f"{theirs_path} was not written by unishard" in capsys.readouterr().err
    after = _tree(project)
    assert {name: after.get(name) for name in theirs} == theirs
    assert not (project / "_run").exists() and not (project / "shards" / "pairs").exists()


@pytest.mark.parametrize("content", [b"lockfile of another tool\n", b"", b'{"pid": 1}'])
def test_a_forced_run_leaves_a_persons_file_named_like_its_lock_and_says_so(inputs, tmp_path, capsys, content):
    """``_lock`` is where unishard keeps its run's lock; a file there that is not one was deleted by --force."""
    project = tmp_path / "project"
    theirs = {"_lock": content, "thesis.docx": b"PK\x03\x04 chapter one"}
    _plant(project, theirs)

    assert _run(inputs, project, "--force") != 0

    error = capsys.readouterr().err
    assert f"{project.resolve() / '_lock'} is not a unishard lock" in error and "--output" in error
    assert _tree(project) == theirs


def test_a_rerun_replaces_its_own_files_and_leaves_a_stray_file_and_links_alone(inputs, own, tmp_path, capsys):
    folder, elsewhere = _elsewhere(tmp_path)
    split = sorted(own.glob("shards/pairs/*/shard-*.tar"))[0].parent.relative_to(own)
    _plant(own, {"shards/pairs/notes.txt": b"mine", f"{split}/extra.tar": b"not a tar"})
    (own / "linked").symlink_to(folder, target_is_directory=True)
    (own / "shards" / "linked").symlink_to(folder, target_is_directory=True)
    old_shards = sorted(own.glob("shards/pairs/*/shard-*.tar"))

    assert _run(inputs, own, "--rebuild") == 0

    assert _tree(folder) == elsewhere
    assert (own / "shards" / "pairs" / "notes.txt").read_bytes() == b"mine"
    assert os.readlink(own / "linked") == os.readlink(own / "shards" / "linked") == str(folder)
    assert sorted(own.glob("shards/pairs/*/shard-*.tar")) == old_shards
    capsys.readouterr()
    before = _tree(own)
    assert main(["validate", str(own)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert sorted(line.strip() for line in printed[1:]) == [
        "shards/linked: not written by unishard (left in place; move it out of shards/)",
        f"{split}/extra.tar: not written by unishard (left in place; move it out of shards/)",
        "shards/pairs/notes.txt: not written by unishard (left in place; move it out of shards/)",
    ]
    assert "3 problems; 0 of " in printed[0]  # the foreign tar was checked, and counted, as a damaged shard
    assert _tree(own) == before


def test_a_rerun_stops_rather_than_delete_through_a_link_in_place_of_its_folder(inputs, own, tmp_path, capsys):
    folder, elsewhere = _elsewhere(tmp_path)
    shutil.rmtree(own / "audit")
    (own / "audit").symlink_to(folder, target_is_directory=True)
    before = _tree(own)

    assert _run(inputs, own, "--rebuild") == 1

    assert f"{own.resolve() / 'audit'} is a symbolic link" in capsys.readouterr().err
    assert _tree(folder) == elsewhere
    assert {name: entry for name, entry in _tree(own).items() if not name.startswith("_staging")} == before


def test_an_output_of_an_earlier_version_is_recognised_and_only_its_files_replaced(inputs, own, capsys):
    (own / "_run" / "files.json").unlink()
    _plant(own, {"shards/labels.csv": b"key,label\n", "report/draft.md": b"# Draft\n"})
    shard = next(own.glob("shards/pairs/*/shard-000001.tar"))
    shard.rename(shard.with_name("shard-000099.tar"))

    assert _run(inputs, own, "--rebuild") == 0

    assert (own / "shards" / "labels.csv").read_bytes() == b"key,label\n"
    assert (own / "report" / "draft.md").read_bytes() == b"# Draft\n"
    assert not shard.with_name("shard-000099.tar").exists(), "an old shard by unishard's naming is replaced"
    listed = set(json.loads((own / "_run" / "files.json").read_text())["files"])
    assert "shards/labels.csv" not in listed and shard.relative_to(own).as_posix() in listed


def test_report_refuses_to_write_through_a_link_and_validate_changes_nothing(own, tmp_path, capsys):
    folder, elsewhere = _elsewhere(tmp_path)
    shutil.rmtree(own / "report")
    (own / "report").symlink_to(folder, target_is_directory=True)
    before = _tree(own)

    assert main(["report", str(own)]) == 2
    assert main(["validate", str(own)]) == 0

    assert f"{own / 'report'} is a symbolic link" in capsys.readouterr().err
    assert _tree(folder) == elsewhere
    assert _tree(own) == before


def test_an_interrupted_first_run_leaves_a_folder_unishard_still_accepts(tmp_path):
    from pipeline.output_folder import is_unishard_output

    output = tmp_path / "out"
    assert is_unishard_output(str(output))
    _plant(output, {"_lock": b"{}", "_staging/0123/part": b""})
    assert is_unishard_output(str(output))
    _plant(output, {"notes.txt": b""})
    assert not is_unishard_output(str(output))


@pytest.mark.parametrize("where", ["the output itself", "a folder inside it"])
def test_an_input_in_the_output_folder_is_refused_before_any_work(inputs, tmp_path, capsys, where):
    """A run never reads what lies under its output: --input X --output X --force read nothing and said 0 items."""
    project = tmp_path / "project"
    shutil.copytree(inputs, project / "raw" if where == "a folder inside it" else project)
    before = _tree(project)

    source = project / "raw" if where == "a folder inside it" else project
    assert main(["run", "--input", str(source), "--output", str(project), "--smoke-models", "--force"]) == 1

    error = capsys.readouterr().err
    assert f"input {str(source)!r} is the output folder" in error and "--output outside the input" in error
    assert _tree(project) == before
