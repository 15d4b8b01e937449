"""The whole run configuration: one section per stage, each defined in its own module of this package."""

from typing import Any

import pydantic
from pydantic.json_schema import GenerateJsonSchema

from schemas.config.audit import AuditConfig
from schemas.config.base import Section
from schemas.config.caption import CaptionConfig
from schemas.config.clip_filter import ClipFilterConfig
from schemas.config.clip_model import ClipModelConfig
from schemas.config.decontaminate import DecontaminateConfig
from schemas.config.documents import DocumentsConfig
from schemas.config.embed import EmbedConfig
from schemas.config.eval_set import EvalSetConfig
from schemas.config.exact_dedup import ExactDedupConfig
from schemas.config.faces import FacesConfig
from schemas.config.ingest import IngestConfig
from schemas.config.near_dedup import NearDedupConfig
from schemas.config.normalise import NormaliseConfig
from schemas.config.privacy import private_readers
from schemas.config.quality import QualityConfig
from schemas.config.run import RunConfig
from schemas.config.safety import SafetyConfig
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.config.shards import ShardsConfig
from schemas.config.split import SplitConfig
from schemas.config.text import TextConfig
from schemas.config.views import ViewsConfig


class UnishardConfig(Section):
    """The whole run configuration, one section per stage."""

    run: RunConfig = RunConfig()
    ingest: IngestConfig = IngestConfig()
    normalise: NormaliseConfig = NormaliseConfig()
    exact_dedup: ExactDedupConfig = ExactDedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    near_dedup: NearDedupConfig = NearDedupConfig()
    semantic_dedup: SemanticDedupConfig = SemanticDedupConfig()
    text: TextConfig = TextConfig()
    quality: QualityConfig = QualityConfig()
    clip: ClipModelConfig = ClipModelConfig()
    embed: EmbedConfig = EmbedConfig()
    caption: CaptionConfig = CaptionConfig()
    clip_filter: ClipFilterConfig = ClipFilterConfig()
    split: SplitConfig = SplitConfig()
    eval_set: EvalSetConfig = EvalSetConfig()
    documents: DocumentsConfig = DocumentsConfig()
    views: ViewsConfig = ViewsConfig()
    shards: ShardsConfig = ShardsConfig()
    faces: FacesConfig = FacesConfig()
    safety: SafetyConfig = SafetyConfig()
    audit: AuditConfig = AuditConfig()

    @pydantic.model_validator(mode="after")
    def _reads_no_private_field(self) -> "UnishardConfig":
        if found := private_readers(self):
            raise ValueError(
                "\n".join(found) + "\n(a stage would write its values where safety cannot remove them: take the "
                "field out of that key, or out of safety.private_fields if it is not private)"
            )
        return self


class _WithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves out a default made by a factory (a list, a dict): this generator shows it too."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return super().get_default_value(schema)


def config_schema() -> dict[str, Any]:
    """The JSON schema of the whole configuration, every key with its default (``unishard config --schema``)."""
    return UnishardConfig.model_json_schema(schema_generator=_WithFactoryDefaults)
