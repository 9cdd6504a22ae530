"""What every mutant shares: PyTorch's real convolution with one hook to break it, and the geometry helpers.

A :class:`Mutant` is the real ``torch`` adapter (:class:`adapters.torch_functional.TorchFunctional`)
with its forward split into four steps a mutant may override, one bug each:

``plan_for``   how the problem is put to PyTorch (the F.pad + F.conv* :class:`~adapters.torch_functional.Plan`);
``inputs``     the tensors the kernel reads, after the layout conversion;
``run``        the convolution itself;
``output``     what is written back.

Everything a mutant does not override is exactly what the ``torch`` adapter does,
so a catch is a catch of the bug and of nothing else (the meta-test checks that
the real adapter passes every minimal failing case).  Mutants have no repro
script: the script would have to reproduce the bug too, and none of them can.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from adapters import torch_common as tc
from adapters.base import CannotExpress, Capabilities
from adapters.torch_functional import Plan, TorchFunctional, plan
from conformance.spec import ConvSpec


class Mutant(TorchFunctional):
    """PyTorch's convolution with one deliberate bug.

    Subclasses set ``name``, ``TARGET_CELLS`` (cell ids or fnmatch globs where the
    suite must catch the bug: one to three, so the meta-test stays fast),
    ``BUG_CLASS`` (one line for the statistics table) and, for a bug in a
    gradient, ``BACKWARD = True``; their docstring names the real bug class.
    """

    name: ClassVar[str] = ""
    TARGET_CELLS: ClassVar[tuple[str, ...]] = ()
    BUG_CLASS: ClassVar[str] = ""
    #: Only mutants whose bug is in a gradient declare backward: the others would
    #: only spend the meta-test's time on PyTorch's own (correct) backward.
    BACKWARD: ClassVar[bool] = False
    #: The least fraction of seeded draws of the ci budget that must catch the mutant in each target
    #: cell (see ``tests.mutants.measure.detection_rates``): the meta-test's guard against the suite
    #: losing the bug class, stable under edits that only reshuffle the ci profile's one draw.
    MIN_DETECTION: ClassVar[float] = 0.8
    #: For a bug class the ci budget often misses: why (which draws it needs), and which strategy
    #: change would catch it.  Required when ``MIN_DETECTION`` is below the default.
    KNOWN_GAP: ClassVar[str] = ""

    def capabilities(self) -> Capabilities:
        caps = super().capabilities()
        return dataclasses.replace(caps, backward=self.BACKWARD, notes=(*caps.notes, f"mutant: {self.BUG_CLASS}"))

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        return None

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        p = self.plan_for(spec)
        xt, wt, bt = tc.tensors(spec, x, w, b)
        with torch.no_grad():
            xt, wt, bt = self.inputs(spec, xt, wt, bt)
            y = self.run(spec, p, xt, wt, bt)
            y = self.output(spec, y)
        return tc.as_numpy(y)

    # ------------------------------------------------------------- the hooks

    def plan_for(self, spec: ConvSpec) -> Plan:
        return plan(spec)

    def inputs(
        self, spec: ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return x, w, b

    def run(self, spec: ConvSpec, p: Plan, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        y = p.run(x, w, b)
        # As the torch adapter does: a crop that does not fit (invalid problems only) is not answered.
        if p.crop is not None and tuple(y.shape[2:]) != tuple(spec.output_size):
            raise CannotExpress(f"the cropped transposed output has shape {tuple(y.shape[2:])}, not {spec.output_size}")
        return y

    def output(self, spec: ConvSpec, y: torch.Tensor) -> torch.Tensor:
        return y


# ------------------------------------------------------------------ helpers


def conv_function(dims: int, transposed: bool = False) -> Callable[..., torch.Tensor]:
    return getattr(F, f"conv_transpose{dims}d" if transposed else f"conv{dims}d")


def conv_into(
    spec: ConvSpec,
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    *,
    stride: tuple[int, ...] | None = None,
    dilation: tuple[int, ...] | None = None,
    pads: tuple[tuple[int, int], ...] | None = None,
    pad_mode: str | None = None,
) -> torch.Tensor:
    """A forward convolution with some parameters replaced, written into an output of the spec's own size.

    This is how a kernel that reads one parameter wrongly behaves inside a framework
    that sized the output from the right ones: it walks ``spec.output_size``
    positions with the wrong stride, dilation or padding, and a read past the end
    of the (padded) input sees zeros, as in a zero-initialised workspace.
    """
    stride = spec.stride if stride is None else stride
    dilation = spec.dilation if dilation is None else dilation
    pads = spec.pads if pads is None else pads
    mode = tc.PAD_MODES[spec.padding_mode] if pad_mode is None else pad_mode
    x = F.pad(x, tc.pad_list(pads), mode=mode)
    extra = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - n)
        for o, s, d, k, n in zip(spec.output_size, stride, dilation, spec.kernel_size, x.shape[2:])
    ]
    if any(extra):
        x = F.pad(x, tc.pad_list((0, e) for e in extra))
    y = conv_function(spec.dims)(x, w, b, stride=stride, dilation=dilation, groups=spec.groups)
    return y[(..., *(slice(0, o) for o in spec.output_size))]


def along(axis: int, index: int | slice, ndim: int) -> tuple:
    """An index tuple selecting ``index`` on spatial ``axis`` of an ``ndim``-dimensional (N, C, ...) tensor."""
    return (*(slice(None),) * (2 + axis), index, *(slice(None),) * (ndim - 3 - axis))


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))


def read_as_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The tensor's memory from its first element, read with row-major strides: what a kernel that
    takes ``data_ptr()`` and ignores ``strides()`` sees."""
    return torch.as_strided(t, t.shape, contiguous_strides(tuple(t.shape)), t.storage_offset())


class Unmutated(Mutant):
    """The control: a :class:`Mutant` with no bug, which must pass wherever the ``torch`` adapter passes.

    It shows that the hooks themselves compute what the torch adapter computes, and
    that the meta-test's measurement reports a catch only where there is one.
    """

    name = "mutant-none"
    BUG_CLASS = "none (control)"
    BACKWARD = True
    TARGET_CELLS = (
        "forward/2d/float32/asymmetric",
        "transposed/1d/float32/asymmetric",
        "backward/1d/float32/none",
        "special/1d/float32/any",
        "invalid/1d/float32/output_padding_smaller_than_stride_or_dilation",
    )


__all__ = ["Mutant", "Unmutated", "along", "contiguous_strides", "conv_function", "conv_into", "read_as_contiguous"]
