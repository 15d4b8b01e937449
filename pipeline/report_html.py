"""Render a ``Report`` as one self-contained HTML file: inline CSS, inline SVG charts, ``data:`` thumbnails, no script.

Everything shown comes from untrusted input (file names, captions, metadata, audit values) and goes through ``_e``
(``html.escape`` with quotes) before it reaches the page. A Content-Security-Policy allows no script, no network
and only ``data:`` images, so a missed escape still could not run code or fetch anything.
"""

import json
import math
import posixpath

from pipeline.report_charts import REJECTED_SERIES
from pipeline.report_format import REJECTED_COLOUR, bar, escape, integer
from schemas.report import ClusterGallery, Distribution, GalleryItem, Report, ShardCheck

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#ff9da6", "#439894")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def fmt_value(value: float, unit: str = "") -> str:
    if unit == "bytes":
        return human_bytes(value)
    if unit == "characters":
        return f"{value:.0f}"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (
        f"{hours}h {minutes:02d}m {secs:04.1f}s"
        if hours
        else (f"{minutes}m {secs:04.1f}s" if minutes else f"{secs:.1f}s")
    )


class _Colours:
    def __init__(self, names: list[str]):
        ordered = sorted(n for n in set(names) if n != REJECTED_SERIES)
        self._map = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ordered)}
        self._map[REJECTED_SERIES] = REJECTED_COLOUR

    def __call__(self, name: str) -> str:
        return self._map.get(name, "#888888")


def render(report: Report, thumbnails: dict[str, str]) -> str:
    """The whole page."""
    domains = [d.domain or "unknown" for d in report.funnel.domains]
    for dist in report.distributions:
        domains.extend(dist.series)
    colours = _Colours(domains)
    sections = [
        _warnings(report),
        _summary(report),
        _funnel(report, colours),
        _distributions(report, colours),
        _kept(report, thumbnails),
        _rejected(report, thumbnails),
        _duplicates(report, thumbnails),
        _audit(report),
        _shards(report),
        _run(report),
    ]
    nav = [
        ("summary", "Summary"),
        ("funnel", "Funnel"),
        ("distributions", "Distributions"),
        ("kept", "Kept"),
        ("rejected", "Rejected"),
        ("duplicates", "Duplicates"),
        *([("audit", "Audit")] if report.audit is not None else []),
        ("shards", "Shards"),
        ("run", "Run"),
    ]
    version = report.run.versions.get("unishard", "")
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>unishard report · {escape(report.run.output)}</title><style>{STYLE}</style></head><body>",
            '<header class="top"><div class="brand">uni<b>shard</b></div>',
            '<div class="headline"><h1>Shard-quality report</h1>',
            f'<div class="path" title="{escape(report.run.output)}">{escape(report.run.output)}</div></div>',
            '<nav class="nav">' + "".join(f'<a href="#{i}">{escape(t)}</a>' for i, t in nav) + "</nav></header>",
            '<main class="page">',
            *sections,
            "</main>",
            f'<footer class="foot">unishard {escape(version)} · report schema v{report.schema_version} · '
            "this page runs no script and loads nothing from the network</footer>",
            "</body></html>\n",
        ]
    )


def _section(ident: str, title: str, body: str, subtitle: str = "") -> str:
    sub = f'<p class="sub">{subtitle}</p>' if subtitle else ""
    return f'<section id="{ident}" class="card"><h2>{escape(title)}</h2>{sub}{body}</section>'


def _warnings(report: Report) -> str:
    if not report.warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    return f'<div class="warnings" role="alert"><strong>Before you train on this</strong><ul>{items}</ul></div>'


def _validation_state(report: Report) -> tuple[str, str]:
    validation = report.validation
    if validation is None or not validation.shards and not validation.problems:
        return "–", "muted"
    if not any(s.checked for s in validation.shards):
        return "not checked", "muted"
    problems = len(validation.all_problems())
    return ("all valid", "good") if not problems else (f"{problems} problems", "bad")


