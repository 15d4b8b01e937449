"""The report's distributions: histograms per domain over the kept samples' sidecar columns.

CLIP scores come from the ``scores`` column (every field whose name starts with ``clip``), plus the scores of items a
CLIP filter rejected (from the ledger detail), drawn as their own series with the thresholds the filter used
(ledger detail ``threshold``, or ``clip_filter.threshold`` in the config). Each quality measure (``quality_*``
scores) gets a histogram per domain: the kept samples, plus the measured value of each sample the quality stage
rejected (ledger detail ``measure`` and ``value``) as a ``<domain> · rejected by quality`` series, with every
threshold that applied: the absolute ones of the ``quality`` section of the config and the group outlier bounds named
in the ledger details (a group none of whose samples failed its bound has none to show). Sizes and file sizes use
log-spaced bins.
"""

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import reasons
from schemas.report import Distribution, SeriesStats, Threshold

BINS = 24
REJECTED_SERIES = "rejected by filter"
QUALITY_REJECTED = "rejected by quality"
QUALITY_STAGE = "quality"


def distributions(sidecar: pa.Table, ledger: pa.Table, config: dict) -> list[Distribution]:
    """Every distribution the data supports, in display order; a missing column skips its chart."""
    columns = set(sidecar.column_names)
    domains = _column(sidecar, "domain", "")
    charts = []
    scored = _clip_scores(sidecar)
    for name in sorted({*scored, *_rejected_clip_models(ledger)}):  # every kept one rejected: the chart says why
        values = scored.get(name, [None] * sidecar.num_rows)
        charts.append(_clip_chart(name, values, domains, ledger, config))
    charts.extend(_quality_charts(sidecar, ledger, config))
    if "text" in columns:
        lengths = [len(text or "") for text in _column(sidecar, "text", "")]
        charts.append(histogram("caption_length", "Caption length", lengths, domains, unit="characters"))
    if {"original_width", "original_height"} <= columns:
        widths = _column(sidecar, "original_width", 0)
        heights = _column(sidecar, "original_height", 0)
        megapixels = [w * h / 1e6 for w, h in zip(widths, heights, strict=True)]
        charts.append(histogram("resolution", "Original resolution", megapixels, domains, unit="megapixels", log=True))
        aspects = [w / h if h else 0.0 for w, h in zip(widths, heights, strict=True)]
        charts.append(histogram("aspect_ratio", "Aspect ratio (width / height)", aspects, domains, log=True))
    if "original_bytes" in columns:
        sizes = [float(b) for b in _column(sidecar, "original_bytes", 0)]
        charts.append(histogram("file_size", "Original file size", sizes, domains, unit="bytes", log=True))
    if "image_bytes" in columns:
        sizes = [float(b) for b in _column(sidecar, "image_bytes", 0)]
        charts.append(
            histogram("shard_image_size", "Image size in the shards", sizes, domains, unit="bytes", log=True)
        )
    return [chart for chart in charts if chart is not None]


def _column(table: pa.Table, name: str, default: Any) -> list:
    if name not in table.column_names:
        return [default] * table.num_rows
    return [default if value is None else value for value in table.column(name).to_pylist()]


def _parsed_scores(sidecar: pa.Table) -> list[dict]:
    if "scores" not in sidecar.column_names:
        return []
    parsed = []
    for text in _column(sidecar, "scores", "{}"):
        try:
            scores = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            scores = {}
        parsed.append(scores if isinstance(scores, dict) else {})
    return parsed


def _clip_scores(sidecar: pa.Table) -> dict[str, list[float | None]]:
    parsed = _parsed_scores(sidecar)
    names = sorted({name for scores in parsed for name in scores if name.startswith("clip")})
    return {name: [_number(scores.get(name)) for scores in parsed] for name in names}


def _quality_charts(sidecar: pa.Table, ledger: pa.Table, config: dict) -> list[Distribution | None]:
    """One histogram per quality measure: kept and rejected values per domain, with every threshold that applied."""
    from transforms.quality_bounds import CHECKS
    from transforms.quality_measures import Measures

    parsed = _parsed_scores(sidecar) or [{}] * sidecar.num_rows
    domains = _column(sidecar, "domain", "")
    rejected: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    marks: dict[str, set[tuple[float, str]]] = defaultdict(set)
    rows = ledger.filter(pc.equal(ledger["stage"], QUALITY_STAGE)).select(["status", "detail", "domain"])
    for row in rows.to_pylist():
        detail = _detail(row["detail"])
        measure, value = detail.get("measure"), _number(detail.get("value"))
        if row["status"] != reasons.REJECTED or not isinstance(measure, str):
            continue
        if value is not None:
            rejected[measure][f"{row['domain'] or 'unknown'} · {QUALITY_REJECTED}"].append(value)
        threshold, check = _number(detail.get("threshold")), detail.get("check", "")
        if threshold is not None and detail.get("rule") == "deviations":
            group = detail.get("group")
            names = ", ".join(str(v) for v in group if v) if isinstance(group, list) else ""
            marks[measure].add((threshold, f"{check} {detail.get('deviations')} MADs", names or "all"))
    section = config.get("quality") if isinstance(config.get("quality"), dict) else {}
    for name, check in CHECKS.items():
        rule = section.get(name) if isinstance(section.get(name), dict) else {}
        if not rule.get("enabled", True):
            continue
        if (threshold := _number(rule.get("threshold"))) is not None:
            marks[f"quality_{check.measure}"].add((threshold, f"{name} threshold", ""))
        if (framed := _number(rule.get("framed_threshold"))) is not None:
            condition = f"clipped >= {rule.get('framed_clipped')}, subject <= {rule.get('framed_max_subject')}"
            marks[f"quality_{check.measure}"].add((framed, f"{name} framed threshold", condition))
    charts = []
    for field in Measures._fields:
        measure = f"quality_{field}"
        pairs = [(_number(s.get(measure)), d) for s, d in zip(parsed, domains, strict=True)]
        pairs = [(v, d) for v, d in pairs if v is not None]
        if not pairs and not rejected.get(measure):
            continue
        charts.append(
            histogram(
                measure,
                f"Quality · {field.replace('_', ' ')}",
                [v for v, _ in pairs],
                [d for _, d in pairs],
                extra=dict(sorted(rejected.get(measure, {}).items())),
                thresholds=[_mark(*mark) for mark in sorted(marks[measure])],
                log=field == "sharpness_lapvar",
            )
        )
    return charts


