"""A complete third-party adapter: direct convolution in numpy, 1-D and 2-D forward, zeros padding.

This is all a backend team writes to put its kernel under test; here the
"kernel" is a loop over kernel taps, each one strided window of the padded
input contracted with one weight matrix per group, in the problem's dtype.
"""

from __future__ import annotations

import numpy as np

from adapters.base import Adapter, Capabilities
from conformance.spec import ConvSpec


class NumpyDirect(Adapter):
    name = "numpy-direct"

    def capabilities(self) -> Capabilities:
        # Exactly what forward() handles; everything else is reported as unsupported.
        return Capabilities(
            dims=(1, 2), dtypes=("float64", "float32"), padding_modes=("zeros",), layouts=("contiguous",),
            transposed=False, backward=False, notes=("numpy einsum per kernel tap, in the problem's dtype",),
        )  # fmt: skip

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        # This backend *is* the adapter, so it rejects invalid problems by the suite's
        # rules; an adapter wrapping a library leaves that to the library.
        spec.validate()
        dt, g = np.dtype(spec.dtype), spec.groups
        xp = np.pad(x.astype(dt), [(0, 0), (0, 0), *spec.pads])
        xp = xp.reshape(spec.batch, g, spec.in_channels // g, *xp.shape[2:])  # (batch, groups, in/groups, *padded)
        wg = w.astype(dt).reshape(g, -1, *w.shape[1:])  # (groups, out/groups, in/groups, *kernel)
        y = np.zeros((spec.batch, g, spec.out_channels // g, *spec.output_size), dt)
        for tap in np.ndindex(*spec.kernel_size):
            window = tuple(
                slice(t * d, t * d + (o - 1) * s + 1, s)
                for t, d, o, s in zip(tap, spec.dilation, spec.output_size, spec.stride)
            )
            y += np.einsum("ngc...,goc->ngo...", xp[(..., *window)], wg[(..., *tap)])
        y = y.reshape(spec.output_shape)
        return y if b is None else y + b.astype(dt).reshape(-1, *(1,) * spec.dims)
