"""The run configuration: one pydantic model per stage section, validated once on the launcher.

A config is a TOML file. Unknown keys are errors (a typo never silently falls back to a default). Relative paths in
``ingest.inputs`` and ``run.output`` resolve against the config file's folder. ``--set section.key=value`` overrides
are applied to the raw TOML before validation, so they are checked the same way. The default prompt sets and
caption templates are data (``schemas/data/prompts.json``), not code.

One module per section (``schemas/config/near_dedup.py`` holds ``[near_dedup]``), the shared base in
``base.py``, the whole ``UnishardConfig`` in ``unishard.py`` and reading a file in ``load.py``. Every public name is
re-exported here, so ``from schemas.config import NearDedupConfig`` works as well as the submodule import.
"""

from schemas.config.audit import AUDIT_BUILTIN_DIMENSIONS, AuditConfig
from schemas.config.base import (
    FIELD_NAME,
    DuplicateRules,
    PathText,
    Section,
    SurvivorCriterion,
    default_prompts,
)
from schemas.config.caption import CaptionConfig, CaptionerConfig, OcrConfig
from schemas.config.clip_filter import ClipFilterConfig
from schemas.config.clip_model import ClipModelConfig, ClipPrecision
from schemas.config.decontaminate import DecontaminateConfig
from schemas.config.documents import DocumentsConfig, GroupRule, PlacementConfig
from schemas.config.embed import EmbedConfig
from schemas.config.eval_set import EvalQuestion, EvalSetConfig
from schemas.config.exact_dedup import ExactDedupConfig
from schemas.config.faces import FaceAction, FacesConfig
from schemas.config.ingest import UNKNOWN_DOMAIN, IngestConfig, InputSpec
from schemas.config.load import ConfigError, load_config, parse_override
from schemas.config.near_dedup import NearDedupConfig
from schemas.config.normalise import NormaliseConfig
from schemas.config.privacy import field_readers, private_readers
from schemas.config.quality import OverexposedRule, QualityConfig, QualityRule, TintedRule
from schemas.config.run import RunConfig
from schemas.config.safety import SafetyConfig
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.config.shards import ShardsConfig
from schemas.config.split import SplitConfig
from schemas.config.text import TextConfig
from schemas.config.unishard import UnishardConfig, config_schema
from schemas.config.views import EditRule, EditViewConfig, ViewConfig, ViewsConfig

__all__ = [
    "AUDIT_BUILTIN_DIMENSIONS",
    "AuditConfig",
    "CaptionConfig",
    "CaptionerConfig",
    "ClipFilterConfig",
    "ClipModelConfig",
    "ClipPrecision",
    "ConfigError",
    "DecontaminateConfig",
    "DocumentsConfig",
    "DuplicateRules",
    "EditRule",
    "EditViewConfig",
    "EmbedConfig",
    "EvalQuestion",
    "EvalSetConfig",
    "ExactDedupConfig",
    "FIELD_NAME",
    "FaceAction",
    "FacesConfig",
    "GroupRule",
    "IngestConfig",
    "InputSpec",
    "NearDedupConfig",
    "NormaliseConfig",
    "OcrConfig",
    "OverexposedRule",
    "PathText",
    "PlacementConfig",
    "QualityConfig",
    "QualityRule",
    "RunConfig",
    "SafetyConfig",
    "Section",
    "SemanticDedupConfig",
    "ShardsConfig",
    "SplitConfig",
    "SurvivorCriterion",
    "TextConfig",
    "TintedRule",
    "UNKNOWN_DOMAIN",
    "UnishardConfig",
    "ViewConfig",
    "ViewsConfig",
    "config_schema",
    "default_prompts",
    "field_readers",
    "load_config",
    "parse_override",
    "private_readers",
]
