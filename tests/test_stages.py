"""The stage list is written once (``schemas/stages.py``): the assembly and README's stage table follow it."""

import re
from pathlib import Path

from pipeline.report.data import stage_rank
from schemas.stages import STAGE_NAMES, STAGES, WITHIN

ROOT = Path(__file__).resolve().parent.parent


def test_every_stage_is_a_module_whose_stage_constant_is_its_name():
    for stage in STAGES:
        source = (ROOT / "transforms" / f"{stage.name}.py").read_text(encoding="utf-8")
        assert re.search(rf'^STAGE = "{stage.name}"$', source, re.M), stage.name


def test_assemble_applies_the_stages_in_the_declared_order():
    source = (ROOT / "pipeline" / "assemble.py").read_text(encoding="utf-8")
    labels = re.findall(r'"(\w+)" >> ', source)
    steps = [stage.step for stage in STAGES]
    assert [label for label in labels if label in steps] == steps


def test_readme_stage_table_lists_every_stage_module_in_the_declared_order():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Architecture", 1)[1].split("\n\n")[2]
    modules = re.findall(r"^\| [^|]+ \| `transforms/(\w+)\.py` \|", table, re.M)
    assert modules == list(STAGE_NAMES)


def test_the_report_orders_stages_by_the_declaration():
    assert sorted(reversed(STAGE_NAMES), key=stage_rank) == list(STAGE_NAMES)
    assert stage_rank("a_stage_nobody_declared") < stage_rank("write_shards")
    # interleaved documents are imported while ingest lists its inputs: their rows came after near_dedup's
    assert stage_rank("ingest") < stage_rank("import_interleaved") < stage_rank("incremental")
    assert stage_rank("documents") < stage_rank("placement") < stage_rank("split")


def test_every_module_that_writes_ledger_rows_is_a_stage_or_runs_inside_one():
    for path in sorted((ROOT / "transforms").glob("*.py")):
        found = re.search(r'^STAGE = "(\w+)"', path.read_text(encoding="utf-8"), re.M)
        if found and "RejectItem" in path.read_text(encoding="utf-8"):
            assert found[1] in STAGE_NAMES or found[1] in WITHIN, path.name
