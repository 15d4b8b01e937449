"""The run configuration: one pydantic model per stage section, validated once on the launcher.

A config is a TOML file. Unknown keys are errors (a typo never silently falls back to a default). Relative paths in
``ingest.inputs`` and ``run.output`` resolve against the config file's folder. ``--set section.key=value`` overrides
are applied to the raw TOML before validation, so they are checked the same way. The default prompt sets and
caption templates are data (``schemas/data/prompts.json``), not code.
"""

import copy
import functools
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic


def default_prompts(section: str, name: str) -> Any:
    """A default prompt set or template list of ``section``, from ``schemas/data/prompts.json`` (a fresh copy)."""
    return copy.deepcopy(_prompts()[section][name])


@functools.cache
def _prompts() -> dict:
    return json.loads(resources.files("schemas").joinpath("data", "prompts.json").read_text(encoding="utf-8"))


class Section(pydantic.BaseModel):
    """Base of every config section: frozen, and unknown keys are errors."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class InputSpec(Section):
    """One input: a file pattern, a manifest, or WebDataset tars.

    ``kind = "auto"`` picks ``manifest`` for ``.csv``/``.jsonl``/``.parquet``, ``webdataset`` for ``.tar``, and
    ``files`` otherwise.
    """

    path: str
    kind: Literal["auto", "files", "manifest", "webdataset", "mmc4", "obelics"] = "auto"
    domain: str | None = None
    path_column: str = "path"
    roots: list[str] = pydantic.Field(
        default_factory=list,
        description="Folders the input's images and sidecars must lie in (manifest rows, image references, matched "
        "files); default: the manifest's or document file's own folder, or the folder a file pattern lists.",
    )


class IngestConfig(Section):
    """How inputs are listed and read (``transforms/ingest.py``)."""

    inputs: list[InputSpec] = pydantic.Field(default_factory=list)
    default_domain: str = "unknown"
    domain_column: str = "domain"
    sidecar_extensions: list[str] = pydantic.Field(default_factory=lambda: [".json", ".txt"])
    follow_symlinks: bool = pydantic.Field(
        False,
        description="Let symbolic links lead out of an input's roots. Off, a local path is checked where it really "
        "resolves, and one that leaves its roots through a link is rejected as outside_root and never read.",
    )


class NormaliseConfig(Section):
    max_pixels: int = pydantic.Field(
        50_000_000, gt=0, description="Images whose header claims more pixels are rejected as decompression bombs."
    )
    max_side: int = pydantic.Field(1024, gt=0, description="Longer side after resizing; images are never upscaled.")
    min_side: int = pydantic.Field(32, ge=1, description="Images whose shorter side is smaller are rejected.")
    format: Literal["jpg", "png", "webp"] = "jpg"
    quality: int = pydantic.Field(90, ge=1, le=100)
    background: tuple[int, int, int] = (255, 255, 255)
    draft: bool = pydantic.Field(True, description="Let JPEG decoding skip detail the resize would drop anyway.")


class TextConfig(Section):
    fields: list[str] = pydantic.Field(
        default_factory=lambda: ["caption", "alt_text", "title", "description", "label"],
        description="Metadata fields tried in order for a sample's text; the first non-empty one wins.",
    )
    required: bool = pydantic.Field(True, description="Reject samples with no text (reason no_text).")
    max_chars: int = pydantic.Field(2000, gt=0, description="Longer text is cut at a word boundary.")


class ExactDedupConfig(Section):
    enabled: bool = True


SurvivorCriterion = Literal["resolution", "file_size", "richness", "clip_score"]


class DuplicateRules(Section):
    """What near and semantic deduplication share: scope, label rules, survivor policy and the bucket guard."""

    enabled: bool = True
    scope: list[str] = pydantic.Field(
        default_factory=list,
        description="Compare only samples with equal values of these fields ('domain' or metadata fields such as "
        "line, camera, sku); empty compares globally.",
    )
    keep_distinct: list[str] = pydantic.Field(
        default_factory=lambda: ["label"],
        description="Metadata fields whose differing values keep both members (a defective board and its template).",
    )
    report_only: bool = pydantic.Field(False, description="Write the clusters but remove nothing.")
    survivor_policy: list[SurvivorCriterion] = pydantic.Field(
        default_factory=lambda: ["resolution", "file_size", "richness", "clip_score"],
        description="Criteria in order, each preferring the larger value; the smallest key breaks ties.",
    )
    max_bucket: int = pydantic.Field(
        5000, ge=2, description="A candidate bucket with more members is not compared pairwise; it is reported."
    )


class NearDedupConfig(DuplicateRules):
    """Near-duplicate removal on perceptual hashes (``transforms/near_dedup.py``); defaults from its benchmark."""

    max_distance: int = pydantic.Field(
        8, ge=0, le=31, description="Largest pHash Hamming distance (of 64 bits) between near duplicates."
    )
    second_hash: Literal["dhash", "whash"] | None = pydantic.Field(
        None, description="A second 64-bit hash that must also be within second_max_distance."
    )
    second_max_distance: int = pydantic.Field(10, ge=0, le=64)
    max_colour_distance: float | None = pydantic.Field(
        8.0,
        gt=0,
        description="Largest colour-signature distance (CIELAB, after brightness and contrast compensation); keeps "
        "colour variants of one product apart. Unset to turn the check and its hash off.",
    )
    subwindow_max_distance: int | None = pydantic.Field(
        None,
        ge=0,
        le=31,
        description="Largest pHash distance between two keypoint-anchored windows that makes a crop or overlay "
        "candidate; candidates are kept only when keypoints verify them (8 is the benchmarked value). Unset "
        "(the default) turns off the geometric path and its 'subwindow' hash: its candidates are bounded per image "
        "(subwindow_candidates), but it costs several times the stage's CPU (transforms/near_dedup.py).",
    )
    subwindow_min_windows: int = pydantic.Field(
        1, ge=1, description="Windows two images must share (within subwindow_max_distance) to be a candidate."
    )
    subwindow_candidates: int = pydantic.Field(
        8,
        ge=1,
        description="Crop and overlay candidate pairs each image keeps for keypoint verification (most shared "
        "windows first): bounds the pairs verified to this many per image, so the work grows with the image count.",
    )
    candidate_distance: int = pydantic.Field(
        10,
        ge=0,
        le=31,
        description="Whole-image pHash distance up to which a pair the pHash test rejects is still verified on "
        "keypoints (a crop of a few percent, an overlay).",
    )
    min_inliers: int = pydantic.Field(
        15, ge=4, description="Keypoint matches consistent with one similarity transform that accept a candidate pair."
    )
    keypoints: int = pydantic.Field(
        500, ge=16, le=5000, description="ORB keypoints per candidate image (on the image scaled to 512 pixels)."
    )

    def hash_names(self) -> list[str]:
        """The hashes normalise must compute for this section (and for decontamination)."""
        names = ["phash"] + ([self.second_hash] if self.second_hash else [])
        names += ["subwindow"] if self.subwindow_max_distance is not None else []
        return names + (["colour"] if self.max_colour_distance is not None else [])


class DecontaminateConfig(Section):
    """Reject samples that duplicate evaluation or holdout images (``transforms/decontaminate.py``)."""

    exclude: list[InputSpec] = pydantic.Field(
        default_factory=list,
        description="Evaluation or holdout images: folders, file patterns or manifests, as ingest inputs.",
    )
    max_distance: int = pydantic.Field(8, ge=0, le=31, description="Largest pHash Hamming distance to an eval item.")
    max_colour_distance: float | None = pydantic.Field(
        8.0, gt=0, description="Largest colour-signature distance to an eval item; unset to skip the check."
    )

    @pydantic.field_validator("exclude", mode="before")
    @classmethod
    def _paths_as_specs(cls, value: Any) -> Any:
        return (
            [{"path": item} if isinstance(item, str) else item for item in value] if isinstance(value, list) else value
        )


class SemanticDedupConfig(DuplicateRules):
    """Semantic duplicates by CLIP image-embedding cosine (``transforms/semantic_dedup.py``).

    Candidates come from random-hyperplane LSH: ``tables`` tables of ``bits`` hyperplanes each. A pair at cosine
    0.95 (18 degrees) shares one table's bucket with probability 0.9^bits, so 16 tables of 12 bits find it 99.5% of
    the time; every candidate is verified on the exact cosine.
    """

    threshold: float = pydantic.Field(0.95, gt=0.0, le=1.0, description="Cosine similarity of duplicates.")
    tables: int = pydantic.Field(16, ge=1, le=64)
    bits: int = pydantic.Field(12, ge=1, le=62)
    seed: int = pydantic.Field(0, ge=0, description="Seed of the random hyperplanes (fixed: output is deterministic).")
    use_smoke_embeddings: bool = pydantic.Field(
        False,
        description="Deduplicate on embeddings of a smoke model too (its id contains 'smoke'). Random weights put "
        "distinct images at cosine 0.8-0.99, so by default such samples are left alone and counted as skipped.",
    )


class ShardsConfig(Section):
    samples_per_shard: int = pydantic.Field(1000, gt=0)
    bytes_per_shard: int = pydantic.Field(512 * 1024 * 1024, gt=0)
    min_shards: int = pydantic.Field(1, ge=1, description="At least this many shards (loader workers x nodes).")
    ledger_rows_per_part: int = pydantic.Field(1_000_000, gt=0)


_SPLIT_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class SplitConfig(Section):
    """Leak-free split assignment (``transforms/split.py``).

    Without a ``[split]`` section a run writes one split, ``all``, and no evaluation set: which metadata makes two
    images "the same thing" (SKU, product family, line and date, board id) is the data owner's call, and a default
    split grouped on guesses would claim to be leak-free while colour variants or repaired boards straddle it. Any
    key in the section turns splitting on (``enabled`` defaults to true then), with these defaults: 0.98 / 0.01 /
    0.01, grouped by ``doc_id``, stratified by domain, at least one group per stratum in validation and test.
    Turning it on later loses nothing: assignment is a pure function of the group, so it matches what it would have
    been from the start.
    """

    enabled: bool = True
    fractions: dict[str, float] = pydantic.Field(
        default_factory=lambda: {"train": 0.98, "validation": 0.01, "test": 0.01},
        description="Target share of groups per split; held-out splits take the hash range from 0 by name, train "
        "last.",
    )
    train: str = pydantic.Field("train", description="The training split; every other split is held out.")
    group_by: list[str] = pydantic.Field(
        default_factory=lambda: ["doc_id"],
        description="Metadata fields whose shared value keeps samples in one split; 'line+date' joins several fields.",
    )
    stratify_by: list[str] = pydantic.Field(
        default_factory=list,
        description="Metadata fields tried in order for the label that, with the domain, names a sample's stratum.",
    )
    min_groups: int = pydantic.Field(1, ge=0, description="Groups of every stratum each held-out split gets at least.")
    max_heldout_share: float = pydantic.Field(
        0.5, gt=0.0, le=1.0, description="A stratum whose minimums would hold out more than this share is too small."
    )
    pin_field: str = pydantic.Field("split", description="Metadata field naming a split the sample must go to.")
    salt: str = pydantic.Field("unishard-split-v1", description="Hash salt; changing it reshuffles every group.")
    rounds: int = pydantic.Field(3, ge=0, le=20, description="Connected-component rounds before the final union-find.")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _on_when_configured(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": bool(data)}
        return data

    @pydantic.model_validator(mode="after")
    def _check_fractions(self) -> "SplitConfig":
        if self.train not in self.fractions:
            raise ValueError(f"split.train {self.train!r} is not a key of split.fractions")
        for name, share in self.fractions.items():
            if not re.match(_SPLIT_NAME, name):
                raise ValueError(f"split name {name!r} must be lowercase letters, digits, '_' or '-'")
            if share < 0:
                raise ValueError(f"split.fractions.{name} must not be negative")
        if abs(sum(self.fractions.values()) - 1.0) > 1e-6:
            raise ValueError(f"split.fractions must add up to 1, got {sum(self.fractions.values())}")
        return self


class EvalQuestion(Section):
    """One understanding question whose answer is a trusted metadata field."""

    field: str
    question: str
    domains: list[str] = pydantic.Field(default_factory=list, description="Ask only in these domains; empty: all.")


def _default_questions() -> list[EvalQuestion]:
    return [
        EvalQuestion(field="label", question="Which defect class does this image show?", domains=["factory"]),
        EvalQuestion(field="category", question="Which product category does this image show?"),
        EvalQuestion(field="color", question="What is the main colour of the product?"),
        EvalQuestion(field="colour", question="What is the main colour of the product?"),
    ]


class EvalSetConfig(Section):
    """The evaluation set drawn from the held-out split (``transforms/eval_set.py``).

    Built only when splitting is on and produces ``split``. The leak check uses deduplication's own evidence and
    thresholds (``near_dedup``: pHash distance, second hash, colour signature; ``semantic_dedup.threshold`` for
    embeddings), so what dedup would call a duplicate is what counts as a leak.
    """

    enabled: bool = True
    split: str = pydantic.Field("test", description="The split the evaluation items come from.")
    questions: list[EvalQuestion] = pydantic.Field(default_factory=_default_questions)
    generation: bool = pydantic.Field(True, description="Write caption-to-image items with their reference image.")
    max_images: int = pydantic.Field(2000, gt=0, description="Images in the set at most, chosen by a hash of the key.")
    check_against: list[str] = pydantic.Field(
        default_factory=lambda: ["train"], description="Splits that must hold no copy or near copy of an eval image."
    )
    fail_on_leak: bool = pydantic.Field(True, description="Fail the run when an eval image leaks into train.")


FaceAction = Literal["blur", "reject", "keep"]


class FacesConfig(Section):
    """Face detection (OpenCV Haar cascade) and what to do with images that show faces, per domain."""

    enabled: bool = pydantic.Field(True, description="Detect faces; when false the stage passes samples through.")
    default_action: FaceAction = pydantic.Field("blur", description="Action for domains not listed in `domains`.")
    domains: dict[str, FaceAction] = pydantic.Field(
        default_factory=lambda: {"marketing": "blur"}, description="Action by domain: blur, reject or keep."
    )
    detect_side: int = pydantic.Field(384, gt=0, description="Longer side of the grey copy the detector scans.")
    min_face: float = pydantic.Field(0.05, gt=0.0, le=1.0, description="Smallest face side, share of the short side.")
    scale_factor: float = pydantic.Field(1.1, gt=1.0, description="Haar cascade pyramid step.")
    min_neighbors: int = pydantic.Field(5, ge=1, description="Haar cascade overlapping detections needed.")
    margin: float = pydantic.Field(0.15, ge=0.0, le=1.0, description="Blurred region grows by this share per side.")
    strength: float = pydantic.Field(0.2, gt=0.0, description="Blur radius as a share of the region's longer side.")


class SafetyConfig(Section):
    """Unsafe images (CLIP zero-shot), unsafe text (lexicons) and private metadata fields."""

    image_check: bool = pydantic.Field(True, description="Score images against the prompt sets (needs embeddings).")
    unsafe_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("safety", "unsafe_prompts"))
    safe_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("safety", "safe_prompts"))
    image_threshold: float = pydantic.Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Reject when the zero-shot probability mass on unsafe prompts is at least this.",
    )
    logit_scale: float = pydantic.Field(100.0, gt=0.0, description="CLIP's logit scale for the zero-shot softmax.")
    text_check: bool = pydantic.Field(True, description="Reject samples whose text contains a lexicon term.")
    lexicons: list[str] = pydantic.Field(
        default_factory=list, description="Term files (one term a line, # comments); empty: the packaged list."
    )
    extra_terms: list[str] = pydantic.Field(default_factory=list, description="Terms added to the lexicons.")
    allowed_terms: list[str] = pydantic.Field(default_factory=list, description="Terms removed from the lexicons.")
    text_fields: list[str] | None = pydantic.Field(
        None, description="Metadata fields checked besides the sample text; default: every text-valued field."
    )
    private_fields: list[str] = pydantic.Field(
        default_factory=lambda: [
            "operator", "operator_name", "inspector", "employee", "employee_id", "worker", "photographer", "author",
            "email", "phone",
        ],
        description="Metadata fields (case-insensitive) removed before shards are written.",
    )  # fmt: skip


AUDIT_BUILTIN_DIMENSIONS = ("domain", "person", "caption_gender", "occupation", "identity")


class AuditConfig(Section):
    """Bias and representation audit: a measurement written to ``audit/audit.json``; it removes no sample."""

    enabled: bool = True
    person_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("audit", "person_prompts"))
    non_person_prompts: list[str] = pydantic.Field(
        default_factory=lambda: default_prompts("audit", "non_person_prompts")
    )
    person_threshold: float = pydantic.Field(
        0.5, ge=0.0, le=1.0, description="Zero-shot P(person) at or above which an image shows people (or a face)."
    )
    attributes: dict[str, dict[str, list[str]]] = pydantic.Field(
        default_factory=lambda: default_prompts("audit", "attributes"),
        description="Perceived attributes of people: attribute -> group -> prompt ensemble.",
    )
    margin: float = pydantic.Field(
        0.2, ge=0.0, le=1.0, description="Abstain when the top two groups' zero-shot probabilities differ by less."
    )
    logit_scale: float = pydantic.Field(100.0, gt=0.0)
    write_labels: bool = pydantic.Field(
        False, description="Write per-image perceived attribute labels into the shards' annotations."
    )
    lexicon: str = pydantic.Field("", description="JSON term file for caption counts; empty: the packaged one.")
    slices: list[str] = pydantic.Field(
        default_factory=lambda: ["plant", "line", "camera", "shift", "sku", "defect_class", "label", "category"],
        description="Metadata columns measured as slices.",
    )
    defect_columns: list[str] = pydantic.Field(
        default_factory=lambda: ["defect_class", "label"], description="Slices whose values are defect classes."
    )
    skew: list[tuple[str, str]] = pydantic.Field(
        default_factory=lambda: [
            ("occupation", "gender_presentation"),
            ("occupation", "age_group"),
            ("occupation", "skin_tone"),
            ("occupation", "caption_gender"),
            ("category", "gender_presentation"),
            ("defect_class", "line"),
            ("defect_class", "camera"),
            ("label", "line"),
            ("label", "camera"),
        ],
        description="(concept, attribute) pairs for Skew, MaxSkew and MinSkew.",
    )
    reference: dict[str, dict[str, float]] = pydantic.Field(
        default_factory=dict, description="Reference distribution per attribute; default: uniform over its groups."
    )
    neutral_queries: list[str] = pydantic.Field(default_factory=lambda: default_prompts("audit", "neutral_queries"))
    ndkl_k: int = pydantic.Field(20, gt=0, description="Retrieval depth of NDKL@k.")
    min_count: int = pydantic.Field(5, ge=1, description="Groups with fewer items are reported but never flagged.")
    smoothing: float = pydantic.Field(0.0, ge=0.0, description="Additive smoothing of P(attribute | concept).")
    max_abs_skew: float = pydantic.Field(0.7, gt=0.0, description="Warn when |Skew| exceeds this (0.7 ~ 2x).")
    max_ndkl: float = pydantic.Field(0.2, gt=0.0, description="Warn when NDKL@k exceeds this.")
    max_exclusion_ratio: float = pydantic.Field(
        2.0, gt=1.0, description="Warn when a group's exclusion rate at a stage exceeds this times the overall rate."
    )
    min_representation_ratio: float = pydantic.Field(
        0.5, gt=0.0, le=1.0, description="Warn when a group's kept share is below this times its reference share."
    )
    long_tail_max: int = pydantic.Field(20, ge=0, description="Defect classes with at most this many inputs.")
    fail_on_bounds: bool = pydantic.Field(False, description="Fail the run when a warning bound is crossed.")

    @pydantic.model_validator(mode="after")
    def _check_names(self) -> "AuditConfig":
        clash = (set(self.attributes) | set(self.slices)) & set(AUDIT_BUILTIN_DIMENSIONS)
        if clash or set(self.attributes) & set(self.slices):
            raise ValueError(f"audit: attribute and slice names must differ from each other and {clash or ''}")
        for name, groups in self.attributes.items():
            if len(groups) < 2 or not all(groups.values()):
                raise ValueError(f"audit.attributes.{name}: needs at least two groups, each with prompts")
        known = set(self.attributes) | set(self.slices) | set(AUDIT_BUILTIN_DIMENSIONS)
        for concept, attribute in self.skew:
            if concept not in known or attribute not in known:
                raise ValueError(f"audit.skew: ({concept!r}, {attribute!r}) names a dimension that is not measured")
        for name, shares in self.reference.items():
            if any(v <= 0 for v in shares.values()) or abs(sum(shares.values()) - 1.0) > 1e-6:
                raise ValueError(f"audit.reference.{name}: shares must be positive and sum to 1")
        return self


class GroupRule(Section):
    """One document per distinct value of ``fields`` (one per SKU, one per inspection record id).

    Applies to samples whose metadata has no ``documents.id_field``; the document id is ``prefix`` followed by the
    values joined with ``+``, so ``fields = ["sku"]`` with no prefix joins the SKU's manifest documents.
    """

    fields: list[str] = pydantic.Field(min_length=1)
    domain: str | None = pydantic.Field(None, description="Apply only to this domain; None: every domain.")
    prefix: str = ""


class PlacementConfig(Section):
    """MMC4's placement of images whose position is unknown: CLIP similarity between each image and each sentence,
    images assigned to sentences by linear assignment, an image placed before its sentence."""

    enabled: bool = True
    min_similarity: float = pydantic.Field(
        0.24,
        ge=-1.0,
        le=1.0,
        description="Assignments below this cosine leave the document (OpenFlamingo trained MMC4 with 0.24 on "
        "ViT-L/14; smaller CLIP models score lower, so re-tune it for the configured model).",
    )


class DocumentsConfig(Section):
    """Interleaved documents (``transforms/documents.py``): text and image segments in order, after curation."""

    enabled: bool = pydantic.Field(
        True, description="Assemble documents; when false, text rows (manifest rows without a path) are unused."
    )
    id_field: str = pydantic.Field("doc_id", description="Metadata field holding a sample's or text row's document.")
    position_field: str = pydantic.Field("position", description="Metadata field ordering a document's segments.")
    text_fields: list[str] = pydantic.Field(
        default_factory=lambda: ["text"], description="Fields of a text row tried in order for its text."
    )
    image_text_fields: list[str] = pydantic.Field(
        default_factory=list,
        description="Image metadata fields whose first non-empty value becomes a text segment right after the image "
        "(an inspection note beside its camera view); repeats of the previous text are skipped.",
    )
    document_fields: list[str] = pydantic.Field(
        default_factory=lambda: ["title", "sku", "category", "url"],
        description="Metadata fields copied into the document's metadata from its first member that has them.",
    )
    groups: list[GroupRule] = pydantic.Field(default_factory=list)
    min_images: int = pydantic.Field(1, ge=1, description="Documents with fewer images after curation are dropped.")
    min_text_chars: int = pydantic.Field(1, ge=0, description="Documents with less text after curation are dropped.")
    placement: PlacementConfig = PlacementConfig()


class ViewConfig(Section):
    """One output view beside ``pairs``: whether it is written, which share of it, and its shard size."""

    enabled: bool = True
    share: float = pydantic.Field(
        1.0, gt=0.0, le=1.0, description="Share of the view's samples written, chosen by a hash of the sample key."
    )
    samples_per_shard: int | None = pydantic.Field(None, gt=0, description="None: shards.samples_per_shard.")
    bytes_per_shard: int | None = pydantic.Field(None, gt=0, description="None: shards.bytes_per_shard.")


_FIELD_NAME = r"^[A-Za-z0-9_]+$"


class EditRule(Section):
    """Image pairs for the ``edit`` view: two samples that agree on ``match`` and differ in ``differ``.

    Example: a defect-free template and the defective board (``match = ["board_id"]``, ``differ = "label"``,
    ``source_values = ["none"]``), or one product in two colours (``match = ["category", "image_role"]``,
    ``differ = "color"``). ``instruction`` may name fields as ``{source.FIELD}`` and ``{target.FIELD}``.
    """

    name: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    domain: str | None = None
    match: list[str] = pydantic.Field(default_factory=list)
    differ: str = pydantic.Field(pattern=_FIELD_NAME)
    source_values: list[str] = pydantic.Field(default_factory=list, description="Empty: any value.")
    target_values: list[str] = pydantic.Field(default_factory=list, description="Empty: any value.")
    instruction: str
    max_pairs_per_group: int = pydantic.Field(16, gt=0)

    @pydantic.field_validator("instruction")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        rest = re.sub(r"\{(source|target)\.[A-Za-z0-9_]+\}", "", value)
        if "{" in rest or "}" in rest:
            raise ValueError(f"instruction {value!r}: only {{source.FIELD}} and {{target.FIELD}} placeholders exist")
        return value


class EditViewConfig(ViewConfig):
    rules: list[EditRule] = pydantic.Field(default_factory=list)


class ViewsConfig(Section):
    """The views beside ``pairs`` (``transforms/write_documents.py``) and the loader they are sized for.

    Every view's shard count is at least ``loader_workers * nodes`` so no data-loader worker starves.
    """

    loader_workers: int = pydantic.Field(1, ge=1, description="Data-loader workers per node reading the shards.")
    nodes: int = pydantic.Field(1, ge=1, description="Nodes (ranks) reading the shards.")
    docs: ViewConfig = ViewConfig()
    edit: EditViewConfig = EditViewConfig()

    def shards(self, base: ShardsConfig, view: ViewConfig | None = None) -> ShardsConfig:
        """The shard settings of a view: ``base`` with the view's sizes and at least workers x nodes shards."""
        values = base.model_dump()
        values["min_shards"] = max(base.min_shards, self.loader_workers * self.nodes)
        if view is not None:
            values["samples_per_shard"] = view.samples_per_shard or base.samples_per_shard
            values["bytes_per_shard"] = view.bytes_per_shard or base.bytes_per_shard
        return ShardsConfig(**values)


