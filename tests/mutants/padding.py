"""Padding bugs: a mode done the wrong way, a side lost, the pads of one axis applied to another."""

from __future__ import annotations

import dataclasses

import torch

from adapters import torch_common as tc
from adapters.torch_functional import Plan
from conformance.spec import ConvSpec

from ._base import Mutant, along

_REFLECT_GAP = (
    "the padded cells draw the padding mode from four, so reflect is one problem in four, and a mirrored "
    "border differs only on non-constant data: 6 of 10 seeded draws of forward/1d/float32/symmetric catch "
    "it (10 of 10 of the 3-D cell); cells split per padding mode, each with the full budget, would catch it"
)


class ReflectAsEdge(Mutant):
    """``reflect`` padding done as ``edge`` (PyTorch's ``replicate``): the border value repeated, not mirrored.

    Bug class: a padding-mode table that maps one vocabulary onto another wrongly.
    PyTorch's ``reflect`` is numpy's ``reflect`` (edge excluded) while numpy's
    ``edge`` is PyTorch's ``replicate``; converters between the two (ONNX ``Pad``
    modes ``reflect``/``edge``, TF ``REFLECT``/``SYMMETRIC``, numpy) swap them.
    """

    name = "mutant-reflect-as-edge"
    BUG_CLASS = "padding mode: reflect done as edge (replicate)"
    TARGET_CELLS = ("forward/1d/float32/symmetric", "forward/3d/float32/symmetric")
    MIN_DETECTION = 0.5
    KNOWN_GAP = _REFLECT_GAP

    def plan_for(self, spec: ConvSpec) -> Plan:
        p = super().plan_for(spec)
        return dataclasses.replace(p, pad_mode="replicate") if p.pad_mode == "reflect" else p


class ReflectAsSymmetric(Mutant):
    """``reflect`` padding done as numpy's / TensorFlow's ``symmetric``: the mirror repeats the border sample.

    Bug class: half-sample vs whole-sample reflection (``DCB|ABCDEF|EDC`` vs
    ``CBA|ABCDEF|FED``), the difference pytorch/pytorch#46240 asks PyTorch to
    support and that tf.pad's ``REFLECT`` / ``SYMMETRIC`` and
    ``GL_MIRRORED_REPEAT`` make easy to confuse.
    """

    name = "mutant-reflect-as-symmetric"
    BUG_CLASS = "padding mode: reflect done as symmetric (border repeated)"
    TARGET_CELLS = ("forward/1d/float32/symmetric", "forward/3d/float32/symmetric")
    MIN_DETECTION = 0.5
    KNOWN_GAP = _REFLECT_GAP

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if p.pad is None or p.pad_mode != "reflect":
            return super().run(spec, p, x, w, b)
        for axis, (before, after) in enumerate(spec.pads):
            n = x.shape[2 + axis]
            index = torch.cat([
                torch.arange(before - 1, -1, -1), torch.arange(n), torch.arange(n - 1, n - 1 - after, -1)
            ]).to(x.device)  # fmt: skip
            x = x.index_select(2 + axis, index)
        return super().run(spec, dataclasses.replace(p, pad=None), x, w, b)


class CircularLosesWrapWhenAfterIsZero(Mutant):
    """Circular padding that drops the wrap before the input when the pad after it is 0.

    pytorch/pytorch#24504 ("Circular padding doesn't work when the 'right' side
    is 0"): PyTorch's Python ``_pad_circular`` built the left wrap as
    ``x[..., -(right + left):-right]`` after appending the right one, and with
    ``right == 0`` the slice ends at ``-0 == 0``: empty.  The padded input is
    ``left`` short, so the output is too; this is that code, per axis.
    """

    name = "mutant-circular-loses-wrap"
    BUG_CLASS = "padding mode: circular wrap lost when the other side's pad is 0 (x[-(l+r):-r])"
    # Only an asymmetric pair can have one side 0 and the other not.
    TARGET_CELLS = ("forward/2d/float32/asymmetric",)
    MIN_DETECTION = 0.5
    KNOWN_GAP = (
        "needs circular padding (one mode in four) with the pad after an axis 0 and the pad before it not; "
        "the asymmetric form draws one-sided pairs a third of the time, so about one example in twelve holds "
        "it (7 of 10 seeded draws of the cell catch it; 6 of 10 before one-sided pairs were drawn)"
    )

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if p.pad is None or p.pad_mode != "circular":
            return super().run(spec, p, x, w, b)
        for axis, (left, right) in enumerate(spec.pads):
            dim = 2 + axis
            x = torch.cat([x, x[along(axis, slice(0, right), x.dim())]], dim=dim)
            x = torch.cat([x[along(axis, slice(-(right + left), -right), x.dim())], x], dim=dim)
        return super().run(spec, dataclasses.replace(p, pad=None), x, w, b)


class PadsInAxisOrder(Mutant):
    """F.pad given its pads in axis order (first spatial axis first) instead of last axis first.

    Bug class: per-axis padding read for the wrong axis.  ``F.pad`` takes its
    flat list last axis first, ``(W_before, W_after, H_before, H_after)``, while
    ``np.pad`` goes first axis first and ONNX ``Pad`` lists every begin before
    every end; a backend that builds F.pad's list in axis order pads H with W's
    pads.  Problems with the same pads on every axis hide it.
    """

    name = "mutant-pads-in-axis-order"
    BUG_CLASS = "per-axis mix-up: F.pad list built in axis order (H gets W's pads)"
    TARGET_CELLS = ("forward/2d/float32/asymmetric",)

    def plan_for(self, spec: ConvSpec) -> Plan:
        p = super().plan_for(spec)
        if p.pad is None:
            return p
        return dataclasses.replace(p, pad=tuple(v for pair in spec.pads for v in pair))


class SameExtraPadBefore(Mutant):
    """``'same'`` with an odd total pad puts the extra element before the input (SAME_LOWER), not after.

    Bug class: ONNX ``SAME_UPPER`` vs ``SAME_LOWER`` swapped, as in
    root-project/root#21793 ("SAME_UPPER should place the extra pad at the end,
    not the beginning (it was swapped earlier)").  PyTorch and TensorFlow put it
    after.  Only an even dilated kernel extent has an odd total.
    """

    name = "mutant-same-extra-pad-before"
    BUG_CLASS = "asymmetric 'same': extra pad on the wrong side (SAME_LOWER)"
    TARGET_CELLS = ("forward/1d/float32/same", "forward/2d/float32/same")

    def plan_for(self, spec: ConvSpec) -> Plan:
        p = super().plan_for(spec)
        if spec.padding != "same":
            return p
        pairs = []
        for k, d in zip(spec.kernel_size, spec.dilation):
            total = d * (k - 1)
            pairs.append((total - total // 2, total // 2))
        kwargs = tuple((key, 0 if key == "padding" else value) for key, value in p.kwargs)
        return Plan(p.function, kwargs, pad=tuple(tc.pad_list(pairs)), pad_mode=tc.PAD_MODES[spec.padding_mode])


__all__ = [
    "CircularLosesWrapWhenAfterIsZero",
    "PadsInAxisOrder",
    "ReflectAsEdge",
    "ReflectAsSymmetric",
    "SameExtraPadBefore",
]
