"""PyTorch float64 on a ConvSpec: the independent witness the oracle is checked against.

Only the project's own tests use this.  It takes PyTorch's most direct route to
each problem: native ``padding`` (ints or 'same'/'valid') where torch expresses
it, ``F.pad`` for asymmetric pairs and the non-zero modes, and for asymmetric
transposed padding the uncropped transposed output zero-extended with ``F.pad`` and cropped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from conformance.spec import ConvSpec

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _torch_pads(pairs) -> list[int]:
    """Per-axis (before, after) pairs -> F.pad's last-axis-first flat list."""
    return [p for before, after in reversed(pairs) for p in (before, after)]


def run(spec: ConvSpec, x, w, b):
    """The output as a float64 torch tensor (graph kept for autograd)."""
    symmetric = all(before == after for before, after in spec.pads)
    if spec.transposed:
        conv = CONV_T[spec.dims]
        if symmetric:
            return conv(x, w, b, spec.stride, tuple(p for p, _ in spec.pads), spec.output_padding,
                        spec.groups, spec.dilation)
        full = conv(x, w, None, spec.stride, 0, 0, spec.groups, spec.dilation)
        # Zero-extend the end where output_padding reaches past the last tap, then crop.
        extend = [(0, max(0, before + o - full.shape[2 + a]))
                  for a, ((before, _), o) in enumerate(zip(spec.pads, spec.output_size))]
        crop = tuple(slice(before, before + o) for (before, _), o in zip(spec.pads, spec.output_size))
        y = F.pad(full, _torch_pads(extend))[(..., *crop)]
        return y if b is None else y + b.reshape(1, -1, *([1] * spec.dims))
    conv = CONV[spec.dims]
    if spec.padding_mode == "zeros" and isinstance(spec.padding, str):
        return conv(x, w, b, spec.stride, spec.padding, spec.dilation, spec.groups)
    if spec.padding_mode == "zeros" and symmetric:
        return conv(x, w, b, spec.stride, tuple(p for p, _ in spec.pads), spec.dilation, spec.groups)
    mode = "constant" if spec.padding_mode == "zeros" else spec.padding_mode
    return conv(F.pad(x, _torch_pads(spec.pads), mode=mode), w, b, spec.stride, 0, spec.dilation, spec.groups)


def forward(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    with torch.no_grad():
        t = [None if a is None else torch.from_numpy(np.asarray(a, np.float64)) for a in (x, w, b)]
        return run(spec, *t).numpy()


def backward(spec: ConvSpec, x, w, b, gy):
    t = [None if a is None else torch.from_numpy(np.asarray(a, np.float64)).requires_grad_() for a in (x, w, b)]
    run(spec, *t).backward(torch.from_numpy(np.asarray(gy, np.float64)))
    return tuple(None if a is None else a.grad.numpy() for a in t)