class RunConfig(Section):
    output: str = "out"
    max_failure_ratio: float = pydantic.Field(
        0.05, ge=0.0, le=1.0, description="The run fails when more than this share of inputs failed."
    )


ClipPrecision = Literal["fp32", "bf16", "int8-dynamic"]


class ClipModelConfig(Section):
    """The open_clip image/text model shared by every model stage (``transforms/clip_model.py``).

    Weights come from one of: ``name`` + ``pretrained`` tag, or ``name = "hf-hub:ORG/NAME"`` (a hub repository with
    ``open_clip_config.json`` and weights), found in ``cache_dir`` or the hub cache, where the launcher downloads them
    before a run unless ``HF_HUB_OFFLINE`` is set (``unishard models fetch`` fills a folder for offline machines); a
    ``checkpoint`` file for the ``name`` architecture; or ``name = "local-dir:PATH"`` (a folder with
    ``open_clip_config.json`` and weights). Workers never download. ``smoke = true``
    (``--smoke-models``) builds a small randomly initialised model of the same family instead: for offline checks
    and CI only, its outputs are not meaningful.
    """

    name: str = pydantic.Field("ViT-B-32", description="open_clip architecture, hf-hub:ORG/NAME or local-dir:PATH.")
    pretrained: str | None = pydantic.Field("laion2b_s34b_b79k", description="open_clip pretrained tag.")
    checkpoint: str | None = pydantic.Field(None, description="Local weights file for `name`; overrides pretrained.")
    cache_dir: str | None = pydantic.Field(
        None, description="Where pretrained weights are looked up (default: the Hugging Face hub cache)."
    )
    model_id: str | None = pydantic.Field(
        None, description="Name of the model in score fields; default derived, e.g. clip_vit_b_32_laion2b."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: ClipPrecision = pydantic.Field(
        "fp32", description="bf16 weights or int8 dynamic quantization (CPU only) roughly double CPU throughput."
    )
    threads: int = pydantic.Field(
        0, ge=0, description="torch intra-op threads per worker process; 0 keeps torch's default."
    )
    smoke: bool = pydantic.Field(False, description="Random small model of the same family; outputs not meaningful.")

    @pydantic.model_validator(mode="after")
    def _check_device(self) -> "ClipModelConfig":
        if self.precision == "int8-dynamic" and self.device == "cuda":
            raise ValueError("clip.precision int8-dynamic runs on CPU only; use bf16 on cuda")
        return self


class EmbedConfig(Section):
    """Image embeddings, once per surviving image (``transforms/embed.py``)."""

    batch_size: int = pydantic.Field(
        16, gt=0, description="Images per forward pass; partial batches are padded so results never depend on it."
    )


class CaptionerConfig(Section):
    """A captioning model whose caption joins the candidates: CoCa through open_clip (extra `captioner`)."""

    enabled: bool = False
    name: str = "coca_ViT-B-32"
    pretrained: str | None = "mscoco_finetuned_laion2b_s13b_b90k"
    checkpoint: str | None = None
    batch_size: int = pydantic.Field(8, gt=0)
    max_tokens: int = pydantic.Field(30, gt=0, le=76)


class OcrConfig(Section):
    """Text read from the image by RapidOCR (extra `ocr`), for banners and labels; slow on CPU, so off."""

    enabled: bool = False
    min_confidence: float = pydantic.Field(0.5, ge=0.0, le=1.0)


class CaptionConfig(Section):
    """Caption candidates from metadata templates, a captioner and OCR, reranked by CLIP (``transforms/caption.py``).

    ``templates`` maps a domain to format strings over metadata fields; ``default`` applies to other domains. A
    template renders only when every field it names has text.
    """

    templates: dict[str, list[str]] = pydantic.Field(default_factory=lambda: default_prompts("caption", "templates"))
    include_text: bool = pydantic.Field(True, description="The text stage's chosen text is also a candidate.")
    min_chars: int = pydantic.Field(3, ge=1, description="Shorter candidates are not usable.")
    max_chars: int = pydantic.Field(300, gt=0, description="Longer candidates are cut at a word boundary.")
    batch_size: int = pydantic.Field(16, gt=0, description="Samples per rerank batch.")
    required: bool = pydantic.Field(True, description="Reject samples left with no usable caption (no_caption).")
    captioner: CaptionerConfig = CaptionerConfig()
    ocr: OcrConfig = OcrConfig()

    @pydantic.model_validator(mode="after")
    def _check_templates(self) -> "CaptionConfig":
        import string

        for domain, templates in self.templates.items():
            for template in templates:
                try:
                    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
                except ValueError as error:
                    raise ValueError(f"caption.templates.{domain}: {template!r}: {error}") from None
                if not all(f.isidentifier() for f in fields):
                    raise ValueError(f"caption.templates.{domain}: {template!r}: fields must be plain names")
        return self


class ClipFilterConfig(Section):
    """The CLIP-score filter (``transforms/clip_filter.py``): an absolute threshold or a keep-fraction per group.

    With neither set, scores are recorded and nothing is removed; setting both is an error.
    """

    threshold: float | None = pydantic.Field(
        None, ge=-1.0, le=1.0, description="Keep samples scoring at least this (LAION: 0.28 with ViT-B/32)."
    )
    keep_fraction: float | None = pydantic.Field(
        None, gt=0.0, le=1.0, description="Keep this share of each group, highest scores first."
    )
    group_by: str = pydantic.Field(
        "domain", description="Groups of keep_fraction: 'domain', 'all', or 'metadata.FIELD'."
    )
    num_quantiles: int = pydantic.Field(1001, ge=3, description="Resolution of the per-group quantiles.")

    @pydantic.model_validator(mode="after")
    def _one_rule(self) -> "ClipFilterConfig":
        if self.threshold is not None and self.keep_fraction is not None:
            raise ValueError("clip_filter: set threshold or keep_fraction, not both")
        if self.group_by not in ("domain", "all") and not self.group_by.startswith("metadata."):
            raise ValueError("clip_filter.group_by must be 'domain', 'all' or 'metadata.FIELD'")
        return self


class QualityRule(Section):
    """One image-quality rule: an absolute threshold, a robust outlier bound within the sample's group, or both.

    A sample fails the rule when its measure is beyond ``threshold``, or (``deviations`` > 0, and its group holds at
    least ``quality.min_group`` samples) more than ``deviations`` scaled MADs (1.4826 x MAD, at least ``min_mad``)
    beyond its group's median, on the rule's scale (log10 for sharpness and contrast, linear otherwise).
    """

    enabled: bool = True
    threshold: float | None = pydantic.Field(None, description="Absolute bound on the rule's measure.")
    deviations: float = pydantic.Field(
        0.0, ge=0.0, description="Scaled MADs from the group median that make an outlier; 0 turns the bound off."
    )
    min_mad: float = pydantic.Field(
        0.05, ge=0.0, description="Floor of the scaled MAD (on the rule's scale), so a tight group flags no noise."
    )


class OverexposedRule(QualityRule):
    max_shadows: float = pydantic.Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="An image with at least this share of clipped shadows on its subject is two-tone (a binarised "
        "scan, line art) and is never called overexposed.",
    )


