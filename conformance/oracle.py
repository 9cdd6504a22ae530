r"""The float64 reference convolution: numpy only, independent of every candidate.

Forward (cross-correlation, as every framework computes it), for output channel
``o`` in group ``g`` and output position ``j`` (a tuple over the spatial axes)::

    y[n, o, j] = b[o] + sum_{c < C_in/G} sum_{t < kernel}
                 P(x)[n, g*C_in/G + c, j*stride + t*dilation] * w[o, c, t]

where ``P`` pads by the spec's ``(before, after)`` pairs with the padding mode's
true semantics.  Transposed: each input position scatters through the kernel::

    y_full[n, g*C_out/G + o, i*stride + t*dilation] += x[n, g*C_in/G + c, i] * w[g*C_in/G + c, o, t]

and ``y = y_full[before : before + out]`` (padding crops, ``output_padding`` extends).

Each product is evaluated as a loop over kernel taps; one tap is a strided slice
of the (padded) input contracted with one weight matrix per group in float64
(a BLAS matmul), so no buffer is ever larger than one tap's window.  The three
backward products are written from their own definitions (the transposes of the
maps above), never from a framework's autograd:

* ``grad_input``: each output gradient scatters back through the kernel onto the
  padded input, and ``P^T`` folds the padded positions onto the input positions
  they copied (crop for zeros; add for reflect, replicate and circular);
* ``grad_weight``: for each tap, the window of the padded input contracted with
  the output gradient over batch and positions;
* ``grad_bias``: the output gradient summed over batch and positions.

:func:`magnitude` runs the same loops on ``|x|, |w|, |b|``: the scale in which
:mod:`conformance.tolerance` measures a candidate's rounding error.
"""

from __future__ import annotations

import math
import threading

import numpy as np

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
        keep = index >= 0
        folded = np.zeros((size, *moved.shape[1:]))
        np.add.at(folded, index[keep], moved[keep])
        g = np.moveaxis(folded, 0, axis)
    return g


# ---------------------------------------------------------------- taps, layout

# The products are contracted in chunks of (batch items x kernel taps): as many
# taps as fit, so that a BLAS call's inner dimension (channels x taps) is as
# long as possible, then as many batch items as fit, with the chunk's columns
# never taking more memory than the problem's own tensors (so there is no
# im2col buffer for the whole problem).
Chunk = tuple[slice, int, list[tuple[slice, ...]]]


