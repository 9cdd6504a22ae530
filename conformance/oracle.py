r"""The float64 reference convolution: numpy only, independent of every candidate.

Forward (cross-correlation, as every framework computes it), for output channel
``o`` in group ``g`` and output position ``j`` (a tuple over the spatial axes)::

    y[n, o, j] = b[o] + sum_{c < C_in/G} sum_{t < kernel}
                 P(x)[n, g*C_in/G + c, j*stride + t*dilation] * w[o, c, t]

where ``P`` pads by the spec's ``(before, after)`` pairs with the padding mode's
true semantics.  Transposed: each input position scatters through the kernel::

    y_full[n, g*C_out/G + o, i*stride + t*dilation] += x[n, g*C_in/G + c, i] * w[g*C_in/G + c, o, t]

and ``y = y_full[before : before + out]`` (padding crops, ``output_padding`` extends).

The sums are evaluated as matrix products in float64: the windows
``P(x)[..., j*stride + t*dilation]`` of a block of batch items and output rows
are copied into columns (im2col, one row per input channel and tap), and one BLAS
matmul per group contracts them with the weight over channels x taps at once.
Blocks keep those columns within 1.5x the problem's own tensors.  The transposed
convolution multiplies first and scatters the columns through the windows of its
uncropped output (col2im).  The three backward products are written from their
own definitions (the transposes of the maps above), never from a framework's
autograd:

* ``grad_input``: each output gradient scatters back through the kernel onto the
  padded input, and ``P^T`` folds the padded positions onto the input positions
  they copied (crop for zeros; add for reflect, replicate and circular);
* ``grad_weight``: the output gradient contracted with the windows of the padded
  input over batch and positions;
* ``grad_bias``: the output gradient summed over batch and positions.

:func:`magnitude` runs the same products on ``|x|, |w|, |b|``: the scale in which
:mod:`conformance.tolerance` measures a candidate's rounding error.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from conformance.spec import ConvSpec

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


# ----------------------------------------------------------------- public API


def forward(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """The convolution (or transposed convolution) ``spec`` describes, in float64."""
    x, w = _f64(x, spec.input_shape, "x"), _f64(w, spec.weight_shape, "w")
    y = _transposed(spec, x, w) if spec.transposed else _correlate(spec, x, w)
    if spec.bias:
        if b is None:
            raise ValueError(f"{spec}: spec.bias is True but no bias was given")
        y += _f64(b, spec.bias_shape, "b").reshape((1, -1) + (1,) * spec.dims)
    return y


def magnitude(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``|x| * |w| + |b|`` through the same loops: the scale of each output's rounding error."""
    return forward(spec, np.abs(x), np.abs(w), None if b is None else np.abs(b))


def backward(spec: ConvSpec, x: np.ndarray, w: np.ndarray, grad_out: np.ndarray) -> Grads:
    """``(grad_input, grad_weight, grad_bias)`` of the loss whose gradient at the output is ``grad_out``.

    ``grad_bias`` is None when the spec has no bias.
    """
    x, w = _f64(x, spec.input_shape, "x"), _f64(w, spec.weight_shape, "w")
    gy = _f64(grad_out, spec.output_shape, "grad_out")
    if spec.transposed:
        gx, gw = _transposed_grads(spec, x, w, gy)
    else:
        gx, gw = _correlate_grads(spec, x, w, gy)
    gb = gy.sum(axis=(0, *range(2, gy.ndim))) if spec.bias else None
    return gx, gw, gb


def backward_magnitude(spec: ConvSpec, x: np.ndarray, w: np.ndarray, grad_out: np.ndarray) -> Grads:
    """The backward products on absolute values: the scale of each gradient's rounding error."""
    return backward(spec, np.abs(x), np.abs(w), np.abs(grad_out))


#: The products of a problem, keys of :func:`term_counts`.
PRODUCTS = ("output", "grad_input", "grad_weight", "grad_bias")


