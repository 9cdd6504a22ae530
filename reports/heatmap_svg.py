"""A failure's error/bound heatmap (see :mod:`conformance.heatmap`) as shapes for inline SVG.

Colours come in a handful of steps, and equal neighbours in a row merge into one
rectangle: a mostly uniform map (the usual case: a bug touches a border, a
stripe or one corner) costs a few rectangles, not one per element.
"""

from __future__ import annotations

import math
from typing import Any

from reports.model import as_float

#: The map's longer side in pixels; each element's square is clamped to [MIN_CELL, MAX_CELL].
SIDE, MIN_CELL, MAX_CELL = 224, 10, 32
#: Rows or columns past which a map is not drawn: the suite writes at most conformance.heatmap.MAX_SIDE
#: (16); a file from elsewhere with a vast map must not turn into millions of rectangles.
MAX_DRAWN = 64

#: (upper limit of error/bound, colour, legend label): within bound in greens, past it in reds.
STEPS = (
    (0.0, "#f2f2f2", "exact"),
    (0.1, "#d9f0d3", "≤ 0.1"),
    (1.0, "#7fbf7b", "≤ 1 (within bound)"),
    (10.0, "#fdae61", "≤ 10"),
    (1e3, "#f46d43", "≤ 10³"),
    (1e6, "#d73027", "≤ 10⁶"),
    (math.inf, "#67001f", "> 10⁶, or wrong where exactness or a special value was due"),
)


def colour(ratio: float | str) -> str:
    """The fill for one error/bound value, a number or its strict-JSON text ("inf", "nan")."""
    value = as_float(ratio)
    # Unreadable, NaN or negative (a ratio of magnitudes never is) is shown as the worst, never as fine.
    if value is None or value != value or value < 0:
        value = math.inf
    for limit, fill, _ in STEPS:
        if value <= limit:
            return fill
    return STEPS[-1][1]


def shapes(heatmap: dict[str, Any]) -> dict[str, Any] | None:
    """Rectangles, size and the worst element's outline for one heatmap; None if it is malformed."""
    values = heatmap.get("values")
    if not isinstance(values, list) or not values or not all(isinstance(row, list) and row for row in values):
        return None
    columns = max(len(row) for row in values)
    if len(values) > MAX_DRAWN or columns > MAX_DRAWN:
        return None
    cell = max(MIN_CELL, min(MAX_CELL, SIDE // max(columns, len(values))))
    rects = []
    for y, row in enumerate(values):
        start = 0
        for x in range(1, len(row) + 1):
            if x == len(row) or colour(row[x]) != colour(row[start]):
                rects.append({"x": start * cell, "y": y * cell, "w": (x - start) * cell, "fill": colour(row[start])})
                start = x
    block = heatmap.get("block") or [1, 1]
    worst = heatmap.get("worst") or [0, 0]
    try:
        wy, wx = int(worst[0]) // int(block[0]), int(worst[1]) // int(block[1])
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        wy, wx = 0, 0
    return {
        "rects": rects,
        "cell": cell,
        "width": columns * cell,
        "height": len(values) * cell,
        "worst": {"x": wx * cell, "y": wy * cell},
        "legend": [{"fill": fill, "label": label} for _, fill, label in STEPS],
    }


__all__ = ["STEPS", "colour", "shapes"]
