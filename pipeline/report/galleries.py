"""The report's galleries: a fixed sample of kept items, rejected items per reason, the largest duplicate groups.

``kept_gallery`` picks ``KEPT_SAMPLES`` kept samples of the pairs view, ``rejected_galleries`` up to
``REJECTED_PER_REASON`` items of every (status, stage, reason), ``cluster_galleries`` the ``CLUSTERS_SHOWN`` largest
duplicate groups (from ``dedup/<stage>.parquet``, else from ledger rows naming a survivor), each with its survivor
and up to ``MEMBERS_SHOWN`` members. Thumbnails come from ``pipeline.report.thumbnails``; images rejected by a safety
stage, and paths rejected as ``outside_root``, are never read. Every choice is a pure function of keys and sources
(smallest seeded hashes), so the galleries do not depend on the order the ledger was read in.
"""

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.report.data import stage_rank
from pipeline.report.thumbnails import Thumbnails
from pipeline.validate import list_files
from schemas import reasons
from schemas.report import ClusterGallery, GalleryItem, RejectedGallery
from transforms._io import join

DUPLICATE_REASONS = ("exact_duplicate", "pixel_duplicate", "near_duplicate", "semantic_duplicate")
WITHHELD_STAGES = ("safety",)
WITHHELD_WORDS = ("unsafe", "nsfw", "face", "private", "person")
KEPT_SAMPLES = 24
REJECTED_PER_REASON = 8
CLUSTERS_SHOWN = 8
MEMBERS_SHOWN = 6


def pick(values: Iterable[str], count: int, seed: int) -> list[str]:
    """A deterministic pseudo-random choice of ``count`` values: the smallest seeded hashes."""
    return sorted(values, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())[:count]


def detail_of(row: dict) -> dict:
    """The ledger row's ``detail`` JSON object; empty when it is missing, not JSON, or not an object."""
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
        extra = ", ".join(f"{k} {detail[k]}" for k in ("method", "distance", "similarity", "inliers") if k in detail)
        return f"duplicate of {survivor.rsplit('/', 1)[-1]}" + (f" ({extra})" if extra else "")
    return ", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if not isinstance(v, (dict, list)))


def _evidence(text: str | None) -> str:
    """A cluster member's match evidence (JSON text) as ``name value`` pairs, empty values left out."""
    try:
        evidence = json.loads(text) if text else {}
    except ValueError:
        return ""
    if not isinstance(evidence, dict):
        return ""
    return ", ".join(f"{k} {v}" for k, v in sorted(evidence.items()) if v not in (None, 0))


def _kept_item(row: dict, thumbs: Thumbnails) -> GalleryItem:
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


def kept_gallery(sidecar: pa.Table, thumbs: Thumbnails, seed: int) -> list[GalleryItem]:
    """``KEPT_SAMPLES`` kept samples chosen by ``pick``, ordered by domain and key, with their shard thumbnails."""
    if not sidecar.num_rows:
        return []
    chosen = pick(sidecar.column("key").to_pylist(), KEPT_SAMPLES, seed)
    rows = rows_where(sidecar, "key", chosen)
    ordered = sorted(rows.values(), key=lambda row: (row.get("domain", ""), row["key"]))
    thumbs.prefetch_shards(ordered)
    return [_kept_item(row, thumbs) for row in ordered]


def rows_where(table: pa.Table, column: str, values: Iterable[str]) -> dict[str, dict]:
    """The rows of ``table`` whose ``column`` is one of ``values``, by that value (the first row of each)."""
    wanted = sorted({v for v in values if v is not None})
    if not wanted or not table.num_rows:
        return {}
    found: dict[str, dict] = {}
    for row in table.filter(pc.is_in(table[column], pa.array(wanted, pa.string()))).to_pylist():
        found.setdefault(row[column], row)
    return found


UNREAD_REASONS = (
    reasons.OUTSIDE_ROOT,
    reasons.EMPTY_FILE,
    reasons.NOT_AN_IMAGE,
    reasons.DECOMPRESSION_BOMB,
    reasons.UNSUPPORTED_IMAGE,
)


def _withheld(stage: str, reason: str) -> bool:
    return stage in WITHHELD_STAGES or any(word in reason for word in WITHHELD_WORDS)


def _dropped_item(row: dict, thumbs: Thumbnails) -> GalleryItem:
    detail = detail_of(row)
    withheld = _withheld(row["stage"], row["reason"] or "")
    # A path outside its roots is never read, not even for a preview; nor is a file the decoder already failed on
    # (a second try only prints the codec's complaints again, libtiff's on the console).
    unread = withheld or row["reason"] in UNREAD_REASONS
    return GalleryItem(
        key=row["key"],
        source=row["source"],
        domain=row["domain"] or "",
        status=row["status"],
        note=("preview withheld (safety) · " if withheld else "") + _note(detail),
        has_thumbnail=False if unread else thumbs.from_source(row["source"], row["key"], row["domain"] or ""),
    )