def _mark(value: float, name: str, condition: str) -> Threshold:
    """A threshold labelled name, value, then its condition: the value stays in sight when a long label is cut."""
    return Threshold(value=value, label=f"{name} {value:.3g}" + (f" ({condition})" if condition else ""))


def _detail(text: Any) -> dict:
    try:
        detail = json.loads(text or "{}") if isinstance(text, str) else {}
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _rejected_clip_models(ledger: pa.Table) -> set[str]:
    """The models whose CLIP scores rejected items (``low_clip_score`` rows name theirs)."""
    if not {"reason", "detail"} <= set(ledger.column_names):
        return set()
    rows = ledger.filter(pc.equal(ledger["reason"], reasons.LOW_CLIP_SCORE)).column("detail").to_pylist()
    models = (_detail(text).get("model") for text in rows)
    return {model for model in models if isinstance(model, str)}


def _clip_chart(name: str, values: list, domains: list[str], ledger: pa.Table, config: dict) -> Distribution | None:
    rejected, thresholds = [], set()
    for row in ledger.filter(pc.equal(ledger["status"], "rejected")).select(["stage", "detail", "domain"]).to_pylist():
        if "clip" not in (row["stage"] or ""):
            continue
        detail = _detail(row["detail"])
        field = detail.get("score_field") or detail.get("field") or detail.get("model")
        if isinstance(field, str) and field != name:
            continue
        if (score := _number(detail.get("score"))) is not None:
            rejected.append(score)
        if (threshold := _number(detail.get("threshold"))) is not None:
            group = detail.get("group") if isinstance(detail.get("group"), str) else ""
            thresholds.add((threshold, group))
    section = config.get("clip_filter", {}) if isinstance(config.get("clip_filter"), dict) else {}
    if (configured := _number(section.get("threshold"))) is not None:
        thresholds.add((configured, ""))
    pairs = [(v, d) for v, d in zip(values, domains, strict=True) if v is not None]
    extra = {REJECTED_SERIES: rejected} if rejected else {}
    marks = [
        Threshold(value=v, label=f"threshold {v:.3g}" + (f" ({group})" if group else ""))
        for v, group in sorted(thresholds)
    ]
    return histogram(
        f"score_{name}",
        f"CLIP score · {name}",
        [v for v, _ in pairs],
        [d for _, d in pairs],
        extra=extra,
        thresholds=marks,
    )


def histogram(
    name: str,
    title: str,
    values: list[float],
    groups: list[str],
    *,
    unit: str = "",
    log: bool = False,
    extra: dict[str, list[float]] | None = None,
    thresholds: list[Threshold] = (),
) -> Distribution | None:
    """Bin ``values`` per group (plus ``extra`` series) over shared edges; ``None`` when there is nothing to show."""
    series: dict[str, list[float]] = defaultdict(list)
    for value, group in zip(values, groups, strict=True):
        series[group or "unknown"].append(float(value))
    for group, more in (extra or {}).items():
        series[group].extend(float(v) for v in more)
    finite = [v for vs in series.values() for v in vs if math.isfinite(v)]
    if not finite:
        return None
    # A log scale's edges come from the positive values; a zero (a flat image's sharpness) counts in the first bin.
    log = log and any(v > 0 for v in finite)
    everything = [v for v in finite if v > 0 or not log]
    low, high = min(everything), max(everything)
    for mark in thresholds:
        if mark.value > 0 or not log:
            low, high = min(low, mark.value), max(high, mark.value)
    edges = _edges(low, high, log)
    counts = {}
    stats = {}
    for group in sorted(series):
        data = np.array([v for v in series[group] if math.isfinite(v)], dtype=np.float64)
        counts[group] = np.histogram(np.clip(data, edges[0], edges[-1]), bins=edges)[0].astype(int).tolist()
        if data.size:
            stats[group] = SeriesStats(
                count=int(data.size),
                min=float(data.min()),
                median=float(np.median(data)),
                mean=float(data.mean()),
                max=float(data.max()),
            )
    return Distribution(
        name=name,
        title=title,
        unit=unit,
        log_scale=log,
        edges=[float(e) for e in edges],
        series=counts,
        stats=stats,
        thresholds=list(thresholds),
    )


def _edges(low: float, high: float, log: bool) -> np.ndarray:
    if log:
        low, high = math.log10(low), math.log10(high)
    if high - low < 1e-9:
        pad = max(abs(low) * 0.05, 0.05 if log else 0.5)
        low, high = low - pad, high + pad
    else:
        pad = (high - low) * 0.02
        low, high = low - pad, high + pad
    edges = np.linspace(low, high, BINS + 1)
    return 10.0**edges if log else edges