def _summary(report: Report) -> str:
    funnel = report.funnel
    shards = report.validation.shards if report.validation else []
    state, tone = _validation_state(report)
    tiles = [
        ("Input items", integer(funnel.items), "", ""),
        ("Kept", integer(funnel.kept), _pct(funnel.kept, funnel.items), "good"),
        ("Rejected", integer(funnel.rejected), _pct(funnel.rejected, funnel.items), "warn" if funnel.rejected else ""),
        ("Failed", integer(funnel.failed), _pct(funnel.failed, funnel.items), "bad" if funnel.failed else ""),
        ("Shards", integer(len(shards)), human_bytes(sum(s.bytes for s in shards)), ""),
        ("Validation", state, "", tone),
        ("Wall time", _duration(report.run.wall_seconds), escape(report.run.runner), ""),
    ]
    body = '<div class="tiles">' + "".join(
        f'<div class="tile {tone}"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="hint">{escape(hint)}</div></div>'
        for label, value, hint, tone in tiles
    )
    body += "</div>"
    if report.run.models:
        body += (
            '<div class="models">'
            + "".join(
                f'<span class="pill">{escape(m.section)}: {escape(m.name)}'
                + (f" · {escape(m.precision)}" if m.precision else "")
                + "</span>"
                for m in report.run.models
            )
            + ('<span class="pill bad">smoke models</span>' if report.run.smoke_models else "")
            + "</div>"
        )
    return _section("summary", "Summary", body)


def _funnel(report: Report, colours: _Colours) -> str:
    funnel = report.funnel
    total = max(1, funnel.items)
    rows = [
        f'<div class="frow"><div class="fname">input items</div>'
        f"{bar([(funnel.items / total, '#4c78a8', f'{funnel.items} items')])}"
        f'<div class="fnum">{integer(funnel.items)}</div></div>'
    ]
    for step in funnel.steps:
        removed = step.rejected + step.failed
        segments = bar(
            [
                (step.remaining / total, "#4c78a8", f"{step.remaining} continue"),
                (step.rejected / total, REJECTED_COLOUR, f"{step.rejected} rejected"),
                (step.failed / total, "#7a1f1f", f"{step.failed} failed"),
            ]
        )
        note = f"−{integer(removed)}" + (f" ({integer(step.failed)} failed)" if step.failed else "")
        rows.append(
            f'<div class="frow"><div class="fname">{escape(step.stage)}</div>{segments}'
            f'<div class="fnum"><span class="minus">{note}</span> {integer(step.remaining)}</div></div>'
        )
    rows.append(
        f'<div class="frow final"><div class="fname">kept</div>'
        f"{bar([(funnel.kept / total, '#54a24b', f'{funnel.kept} kept')])}"
        f'<div class="fnum"><b>{integer(funnel.kept)}</b> · {_pct(funnel.kept, funnel.items)}</div></div>'
    )
    body = '<div class="funnel" id="funnel-chart">' + "".join(rows) + "</div>"
    if funnel.reasons:
        reason_rows = "".join(
            f"<tr><td>{escape(r.stage)}</td><td><code>{escape(r.reason or '–')}</code></td>"
            f'<td><span class="status {escape(r.status)}">{escape(r.status)}</span></td>'
            f'<td class="num">{integer(r.count)}</td>'
            f'<td class="num">{_pct(r.count, funnel.items)}</td>'
            f'<td class="spark">{bar([(r.count / total, REJECTED_COLOUR, "")])}</td></tr>'
            for r in funnel.reasons
        )
        body += (
            '<h3>Why items were dropped</h3><table class="grid reasons"><thead><tr><th>Stage</th><th>Reason</th>'
            '<th>Status</th><th class="num">Items</th><th class="num">Share</th><th></th></tr></thead>'
            f"<tbody>{reason_rows}</tbody></table>"
        )
    if funnel.domains:
        domain_rows = "".join(
            f'<tr><td><span class="swatch" style="background:{colours(d.domain or "unknown")}"></span>'
            f'{escape(d.domain or "unknown")}</td><td class="num">{integer(d.items)}</td>'
            f'<td class="num">{integer(d.kept)}</td><td class="num">{integer(d.rejected)}</td>'
            f'<td class="num">{integer(d.failed)}</td><td class="num">{_pct(d.kept, d.items)}</td>'
            f'<td class="spark">'
            + bar(
                [
                    (d.kept / max(1, d.items), "#54a24b", f"{d.kept} kept"),
                    (d.rejected / max(1, d.items), REJECTED_COLOUR, f"{d.rejected} rejected"),
                    (d.failed / max(1, d.items), "#7a1f1f", f"{d.failed} failed"),
                ]
            )
            + "</td></tr>"
            for d in funnel.domains
        )
        body += (
            '<h3>Per domain</h3><table class="grid domains"><thead><tr><th>Domain</th><th class="num">Items</th>'
            '<th class="num">Kept</th><th class="num">Rejected</th><th class="num">Failed</th>'
            f'<th class="num">Kept share</th><th></th></tr></thead><tbody>{domain_rows}</tbody></table>'
        )
    return _section(
        "funnel", "Funnel", body, "Every input item ends in exactly one ledger row: kept, rejected or failed."
    )


