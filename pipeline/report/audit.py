"""The report's audit section: ``audit/audit.json`` (``schemas.audit.AuditReport``) as tables and bar charts.

Known parts get a purpose-made view: warnings, people, the exclusion rate of every filter per group against its
overall rate, representation before and after filtering against the reference, and defect classes. Every other key
(and any key a later schema version adds) goes through the generic renderer, so nothing in the file is hidden.
Every value is escaped.
"""

import json
from collections import defaultdict
from typing import Any

from pipeline.report.format import REJECTED_COLOUR, bar, escape, integer, render_value, scalar

FLAG_RATIO = 2.0
KNOWN = ("warnings", "people", "exclusion", "representation", "defect_classes", "items", "measured", "model_id")


def warning_text(warning: Any) -> str:
    """A warning as one sentence: its ``message`` (with the code), or its JSON."""
    if isinstance(warning, dict) and isinstance(warning.get("message"), str):
        code = warning.get("code")
        return f"{warning['message']}" + (f" [{code}]" if isinstance(code, str) else "")
    return warning if isinstance(warning, str) else json.dumps(warning, sort_keys=True)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rate_bar(rate: float | None, overall: float | None, flagged: bool) -> str:
    """A 0-100% bar for ``rate`` with a dark tick at ``overall``."""
    if rate is None:
        return ""
    tick = (
        f'<span class="tick" style="left:{100 * min(1.0, max(0.0, overall)):.2f}%"></span>'
        if overall is not None
        else ""
    )
    colour = REJECTED_COLOUR if flagged else "#4c78a8"
    width = 100 * min(1.0, max(0.0, rate))
    return f'<div class="rate"><span class="fill" style="width:{width:.2f}%;background:{colour}"></span>{tick}</div>'


