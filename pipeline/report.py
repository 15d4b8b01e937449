"""``unishard report OUT/``: gather what a run kept, dropped and wrote into ``report.json`` and ``index.html``.

Reads only committed outputs: ``_run/*.json`` (config, versions, runner, wall time), the ledger (funnel, rejected
items, duplicate groups), the Parquet sidecars of the ``pairs`` view (distributions, kept samples), the tars (kept
thumbnails), ``dedup/clusters.parquet`` and ``audit/audit.json`` when present, and the shards themselves (validation).
Rejected thumbnails are read back from the item's source while it is still readable; images rejected by a safety
stage are never shown. Every choice of items is a pure function of keys and sources, so two reports of the same
output differ only in wall time.
"""

import argparse
import base64
import hashlib
import io
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.validate import (
    PAIRS_VIEW,
    exists,
    list_files,
    read_bytes,
    read_json,
    read_samples,
    shard_parts,
    validate_output,
)
from schemas.report import (
    DomainCount,
    DuplicateCluster,
    Funnel,
    FunnelStep,
    Galleries,
    GalleryItem,
    ModelInfo,
    ReasonCount,
    RejectedGallery,
    Report,
    RunInfo,
    ShardCheck,
    Validation,
)
from transforms._io import join, write_atomic

_LOG = logging.getLogger("unishard")

STAGE_ORDER = (
    "ingest",
    "normalise",
    "text",
    "exact_dedup",
    "near_dedup",
    "decontaminate",
    "decontamination",
    "semantic_dedup",
    "embed",
    "caption",
    "clip_filter",
    "safety",
    "audit",
    "documents",
    "split",
    "write_shards",
)
DUPLICATE_REASONS = ("exact_duplicate", "pixel_duplicate", "near_duplicate", "semantic_duplicate")
WITHHELD_STAGES = ("safety",)
WITHHELD_WORDS = ("unsafe", "nsfw", "face", "private", "person")
KEPT_SAMPLES = 24
REJECTED_PER_REASON = 8
CLUSTERS_SHOWN = 8
MEMBERS_SHOWN = 6
THUMB_SIDE = 220
MAX_SOURCE_BYTES = 64 * 1024 * 1024
MAX_THUMB_PIXELS = 80_000_000


def write_report(output: str, *, validate: bool = True, seed: int = 0) -> Report:
    """Build the report of the committed run in ``output`` and write ``report/report.json`` and ``index.html``."""
    from pipeline.report_html import render

    report, thumbnails = build_report(output, validate=validate, seed=seed)
    folder = join(output, "report")
    write_atomic(join(folder, "report.json"), report.model_dump_json(indent=2).encode() + b"\n")
    write_atomic(join(folder, "index.html"), render(report, thumbnails).encode("utf-8"))
    return report


def write_run_report(output: str) -> Report | None:
    """Write the report at the end of ``unishard run``; a failure is logged, never fatal (the run is committed)."""
    try:
        report = write_report(output)
    except Exception:  # noqa: BLE001 - the shards are committed; a report bug must not turn the run into a failure
        _LOG.exception(
            "unishard: the run finished but writing its report failed; retry with `unishard report %s`", output
        )
        return None
    _LOG.info("unishard: report %s (%s)", join(output, "report", "index.html"), summary_line(report))
    return report


def build_report(output: str, *, validate: bool = True, seed: int = 0) -> tuple[Report, dict[str, str]]:
    """Return the report model and its thumbnails (``data:`` URIs by gallery item id)."""
    from pipeline.report_charts import distributions

    run = run_info(output)
    ledger = read_ledger(output)
    sidecar = read_sidecars(output)
    thumbs = _Thumbnails(output, run.config)
    validation = validate_output(output) if validate else unchecked_shards(output)
    galleries = Galleries(
        kept=kept_gallery(sidecar, thumbs, seed),
        rejected=rejected_galleries(ledger, thumbs, seed),
        **cluster_galleries(output, ledger, sidecar, thumbs),
    )
    audit_path = join(output, "audit", "audit.json")
    audit = read_json(audit_path) if exists(audit_path) else None
    funnel = build_funnel(ledger)
    report = Report(
        run=run,
        funnel=funnel,
        distributions=distributions(sidecar, ledger, run.config),
        galleries=galleries,
        validation=validation,
        audit=audit if isinstance(audit, dict) else None,
        warnings=_warnings(run, funnel, validation, audit),
    )
    return report, thumbs.uris


