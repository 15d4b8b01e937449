"""A classical text-region detector: stroke-filtered connected components grouped into lines and blocks.

No model weights. On a grey image (the quality stage's ~256 px copy) it finds glyphs as connected components of a
local (mean-C) threshold in both polarities, keeps those that look like strokes, groups them into text lines and
the lines into blocks, and returns the block boxes. The quality stage reports the share of the frame the blocks
cover (``transforms/quality.py``, ``quality_text_coverage``).

A glyph candidate is at least ``MIN_GLYPH_PX`` and at most ``MAX_GLYPH_HEIGHT`` of the image tall, at least
``MIN_FILL`` filled, stands out from the rest of its box by ``MIN_CONTRAST``, stands on a flat background (the grey
standard deviation of the rest of its box at most ``MAX_SPREAD`` of that contrast), and has strokes thinner than
``MAX_STROKE`` of its height (a bar of width s has mean distance s/4 to its edge, so s ~ 4 x mean distance - 2):
filled pads, discs and blobs are not glyphs. Printed and overlaid text is ink on paper, a band or a label: the rest
of a glyph's box is that flat ground plus the letter's anti-aliased rim (banner and label glyphs: median 0.11-0.15,
95th percentile 0.2-0.45 of the contrast), while a stone, a grass blade or a coin found by the local threshold sits
among more of the same (median 0.44, 5th percentile 0.25). The price: capitals written straight over a busy photo,
without a band, are mostly missed, outlined or not (three lines over the astronaut: 0.35 in v1, 0 in v2; over the
rocket's smooth sky they are still found, 0.21). A component wider than tall (letters of bold text touch) must
cross a scanline at least ``MIN_RUNS`` times per height of width, which a word does and a trace or a wire does not.
Glyphs of one line have similar heights, share a top or a bottom, have similar tone and stroke, and are at most
``MAX_GAP`` heights apart; a line is at least ``MIN_LINE_ASPECT`` times as wide as tall and holds ``MIN_LINE_UNITS``
letters. Lines that overlap horizontally and are at most ``MAX_LINE_GAP`` line heights apart form a block; a block
needs ``MIN_BLOCK_UNITS`` letters. The constants come from the quality benchmark (``benchmarks/bench_quality.py``):
they keep detector hits on PCB traces, coins, gravel and steel textures rare while finding banner text. v2 added the
flat-background test: v1 measured 0.17-0.28 on the README demo's gravel and grass tiles.
"""

import cv2
import numpy as np

DETECTOR = "opencv_adaptive_cc_stroke_v2"
BLOCK_SIZE = 31
THRESHOLD_C = 10
MIN_GLYPH_PX = 6
MAX_GLYPH_HEIGHT = 0.25
MIN_FILL = 0.15
MIN_CONTRAST = 0.2
MAX_SPREAD = 0.35
MAX_STROKE = 0.3
MIN_RUNS = 1.2
MAX_GAP = 0.35
MIN_LINE_ASPECT = 1.5
MIN_LINE_UNITS = 2
MAX_LINE_GAP = 1.5
MIN_BLOCK_UNITS = 4
MAX_CANDIDATES = 1000

# Columns of the glyph table.
_X, _Y, _W, _H, _STROKE, _TONE, _UNITS = range(7)


def text_blocks(grey: np.ndarray) -> np.ndarray:
    """Text blocks in a uint8 grey image, as rows ``(x0, y0, x1, y1)`` in pixels (end-exclusive), sorted."""
    if grey.size == 0 or min(grey.shape) < MIN_GLYPH_PX:
        return np.zeros((0, 4))
    return _blocks(_lines(_glyphs(np.ascontiguousarray(grey))))


def text_coverage(grey: np.ndarray) -> float:
    """Share of the image's pixels inside a text block, in [0, 1]."""
    mask = np.zeros(grey.shape, np.uint8)
    for x0, y0, x1, y1 in text_blocks(grey).astype(int):
        mask[y0:y1, x0:x1] = 1
    return float(mask.mean()) if mask.size else 0.0


