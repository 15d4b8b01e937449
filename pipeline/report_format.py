"""HTML building blocks shared by the report's sections: escaping, numbers, bars and any JSON value as tables.

Every value that reaches the page goes through ``escape`` (or a function here that calls it).
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
    return value is None or isinstance(value, (str, int, float, bool))


def cell(value: Any) -> str:
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
