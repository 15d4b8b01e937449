"""The stages of a run in dataflow order: the one list the assembly, the report and the README follow.

Each ``Stage`` names the module (``transforms/<name>.py``, whose ``STAGE`` constant is the ledger's ``stage``
value for the rows it writes) and the label of its step in ``pipeline/assemble.py``. ``tests/test_stages.py`` checks
that ``assemble.py`` applies the steps in this order and that README's stage table lists the modules in this order;
the report orders its funnel and galleries by it. Adding a stage means adding it here first.
"""

from typing import NamedTuple


class Stage(NamedTuple):
    """One stage: ``name`` of its module in ``transforms/`` and ``step``, its label in ``pipeline/assemble.py``."""

    name: str
    step: str


STAGES = (
    Stage("ingest", "Ingest"),
    Stage("incremental", "SkipKnown"),
    Stage("normalise", "Normalise"),
    Stage("text", "Text"),
    Stage("quality", "Quality"),
    Stage("exact_dedup", "ExactDedup"),
    Stage("decontaminate", "Decontaminate"),
    Stage("near_dedup", "NearDedup"),
    Stage("apply_rejections", "DropDuplicates"),
    Stage("embed", "Embed"),
    Stage("semantic_dedup", "SemanticDedup"),
    Stage("caption", "Caption"),
    Stage("clip_filter", "ClipFilter"),
    Stage("faces", "Faces"),
    Stage("safety", "Safety"),
    Stage("audit", "Audit"),
    Stage("documents", "Documents"),
    Stage("split", "Split"),
    Stage("eval_set", "EvalSet"),
    Stage("contamination", "ContaminationAudit"),
    Stage("write_shards", "WriteShards"),
    Stage("write_documents", "WriteDocuments"),
    Stage("write_edits", "WriteEdits"),
    Stage("ledger", "WriteLedger"),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)

# Modules whose ledger rows carry their own stage name but that run inside another stage's step.
WITHIN = {"import_interleaved": "ingest", "placement": "documents"}