def run_info(output: str) -> RunInfo:
    """What ``_run/`` says about the run: config, versions, runner, wall time and the models it used."""

    def load(name: str) -> dict:
        path = join(output, "_run", name)
        try:
            loaded = read_json(path) if exists(path) else {}
        except ValueError:
            loaded = {}
        return loaded if isinstance(loaded, dict) else {}

    config, versions, run = load("config.json"), load("versions.json"), load("run.json")
    recorded = load("models.json")
    models = [*_models_from(run.get("models")), *_models_from(_model_entries(recorded))]
    models = models or find_models(config)
    smoke = (
        bool(recorded.get("smoke"))
        or recorded.get("meaningful") is False
        or bool(run.get("smoke_models"))
        or any(_truthy_smoke(k, v) for k, v in _walk(config))
        or any(_truthy_smoke(k, v) for k, v in _walk(run))
    )
    return RunInfo(
        output=output,
        runner=str(run.get("runner", "")),
        beam_args=[str(a) for a in run.get("beam_args", [])],
        wall_seconds=run.get("wall_seconds"),
        config_sha256=str(run.get("config_sha256", "")),
        smoke_models=smoke,
        models=_unique_models(models),
        versions={str(k): str(v) for k, v in versions.items()},
        config=config,
    )


def _model_entries(recorded: dict) -> dict:
    """The model sections of ``_run/models.json`` (``{"clip": {...}, "captioner": null, "smoke": true, ...}``)."""
    return {k: v for k, v in recorded.items() if isinstance(v, dict)}