def rejected_galleries(ledger: pa.Table, thumbs: Thumbnails, seed: int) -> list[RejectedGallery]:
    """Up to ``REJECTED_PER_REASON`` items for every (status, stage, reason), in dataflow order."""
    dropped = ledger.filter(pc.not_equal(ledger["status"], "kept"))
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    columns = [dropped.column(name).to_pylist() for name in ("status", "stage", "reason", "source")]
    for status, stage, reason, source in zip(*columns, strict=True):
        groups[(status, stage, reason or "")].append(source)
    chosen = {group: sorted(pick(sources, REJECTED_PER_REASON, seed)) for group, sources in groups.items()}
    rows = rows_where(dropped, "source", (source for sources in chosen.values() for source in sources))
    galleries = []
    for group, sources in sorted(groups.items(), key=lambda i: (stage_rank(i[0][1]), -len(i[1]), i[0])):
        status, stage, reason = group
        items = [_dropped_item(rows[source], thumbs) for source in chosen[group]]
        galleries.append(RejectedGallery(status=status, stage=stage, reason=reason, count=len(sources), items=items))
    return galleries


def flagged_galleries(sidecar: pa.Table, thumbs: Thumbnails, seed: int) -> list[RejectedGallery]:
    """Up to ``REJECTED_PER_REASON`` kept samples for every quality flag (``quality.report_only``: flagged, kept),
    by reason, with their shard thumbnails: what the filter would remove."""
    if "annotations" not in sidecar.column_names:
        return []
    flagged: dict[str, list[str]] = defaultdict(list)
    for key, text in zip(sidecar.column("key").to_pylist(), sidecar.column("annotations").to_pylist(), strict=True):
        try:
            quality = json.loads(text or "{}").get("quality", {})
        except (ValueError, AttributeError):
            continue
        for flag in quality.get("flags", []) if isinstance(quality, dict) else []:
            flagged[str(flag)].append(key)
    galleries = []
    for reason, keys in sorted(flagged.items(), key=lambda item: (-len(item[1]), item[0])):
        rows = rows_where(sidecar, "key", pick(keys, REJECTED_PER_REASON, seed))
        ordered = sorted(rows.values(), key=lambda row: row["key"])
        thumbs.prefetch_shards(ordered)
        items = [_kept_item(row, thumbs).model_copy(update={"note": FLAGGED_NOTE}) for row in ordered]
        galleries.append(
            RejectedGallery(status="flagged", stage="quality", reason=reason, count=len(keys), items=items)
        )
    return galleries


FLAGGED_NOTE = "kept: quality.report_only flags what the rule would remove"


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
            if member.get("method"):
                # The match that joined it (pHash, or keypoints for a crop or overlay) and its evidence.
                shown = " · ".join(filter(None, [member["method"], _evidence(member.get("evidence")), shown]))
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
    duplicates = ledger.filter(pc.is_in(ledger["reason"], pa.array(DUPLICATE_REASONS)))
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


def cluster_galleries(output: str, ledger: pa.Table, sidecar: pa.Table, thumbs: Thumbnails) -> dict[str, Any]:
    """The largest duplicate groups (in images), each with its survivor: from ``dedup/`` files and the ledger."""
    from_files, covered = _clusters_from_files(output)
    clusters = [c for c in [*from_files, *_clusters_from_ledger(ledger, covered)] if c["members"]]
    clusters.sort(key=lambda c: (-c["size"], str(c["cluster_id"])))
    shown_clusters = clusters[:CLUSTERS_SHOWN]
    keys = {c["survivor"] for c in shown_clusters} | {m[0] for c in shown_clusters for m in c["members"]}
    kept = rows_where(sidecar, "key", keys)
    by_source = rows_where(ledger, "source", (m[1] for c in shown_clusters for m in c["members"]))
    by_key: dict[str, dict] = {}
    matching = ledger.filter(pc.is_in(ledger["key"], pa.array(sorted(k for k in keys if k), pa.string())))
    for row in matching.to_pylist() if keys else []:
        if row["key"] not in by_key or row["status"] == reasons.KEPT:
            by_key[row["key"]] = row
    shown = []
    for cluster in shown_clusters:
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
                    has_thumbnail=thumbs.from_source(source, key, row.get("domain") or "") if source else False,
                )
            )
        shown.append(
            ClusterGallery(
                cluster_id=str(cluster["cluster_id"]),
                size=cluster["size"],
                reasons=sorted(cluster["reasons"]),
                survivor=survivor,
                members=members,
            )
        )
    return {"clusters": shown, "cluster_count": len(clusters)}
