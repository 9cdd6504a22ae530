"""The literal reference: one explicit list of products per output, summed exactly.

It exists only to check :mod:`conformance.oracle` on small problems, so it is
written for obviousness, not speed.  :func:`products` enumerates every product
``x[xi] * w[wi]`` that the definition adds into ``y[yi]``; the forward result and
all three gradients are read off that one list:

* ``y[yi]      = sum of x[xi] * w[wi]  (+ b[channel])``
* ``gx[xi]     = sum of gy[yi] * w[wi]``
* ``gw[wi]     = sum of gy[yi] * x[xi]``
* ``gb[c]      = sum of gy[yi] over yi in channel c``

Sums go through ``total`` (``math.fsum`` by default: exactly rounded for floats;
pass ``sum`` with :class:`fractions.Fraction` arrays for exact rational results).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from conformance.oracle import source_index
from conformance.spec import ConvSpec

Index = tuple[int, ...]
Total = Callable[[Iterable], object]


def products(spec: ConvSpec) -> Iterator[tuple[Index, Index, Index]]:
    """Every ``(y index, x index, w index)`` whose product the convolution adds up."""
    og, cg = spec.out_channels // spec.groups, spec.in_channels // spec.groups
    if spec.transposed:
        # x[n, ic, i] * w[ic, o, t] lands on y[n, g*og + o, i*s + t*d - before] when inside the output.
        for n, ic, *i in np.ndindex(*spec.input_shape):
            g = ic // cg
            for o in range(og):
                for t in np.ndindex(*spec.kernel_size):
                    j = tuple(
                        ii * s + tt * d - before
                        for ii, s, tt, d, (before, _) in zip(i, spec.stride, t, spec.dilation, spec.pads)
                    )
                    if all(0 <= jj < size for jj, size in zip(j, spec.output_size)):
                        yield (n, g * og + o, *j), (n, ic, *i), (ic, o, *t)
        return
    sources = [
        source_index(size, before, after, spec.padding_mode)
        for size, (before, after) in zip(spec.input_size, spec.pads)
    ]
    for n, oc, *j in np.ndindex(*spec.output_shape):
        g = oc // og
        for c in range(cg):
            for t in np.ndindex(*spec.kernel_size):
                padded = (jj * s + tt * d for jj, s, tt, d in zip(j, spec.stride, t, spec.dilation))
                i = tuple(int(src[p]) for src, p in zip(sources, padded))
                if all(ii >= 0 for ii in i):  # -1: a zero of the padding, no product
                    yield (n, oc, *j), (n, g * cg + c, *i), (oc, c, *t)


def _gather(shape: Index, terms: dict[Index, list], total: Total) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = total(terms.get(index, []))
    return out


def forward(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, total: Total = math.fsum):
    """``y`` as an object array (floats from fsum, or whatever ``total`` returns)."""
    terms: dict[Index, list] = defaultdict(list)
    for yi, xi, wi in products(spec):
        terms[yi].append(x[xi] * w[wi])
    if spec.bias:
        for yi in np.ndindex(*spec.output_shape):
            terms[yi].append(b[yi[1]])
    return _gather(spec.output_shape, terms, total)


def backward(spec: ConvSpec, x: np.ndarray, w: np.ndarray, gy: np.ndarray, total: Total = math.fsum):
    """``(grad_input, grad_weight, grad_bias)`` as object arrays; grad_bias None without bias."""
    gx_terms: dict[Index, list] = defaultdict(list)
    gw_terms: dict[Index, list] = defaultdict(list)
    for yi, xi, wi in products(spec):
        gx_terms[xi].append(gy[yi] * w[wi])
        gw_terms[wi].append(gy[yi] * x[xi])
    gb = None
    if spec.bias:
        gb_terms: dict[Index, list] = defaultdict(list)
        for yi in np.ndindex(*spec.output_shape):
            gb_terms[(yi[1],)].append(gy[yi])
        gb = _gather((spec.out_channels,), gb_terms, total)
    return _gather(spec.input_shape, gx_terms, total), _gather(spec.weight_shape, gw_terms, total), gb


__all__ = ["backward", "forward", "products"]