def _taps(spec: ConvSpec, counts: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Per kernel tap ``t`` (row-major), the strided slice ``t*dilation + stride*range(count)`` per axis."""
    return [
        tuple(slice(t * d, t * d + s * (n - 1) + 1, s) for t, d, s, n in zip(tap, spec.dilation, spec.stride, counts))
        for tap in np.ndindex(*spec.kernel_size)
    ]


def _chunks(spec: ConvSpec, counts: tuple[int, ...], channels: int) -> list[Chunk]:
    """``(batch items, first tap, tap windows)`` per matmul; all taps of a batch block in order."""
    windows = _taps(spec, counts)
    per_item_tap = max(spec.groups * channels * math.prod(counts), 1)
    budget = math.prod(spec.input_shape) + math.prod(spec.weight_shape) + math.prod(spec.output_shape)
    taps = max(1, min(len(windows), budget // per_item_tap))
    taps = -(-len(windows) // -(-len(windows) // taps))  # the same number of chunks, evened out
    items = max(1, min(spec.batch, budget // (per_item_tap * taps)))
    return [
        (slice(n, min(n + items, spec.batch)), first, windows[first : first + taps])
        for n in range(0, spec.batch, items)
        for first in range(0, len(windows), taps)
    ]


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """``(N, C, *spatial) -> (N, G, C/G, *spatial)``: a view, no copy."""
    n, c = a.shape[:2]
    return a.reshape(n, groups, c // groups, *a.shape[2:])


def _gather(src: np.ndarray, windows: list[tuple[slice, ...]], cols: np.ndarray) -> np.ndarray:
    """Stack each window of ``src`` (N, G, C, *spatial) along the channel axis of ``cols``."""
    c = src.shape[2]
    for i, window in enumerate(windows):
        cols[:, :, i * c : (i + 1) * c] = src[(..., *window)]
    return cols


def _scatter(cols: np.ndarray, windows: list[tuple[slice, ...]], dst: np.ndarray) -> None:
    """The transpose of :func:`_gather`: add each channel block of ``cols`` into its window of ``dst``."""
    c = dst.shape[2]
    for i, window in enumerate(windows):
        dst[(..., *window)] += cols[:, :, i * c : (i + 1) * c]


def _buffer(spec: ConvSpec, chunks: list[Chunk], channels: int, counts: tuple[int, ...]) -> np.ndarray:
    """Room for the largest chunk's columns: (items, G, taps*channels, positions)."""
    items = max((c[0].stop - c[0].start for c in chunks), default=0)
    taps = max((len(c[2]) for c in chunks), default=0)
    return _scratch.get("columns", (items, spec.groups, taps * channels, math.prod(counts)))


def _columns(buffer: np.ndarray, chunk: Chunk, channels: int, counts: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The chunk's block of ``buffer``, flat and with spatial axes: two views of the same memory.

    Splitting the contiguous last axis is always a view, so writes through either
    (a gather, or a matmul's ``out=``) land in the buffer.
    """
    items, _, windows = chunk
    flat = buffer[: items.stop - items.start, :, : len(windows) * channels]
    return flat, flat.reshape(*flat.shape[:3], *counts)


def _flat(a: np.ndarray) -> np.ndarray:
    """``(N, G, C, *spatial) -> (N, G, C, positions)`` of a contiguous tensor."""
    return a.reshape(*a.shape[:3], math.prod(a.shape[3:]))


def _tap_major(w: np.ndarray) -> np.ndarray:
    """``(G, rows, C, taps) -> (G, rows, taps*C)``: column ``t*C + c`` matches :func:`_gather`'s rows."""
    g, rows, c, taps = w.shape
    return np.ascontiguousarray(w.transpose(0, 1, 3, 2)).reshape(g, rows, taps * c)


def _swap(a: np.ndarray) -> np.ndarray:
    return a.swapaxes(-1, -2)


# --------------------------------------------------------------------- forward


def _correlate(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    xg = _grouped(_pad(spec, x), g)  # (N, G, C_in/G, *padded)
    wk = _tap_major(w.reshape(g, og, cg, -1))  # (G, C_out/G, taps*C_in/G)
    chunks = _chunks(spec, spec.output_size, cg)
    buffer = _buffer(spec, chunks, cg, spec.output_size)
    out = np.empty((spec.batch, g, og, math.prod(spec.output_size)))
    partial = _scratch.get("partial", (buffer.shape[0], g, og, out.shape[3]))
    for chunk in chunks:
        items, first, windows = chunk
        cols, spatial = _columns(buffer, chunk, cg, spec.output_size)
        _gather(xg[items], windows, spatial)
        weights = wk[:, :, first * cg : (first + len(windows)) * cg]
        if first == 0:
            np.matmul(weights, cols, out=out[items])
        else:
            out[items] += np.matmul(weights, cols, out=partial[: cols.shape[0]])
    return out.reshape(spec.output_shape)


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


def _transposed_rows(spec: ConvSpec, w: np.ndarray) -> np.ndarray:
    """``(C_in, C_out/G, *kernel) -> (G, taps*C_out/G, C_in/G)``: row ``t*C_out/G + o``."""
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    return _swap(_tap_major(w.reshape(g, cg, og, -1)))


def _transposed(spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, og = spec.groups, spec.out_channels // spec.groups
    xg = _flat(_grouped(x, g))  # (N, G, C_in/G, inputs)
    wt = _transposed_rows(spec, w)
    full = _scratch.get("full", (spec.batch, g, og, *_transposed_extent(spec)), zero=True)
    chunks = _chunks(spec, spec.input_size, og)
    buffer = _buffer(spec, chunks, og, spec.input_size)
    for chunk in chunks:
        items, first, windows = chunk
        cols, spatial = _columns(buffer, chunk, og, spec.input_size)
        np.matmul(wt[:, first * og : (first + len(windows)) * og], xg[items], out=cols)
        _scatter(spatial, windows, full[items])
    return full[(..., *_crop(spec))].copy().reshape(spec.output_shape)  # full is scratch


# -------------------------------------------------------------------- backward


def _correlate_grads(spec: ConvSpec, x: np.ndarray, w: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    xg = _grouped(_pad(spec, x), g)  # (N, G, C_in/G, *padded)
    gyg = _flat(_grouped(gy, g))  # (N, G, C_out/G, outputs)
    wk = _tap_major(w.reshape(g, og, cg, -1))  # (G, C_out/G, taps*C_in/G)
    gw = np.zeros(wk.shape)
    grad_padded = np.zeros(xg.shape)
    chunks = _chunks(spec, spec.output_size, cg)
    buffer = _buffer(spec, chunks, cg, spec.output_size)
    for chunk in chunks:
        items, first, windows = chunk
        block = slice(first * cg, (first + len(windows)) * cg)
        cols, spatial = _columns(buffer, chunk, cg, spec.output_size)
        _gather(xg[items], windows, spatial)
        # grad_weight sums over the batch as well as the positions.
        gw[:, :, block] += (gyg[items] @ _swap(cols)).sum(axis=0)
        np.matmul(_swap(wk[:, :, block]), gyg[items], out=cols)
        _scatter(spatial, windows, grad_padded[items])
    gw = gw.reshape(g, og, -1, cg).transpose(0, 1, 3, 2).reshape(spec.weight_shape)
    return _unpad(spec, grad_padded.reshape(spec.batch, spec.in_channels, *grad_padded.shape[3:])), gw


def _transposed_grads(spec: ConvSpec, x: np.ndarray, w: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, og = spec.groups, spec.out_channels // spec.groups
    # The output gradient placed back into the uncropped output (zeros where cropped away).
    full = _scratch.get("full", (spec.batch, g, og, *_transposed_extent(spec)), zero=True)
    full[(..., *_crop(spec))] = _grouped(gy, g)
    xg = _flat(_grouped(x, g))  # (N, G, C_in/G, inputs)
    wt = _transposed_rows(spec, w)  # (G, taps*C_out/G, C_in/G)
    gx = np.zeros(xg.shape)
    gw = np.zeros(wt.shape)
    chunks = _chunks(spec, spec.input_size, og)
    buffer = _buffer(spec, chunks, og, spec.input_size)
    for chunk in chunks:
        items, first, windows = chunk
        block = slice(first * og, (first + len(windows)) * og)
        cols, spatial = _columns(buffer, chunk, og, spec.input_size)
        _gather(full[items], windows, spatial)
        gx[items] += _swap(wt[:, block]) @ cols
        gw[:, block] += (cols @ _swap(xg[items])).sum(axis=0)
    gw = gw.reshape(g, -1, og, wt.shape[2]).transpose(0, 3, 2, 1).reshape(spec.weight_shape)
    return gx.reshape(spec.input_shape), gw


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