def _glyphs(grey: np.ndarray) -> np.ndarray:
    height, _ = grey.shape
    integral, squares = cv2.integral2(grey)
    # OpenCV's mean-C adaptive threshold, both polarities from one local mean.
    local = cv2.boxFilter(grey, -1, (BLOCK_SIZE, BLOCK_SIZE), borderType=cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED)
    tones, local = grey.astype(np.int16), local.astype(np.int16)
    found = []
    for binary in ((tones > local + THRESHOLD_C).view(np.uint8), (tones <= local - THRESHOLD_C).view(np.uint8)):
        # Grana's algorithm labels exactly as OpenCV's default does here, in 60% of the time.
        count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_32S, cv2.CCL_GRANA)
        x, y, w, h, area = (column.astype(np.int64) for column in stats[1:].T)
        keep = (h >= MIN_GLYPH_PX) & (h <= MAX_GLYPH_HEIGHT * height) & (w >= 2) & (area >= MIN_FILL * w * h)
        if not keep.any():
            continue
        # Sums over the candidates' pixels only: most components are specks that the size test already dropped.
        member = np.concatenate([[False], keep])[labels]
        owner = labels[member]
        distance = cv2.distanceTransform(binary, cv2.DIST_L2, 3)
        stroke = np.maximum(4 * np.bincount(owner, distance[member], minlength=count)[1:] / area - 2, 1.0)
        ink = grey[member].astype(np.float64)
        inside = np.bincount(owner, ink, minlength=count)[1:]
        inside_squares = np.bincount(owner, ink * ink, minlength=count)[1:]
        box = _box_sums(integral, x, y, w, h)
        box_squares = _box_sums(squares, x, y, w, h)
        rest = np.maximum(w * h - area, 1)
        tone = inside / area / 255.0
        around = (box - inside) / rest / 255.0
        spread = np.sqrt(np.maximum((box_squares - inside_squares) / rest / 255.0**2 - around**2, 0.0))
        contrast = np.abs(tone - around)
        keep &= (stroke <= MAX_STROKE * h + 1) & (contrast >= MIN_CONTRAST) & (spread <= MAX_SPREAD * contrast)
        units = np.ones(len(w))
        for index in np.nonzero(keep & (w > h))[0]:
            runs = _scanline_runs(labels[y[index] : y[index] + h[index], x[index] : x[index] + w[index]] == index + 1)
            keep[index] = runs >= MIN_RUNS * w[index] / h[index]
            units[index] = max(1.0, runs / 1.5)
        found.append(np.stack([x, y, w, h, stroke, tone, units], axis=1)[keep].astype(np.float64))
    glyphs = np.concatenate(found) if found else np.zeros((0, 7))
    if len(glyphs) > MAX_CANDIDATES:
        # Noise: keep a deterministic subset (largest first) so the pairwise grouping stays bounded.
        order = np.lexsort((glyphs[:, _X], glyphs[:, _Y], -glyphs[:, _W] * glyphs[:, _H]))
        glyphs = glyphs[order[:MAX_CANDIDATES]]
    return glyphs


def _box_sums(integral: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    return integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x] + integral[y, x]


def _scanline_runs(mask: np.ndarray) -> int:
    """Most ink runs crossed by one of three scanlines at 30%, 50% and 70% of the component's height."""
    rows = mask[[int(mask.shape[0] * share) for share in (0.3, 0.5, 0.7)]]
    return int((np.count_nonzero(rows[:, 1:] & ~rows[:, :-1], axis=1) + rows[:, 0]).max())


def _groups(adjacent: np.ndarray) -> np.ndarray:
    """Connected components of a symmetric adjacency matrix: each node labelled by its component's smallest node."""
    parent = list(range(len(adjacent)))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for first, second in zip(*np.nonzero(np.triu(adjacent, 1)), strict=True):
        a, b = root(int(first)), root(int(second))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(node) for node in range(len(parent))], dtype=np.int64)


def _lines(glyphs: np.ndarray) -> np.ndarray:
    if len(glyphs) == 0:
        return np.zeros((0, 5))
    x, y, w, h, stroke, tone, units = glyphs.T
    low = np.minimum(h[:, None], h[None, :])
    gap = np.maximum(x[None, :] - (x + w)[:, None], x[:, None] - (x + w)[None, :])
    adjacent = (
        (np.maximum(h[:, None], h[None, :]) <= 1.35 * low)
        & ((np.abs((y + h)[:, None] - (y + h)[None, :]) <= 0.2 * low) | (np.abs(y[:, None] - y[None, :]) <= 0.2 * low))
        & (gap <= MAX_GAP * low)
        & (gap >= -0.3 * low)
        & (np.abs(tone[:, None] - tone[None, :]) <= 0.15)
        & (np.maximum(stroke[:, None], stroke[None, :]) <= 2.0 * np.minimum(stroke[:, None], stroke[None, :]))
    )
    labels = _groups(adjacent)
    lines = []
    for label in np.unique(labels):
        member = labels == label
        x0, y0, x1, y1 = x[member].min(), y[member].min(), (x + w)[member].max(), (y + h)[member].max()
        letters = units[member].sum()
        if letters >= MIN_LINE_UNITS and x1 - x0 >= MIN_LINE_ASPECT * (y1 - y0):
            lines.append((x0, y0, x1, y1, letters))
    return np.array(lines).reshape(-1, 5)


def _blocks(lines: np.ndarray) -> np.ndarray:
    if len(lines) == 0:
        return np.zeros((0, 4))
    x0, y0, x1, y1, letters = lines.T
    h = y1 - y0
    high = np.maximum(h[:, None], h[None, :])
    gap = np.maximum(y0[None, :] - y1[:, None], y0[:, None] - y1[None, :])
    overlap = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    labels = _groups((gap <= MAX_LINE_GAP * high) & (overlap > 0) & (high <= 2 * np.minimum(h[:, None], h[None, :])))
    blocks = [
        (x0[member].min(), y0[member].min(), x1[member].max(), y1[member].max())
        for member in (labels == label for label in np.unique(labels))
        if letters[member].sum() >= MIN_BLOCK_UNITS
    ]
    return np.array(sorted(blocks)).reshape(-1, 4)