def term_counts(spec: ConvSpec) -> dict[str, np.ndarray]:
    """Per product, how many ``x * w`` (or ``x * grad_out``, ``w * grad_out``) products are summed
    into each element: what all-ones data would give, from the geometry alone.

    Keys are :data:`PRODUCTS`; each array broadcasts to that product's shape (size-1
    batch and channel axes).  The bias term is not counted, and neither are the
    products with a zero of the padding: they are zero by construction, not data.
    An element with no terms is zero by structure (a stride longer than the dilated
    kernel leaves input positions no window reads, whose gradient is 0 whatever the
    data; a transposed output no input reaches; a batch of 0 leaves grad_weight 0),
    which :mod:`conformance.tolerance` checks exactly instead of counting it as data.

    The count factorizes over the spatial axes (a tap's position on one axis does
    not depend on the others), so it costs one small table per axis, not a pass of
    the oracle.
    """
    spec.validate()
    axes = [axis_terms(spec, a) for a in range(spec.dims)]
    cin_g, cout_g = spec.in_channels // spec.groups, spec.out_channels // spec.groups

    def outer(per_axis: list[np.ndarray], scale: int) -> np.ndarray:
        grid = np.ones((), dtype=np.int64) * scale
        for a in per_axis:
            grid = np.multiply.outer(grid, a)
        return grid.reshape(1, 1, *grid.shape)

    return {
        "output": outer([a[0] for a in axes], cin_g),
        "grad_input": outer([a[1] for a in axes], cout_g),
        "grad_weight": outer([a[2] for a in axes], spec.batch),
        "grad_bias": np.full(spec.out_channels, spec.batch * math.prod(spec.output_size), dtype=np.int64),
    }


def axis_terms(spec: ConvSpec, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one spatial axis: terms per output position, per input position and per kernel tap.

    With reflect, replicate or circular padding an input position is read through
    several padded positions, so its gradient gathers more terms than the kernel
    has taps; a transposed convolution whose stride and dilation share a factor
    lands several taps of one input on the same output.
    """
    size, k, s, d = spec.input_size[axis], spec.kernel_size[axis], spec.stride[axis], spec.dilation[axis]
    before, after = spec.pads[axis]
    out = spec.output_size[axis]
    taps = np.arange(k) * d
    if spec.transposed:
        # Input i, tap t lands on uncropped position i*s + t*d; output o is o + before.
        landed = np.arange(size)[:, None] * s + taps[None, :] - before
        kept = (landed >= 0) & (landed < out)
        return np.bincount(landed[kept], minlength=out), kept.sum(axis=1), kept.sum(axis=0)
    # Output o, tap t reads padded position o*s + t*d, a copy of source[...] (-1: a zero).
    source = source_index(size, before, after, spec.padding_mode)[np.arange(out)[:, None] * s + taps[None, :]]
    real = source >= 0
    return real.sum(axis=1), np.bincount(source[real], minlength=size), real.sum(axis=0)


# -------------------------------------------------------------------- scratch


class _Scratch(threading.local):
    """Per-thread buffers kept between calls, one per named purpose.

    A fresh multi-megabyte numpy array is mmap'd and page-faulted anew on every
    call; for medium problems that tripled the oracle's time.  Nothing handed back
    to a caller ever lives here: results are always fresh arrays.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, purpose: str, shape: tuple[int, ...], zero: bool = False) -> np.ndarray:
        size = math.prod(shape)
        buffer = self.buffers.get(purpose)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[purpose] = np.empty(size)
        view = buffer[:size].reshape(shape)
        if zero:
            view.fill(0.0)
        return view

    def clear(self) -> None:
        self.buffers.clear()


_scratch = _Scratch()


# -------------------------------------------------------------------- padding


