"""The distributions' charts: a stacked histogram per ``Distribution`` as inline SVG, and the colour of each series.

``histogram_svg`` draws one bar per bin stacked by series (in name order, the filter's rejected series last), a 1-2-5
count axis, value ticks (log-spaced when ``log_scale``), a ``<title>`` tooltip per bin with its range and counts, and a
dashed marker with its label at every threshold (left of the marker when the right has no room). Series names, units
and threshold labels come from the data and are escaped; numbers and colours are formatted here.
"""

import math

from pipeline.report.charts import REJECTED_SERIES
from pipeline.report.format import REJECTED_COLOUR, WHOLE_UNITS, escape, fmt_value
from schemas.report import Distribution

LABEL_CHAR_W = 6.0  # average width of a threshold label's character at 11 px, for placing it
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#ff9da6", "#439894")


class Colours:
    """The colour of each series on the page: palette colours by sorted name, the rejected series always red.

    A name that was not among ``names`` is grey. Being a pure function of the set of names, a domain has the same
    colour in the funnel's domain table and in every chart.
    """

    def __init__(self, names: list[str]):
        ordered = sorted(n for n in set(names) if n != REJECTED_SERIES)
        self._map = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ordered)}
        self._map[REJECTED_SERIES] = REJECTED_COLOUR

    def __call__(self, name: str) -> str:
        return self._map.get(name, "#888888")


def series_order(dist: Distribution) -> list[str]:
    """The series of ``dist`` in stacking and legend order: by name, the filter's rejected series last."""
    return sorted(dist.series, key=lambda n: (n == REJECTED_SERIES, n))


def _nice(value: float) -> float:
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10**exponent >= value:
            return step * 10**exponent
    return 10 ** (exponent + 1)


def histogram_svg(dist: Distribution, colours: Colours, width: int = 520, height: int = 220) -> str:
    """A stacked histogram with axes, per-bin tooltips and threshold markers, as inline SVG."""
    left, right, top, bottom = 46, 12, 16, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = len(dist.edges) - 1
    order = series_order(dist)
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
    whole = dist.unit in WHOLE_UNITS
    for value in axis_ticks(dist.edges[0], dist.edges[-1], dist.log_scale):
        if whole:
            if abs(value - round(value)) > 1e-6:
                continue
            value = float(round(value))
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
        # Right of the line, unless the label would leave the plot there and fits on the left (11 px text).
        text_w = LABEL_CHAR_W * len(mark.label)
        flip = x + 4 + text_w > width - right and x - 4 - text_w >= left
        anchor = f'x="{x - 4:.1f}" text-anchor="end"' if flip else f'x="{x + 4:.1f}"'
        parts.append(
            f'<g class="threshold"><title>{escape(mark.label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}"/>'
            f'<text {anchor} y="{top + 8 + 12 * n}">{escape(mark.label)}</text></g>'
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
