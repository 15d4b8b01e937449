"""``schemas.config`` is a package of one module per section; its top level re-exports every public name.

Code in this repository imports from the section's module (``from schemas.config.near_dedup import
NearDedupConfig``); users' code written against the single module that came before imports from the package, and
keeps working.
"""

import ast
import importlib
from pathlib import Path

import schemas.config

PACKAGE = Path(schemas.config.__file__).parent


def _defined(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return [name for name in names if not name.startswith("_")]


def test_the_package_re_exports_every_public_name_of_its_modules():
    missing, different = [], []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"schemas.config.{path.stem}")
        for name in _defined(path):
            if name not in schemas.config.__all__:
                missing.append(f"{path.stem}.{name}")
            elif getattr(schemas.config, name) is not getattr(module, name):
                different.append(f"{path.stem}.{name}")
    assert (missing, different) == ([], [])
    assert all(hasattr(schemas.config, name) for name in schemas.config.__all__)


def test_the_names_the_single_module_had_are_still_there():
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