def _exclusion(rows: list) -> str:
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if isinstance(row, dict):
            by_stage[str(row.get("stage", ""))].append(row)
    blocks = []
    for stage, items in by_stage.items():
        body = []
        for row in sorted(items, key=lambda r: (str(r.get("dimension")), str(r.get("value")))):
            ratio = _number(row.get("ratio"))
            flagged = ratio is not None and ratio >= FLAG_RATIO
            body.append(
                f'<tr class="{"flag" if flagged else ""}"><td>{escape(row.get("dimension", ""))}</td>'
                f'<td>{escape(row.get("value", ""))}</td><td class="num">{scalar(row.get("items"))}</td>'
                f'<td class="num">{scalar(row.get("excluded"))}</td><td class="num">{_pct(row.get("rate"))}</td>'
                f'<td class="ratebar">{_rate_bar(_number(row.get("rate")), _number(row.get("overall_rate")), flagged)}'
                f'</td><td class="num">{escape(_ratio(ratio))}</td></tr>'
            )
        blocks.append(
            f'<div class="auditblock"><h4>{escape(stage)}</h4><table class="grid"><thead><tr><th>Dimension</th>'
            '<th>Group</th><th class="num">Items</th><th class="num">Removed</th><th class="num">Rate</th>'
            '<th>Rate (tick: overall)</th><th class="num">× overall</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )
    return (
        "<h3>How much each filter removes from each group</h3>"
        f'<p class="sub">Rows at {FLAG_RATIO:g}× the overall rate or more are marked.</p>'
        f'<div class="auditgrid">{"".join(blocks)}</div>'
    )


def _ratio(value: Any) -> str:
    number = _number(value)
    return f"{number:.2f}×" if number is not None else "–"


def _representation(rows: list) -> str:
    blocks = []
    for entry in rows:
        if not isinstance(entry, dict):
            continue
        body = []
        for group in (g for g in entry.get("groups", []) if isinstance(g, dict)):
            share = bar([(_number(group.get("share_after")) or 0.0, "#4c78a8", "")])
            body.append(
                f'<tr><td>{escape(group.get("value", ""))}</td><td class="num">{scalar(group.get("before"))}</td>'
                f'<td class="num">{scalar(group.get("after"))}</td><td class="num">{_pct(group.get("share_before"))}'
                f'</td><td class="num">{_pct(group.get("share_after"))}</td><td class="spark">{share}</td>'
                f'<td class="num">{_pct(group.get("reference"))}</td>'
                f'<td class="num">{escape(_ratio(group.get("ratio_after")))}</td></tr>'
            )
        blocks.append(
            f'<div class="auditblock"><h4>{escape(entry.get("dimension", ""))} '
            f'<span class="count">{scalar(entry.get("measured"))} measured</span></h4><table class="grid"><thead>'
            '<tr><th>Group</th><th class="num">Before</th><th class="num">After</th><th class="num">Share before</th>'
            '<th class="num">Share after</th><th></th><th class="num">Reference</th><th class="num">After ÷ ref.</th>'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
    return f'<h3>Representation before and after filtering</h3><div class="auditgrid">{"".join(blocks)}</div>'


def _defects(rows: list) -> str:
    body = []
    for row in (r for r in rows if isinstance(r, dict)):
        before, after = _number(row.get("before")) or 0.0, _number(row.get("after")) or 0.0
        tail = '<span class="badge">long tail</span>' if row.get("long_tail") else ""
        body.append(
            f"<tr><td>{escape(row.get('column', ''))}</td><td>{escape(row.get('value', ''))}</td>"
            f'<td class="num">{scalar(row.get("before"))}</td><td class="num">{scalar(row.get("after"))}</td>'
            f'<td class="spark">{bar([(after / max(1.0, before), "#54a24b", "")])}</td><td>{tail}</td></tr>'
        )
    return (
        '<h3>Defect classes and slices before and after filtering</h3><table class="grid"><thead><tr><th>Column</th>'
        '<th>Value</th><th class="num">Before</th><th class="num">After</th><th>Kept</th><th></th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _facts(audit: dict) -> str:
    tiles = []
    for label, value in (("Model", audit.get("model_id")),):
        if value:
            tiles.append((label, str(value)))
    for group in ("items", "measured"):
        if isinstance(audit.get(group), dict):
            tiles.extend(
                (f"{group} · {k}", integer(v) if isinstance(v, int) else str(v)) for k, v in audit[group].items()
            )
    people = audit.get("people")
    if isinstance(people, dict):
        for key in ("images", "with_person", "with_faces", "faces"):
            if isinstance(people.get(key), int):
                tiles.append((f"people · {key.replace('_', ' ')}", integer(people[key])))
    html = "".join(
        f'<div class="tile small"><div class="label">{escape(k)}</div><div class="value">{escape(v)}</div></div>'
        for k, v in tiles
    )
    return f'<div class="tiles">{html}</div>'


def render_audit(audit: dict) -> str:
    """The audit section's body."""
    parts = []
    warnings = audit.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{escape(warning_text(w))}</li>" for w in warnings)
        parts.append(f'<div class="warnings inline"><strong>Audit warnings</strong><ul>{items}</ul></div>')
    parts.append(_facts(audit))
    if isinstance(audit.get("exclusion"), list) and audit["exclusion"]:
        parts.append(_exclusion(audit["exclusion"]))
    if isinstance(audit.get("representation"), list) and audit["representation"]:
        parts.append(_representation(audit["representation"]))
    if isinstance(audit.get("defect_classes"), list) and audit["defect_classes"]:
        parts.append(_defects(audit["defect_classes"]))
    people = audit.get("people")
    if isinstance(people, dict) and people.get("attributes"):
        parts.append(f"<h3>Perceived attributes of people (aggregate)</h3>{render_value(people['attributes'])}")
    rest = {k: v for k, v in audit.items() if k not in KNOWN and v not in (None, [], {})}
    scalars = {k: v for k, v in rest.items() if not isinstance(v, (dict, list))}
    if scalars:
        parts.append(f"<h3>Other facts</h3>{render_value(scalars, 1)}")
    for key, value in ((k, v) for k, v in rest.items() if k not in scalars):
        parts.append(f'<div class="nested"><h3>{escape(key)}</h3>{render_value(value, 1)}</div>')
    empty = [k for k, v in audit.items() if k not in KNOWN and v in ([], {})]
    if empty:
        parts.append(f'<p class="sub">Nothing to show for: {escape(", ".join(empty))}.</p>')
    return "".join(parts)
