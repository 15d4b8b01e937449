"""``OUT/report/report.json``: what a run kept, what it dropped and why, and whether its shards are sound.

The HTML report (``OUT/report/index.html``) is rendered from this model plus thumbnails; the JSON carries no image
data. Shard validation results (``unishard validate``) use the same ``ShardCheck`` model. A change to the fields bumps
``REPORT_SCHEMA_VERSION``.
"""

from typing import Any

import pydantic

REPORT_SCHEMA_VERSION = 1


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ModelInfo(Model):
    """A model a stage used, as found in the run's config or ``_run/run.json``."""

    section: str
    name: str
    precision: str = ""
    device: str = ""


class RunInfo(Model):
    output: str
    runner: str = ""
    beam_args: list[str] = []
    wall_seconds: float | None = None
    config_sha256: str = ""
    smoke_models: bool = False
    models: list[ModelInfo] = []
    versions: dict[str, str] = {}
    config: dict[str, Any] = {}


class ReasonCount(Model):
    status: str
    stage: str
    reason: str
    count: int


class FunnelStep(Model):
    """One stage of the funnel: items that reached it, and how many it rejected or failed."""

    stage: str
    entered: int
    rejected: int
    failed: int
    remaining: int


class DomainCount(Model):
    domain: str
    items: int
    kept: int
    rejected: int
    failed: int


class Funnel(Model):
    items: int
    kept: int
    rejected: int
    failed: int
    steps: list[FunnelStep]
    reasons: list[ReasonCount]
    domains: list[DomainCount]


class Threshold(Model):
    value: float
    label: str


class SeriesStats(Model):
    count: int
    min: float
    median: float
    mean: float
    max: float


class Distribution(Model):
    """A histogram over shared bin edges, one series of counts per domain (or per status for scores)."""

    name: str
    title: str
    unit: str = ""
    log_scale: bool = False
    edges: list[float]
    series: dict[str, list[int]]
    stats: dict[str, SeriesStats]
    thresholds: list[Threshold] = []


class GalleryItem(Model):
    """One picture in a gallery; ``thumbnail`` names an entry of the HTML's thumbnails, never image data."""

    key: str | None
    source: str
    domain: str = ""
    status: str = ""
    text: str = ""
    note: str = ""
    width: int | None = None
    height: int | None = None
    has_thumbnail: bool = False


class RejectedGallery(Model):
    status: str
    stage: str
    reason: str
    count: int
    items: list[GalleryItem]


class ClusterGallery(Model):
    """A duplicate group: the survivor and the members it replaced (``size`` counts images, survivor included)."""

    cluster_id: str
    size: int
    reasons: list[str]
    survivor: GalleryItem
    members: list[GalleryItem]


class Galleries(Model):
    kept: list[GalleryItem] = []
    rejected: list[RejectedGallery] = []
    clusters: list[ClusterGallery] = []
    cluster_count: int = 0


class ShardCheck(Model):
    """One shard as found on disk, with what ``unishard validate`` found wrong (``checked=False``: not checked)."""

    path: str
    view: str
    split: str
    samples: int
    bytes: int
    image_bytes: int | None = None
    domains: dict[str, int] = {}
    checked: bool = True
    problems: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems


class Validation(Model):
    """The result of validating a whole output folder."""

    output: str
    shards: list[ShardCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(shard.ok for shard in self.shards)

    def all_problems(self) -> list[str]:
        return [*self.problems, *(f"{shard.path}: {problem}" for shard in self.shards for problem in shard.problems)]


class Report(Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    run: RunInfo
    funnel: Funnel
    distributions: list[Distribution] = []
    galleries: Galleries = Galleries()
    validation: Validation | None = None
    audit: dict[str, Any] | None = None
    warnings: list[str] = []