class QualityConfig(Section):
    """Image quality without model weights (``transforms/quality.py``): sharpness, exposure, contrast, text.

    Every sample is measured on an RGB copy of its normalised image at most ``side`` pixels long; the measures go
    into ``scores`` (``quality_*``). Rules (fields), in decision order, with their reason codes: ``text_heavy``
    (text_coverage at or above), ``underexposed`` (brightness_p99 below: the brightest 1% of the frame is dark),
    ``overexposed`` (highlights_clipped at or above) and ``tinted_highlights`` (highlights_tinted at or above; reason
    ``overexposed``), ``low_contrast`` (contrast_rms below, log10 scale), ``blurry`` (sharpness_lapvar below, log10
    scale).

    Defaults come from ``benchmarks/bench_quality.py`` (400 factory images; 341 marketing images: the corpus'
    324 and 17 scikit-image photos; a quarter of each domain degraded; seed 0, ``--measures``: 556 clean images),
    checked offline on x2.5 copies of all 741 originals: text 0.15 (banners over 40% of the frame measure median
    0.24, 78 of 82 test copies at least 0.15; of the corpora's 938 clean images 928 measure 0 and one, a DeepPCB row
    of pads on a bus, 0.37; 256 px crops of scikit-image's gravel, grass, brick and coins at most 0.11, since text
    detector v2 asks each glyph for a flat background); brightness 0.25 (x0.2 copies at most 0.21, clean
    images at least 0.32); clipped highlights 0.35, and 4 MADs (at least 0.05) above the group median (clean tiles
    and steel of one camera clip almost nothing, median 0.0001, so their bound is 0.2; clean product shots clip
    white garments and the backdrop's rim, median 0.09, 97th percentile 0.28); tinted highlights 0.1 (clean
    product shots: median 0.004, 97th percentile 0.07, vivid garments clipping one channel not counted; x2.5
    copies of products: median 0.2); contrast 0.02 and 3 MADs below the group median on log10 (flattened PCB
    scans measure 0.07, natively dull tiles and steel 0.03-0.05, so only a per-``camera`` bound tells them apart);
    sharpness 0.03 (blurred copies at most 0.023, 4 clean product shots 0.025-0.040). The limit: x2.5 copies of
    dark tiles and dark products look like well-exposed ones (little clips, no hue is lost) and are kept; about
    one x2.5 copy in five is.
    """

    enabled: bool = pydantic.Field(True, description="Measure and filter; off, the stage passes samples on untouched.")
    report_only: bool = pydantic.Field(
        False, description="Flag failing samples in annotations.quality.flags but remove nothing."
    )
    side: int = pydantic.Field(256, ge=32, le=2048, description="Longer side of the copy that is measured.")
    group_by: list[str] = pydantic.Field(
        default_factory=lambda: ["domain", "camera"],
        description="'domain' or metadata fields whose values form a group for the outlier bounds; a field a "
        "sample lacks counts as empty, so without a camera field the domain alone groups.",
    )
    min_group: int = pydantic.Field(
        30, ge=3, description="Groups with fewer samples use absolute thresholds only (a MAD of few is noise)."
    )
    text_heavy: QualityRule = QualityRule(threshold=0.15)
    underexposed: QualityRule = QualityRule(threshold=0.25)
    overexposed: OverexposedRule = OverexposedRule(threshold=0.35, deviations=4.0)
    tinted_highlights: QualityRule = QualityRule(threshold=0.1)
    low_contrast: QualityRule = QualityRule(threshold=0.02, deviations=3.0)
    blurry: QualityRule = QualityRule(threshold=0.03)

    @pydantic.field_validator("group_by")
    @classmethod
    def _field_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(_FIELD_NAME, name):
                raise ValueError(f"quality.group_by: {name!r} must be 'domain' or a metadata field name")
        return value


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


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, or kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set normalise.max_side=512")
    dotted, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return dotted.strip().split("."), value