def source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position of an axis padded by ``(before, after)``, the input index it copies.

    ``-1`` marks a zero.  reflect mirrors about the edge element without repeating
    it (``d c b | a b c d | c b a``), replicate repeats the edge, circular wraps.
    """
    i = np.arange(-before, size + after)
    if mode == "zeros":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    raise ValueError(f"unknown padding_mode {mode!r}")


def _pad(spec: ConvSpec, x: np.ndarray) -> np.ndarray:
    if not any(p for pair in spec.pads for p in pair):
        return x
    if spec.padding_mode == "zeros":
        padded = _scratch.get("padded", (*x.shape[:2], *(n + b + a for n, (b, a) in zip(x.shape[2:], spec.pads))))
        padded.fill(0.0)
        padded[(..., *(slice(b, b + n) for n, (b, _) in zip(x.shape[2:], spec.pads)))] = x
        return padded
    for axis, (size, (before, after)) in enumerate(zip(spec.input_size, spec.pads), start=2):
        x = np.take(x, source_index(size, before, after, spec.padding_mode), axis=axis)
    return x


def _unpad(spec: ConvSpec, grad_padded: np.ndarray) -> np.ndarray:
    """``P^T``: every padded position's gradient goes to the input position it copied."""
    g = grad_padded
    for axis, (size, (before, after)) in enumerate(zip(spec.input_size, spec.pads), start=2):
        if before == after == 0:
            continue
        index = source_index(size, before, after, spec.padding_mode)
        moved = np.moveaxis(g, axis, 0)
        folded = moved[before : before + size].copy()  # the positions that are the input itself
        for j in (*range(before), *range(before + size, len(index))):  # the padding's copies (-1: a zero)
            if index[j] >= 0:
                folded[index[j]] += moved[j]
        g = np.moveaxis(folded, 0, axis)
    return g


# ------------------------------------------------------------ windows, blocks


def _windows(spec: ConvSpec, a: np.ndarray, positions: tuple[int, ...]) -> np.ndarray:
    """The view ``window[n, g, c, p, t] = a[n, g, c, p*stride + t*dilation]`` of ``a`` (N, G, C, *spatial).

    Shape ``(N, G, C, *positions, *kernel)``; no copy.  Windows of different
    positions overlap, but for one tap ``t`` the positions are distinct, which is
    what lets :func:`_scatter` add through the view one tap at a time.
    """
    spatial = a.strides[3:]
    strides = (
        *a.strides[:3],
        *(step * s for step, s in zip(spatial, spec.stride)),
        *(step * d for step, d in zip(spatial, spec.dilation)),
    )
    return as_strided(a, (*a.shape[:3], *positions, *spec.kernel_size), strides)


Block = tuple[slice, slice]


