"""The page's table and chart sections: summary, funnel, distributions, shards and run.

Each ``*_section`` function takes the ``Report`` and returns one ``<section>`` card. Names, reasons, domains, paths,
problems, versions and the resolved config come from the run's input and output and are escaped; counts and shares
are formatted by ``pipeline.report.format``.
"""

import json

from pipeline.report.format import (
    REJECTED_COLOUR,
    bar,
    duration,
    escape,
    fmt_value,
    human_bytes,
    integer,
    percent,
    section,
)
from pipeline.report.histogram import Colours, histogram_svg, series_order
from schemas.report import Distribution, Report, ShardCheck


def _validation_state(report: Report) -> tuple[str, str]:
    validation = report.validation
    if validation is None or not validation.shards and not validation.problems:
        return "–", "muted"
    if not any(s.checked for s in validation.shards):
        return "not checked", "muted"
    problems = len(validation.all_problems())
    return ("all valid", "good") if not problems else (f"{problems} problems", "bad")


def summary_section(report: Report) -> str:
    """Tiles for items, kept, rejected, failed, shards, validation and wall time; then the models, as pills."""
    funnel, items = report.funnel, report.funnel.items
    shards = report.validation.shards if report.validation else []
    state, tone = _validation_state(report)
    tiles = [
        ("Input items", integer(items), "", ""),
        ("Kept", integer(funnel.kept), percent(funnel.kept, items), "good"),
        ("Rejected", integer(funnel.rejected), percent(funnel.rejected, items), "warn" if funnel.rejected else ""),
        ("Failed", integer(funnel.failed), percent(funnel.failed, items), "bad" if funnel.failed else ""),
        ("Shards", integer(len(shards)), human_bytes(sum(s.bytes for s in shards)), ""),
        ("Validation", state, "", tone),
        ("Wall time", duration(report.run.wall_seconds), escape(report.run.runner), ""),
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
    return section("summary", "Summary", body)


def funnel_section(report: Report, colours: Colours) -> str:
    """A bar per stage that dropped items (what continues, is rejected, fails), the reason table and per domain.

    Args:
        report: The report.
        colours: The page's series colours, for the domain swatches (the same as in the charts).
    """
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
        f'<div class="fnum"><b>{integer(funnel.kept)}</b> · {percent(funnel.kept, funnel.items)}</div></div>'
    )
    body = '<div class="funnel" id="funnel-chart">' + "".join(rows) + "</div>"
    if funnel.reasons:
        reason_rows = "".join(
            f"<tr><td>{escape(r.stage)}</td><td><code>{escape(r.reason or '–')}</code></td>"
            f'<td><span class="status {escape(r.status)}">{escape(r.status)}</span></td>'
            f'<td class="num">{integer(r.count)}</td>'
            f'<td class="num">{percent(r.count, funnel.items)}</td>'
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
            f'<td class="num">{integer(d.failed)}</td><td class="num">{percent(d.kept, d.items)}</td>'
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
    return section(
        "funnel", "Funnel", body, "Every input item ends in exactly one ledger row: kept, rejected or failed."
    )


def distributions_section(report: Report, colours: Colours) -> str:
    """A card per distribution: its histogram, legend and per-series statistics (n, median, mean, range)."""
    if not report.distributions:
        return section("distributions", "Distributions", '<p class="empty">No kept samples to describe.</p>')
    charts = "".join(_chart_card(d, colours) for d in report.distributions)
    return section(
        "distributions",
        "Distributions",
        f'<div class="charts">{charts}</div>',
        "Kept samples, stacked per domain. Hover a bar for its range and counts.",
    )


def _chart_card(dist: Distribution, colours: Colours) -> str:
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{colours(name)}"></span>{escape(name)}</span>'
        for name in series_order(dist)
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


def shards_section(report: Report) -> str:
    """One row per shard (path relative to the output, view, split, samples, sizes, domains, validation state)."""
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
    return section("shards", "Shards", body, "Validation re-reads every tar, its sidecar, stats and index.")


def run_section(report: Report) -> str:
    """The run's facts, models, package versions and resolved configuration (folded, as indented JSON)."""
    run = report.run
    facts = [
        ("Output", run.output),
        ("Runner", run.runner or "–"),
        ("Beam arguments", " ".join(run.beam_args) or "–"),
        ("Wall time", duration(run.wall_seconds)),
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
    return section("run", "Run", body)