def _distributions(report: Report, colours: _Colours) -> str:
    if not report.distributions:
        return _section("distributions", "Distributions", '<p class="empty">No kept samples to describe.</p>')
    charts = "".join(_chart_card(d, colours) for d in report.distributions)
    return _section(
        "distributions",
        "Distributions",
        f'<div class="charts">{charts}</div>',
        "Kept samples, stacked per domain. Hover a bar for its range and counts.",
    )


def _chart_card(dist: Distribution, colours: _Colours) -> str:
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{colours(name)}"></span>{escape(name)}</span>'
        for name in _series_order(dist)
    )
    stats_rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{integer(s.count)}</td>'
        f'<td class="num">{escape(fmt_value(s.median, dist.unit))}</td>'
        f'<td class="num">{escape(fmt_value(s.mean, dist.unit))}</td>'
        f'<td class="num">{escape(fmt_value(s.min, dist.unit))} – {escape(fmt_value(s.max, dist.unit))}</td></tr>'
        for name, s in sorted(dist.stats.items())
    )
    unit = f" ({escape(dist.unit)})" if dist.unit and dist.unit != "bytes" else ""
    return (
        f'<figure class="chart" data-name="{escape(dist.name)}"><figcaption>{escape(dist.title)}{unit}'
        f"{' · log scale' if dist.log_scale else ''}</figcaption>{histogram_svg(dist, colours)}"
        f'<div class="legend">{legend}</div><table class="mini"><thead><tr><th></th><th class="num">n</th>'
        '<th class="num">median</th><th class="num">mean</th><th class="num">range</th></tr></thead>'
        f"<tbody>{stats_rows}</tbody></table></figure>"
    )


def _series_order(dist: Distribution) -> list[str]:
    return sorted(dist.series, key=lambda n: (n == REJECTED_SERIES, n))


def _nice(value: float) -> float:
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10**exponent >= value:
            return step * 10**exponent
    return 10 ** (exponent + 1)


