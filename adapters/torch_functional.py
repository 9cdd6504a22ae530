"""The ``torch`` adapter: ``torch.nn.functional.conv{1,2,3}d`` and ``conv_transpose{1,2,3}d``.

Each problem is put to PyTorch the most direct way it can be said:

* explicit symmetric padding, and ``'same'`` / ``'valid'`` with zeros padding,
  go to ``F.conv*d``'s own ``padding`` argument, so PyTorch resolves them;
* asymmetric pairs and the reflect / replicate / circular modes go through
  ``F.pad`` (modes ``constant`` / ``reflect`` / ``replicate`` / ``circular``)
  followed by a convolution with no padding (PyTorch's functional API has no
  other way to say them); ``'same'`` in those modes is resolved here, as
  ``nn.Conv*d`` resolves it (the ``torch-nn`` adapter leaves it to the module);
* a transposed convolution takes symmetric padding and ``output_padding``
  natively; asymmetric ``(before, after)`` crops are the native transposed
  convolution with ``min(before, after)`` and the same ``output_padding``,
  sliced by what is left on the longer side.  That keeps the bias inside
  PyTorch's kernel (so a float16 result is still rounded once) and lets PyTorch's
  own ``output_padding`` supply the positions past the last tap.

Backward is autograd: the inputs are leaves that require grad, ``y.backward``
with the given output gradient, and the leaves' ``.grad`` come back.

The computation is described once, as a :class:`Plan`, which both the adapter
runs and :meth:`TorchFunctional.repro_source` writes out as a script; the tests
check that the two agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from adapters import torch_common as tc
from adapters.base import Adapter, Capabilities, Grads
from conformance.spec import ConvSpec

CannotExpress = tc.CannotExpress


@dataclass(frozen=True)
class Plan:
    """How one problem is computed: an optional ``F.pad``, one ``F`` call, an optional crop."""

    function: str
    kwargs: tuple[tuple[str, Any], ...]
    pad: tuple[int, ...] | None = None
    pad_mode: str = "constant"
    #: Per spatial axis, the ``(start, stop)`` kept of the transposed output.
    crop: tuple[tuple[int, int], ...] | None = None

    def run(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, list(self.pad), mode=self.pad_mode)
        y = getattr(F, self.function)(x, w, b, **dict(self.kwargs))
        if self.crop is not None:
            y = y[(..., *(slice(start, stop) for start, stop in self.crop))]
        return y

    def source(self) -> list[str]:
        """The body of ``_conv(x, w, b)``, doing what :meth:`run` does."""
        lines = []
        if self.pad is not None:
            lines.append(f"x = F.pad(x, {list(self.pad)!r}, mode={self.pad_mode!r})")
        lines.append("y = " + tc.call_source(f"F.{self.function}", ("x", "w", "b"), self.kwargs))
        if self.crop is not None:
            lines.append(f"y = y[..., {', '.join(f'{start}:{stop}' for start, stop in self.crop)}]")
        lines.append("return y")
        return lines


def plan(spec: ConvSpec) -> Plan:
    """The :class:`Plan` for ``spec``; raises :class:`~adapters.torch_common.CannotExpress` where the
    functional API has no way to take one of its parameters.  Nothing here validates: an invalid
    value PyTorch can be given is given to it."""
    dims = spec.dims
    if dims not in (1, 2, 3):
        raise CannotExpress(f"input_size={spec.input_size}: PyTorch has convolutions of 1 to 3 spatial axes")
    if spec.transposed:
        return _transposed_plan(spec, dims)
    if len(spec.output_padding) != dims or any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: F.conv{dims}d has no output_padding")
    if spec.padding_mode not in tc.PAD_MODES:
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: F.pad has no mode for it")
    common = (("stride", spec.stride), ("dilation", spec.dilation), ("groups", spec.groups))
    function = f"conv{dims}d"

    def native(padding: Any) -> Plan:
        return Plan(function, (common[0], ("padding", padding), *common[1:]))

    if isinstance(spec.padding, str) and (spec.padding_mode == "zeros" or spec.padding != "same"):
        # 'same', 'valid', and any other string: PyTorch resolves (or rejects) it.
        return native(spec.padding)
    if spec.padding == "same" and any(s != 1 for s in spec.stride):
        # 'same' with another mode is resolved here (F.conv*d takes a mode through F.pad only);
        # PyTorch refuses strided 'same' wherever it resolves 'same' itself, and so does this.
        raise CannotExpress(
            f"padding='same', padding_mode={spec.padding_mode!r}, stride={spec.stride}: PyTorch has 'same' "
            "for stride 1 only (F.conv*d and nn.Conv*d both refuse it), and F.conv*d no padding mode"
        )
    if not isinstance(spec.padding, str) and symmetric_or_zero(spec):
        return native(tuple(before for before, _ in spec.padding))
    if any(p < 0 for pair in spec.pads for p in pair):
        raise CannotExpress(f"padding={spec.padding}: F.pad crops where a pad is negative, so a negative pad "
                            "cannot reach the convolution as padding")  # fmt: skip
    if any(n < 1 for n in spec.input_size):
        raise CannotExpress(f"input_size={spec.input_size}: F.pad pads an empty axis into a non-empty one, so an "
                            "empty input cannot reach the convolution through it")  # fmt: skip
    pad = tuple(tc.pad_list(spec.pads))
    return Plan(function, native(0).kwargs, pad=pad, pad_mode=tc.PAD_MODES[spec.padding_mode])


def symmetric_or_zero(spec: ConvSpec) -> bool:
    """Padding the native argument can say: symmetric with zeros, or none at all in any mode."""
    if spec.padding_mode == "zeros":
        return tc.symmetric(spec)
    return all(p == 0 for pair in spec.padding for p in pair)


def _transposed_plan(spec: ConvSpec, dims: int) -> Plan:
    if spec.padding_mode != "zeros":
        raise CannotExpress(f"padding_mode={spec.padding_mode!r}: F.conv_transpose{dims}d takes no padding mode")
    function = f"conv_transpose{dims}d"
    if spec.groups > 0 and spec.out_channels % spec.groups:
        raise CannotExpress(
            f"out_channels={spec.out_channels}, groups={spec.groups}: F.conv_transpose{dims}d reads the output "
            f"channels off the weight (in, out/groups, ...), which cannot say {spec.out_channels}"
        )

    def call(padding: Any) -> tuple[tuple[str, Any], ...]:
        return (
            ("stride", spec.stride),
            ("padding", padding),
            ("output_padding", spec.output_padding),
            ("groups", spec.groups),
            ("dilation", spec.dilation),
        )

    if isinstance(spec.padding, str) or tc.symmetric(spec):
        # A string goes as it is: PyTorch's transposed convolution has no 'same' or
        # 'valid', and rejecting them is its job.
        padding = spec.padding if isinstance(spec.padding, str) else tuple(before for before, _ in spec.padding)
        return Plan(function, call(padding))
    if any(size < 1 for size in spec.output_size):
        # The crop is this adapter's own step; PyTorch's transposed convolution refuses an
        # output size < 1 when it crops natively, and so does the composed one.
        raise CannotExpress(f"padding={spec.padding}: the transposed output would have size {spec.output_size}")
    native = tuple(min(before, after) for before, after in spec.padding)
    crop = tuple(
        (before - p, before - p + size) for (before, _), p, size in zip(spec.padding, native, spec.output_size)
    )
    return Plan(function, call(native), crop=crop)


class TorchFunctional(Adapter):
    """PyTorch's functional convolutions, forward and backward, on CPU (and CUDA where present)."""

    name = "torch"

    def capabilities(self) -> Capabilities:
        precision, notes = tc.precision_model()
        return Capabilities(
            devices=tc.devices(),
            transposed=True,
            transposed_padding_forms=("none", "symmetric", "asymmetric"),
            backward=True,
            empty_batch=True,
            precision=precision,
            notes=(
                *notes,
                "padding: symmetric pairs and 'same'/'valid' (zeros mode) native; asymmetric pairs and "
                "reflect/replicate/circular through F.pad ('same' in those modes resolved by the adapter as "
                "nn.Conv*d resolves it); transposed asymmetric as the native transposed convolution with "
                "min(before, after), then cropped",
                "layouts: channels_last is torch.channels_last(_3d) (1-D: an (N, L, C) buffer seen as "
                "(N, C, L)); strided makes every tensor a view into a larger NaN-filled buffer",
            ),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        p = plan(spec)
        xt, wt, bt = tc.tensors(spec, x, w, b)
        with torch.no_grad():
            y = p.run(xt, wt, bt)
        _check_crop(spec, p, y)
        return tc.as_numpy(y)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        p = plan(spec)
        xt, wt, bt = tc.tensors(spec, x, w, b, requires_grad=True)
        (gy,) = tc.tensors(spec, grad_out)
        y = p.run(xt, wt, bt)
        _check_crop(spec, p, y)
        return tc.gradients(y, gy, (xt, wt, bt))

    def versions(self) -> dict[str, str]:
        return tc.versions()

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        p = plan(spec)
        lines = [tc.repro_header(spec, self.name, f"torch.nn.functional.{p.function}", operation), ""]
        lines += ["def _conv(x, w, b):", *tc.indent(p.source()), "", ""]
        lines += [
            "def candidate(x, w, b):",
            "    x, w = as_tensor(x, DTYPE, DEVICE, LAYOUT), as_tensor(w, DTYPE, DEVICE, LAYOUT)",
            "    b = None if b is None else as_tensor(b, DTYPE, DEVICE, LAYOUT)",
            "    with torch.no_grad():",
            "        return as_numpy(_conv(x, w, b))",
        ]
        if operation == "backward":
            lines += [
                "",
                "",
                "def candidate_backward(x, w, b, grad_out):",
                "    x = as_tensor(x, DTYPE, DEVICE, LAYOUT).requires_grad_()",
                "    w = as_tensor(w, DTYPE, DEVICE, LAYOUT).requires_grad_()",
                "    b = None if b is None else as_tensor(b, DTYPE, DEVICE, LAYOUT).requires_grad_()",
                "    _conv(x, w, b).backward(as_tensor(grad_out, DTYPE, DEVICE, LAYOUT))",
                "    return as_numpy(x.grad), as_numpy(w.grad), None if b is None else as_numpy(b.grad)",
            ]
        return "\n".join(lines) + "\n"


def _check_crop(spec: ConvSpec, p: Plan, y: torch.Tensor) -> None:
    # The crop is the adapter's own step: where the spec's output size does not fit
    # what PyTorch produced (only for invalid problems), slicing would silently
    # return something shorter, so say that nothing sensible can be returned.
    if p.crop is not None and tuple(y.shape[2:]) != tuple(spec.output_size):
        raise CannotExpress(
            f"the transposed output, cropped to {list(p.crop)}, has spatial shape {tuple(y.shape[2:])}, "
            f"not the spec's {spec.output_size}"
        )


__all__ = ["CannotExpress", "Plan", "TorchFunctional", "plan"]
