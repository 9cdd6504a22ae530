"""A small picture of where a failing product is wrong: error/bound over one output plane.

A failure card shows the plane that holds the worst element: for an output
``(batch, channel, *spatial)`` the worst element's batch item and channel, all
of a 1-D or 2-D spatial extent, and for 3-D the depth slice through the worst
element.  Planes larger than :data:`MAX_SIDE` are reduced by block maximum, so
a single bad element still shows.  The result is plain JSON (it lives in the
results file); :mod:`reports` draws it as inline SVG.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Rows and columns kept: enough to see a border, a stripe or a corner, small enough for the page.
MAX_SIDE = 16


def heatmap(ratios: np.ndarray, worst: tuple[int, ...] | None, product: str) -> dict[str, Any] | None:
    """The plane of ``ratios`` (per-element error/bound) through ``worst``, block-max reduced."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim == 0 or ratios.size == 0:
        return None
    if worst is None or len(worst) != ratios.ndim:
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.nan_to_num(ratios, nan=0.0))), ratios.shape))
    plane, where = _plane(ratios, worst)
    reduced, block = _block_max(plane)
    return {
        "product": product,
        "slice": where,
        "shape": list(plane.shape),
        "block": list(block),
        # The worst element's row and column in the plane (before reduction).
        "worst": [int(worst[-2]) if plane.shape[0] > 1 else 0, int(worst[-1])],
        "values": [[_short(v) for v in row] for row in reduced],
    }


def _plane(ratios: np.ndarray, worst: tuple[int, ...]) -> tuple[np.ndarray, str]:
    if ratios.ndim == 1:  # grad_bias: one row of channels
        return ratios.reshape(1, -1), "channels"
    fixed = worst[:2] if ratios.ndim >= 3 else ()
    names = ["n", "c"]
    if ratios.ndim == 5:  # 3-D: the depth slice through the worst element
        fixed = worst[:3]
        names.append("d")
    plane = ratios[fixed]
    if plane.ndim == 1:
        plane = plane.reshape(1, -1)
    where = ", ".join(f"{name}={i}" for name, i in zip(names, fixed))
    return plane, where or "all"


def _block_max(plane: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    rows, cols = plane.shape
    br, bc = math.ceil(rows / MAX_SIDE), math.ceil(cols / MAX_SIDE)
    if br == 1 and bc == 1:
        return plane, (1, 1)
    padded = np.zeros((math.ceil(rows / br) * br, math.ceil(cols / bc) * bc))
    padded[:rows, :cols] = np.nan_to_num(plane, nan=math.inf)
    blocks = padded.reshape(padded.shape[0] // br, br, padded.shape[1] // bc, bc)
    return blocks.max(axis=(1, 3)), (br, bc)


def _short(v: float) -> float | str:
    """Three significant digits, and infinities as strings (JSON has none)."""
    if math.isnan(v) or math.isinf(v):
        return "inf"
    return float(f"{v:.3g}")


__all__ = ["MAX_SIDE", "heatmap"]
