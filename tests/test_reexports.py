"""``schemas.config`` and ``schemas.records`` re-export every public name of their modules at the top level.

Both are packages of small modules. Code in this repository imports from the module that defines a name (``from
schemas.config.near_dedup import NearDedupConfig``, ``from schemas.records.samples import Sample``); users' code
written against the single modules that came before imports from the package, and keeps working.
"""

import ast
import importlib
import tomllib
from pathlib import Path

import pytest


def _defined(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return [name for name in names if not name.startswith("_")]


PACKAGES = ["schemas.config", "schemas.records"]


@pytest.mark.parametrize("package_name", PACKAGES)
def test_the_package_re_exports_every_public_name_of_its_modules(package_name):
    package = importlib.import_module(package_name)
    missing, different = [], []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"{package_name}.{path.stem}")
        for name in _defined(path):
            if name not in package.__all__:
                missing.append(f"{path.stem}.{name}")
            elif getattr(package, name) is not getattr(module, name):
                different.append(f"{path.stem}.{name}")
    assert (missing, different) == ([], [])
    assert all(hasattr(package, name) for name in package.__all__)


def test_the_names_the_single_config_module_had_are_still_there():
    from schemas.config import (  # noqa: F401
        AUDIT_BUILTIN_DIMENSIONS,
        ClipPrecision,
        ConfigError,
        DuplicateRules,
        FaceAction,
        Section,
        SurvivorCriterion,
        UnishardConfig,
        default_prompts,
        load_config,
        parse_override,
    )

    assert list(UnishardConfig.model_fields) == [
        "run", "ingest", "normalise", "exact_dedup", "decontaminate", "near_dedup", "semantic_dedup", "text",
        "quality", "clip", "embed", "caption", "clip_filter", "split", "eval_set", "documents", "views", "shards",
        "faces", "safety", "audit",
    ]  # fmt: skip


def test_the_names_the_single_records_module_had_are_still_there():
    from schemas.records import (  # noqa: F401
        Candidate,
        CaptionRequest,
        DuplicateCluster,
        Fingerprint,
        ImageInfo,
        InputItem,
        LedgerRow,
        RejectItem,
        Sample,
        blank,
        detail_json,
        failed,
        fingerprint,
        rejected,
    )


def test_a_wheel_ships_both_packages():
    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert set(PACKAGES) <= set(setuptools["packages"])