def _apply_override(data: dict, dotted: list[str], value: Any) -> None:
    node = data
    for part in dotted[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(dotted)}: {part!r} is not a section")
    node[dotted[-1]] = value


def _resolve_paths(data: dict, base: Path) -> None:
    for spec in data.get("ingest", {}).get("inputs", []):
        if isinstance(spec, dict) and "path" in spec and "://" not in str(spec["path"]):
            spec["path"] = str((base / spec["path"]).resolve())
            spec["roots"] = [str((base / root).resolve()) for root in spec.get("roots", [])]
    exclude = data.get("decontaminate", {}).get("exclude", [])
    for index, spec in enumerate(exclude if isinstance(exclude, list) else []):
        spec = {"path": spec} if isinstance(spec, str) else spec
        if isinstance(spec, dict) and "path" in spec and "://" not in str(spec["path"]):
            spec["path"] = str((base / spec["path"]).resolve())
            spec["roots"] = [str((base / root).resolve()) for root in spec.get("roots", [])]
        exclude[index] = spec
    run = data.get("run", {})
    if isinstance(run, dict) and "output" in run and "://" not in str(run["output"]):
        run["output"] = str((base / run["output"]).resolve())


def _describe(error: pydantic.ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (see `unishard config --schema` for the keys that exist)")
        else:
            lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> UnishardConfig:
    """Read, override and validate a config file.

    Args:
        path: A TOML file, or ``None`` for the defaults.
        overrides: ``section.key=value`` strings, applied in order.

    Raises:
        ConfigError: The file is missing or malformed, or a key or value is invalid; the message names both.
    """
    data: dict = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        _resolve_paths(data, path.parent.resolve())
    for text in overrides:
        dotted, value = parse_override(text)
        _apply_override(data, dotted, value)
        if dotted[:2] == ["run", "output"] and "://" not in str(value):
            data["run"]["output"] = str(Path(value).resolve())
    try:
        return UnishardConfig.model_validate(data)
    except pydantic.ValidationError as error:
        raise ConfigError(_describe(error, origin)) from None