def histogram_svg(dist: Distribution, colours: _Colours, width: int = 520, height: int = 220) -> str:
    """A stacked histogram with axes, per-bin tooltips and threshold markers, as inline SVG."""
    left, right, top, bottom = 46, 12, 16, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = len(dist.edges) - 1
    order = _series_order(dist)
    totals = [sum(dist.series[name][i] for name in order) for i in range(bins)]
    y_step = max(1.0, _nice((max(totals) if totals else 1) / 4))
    y_max = 4 * y_step
    bin_w = plot_w / bins
    parts = [
        f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(dist.title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in range(5):
        value = y_max * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="gridline"/>')
        label = f"{value:,.0f}"
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="ytick">{label}</text>')
    for i in range(bins):
        x = left + i * bin_w
        y = top + plot_h
        tip = [f"{fmt_value(dist.edges[i], dist.unit)} – {fmt_value(dist.edges[i + 1], dist.unit)}"]
        rects = []
        for name in order:
            count = dist.series[name][i]
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            rects.append(
                f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(0.5, bin_w - 1):.1f}" height="{h:.1f}" '
                f'fill="{colours(name)}"/>'
            )
            tip.append(f"{name}: {count}")
        if rects:
            parts.append(f'<g class="bin"><title>{escape(chr(10).join(tip))}</title>{"".join(rects)}</g>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    for value in axis_ticks(dist.edges[0], dist.edges[-1], dist.log_scale):
        x = _position(dist, value, left, bin_w)
        if x is None:
            continue
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" class="axis"/>')
        label = escape(fmt_value(value, dist.unit))
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 17}" class="xtick">{label}</text>')
    for n, mark in enumerate(dist.thresholds):
        x = _position(dist, mark.value, left, bin_w)
        if x is None:
            continue
        parts.append(
            f'<g class="threshold"><title>{escape(mark.label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}"/>'
            f'<text x="{x + 4:.1f}" y="{top + 8 + 12 * n}">{escape(mark.label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def axis_ticks(low: float, high: float, log: bool, target: int = 5) -> list[float]:
    """Round tick values inside ``[low, high]``: 1-2-5 steps, or powers of ten (with 2 and 5) on a log axis."""
    if log and low > 0:
        ticks = [
            m * 10**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in (1, 2, 5)
        ]
        inside = [t for t in ticks if low <= t <= high]
        while len(inside) > target + 2:
            inside = inside[::2]
        if len(inside) >= 2:
            return inside
    step = _nice((high - low) / target)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _position(dist: Distribution, value: float, left: float, bin_w: float) -> float | None:
    edges = dist.edges
    if not edges[0] <= value <= edges[-1] or (dist.log_scale and value <= 0):
        return None
    scale = math.log10 if dist.log_scale else (lambda v: v)
    low, high = scale(edges[0]), scale(edges[-1])
    return left + (scale(value) - low) / (high - low) * bin_w * (len(edges) - 1)


def _thumb(item: GalleryItem, thumbnails: dict[str, str]) -> str:
    uri = None
    if item.has_thumbnail:
        uri = thumbnails.get(f"kept:{item.key}") if item.status == "kept" else None
        uri = uri or thumbnails.get(f"source:{item.source}")
    if uri and uri.startswith("data:image/jpeg;base64,"):
        return f'<img src="{uri}" alt="">'
    return '<div class="noimg">no preview</div>'


def _card(item: GalleryItem, thumbnails: dict[str, str], badge: str = "") -> str:
    name = posixpath.basename(item.source.rstrip("/")) or item.source
    size = f"{item.width}×{item.height}" if item.width and item.height else ""
    text = f'<p class="caption" title="{escape(item.text)}">{escape(item.text)}</p>' if item.text else ""
    note = f'<p class="note" title="{escape(item.note)}">{escape(item.note)}</p>' if item.note else ""
    domain = f'<span class="pill">{escape(item.domain)}</span>' if item.domain else ""
    badge_html = f'<span class="badge {escape(badge)}">{escape(badge)}</span>' if badge else ""
    key = f'<code title="{escape(item.key)}">{escape((item.key or "")[:12])}</code>' if item.key else ""
    return (
        f'<figure class="item">{badge_html}<div class="thumb">{_thumb(item, thumbnails)}</div><figcaption>{text}{note}'
        f'<p class="meta">{domain}<span>{escape(size)}</span>{key}</p>'
        f'<p class="src" title="{escape(item.source)}">{escape(name)}</p></figcaption></figure>'
    )


def _kept(report: Report, thumbnails: dict[str, str]) -> str:
    items = report.galleries.kept
    if not items:
        return _section("kept", "Kept samples", '<p class="empty">No kept samples.</p>')
    cards = "".join(_card(item, thumbnails) for item in items)
    return _section(
        "kept",
        "Kept samples",
        f'<div class="gallery">{cards}</div>',
        f"A fixed pseudo-random sample of {len(items)} of {integer(report.funnel.kept)} kept items, with the text "
        "written to their shards.",
    )


def _rejected(report: Report, thumbnails: dict[str, str]) -> str:
    groups = report.galleries.rejected
    if not groups:
        return _section("rejected", "Rejected and failed items", '<p class="empty">Nothing was dropped.</p>')
    body = (
        '<div class="groups">'
        + "".join(
            f'<details class="group" open><summary><span class="status {escape(g.status)}">{escape(g.status)}</span> '
            f"<b>{escape(g.stage)}</b> · <code>{escape(g.reason or '–')}</code> "
            f'<span class="count">{_plural(g.count, "item")}'
            f"{' · showing ' + str(len(g.items)) if len(g.items) < g.count else ''}</span></summary>"
            f'<div class="gallery">{"".join(_card(item, thumbnails) for item in g.items)}</div></details>'
            for g in groups
        )
        + "</div>"
    )
    return _section(
        "rejected",
        "Rejected and failed items",
        body,
        "Previews are read back from the sources while they are still readable; images rejected by a safety stage "
        "are never shown.",
    )


def _cluster(cluster: ClusterGallery, thumbnails: dict[str, str]) -> str:
    members = "".join(_card(member, thumbnails, "dropped") for member in cluster.members)
    more = cluster.size - 1 - len(cluster.members)
    more_html = f'<div class="more">+{integer(more)} more</div>' if more > 0 else ""
    reasons = ", ".join(cluster.reasons)
    return (
        f'<div class="cluster"><div class="chead"><b>{integer(cluster.size)} images</b> · {escape(reasons)}'
        f' <code title="{escape(cluster.cluster_id)}">{escape(cluster.cluster_id[:16])}</code></div>'
        f'<div class="crow">{_card(cluster.survivor, thumbnails, "survivor")}<div class="arrow">⟵</div>'
        f"{members}{more_html}</div></div>"
    )


def _duplicates(report: Report, thumbnails: dict[str, str]) -> str:
    clusters = report.galleries.clusters
    if not clusters:
        return _section("duplicates", "Duplicate groups", '<p class="empty">No duplicate groups were found.</p>')
    body = '<div class="clusters">' + "".join(_cluster(cluster, thumbnails) for cluster in clusters) + "</div>"
    return _section(
        "duplicates",
        "Duplicate groups",
        body,
        f"The {len(clusters)} largest of {integer(report.galleries.cluster_count)} groups, each with the survivor "
        "that was kept in their place.",
    )


def _audit(report: Report) -> str:
    if report.audit is None:
        return ""
    from pipeline.report_audit import render_audit

    return _section("audit", "Safety and bias audit", render_audit(report.audit), "From audit/audit.json.")


def _shard_row(shard: ShardCheck, output: str) -> str:
    name = shard.path[len(output) :].lstrip("/") if shard.path.startswith(output) else shard.path
    if not shard.checked:
        status = '<span class="badge muted">not checked</span>'
    elif shard.ok:
        status = '<span class="badge good">✓ valid</span>'
    else:
        problems = "".join(f"<li>{escape(p)}</li>" for p in shard.problems)
        status = f'<span class="badge bad">✗ {len(shard.problems)} problems</span><ul class="problems">{problems}</ul>'
    domains = ", ".join(f"{escape(k)} {integer(v)}" for k, v in sorted(shard.domains.items()))
    images = human_bytes(shard.image_bytes) if shard.image_bytes is not None else "–"
    return (
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(shard.view)}</td><td>{escape(shard.split)}</td>"
        f'<td class="num">{integer(shard.samples)}</td><td class="num">{human_bytes(shard.bytes)}</td>'
        f'<td class="num">{images}</td><td>{domains}</td><td>{status}</td></tr>'
    )


def _shards(report: Report) -> str:
    validation = report.validation
    if validation is None or not validation.shards:
        body = '<p class="empty">No shards were written.</p>'
    else:
        rows = "".join(_shard_row(s, report.run.output) for s in validation.shards)
        total = sum(s.samples for s in validation.shards)
        body = (
            '<table class="grid shards"><thead><tr><th>Shard</th><th>View</th><th>Split</th><th class="num">Samples'
            '</th><th class="num">Bytes</th><th class="num">Images</th><th>Domains</th><th>Validation</th></tr>'
            f"</thead><tbody>{rows}</tbody><tfoot><tr><td>{len(validation.shards)} shards</td><td></td><td></td>"
            f'<td class="num">{integer(total)}</td>'
            f'<td class="num">{human_bytes(sum(s.bytes for s in validation.shards))}'
            "</td><td></td><td></td><td></td></tr></tfoot></table>"
        )
    if validation is not None and validation.problems:
        body += '<ul class="problems">' + "".join(f"<li>{escape(p)}</li>" for p in validation.problems) + "</ul>"
    return _section("shards", "Shards", body, "Validation re-reads every tar, its sidecar, stats and index.")


def _run(report: Report) -> str:
    run = report.run
    facts = [
        ("Output", run.output),
        ("Runner", run.runner or "–"),
        ("Beam arguments", " ".join(run.beam_args) or "–"),
        ("Wall time", _duration(run.wall_seconds)),
        ("Config SHA-256", run.config_sha256 or "–"),
        ("Smoke models", "yes — results are not meaningful" if run.smoke_models else "no"),
    ]
    body = '<table class="grid kv">' + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    body += "</table>"
    if run.models:
        rows = "".join(
            f"<tr><td>{escape(m.section)}</td><td>{escape(m.name)}</td><td>{escape(m.precision or '–')}</td>"
            f"<td>{escape(m.device or '–')}</td></tr>"
            for m in run.models
        )
        body += (
            '<h3>Models</h3><table class="grid"><thead><tr><th>Section</th><th>Model</th><th>Precision</th>'
            f"<th>Device</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if run.versions:
        body += (
            '<h3>Versions</h3><div class="models">'
            + "".join(f'<span class="pill">{escape(k)} {escape(v)}</span>' for k, v in sorted(run.versions.items()))
            + "</div>"
        )
    if run.config:
        body += (
            '<details class="config"><summary>Resolved configuration</summary>'
            f"<pre>{escape(json.dumps(run.config, indent=2, sort_keys=True))}</pre></details>"
        )
    return _section("run", "Run", body)


STYLE = """
:root{--ink:#1d2433;--muted:#667085;--line:#e4e7ec;--bg:#f4f6f9;--card:#fff;--accent:#4c78a8;--good:#2e7d32;
--bad:#c62828;--warn:#b26a00;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans",
sans-serif;color:var(--ink);background:var(--bg)}
*{box-sizing:border-box}body{margin:0;font-size:14px;line-height:1.45}
code,pre{font-family:ui-monospace,"SFMono-Regular",Menlo,"DejaVu Sans Mono",monospace;font-size:12px}
.top{position:sticky;top:0;z-index:5;display:flex;align-items:center;gap:24px;padding:10px 28px;background:#111827;
color:#e5e7eb;box-shadow:0 1px 6px rgba(0,0,0,.25)}
.brand{font-size:20px;letter-spacing:.5px;color:#9ca3af}.brand b{color:#fff}
.headline{flex:1;min-width:0}.headline h1{font-size:15px;margin:0;font-weight:600;color:#fff}
.path{font-size:12px;color:#9ca3af;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.nav{display:flex;gap:4px;flex-wrap:wrap}.nav a{color:#d1d5db;text-decoration:none;padding:5px 10px;border-radius:6px;
font-size:13px}.nav a:hover{background:#1f2937;color:#fff}
.page{max-width:1320px;margin:0 auto;padding:20px 28px 40px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 18px;
box-shadow:0 1px 2px rgba(16,24,40,.04);scroll-margin-top:70px}
h2{font-size:17px;margin:0 0 4px}h3{font-size:14px;margin:22px 0 8px;color:#344054}h4,h5,h6{margin:14px 0 6px}
.sub{color:var(--muted);margin:0 0 14px;font-size:13px}.empty{color:var(--muted);font-style:italic}
.warnings{background:#fff8e6;border:1px solid #f5c26b;border-left:5px solid #e8a317;border-radius:10px;
padding:12px 18px;margin:0 0 18px}.warnings ul{margin:6px 0 0;padding-left:20px}.warnings.inline{margin:0 0 14px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.tile{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fafbfc}
.tile .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}
.tile .value{font-size:24px;font-weight:650;margin-top:2px}
.tile .hint{font-size:12px;color:var(--muted);min-height:16px}
.tile.good .value{color:var(--good)}.tile.bad .value{color:var(--bad)}.tile.warn .value{color:var(--warn)}
.tile.muted .value{color:var(--muted)}
.models{display:flex;flex-wrap:wrap;gap:6px;margin-top:14px}
.pill{display:inline-block;background:#eef2f7;color:#344054;border-radius:999px;padding:1px 9px;font-size:12px}
.pill.bad{background:#fdecea;color:var(--bad)}
.funnel{display:flex;flex-direction:column;gap:6px;max-width:980px}
.frow{display:grid;grid-template-columns:150px 1fr 170px;align-items:center;gap:12px}
.fname{font-weight:600;text-align:right;color:#344054;overflow:hidden;text-overflow:ellipsis}
.fnum{font-variant-numeric:tabular-nums;color:#344054}.minus{color:var(--bad)}.frow.final .fname{color:var(--good)}
.bar{display:flex;height:22px;background:#f0f2f5;border-radius:4px;overflow:hidden}.bar .seg{display:block;height:100%}
td.spark{width:22%}td.spark .bar{height:10px}
table.grid{border-collapse:collapse;width:100%;font-size:13px}
.grid th,.grid td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.grid thead th{background:#f8fafc;color:#475467;font-weight:600;font-size:12px}
.grid tbody tr:hover{background:#fafcff}.grid tfoot td{font-weight:600}
.num{text-align:right!important;font-variant-numeric:tabular-nums;white-space:nowrap}
.kv th{width:200px;color:#475467;font-weight:600}
.status{font-size:11px;padding:1px 7px;border-radius:999px;background:#fdecea;color:var(--bad)}
.status.failed{background:#7a1f1f;color:#fff}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:16px}
.chart{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fff}
.chart figcaption{font-weight:600;margin-bottom:4px}
svg.hist{display:block;max-width:100%;height:auto}
.gridline{stroke:#eef0f3}.axis{stroke:#98a2b3}.ytick{font-size:10px;fill:#667085;text-anchor:end}
.xtick{font-size:10px;fill:#667085;text-anchor:middle}.bin:hover rect{opacity:.8}
.threshold line{stroke:#c62828;stroke-width:2;stroke-dasharray:5 3}.threshold text{font-size:11px;fill:#c62828;
font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;margin:4px 0}
table.mini{width:100%;font-size:12px;border-collapse:collapse;color:#475467}.mini td,.mini th{padding:2px 6px}
.mini th{font-weight:500;color:#98a2b3}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
#rejected .gallery{grid-template-columns:repeat(auto-fill,minmax(150px,1fr))}
.item{position:relative;margin:0;border:1px solid var(--line);border-radius:8px;overflow:hidden;background:#fff;
display:flex;flex-direction:column}
.thumb{aspect-ratio:1/1;display:flex;align-items:center;justify-content:center;background:
repeating-conic-gradient(#f2f4f7 0% 25%,#fff 0% 50%) 50%/16px 16px}
.thumb img{max-width:100%;max-height:100%;object-fit:contain}
.noimg{color:#98a2b3;font-size:12px;border:1px dashed #d0d5dd;border-radius:6px;padding:20px 12px;background:#fff}
.item figcaption{padding:8px 10px;font-size:12px}.item p{margin:0 0 4px}
.caption{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden;color:var(--ink)}
.note{color:var(--bad);display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}
.meta{display:flex;gap:6px;align-items:center;flex-wrap:wrap;color:var(--muted)}.meta code{color:#98a2b3}
.src{color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:2px 8px;border-radius:999px;background:#eef2f7}
.item .badge{position:absolute;top:6px;left:6px}.badge.survivor,.badge.good{background:#e7f4e8;color:var(--good)}
.badge.dropped,.badge.bad{background:#fdecea;color:var(--bad)}.badge.muted{color:var(--muted)}
.groups,.clusters{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
details.group,.cluster{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fcfcfd;
max-width:100%}details.group summary{cursor:pointer;margin-bottom:10px}
.groups .gallery,.cluster .crow{display:flex;flex-wrap:wrap;gap:10px}.groups .item,.cluster .item{width:150px}
.count{color:var(--muted);margin-left:6px}
.chead{margin-bottom:8px;color:#344054}
.crow>.item:first-child{border:2px solid #54a24b}
.arrow{display:none}.more{align-self:center;color:var(--muted);font-weight:600}
.problems{color:var(--bad);margin:6px 0 0;padding-left:18px;font-size:12px}
.shards td{white-space:nowrap}.shards td:last-child{white-space:normal}
details.config pre{background:#0f172a;color:#e2e8f0;padding:14px;border-radius:8px;overflow:auto;max-height:420px}
details.config summary{cursor:pointer;margin-top:14px;font-weight:600}
.nested{margin-left:4px}
.auditgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
.auditblock h4{margin:8px 0 6px}.grid tr.flag td{background:#fff4f3}.grid tr.flag td:first-child{
box-shadow:inset 3px 0 0 var(--bad)}
.rate{position:relative;height:12px;background:#f0f2f5;border-radius:3px;min-width:120px}
.rate .fill{position:absolute;left:0;top:0;bottom:0;border-radius:3px}
.rate .tick{position:absolute;top:-3px;bottom:-3px;width:2px;background:#111827}
.tile.small .value{font-size:18px;overflow-wrap:anywhere}
.foot{text-align:center;color:var(--muted);font-size:12px;padding:10px 0 30px}
@media (max-width:700px){.frow{grid-template-columns:90px 1fr 90px}.charts{grid-template-columns:1fr}}
"""