def _blocks(spec: ConvSpec, channels: int, positions: tuple[int, ...]) -> list[Block]:
    """``(batch items, rows of the first spatial axis)`` per contraction.

    The columns of a block (``groups * channels * taps`` per position) never take
    more than 1.5 times the memory of the problem's own tensors, so there is no
    im2col buffer for the whole problem (which would be ``taps`` times the input)
    and peak memory stays within 3x the tensors: whole batch items while they fit
    (one BLAS call per group over all of them), else one item at a time cut into
    runs of rows.
    """
    per_row = max(spec.groups * channels * math.prod(spec.kernel_size) * math.prod(positions[1:]), 1)
    budget = 3 * (math.prod(spec.input_shape) + math.prod(spec.weight_shape) + math.prod(spec.output_shape)) // 2
    rows = positions[0]
    if per_row * rows <= budget:
        items = max(1, budget // max(per_row * rows, 1))
        return [(slice(n, min(n + items, spec.batch)), slice(0, rows)) for n in range(0, spec.batch, items)]
    step = max(1, budget // per_row)
    return [(slice(n, n + 1), slice(r, min(r + step, rows))) for n in range(spec.batch) for r in range(0, rows, step)]


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """``(N, C, *spatial) -> (N, G, C/G, *spatial)``: a view, no copy."""
    n, c = a.shape[:2]
    return a.reshape(n, groups, c // groups, *a.shape[2:])


def _column_order(block: np.ndarray, dims: int) -> np.ndarray:
    """``(N, G, C, *positions, *kernel) -> (G, *kernel, C, N, *positions)``, a transposed view.

    In this order a block flattens to a BLAS matrix per group, rows ``(t, c)``
    (tap-major, as :func:`_tap_major` lays out the weight) and columns ``(n, p)``:
    the whole batch block is one matrix product, and each tap's columns are one
    contiguous slab, which is what :func:`_scatter` adds tap by tap.
    """
    taps = range(3 + dims, 3 + 2 * dims)
    return block.transpose(1, *taps, 2, 0, *range(3, 3 + dims))


def _gather(block: np.ndarray, dims: int) -> np.ndarray:
    """im2col: copy a block of windows into columns ``(G, taps*C, N*positions)``."""
    view = _column_order(block, dims)
    columns = _scratch.get("columns", view.shape)
    np.copyto(columns, view)
    return columns.reshape(view.shape[0], -1, math.prod(view.shape[2 + dims :]))


def _scatter(columns: np.ndarray, block: np.ndarray, dims: int) -> None:
    """col2im, the transpose of :func:`_gather`: add each tap's columns into its window of ``block``."""
    view = _column_order(block, dims)
    columns = columns.reshape(view.shape)
    for tap in np.ndindex(*view.shape[1 : 1 + dims]):
        view[(slice(None), *tap)] += columns[(slice(None), *tap)]


def _tap_major(w: np.ndarray, groups: int) -> np.ndarray:
    """The weight ``(rows, C, *kernel)`` as one matrix per group, ``(G, rows/G, taps*C)``, tap-major.

    Column ``t*C + c`` multiplies the columns' row ``t*C + c`` (:func:`_column_order`).
    """
    rows, c = w.shape[:2]
    return w.reshape(groups, rows // groups, c, -1).transpose(0, 1, 3, 2).reshape(groups, rows // groups, -1)


def _from_tap_major(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`_tap_major`: ``(G, rows/G, taps*C)`` back to the weight's ``shape``."""
    g, rows = m.shape[:2]
    return m.reshape(g, rows, -1, shape[1]).transpose(0, 1, 3, 2).reshape(shape)


def _rows(block: np.ndarray) -> np.ndarray:
    """``(N, G, C, *positions) -> (G, C, N*positions)``: a copy, the matrix form of a data block."""
    view = block.transpose(1, 2, 0, *range(3, block.ndim))
    rows = _scratch.get("rows", view.shape)
    np.copyto(rows, view)
    return rows.reshape(*view.shape[:2], -1)


def _unrows(rows: np.ndarray, block: np.ndarray) -> None:
    """The inverse of :func:`_rows`: write ``(G, C, N*positions)`` into ``block`` (N, G, C, *positions)."""
    view = block.transpose(1, 2, 0, *range(3, block.ndim))
    np.copyto(view, rows.reshape(view.shape))


def _swap(a: np.ndarray) -> np.ndarray:
    return a.swapaxes(-1, -2)


# --------------------------------------------------------------------- forward
#
# With W the weight as one matrix per group (rows: output channels; columns:
# tap and input channel) and X the columns of a block of windows of the padded
# input, the correlation is Y = W X.  The transposed convolution is the scatter
# of W^T X through the windows of its uncropped output.


def _correlate(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    windows = _windows(spec, _grouped(_pad(spec, x), g), spec.output_size)  # (N, G, C_in/G, *out, *kernel)
    w_rows = _tap_major(w, g)  # (G, C_out/G, taps * C_in/G)
    y = np.empty((spec.batch, g, og, *spec.output_size))
    for items, rows in _blocks(spec, cg, spec.output_size):
        columns = _gather(windows[items, :, :, rows], spec.dims)
        products = np.matmul(w_rows, columns, out=_scratch.get("products", (g, og, columns.shape[2])))
        _unrows(products, y[items, :, :, rows])
    return y.reshape(spec.output_shape)


def _transposed_extent(spec: ConvSpec) -> tuple[int, ...]:
    """Length per axis of the uncropped transposed output, long enough for output_padding."""
    return tuple(
        max((i - 1) * s + d * (k - 1) + 1, before + o)
        for i, s, d, k, (before, _), o in zip(
            spec.input_size, spec.stride, spec.dilation, spec.kernel_size, spec.pads, spec.output_size
        )
    )


def _crop(spec: ConvSpec) -> tuple[slice, ...]:
    return tuple(slice(before, before + o) for (before, _), o in zip(spec.pads, spec.output_size))


def _transposed(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, og = spec.groups, spec.out_channels // spec.groups
    full = _scratch.get("full", (spec.batch, g, og, *_transposed_extent(spec)), zero=True)
    windows = _windows(spec, full, spec.input_size)  # (N, G, C_out/G, *in, *kernel)
    xg = _grouped(x, g)
    w_rows = _tap_major(w, g)  # (G, C_in/G, taps * C_out/G)
    for items, rows in _blocks(spec, og, spec.input_size):
        x_rows = _rows(xg[items, :, :, rows])
        columns = np.matmul(_swap(w_rows), x_rows, out=_scratch.get("columns", (g, w_rows.shape[2], x_rows.shape[2])))
        _scatter(columns, windows[items, :, :, rows], spec.dims)
    y = np.empty((spec.batch, g, og, *spec.output_size))
    y[...] = full[(..., *_crop(spec))]  # a copy: full is scratch
    return y.reshape(spec.output_shape)


# -------------------------------------------------------------------- backward
#
# The transposes of the maps above.  Correlation: grad_W = grad_Y X^T, and
# grad_input is the scatter of W^T grad_Y through the windows of the padded
# input, folded back by P^T.  Transposed: with X the columns of the windows of
# the uncropped output gradient, grad_input = W X and grad_W = x X^T.


def _correlate_grads(spec: ConvSpec, x: np.ndarray, w: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, cg = spec.groups, spec.in_channels // spec.groups
    xp = _grouped(_pad(spec, x), g)  # (N, G, C_in/G, *padded)
    windows = _windows(spec, xp, spec.output_size)
    grad_padded = np.zeros(xp.shape)
    grad_windows = _windows(spec, grad_padded, spec.output_size)
    gyg = _grouped(gy, g)
    w_rows = _tap_major(w, g)  # (G, C_out/G, taps * C_in/G)
    gw = np.zeros(w_rows.shape)
    for items, rows in _blocks(spec, cg, spec.output_size):
        columns = _gather(windows[items, :, :, rows], spec.dims)
        gy_rows = _rows(gyg[items, :, :, rows])
        gw += gy_rows @ _swap(columns)
        np.matmul(_swap(w_rows), gy_rows, out=columns)  # the columns are spent: reuse them
        _scatter(columns, grad_windows[items, :, :, rows], spec.dims)
    gx = _unpad(spec, grad_padded.reshape(spec.batch, spec.in_channels, *xp.shape[3:]))
    return gx, _from_tap_major(gw, spec.weight_shape)


def _transposed_grads(spec: ConvSpec, x: np.ndarray, w: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    # The output gradient placed back into the uncropped output (zeros where cropped away).
    full = _scratch.get("full", (spec.batch, g, og, *_transposed_extent(spec)), zero=True)
    full[(..., *_crop(spec))] = _grouped(gy, g)
    windows = _windows(spec, full, spec.input_size)  # (N, G, C_out/G, *in, *kernel)
    xg = _grouped(x, g)
    w_rows = _tap_major(w, g)  # (G, C_in/G, taps * C_out/G)
    gx = np.empty(xg.shape)
    gw = np.zeros(w_rows.shape)
    for items, rows in _blocks(spec, og, spec.input_size):
        columns = _gather(windows[items, :, :, rows], spec.dims)
        x_rows = _rows(xg[items, :, :, rows])
        gw += x_rows @ _swap(columns)
        products = np.matmul(w_rows, columns, out=_scratch.get("products", (g, cg, columns.shape[2])))
        _unrows(products, gx[items, :, :, rows])
    return gx.reshape(spec.input_shape), _from_tap_major(gw, spec.weight_shape)


# ---------------------------------------------------------------------- inputs


def _f64(a: np.ndarray, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, but the spec needs {shape}")
    return a


__all__ = [
    "PRODUCTS",
    "axis_terms",
    "backward",
    "backward_magnitude",
    "forward",
    "magnitude",
    "source_index",
    "term_counts",
]
