"""HTML building blocks shared by the report's sections: escaping, numbers, bars, sections, any JSON value as tables.

Every value that reaches the page goes through ``escape`` (or a function here that calls it). The number formatters
(``integer``, ``percent``, ``plural``, ``human_bytes``, ``fmt_value``, ``duration``) return plain text built only
from numbers and fixed words; callers that put a unit or a name beside them escape that.
"""

import html
import json
from typing import Any

REJECTED_COLOUR = "#e45756"


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def integer(value: int) -> str:
    """An integer with thousands separators."""
    return f"{value:,}"


def plural(count: int, word: str) -> str:
    """``count`` with thousands separators and ``word``, with an ``s`` unless it is one."""
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def percent(part: int, whole: int) -> str:
    """``part`` as a share of ``whole`` to one decimal (``12.5%``); a dash when ``whole`` is zero."""
    return f"{100 * part / whole:.1f}%" if whole else "–"


def human_bytes(value: float) -> str:
    """A byte count in B, KB, MB, GB or TB (powers of 1024), whole bytes and one decimal above."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


WHOLE_UNITS = ("characters",)  # counted in whole numbers: shown without decimals, ticked at whole numbers only


def fmt_value(value: float, unit: str = "") -> str:
    """A measured value for an axis or a table, in its ``unit``.

    Bytes as ``human_bytes``, characters as a whole number, anything else to 3 significant digits (whole numbers with
    thousands separators from 100 up).
    """
    if unit == "bytes":
        return human_bytes(value)
    if unit in WHOLE_UNITS:
        return f"{value:.0f}"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def duration(seconds: float | None) -> str:
    """A wall time as ``1h 02m 03.4s``, ``2m 03.4s`` or ``3.4s``; a dash when unknown."""
    if seconds is None:
        return "–"
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (
        f"{hours}h {minutes:02d}m {secs:04.1f}s"
        if hours
        else (f"{minutes}m {secs:04.1f}s" if minutes else f"{secs:.1f}s")
    )


def section(ident: str, title: str, body: str, subtitle: str = "") -> str:
    """One card of the page: ``<section id=ident>`` with an escaped ``title``.

    Args:
        ident: The element id the navigation links to (a fixed word, not escaped).
        title: Plain text.
        body: HTML, escaped by the caller.
        subtitle: HTML (escaped by the caller) for the grey line under the title; none when empty.
    """
    sub = f'<p class="sub">{subtitle}</p>' if subtitle else ""
    return f'<section id="{ident}" class="card"><h2>{escape(title)}</h2>{sub}{body}</section>'


def bar(parts: list[tuple[float, str, str]]) -> str:
    """A stacked bar of ``(share, colour, title)`` segments."""
    return (
        '<div class="bar">'
        + "".join(
            f'<span class="seg" style="width:{100 * max(0.0, w):.3f}%;background:{c}" title="{escape(t)}"></span>'
            for w, c, t in parts
            if w > 0
        )
        + "</div>"
    )


def scalar(value: Any) -> str:
    """One JSON scalar as HTML: floats to 4 significant digits, integers with separators."""
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    if isinstance(value, bool) or value is None:
        return f"<code>{escape(json.dumps(value))}</code>"
    if isinstance(value, int):
        return integer(value)
    return escape(value)


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is a JSON scalar (null, string, number or boolean)."""
    return value is None or isinstance(value, (str, int, float, bool))


def cell(value: Any) -> str:
    """One table cell: a scalar as ``scalar`` does, anything else as escaped compact JSON."""
    return scalar(value) if is_scalar(value) else escape(json.dumps(value, sort_keys=True))


def render_value(value: Any, depth: int = 0) -> str:
    """Render any JSON value as tables: scalars, number maps as bar tables, lists of objects as grids."""
    if is_scalar(value):
        return f"<p>{scalar(value)}</p>"
    if isinstance(value, list):
        if not value:
            return '<p class="empty">none</p>'
        if all(is_scalar(v) for v in value):
            return "<p>" + ", ".join(scalar(v) for v in value[:200]) + "</p>"
        if all(isinstance(v, dict) for v in value):
            columns: list[str] = []
            for row in value:
                columns.extend(k for k in row if k not in columns)
            head = "".join(f"<th>{escape(c)}</th>" for c in columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in value[:500]
            )
            return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        return "".join(render_value(v, depth + 1) for v in value[:100])
    if not isinstance(value, dict):
        return f"<p>{escape(value)}</p>"
    scalars = {k: v for k, v in value.items() if is_scalar(v)}
    nested = {k: v for k, v in value.items() if not is_scalar(v)}
    out = []
    numbers = {k: v for k, v in scalars.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars and len(numbers) == len(scalars) and len(numbers) >= 2:
        top = max((abs(v) for v in numbers.values()), default=1) or 1
        rows = "".join(
            f'<tr><td>{escape(k)}</td><td class="num">{scalar(v)}</td>'
            f'<td class="spark">{bar([(abs(v) / top, "#4c78a8" if v >= 0 else REJECTED_COLOUR, "")])}</td></tr>'
            for k, v in numbers.items()
        )
        out.append(f'<table class="grid kv">{rows}</table>')
    elif scalars:
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{scalar(v)}</td></tr>" for k, v in scalars.items())
        out.append(f'<table class="grid kv">{rows}</table>')
    for key, item in nested.items():
        level = min(6, 3 + depth)
        inner = render_value(item, depth + 1) if depth < 5 else f"<pre>{escape(json.dumps(item, indent=1))}</pre>"
        out.append(f'<div class="nested"><h{level}>{escape(key)}</h{level}>{inner}</div>')
    return "".join(out)