def _walk(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, value
            yield from _walk(value, path)


def _truthy_smoke(path: str, value: Any) -> bool:
    return "smoke" in path.rsplit(".", 1)[-1] and value is True


_MODEL_KEYS = ("model", "model_name", "model_id", "checkpoint", "architecture", "arch")


def find_models(config: dict) -> list[ModelInfo]:
    """Models named in config sections: any section holding a ``model``-like key, with precision and device."""
    found = []
    for path, value in _walk(config):
        if not isinstance(value, dict):
            continue
        name_key = next((k for k in _MODEL_KEYS if isinstance(value.get(k), str) and value.get(k)), None)
        if name_key is None:
            continue
        name = value[name_key]
        if isinstance(value.get("pretrained"), str) and value["pretrained"]:
            name = f"{name} / {value['pretrained']}"
        found.append(
            ModelInfo(
                section=path,
                name=name,
                precision=str(value.get("precision", value.get("dtype", "")) or ""),
                device=str(value.get("device", "") or ""),
            )
        )
    return found


def _models_from(value: Any) -> list[ModelInfo]:
    items = value.items() if isinstance(value, dict) else enumerate(value or [])
    models = []
    for section, entry in items:
        if isinstance(entry, dict):
            name = entry.get("model_id") or entry.get("name") or entry.get("model") or str(section)
            models.append(
                ModelInfo(
                    section=str(entry.get("stage", section)),
                    name=str(name),
                    precision=str(entry.get("precision", "")),
                    device=str(entry.get("device", "")),
                )
            )
        elif isinstance(entry, str):
            models.append(ModelInfo(section=str(section), name=entry))
    return models


def _unique_models(models: list[ModelInfo]) -> list[ModelInfo]:
    seen, unique = set(), []
    for model in models:
        if (model.section, model.name) not in seen:
            seen.add((model.section, model.name))
            unique.append(model)
    return unique


def read_ledger(output: str) -> pa.Table:
    """All ledger rows (``source, key, status, stage, reason, detail, domain, split``), sorted by source."""
    parts = list_files(join(output, "ledger"), ".parquet")
    tables = []
    for path in parts:
        with FileSystems.open(path) as handle:
            tables.append(pq.read_table(handle))
    if not tables:
        names = ("source", "key", "status", "stage", "reason", "detail", "domain", "split")
        return pa.table({name: pa.array([], pa.string()) for name in names})
    table = pa.concat_tables(tables, promote_options="default")
    return table.sort_by("source")


def read_sidecars(output: str) -> pa.Table:
    """Every sidecar row of the pairs view, with the shard it belongs to in a ``shard`` column, sorted by key."""
    tables = []
    for path in list_files(join(output, "shards", PAIRS_VIEW), ".parquet"):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        tar = path[: -len(".parquet")] + ".tar"
        tables.append(table.append_column("shard", pa.array([tar] * table.num_rows, pa.string())))
    if not tables:
        return pa.table({"key": pa.array([], pa.string()), "shard": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default").sort_by("key")


def stage_rank(stage: str) -> tuple[int, str]:
    """Position of a stage in the dataflow; unknown stages go just before shard writing."""
    if stage in STAGE_ORDER:
        return STAGE_ORDER.index(stage), ""
    return STAGE_ORDER.index("write_shards") - 1, stage


def build_funnel(ledger: pa.Table) -> Funnel:
    """Items per stage (entered, rejected, failed, remaining), per reason and per domain, from the ledger."""
    rows = ledger.select(["status", "stage", "reason", "domain"]).to_pylist()
    tally = Counter((r["status"], r["stage"], r["reason"] or "") for r in rows)
    domains: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        domains[row["domain"] or ""][row["status"]] += 1
    by_status = Counter(r["status"] for r in rows)
    removed: dict[str, Counter] = defaultdict(Counter)
    for (status, stage, _), count in tally.items():
        if status != "kept":
            removed[stage][status] += count
    steps, remaining = [], len(rows)
    for stage in sorted(removed, key=stage_rank):
        rejected, failed = removed[stage]["rejected"], removed[stage]["failed"]
        steps.append(
            FunnelStep(
                stage=stage,
                entered=remaining,
                rejected=rejected,
                failed=failed,
                remaining=remaining - rejected - failed,
            )
        )
        remaining -= rejected + failed
    reasons = [
        ReasonCount(status=status, stage=stage, reason=reason, count=count)
        for (status, stage, reason), count in sorted(tally.items(), key=lambda i: (stage_rank(i[0][1]), -i[1], i[0]))
        if status != "kept"
    ]
    return Funnel(
        items=len(rows),
        kept=by_status["kept"],
        rejected=by_status["rejected"],
        failed=by_status["failed"],
        steps=steps,
        reasons=reasons,
        domains=[
            DomainCount(
                domain=domain,
                items=sum(counts.values()),
                kept=counts["kept"],
                rejected=counts["rejected"],
                failed=counts["failed"],
            )
            for domain, counts in sorted(domains.items(), key=lambda i: (-sum(i[1].values()), i[0]))
        ],
    )


def pick(values: Iterable[str], count: int, seed: int) -> list[str]:
    """A deterministic pseudo-random choice of ``count`` values: the smallest seeded hashes."""
    return sorted(values, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())[:count]


def detail_of(row: dict) -> dict:
    try:
        detail = json.loads(row.get("detail") or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _note(detail: dict) -> str:
    if "message" in detail:
        return str(detail["message"])
    survivor = detail.get("survivor_source") or detail.get("survivor_key") or detail.get("survivor")
    if isinstance(survivor, str):
        extra = ", ".join(f"{k} {detail[k]}" for k in ("distance", "similarity") if k in detail)
        return f"duplicate of {survivor.rsplit('/', 1)[-1]}" + (f" ({extra})" if extra else "")
    return ", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if not isinstance(v, (dict, list)))


def _kept_item(row: dict, thumbs: "_Thumbnails") -> GalleryItem:
    has = thumbs.from_shard(row["key"], row["shard"])
    return GalleryItem(
        key=row["key"],
        source=row.get("source", ""),
        domain=row.get("domain", ""),
        status="kept",
        text=row.get("text", "") or "",
        width=row.get("original_width"),
        height=row.get("original_height"),
        has_thumbnail=has,
    )


def kept_gallery(sidecar: pa.Table, thumbs: "_Thumbnails", seed: int) -> list[GalleryItem]:
    if not sidecar.num_rows:
        return []
    rows = {row["key"]: row for row in sidecar.to_pylist()}
    chosen = sorted(pick(rows, KEPT_SAMPLES, seed), key=lambda k: (rows[k].get("domain", ""), k))
    thumbs.prefetch_shards([rows[k] for k in chosen])
    return [_kept_item(rows[key], thumbs) for key in chosen]


def _withheld(stage: str, reason: str) -> bool:
    return stage in WITHHELD_STAGES or any(word in reason for word in WITHHELD_WORDS)


def _dropped_item(row: dict, thumbs: "_Thumbnails") -> GalleryItem:
    detail = detail_of(row)
    withheld = _withheld(row["stage"], row["reason"] or "")
    return GalleryItem(
        key=row["key"],
        source=row["source"],
        domain=row["domain"] or "",
        status=row["status"],
        note=("preview withheld (safety) · " if withheld else "") + _note(detail),
        has_thumbnail=False if withheld else thumbs.from_source(row["source"], row["key"]),
    )


def rejected_galleries(ledger: pa.Table, thumbs: "_Thumbnails", seed: int) -> list[RejectedGallery]:
    """Up to ``REJECTED_PER_REASON`` items for every (status, stage, reason), largest groups first."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in ledger.filter(pa.compute.not_equal(ledger["status"], "kept")).to_pylist():
        groups[(row["status"], row["stage"], row["reason"] or "")].append(row)
    galleries = []
    for (status, stage, reason), rows in sorted(groups.items(), key=lambda i: (stage_rank(i[0][1]), -len(i[1]), i[0])):
        by_source = {row["source"]: row for row in rows}
        chosen = sorted(pick(by_source, REJECTED_PER_REASON, seed))
        items = [_dropped_item(by_source[source], thumbs) for source in chosen]
        galleries.append(RejectedGallery(status=status, stage=stage, reason=reason, count=len(rows), items=items))
    return galleries


def _clusters_from_files(output: str) -> tuple[list[dict], set[str]]:
    """Duplicate groups from ``dedup/<stage>.parquet`` (one row per member), and the stages those files cover.

    A group is ``{cluster_id, size, survivor, reasons, members: [(key, source, note)]}``; its survivor is the key
    most of its members survive in favour of (a group with label rules can have several).
    """
    rows = []
    for path in list_files(join(output, "dedup"), ".parquet"):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        if {"cluster_id", "key"} <= set(table.column_names):
            rows.extend(table.to_pylist())
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[str(row["cluster_id"])].append(row)
    clusters = []
    for cluster_id, members in grouped.items():
        survivors = Counter(m.get("survivor_key") or m["key"] for m in members)
        survivor = min(survivors, key=lambda k: (-survivors[k], str(k)))
        stage = str(members[0].get("stage") or "dedup")
        metric = str(members[0].get("metric") or "distance")
        notes = []
        for member in members:
            if member["key"] == survivor:
                continue
            if member.get("removed") is False:
                state = "kept (report only)" if member.get("report_only") else "kept"
            else:
                state = "removed"
            distance = member.get("distance")
            shown = f"{metric} {distance:.3g}" if isinstance(distance, (int, float)) else ""
            notes.append(
                (member["key"], member.get("source") or "", f"{stage} · {state}" + (f" · {shown}" if shown else ""))
            )
        clusters.append(
            {
                "cluster_id": cluster_id,
                "size": len(members),
                "survivor": survivor,
                "reasons": [stage],
                "members": notes,
            }
        )
    return clusters, {str(row.get("stage")) for row in rows}


def _clusters_from_ledger(ledger: pa.Table, covered: set[str]) -> list[dict]:
    """Duplicate groups from ledger rows naming a survivor, for dedup stages that write no cluster file."""
    duplicates = ledger.filter(pa.compute.is_in(ledger["reason"], pa.array(DUPLICATE_REASONS)))
    clusters: dict[str, dict] = {}
    for row in duplicates.to_pylist():
        detail = detail_of(row)
        survivor = detail.get("survivor_key") or detail.get("survivor")
        if not isinstance(survivor, str) or row["stage"] in covered:
            continue
        cluster = clusters.setdefault(
            f"{row['stage']}-{survivor}",
            {
                "cluster_id": f"{row['stage']}-{survivor}",
                "size": 1,
                "survivor": survivor,
                "reasons": [],
                "members": [],
            },
        )
        cluster["size"] += 1
        if row["reason"] not in cluster["reasons"]:
            cluster["reasons"].append(row["reason"])
        cluster["members"].append((row["key"], row["source"], _note(detail) or row["reason"]))
    return list(clusters.values())


def cluster_galleries(output: str, ledger: pa.Table, sidecar: pa.Table, thumbs: "_Thumbnails") -> dict[str, Any]:
    """The largest duplicate groups (in images), each with its survivor: from ``dedup/`` files and the ledger."""
    from_files, covered = _clusters_from_files(output)
    clusters = [c for c in [*from_files, *_clusters_from_ledger(ledger, covered)] if c["members"]]
    clusters.sort(key=lambda c: (-c["size"], str(c["cluster_id"])))
    kept = {row["key"]: row for row in sidecar.to_pylist()} if sidecar.num_rows else {}
    by_key: dict[str, dict] = {}
    by_source: dict[str, dict] = {}
    for row in ledger.to_pylist() if clusters else []:
        by_source[row["source"]] = row
        if row["key"] and (row["key"] not in by_key or row["status"] == "kept"):
            by_key[row["key"]] = row
    shown = []
    for cluster in clusters[:CLUSTERS_SHOWN]:
        survivor_key = cluster["survivor"]
        if survivor_key in kept:
            thumbs.prefetch_shards([kept[survivor_key]])
            survivor = _kept_item(kept[survivor_key], thumbs)
        elif survivor_key in by_key:
            survivor = _dropped_item(by_key[survivor_key], thumbs)
        else:
            survivor = GalleryItem(key=survivor_key, source="", note="not in the ledger")
        members = []
        for key, source, note in sorted(cluster["members"], key=lambda m: (str(m[1]), str(m[0])))[:MEMBERS_SHOWN]:
            row = by_source.get(source) or by_key.get(key) or {"source": source, "key": key}
            source = row.get("source") or source
            members.append(
                GalleryItem(
                    key=key,
                    source=source,
                    domain=row.get("domain") or "",
                    status=row.get("status") or "",
                    note=note,
                    has_thumbnail=thumbs.from_source(source, key) if source else False,
                )
            )
        shown.append(
            DuplicateCluster(
                cluster_id=str(cluster["cluster_id"]),
                size=cluster["size"],
                reasons=sorted(cluster["reasons"]),
                survivor=survivor,
                members=members,
            )
        )
    return {"clusters": shown, "cluster_count": len(clusters)}


def unchecked_shards(output: str) -> Validation:
    """The shard table from ``_stats.json`` files alone, without reading the tars."""
    checks = []
    for path in list_files(join(output, "shards"), ".tar"):
        view, split = shard_parts(output, path)
        stats_path = path[: -len(".tar")] + "_stats.json"
        stats = read_json(stats_path) if exists(stats_path) else {}
        checks.append(
            ShardCheck(
                path=path,
                view=view,
                split=split,
                samples=int(stats.get("samples", 0)),
                bytes=int(stats.get("bytes", 0)),
                image_bytes=stats.get("image_bytes"),
                domains=stats.get("domains", {}),
                checked=False,
            )
        )
    return Validation(output=output, shards=checks, problems=[])


def _warnings(run: RunInfo, funnel: Funnel, validation: Validation, audit: Any) -> list[str]:
    warnings = []
    if run.smoke_models:
        warnings.append(
            "This run used small randomly initialised smoke models: scores, captions and filters are NOT meaningful."
        )
    if funnel.failed:
        warnings.append(f"{funnel.failed} items failed with an unexpected error; see the failed rows below.")
    if not validation.ok:
        warnings.append(f"Shard validation found {len(validation.all_problems())} problems; see the shard table.")
    if isinstance(audit, dict):
        from pipeline.report_audit import warning_text

        for warning in audit.get("warnings", []) or []:
            warnings.append(f"Audit: {warning_text(warning)}")
    return warnings


class _Thumbnails:
    """Small inline JPEG thumbnails by gallery id (``key`` for kept images, ``source`` otherwise)."""

    def __init__(self, output: str, config: dict):
        self._output = output
        self._config = config
        self._shard_cache: dict[str, dict[str, bytes]] = {}
        self._manifests: dict[str, list[dict]] = {}
        self.uris: dict[str, str] = {}

    def prefetch_shards(self, rows: list[dict]) -> None:
        """Read the images of ``rows`` from their shards, one pass per shard."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row["key"] not in self._shard_cache:
                wanted[row["shard"]].add(row["key"])
        for shard, keys in sorted(wanted.items()):
            try:
                for key, members in read_samples(shard, keys).items():
                    image = next((v for ext, v in sorted(members.items()) if ext not in ("json", "txt")), b"")
                    self._shard_cache[key] = image
            except Exception as error:  # noqa: BLE001 - a broken shard only loses its thumbnails
                _LOG.warning("report: cannot read thumbnails from %s: %s", shard, error)

    def from_shard(self, key: str, shard: str) -> bool:
        ident = f"kept:{key}"
        if ident not in self.uris:
            if key not in self._shard_cache:
                self.prefetch_shards([{"key": key, "shard": shard}])
            uri = thumbnail_uri(self._shard_cache.get(key, b""))
            if uri:
                self.uris[ident] = uri
        return ident in self.uris

    def from_source(self, source: str, key: str | None) -> bool:
        ident = f"source:{source}"
        if ident not in self.uris:
            try:
                data = self._source_bytes(source)
            except Exception:  # noqa: BLE001 - an unreadable source simply has no thumbnail
                data = b""
            uri = thumbnail_uri(data)
            if uri:
                self.uris[ident] = uri
        return ident in self.uris

    def _source_bytes(self, source: str) -> bytes:
        if "#" not in source or exists(source):
            return _read_capped(source)
        container, _, item = source.rpartition("#")
        lowered = container.lower()
        if lowered.endswith(".tar"):
            members = read_samples(container, {item.rpartition("/")[2]})
            images = [v for m in members.values() for ext, v in sorted(m.items()) if ext not in ("json", "txt")]
            return images[0] if images else b""
        if lowered.endswith((".csv", ".jsonl", ".parquet")) and item.isdigit():
            return _read_capped(self._manifest_path(container, int(item)))
        return b""

    def _manifest_path(self, manifest: str, number: int) -> str:
        from transforms.ingest import _manifest_rows, resolve_manifest_path

        spec = next(
            (s for s in self._config.get("ingest", {}).get("inputs", []) if s.get("path") == manifest),
            {"path_column": "path", "roots": []},
        )
        if manifest not in self._manifests:
            self._manifests[manifest] = list(_manifest_rows(manifest))
        rows = self._manifests[manifest]
        value = rows[number - 1].get(spec.get("path_column", "path")) if 0 < number <= len(rows) else None
        return resolve_manifest_path(str(value), manifest, spec.get("roots", [])) if value else ""


def _read_capped(path: str) -> bytes:
    if not path or not exists(path):
        return b""
    if "://" not in path and os.path.getsize(path) > MAX_SOURCE_BYTES:
        return b""
    return read_bytes(path)


def thumbnail_uri(data: bytes) -> str:
    """A ``data:image/jpeg`` URI of a small thumbnail of ``data``, or ``""`` when it is not a readable image."""
    if not data:
        return ""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_THUMB_PIXELS:
                return ""
            image.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "L"):
                background = Image.new("RGB", image.size, (255, 255, 255))
                rgba = image.convert("RGBA")
                background.paste(rgba, mask=rgba.getchannel("A"))
                image = background
            image = image.convert("RGB")
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=72, optimize=True)
    except Exception:  # noqa: BLE001 - anything Pillow cannot turn into a thumbnail gets none
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def summary_line(report: Report) -> str:
    funnel = report.funnel
    shards = report.validation.shards if report.validation else []
    status = "not validated"
    if report.validation and any(s.checked for s in shards):
        status = "valid" if report.validation.ok else f"{len(report.validation.all_problems())} problems"
    return (
        f"{funnel.items} items, {funnel.kept} kept, {funnel.rejected} rejected, {funnel.failed} failed; "
        f"{len(shards)} shards ({status})"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write OUT/report/index.html and report.json", allow_abbrev=False)
    parser.add_argument("output", help="a unishard output folder (the run.output of a run)")
    parser.add_argument("--no-validate", action="store_true", help="skip re-reading the shards (faster)")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    output = args.output.rstrip("/") or args.output
    if not exists(join(output, "_run")) and not exists(join(output, "ledger")):
        print(f"unishard: {output} has no _run/ or ledger/: not a unishard output folder", file=sys.stderr)
        return 2
    report = write_report(output, validate=not args.no_validate)
    out.write(f"unishard: {join(output, 'report', 'index.html')}: {summary_line(report)}\n")
    return 0
