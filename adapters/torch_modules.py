"""The ``torch-nn`` adapter: ``torch.nn.Conv{1,2,3}d`` and ``ConvTranspose{1,2,3}d`` modules.

The way the seed article uses PyTorch: build the module from the problem's
parameters, assign the weight and bias as ``nn.Parameter``s, call it.  Beyond
the numbers, two things the article gets wrong or leaves unsaid are checked on
every call, and a mismatch raises ``AssertionError`` (the runner records it as
an error):

* the module's attributes (``in_channels``, ``out_channels``, ``kernel_size``,
  ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, and
  ``output_padding`` when transposed) say what was asked for;
* the output records a ``grad_fn``, since the weight requires grad.

The padding modes are the module's own (``padding_mode=``), and ``'same'`` is
resolved by the module.  A module takes one pad per axis, so asymmetric padding
is not something it can be asked for (declared unsupported, forward or
transposed).  Modules are built with ``torch.nn.utils.skip_init``: the weights
are replaced anyway, and the default initialisation would draw from (and so
disturb) PyTorch's global random generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from adapters import torch_common as tc
from adapters.base import Adapter, Capabilities, Grads
from conformance.spec import ConvSpec

CannotExpress = tc.CannotExpress


@dataclass(frozen=True)
class ModulePlan:
    """The module class, its constructor arguments, and the attributes it must then show."""

    cls: str
    kwargs: tuple[tuple[str, Any], ...]
    expected: tuple[tuple[str, Any], ...]

    def build(self, spec: ConvSpec, w: torch.Tensor, b: torch.Tensor | None) -> torch.nn.Module:
        cls = getattr(torch.nn, self.cls)
        m = torch.nn.utils.skip_init(cls, **dict(self.kwargs), device=spec.device, dtype=tc.torch_dtype(spec))
        m.weight = torch.nn.Parameter(w)
        if b is not None:
            m.bias = torch.nn.Parameter(b)
        check_module(m, self, spec)
        return m

    def source(self) -> list[str]:
        """The body of ``_module(w, b)``, doing what :meth:`build` does (checks included)."""
        call = tc.call_source(
            "torch.nn.utils.skip_init", (f"torch.nn.{self.cls}",), (*self.kwargs, ("device", _Name("DEVICE")),
                                                                     ("dtype", _Name("DTYPE")))
        )  # fmt: skip
        return [
            f"m = {call}",
            "m.weight = torch.nn.Parameter(as_tensor(w, DTYPE, DEVICE, LAYOUT))",
            "if b is not None:",
            "    m.bias = torch.nn.Parameter(as_tensor(b, DTYPE, DEVICE, LAYOUT))",
            f"for name, value in {dict(self.expected)!r}.items():",
            "    assert getattr(m, name) == value, f'm.{name}={getattr(m, name)!r}, but should be {value!r}'",
            "return m",
        ]


class _Name(str):
    """A keyword value rendered as a bare name (``DEVICE``), not a string literal."""

    def __repr__(self) -> str:
        return str(self)


def plan(spec: ConvSpec) -> ModulePlan:
    """The :class:`ModulePlan` for ``spec``; raises :class:`CannotExpress` for what a module cannot take."""
    dims = spec.dims
    if dims not in (1, 2, 3):
        raise CannotExpress(f"input_size={spec.input_size}: torch.nn has convolutions of 1 to 3 spatial axes")
    if isinstance(spec.padding, str):
        padding: Any = spec.padding
    elif tc.symmetric(spec):
        padding = tuple(before for before, _ in spec.padding)
    else:
        raise CannotExpress(
            f"padding={spec.padding}: torch.nn convolutions take one pad per axis (or 'same'/'valid'), "
            "not (before, after) pairs"
        )
    kwargs: list[tuple[str, Any]] = [
        ("in_channels", spec.in_channels),
        ("out_channels", spec.out_channels),
        ("kernel_size", spec.kernel_size),
        ("stride", spec.stride),
        ("padding", padding),
        ("dilation", spec.dilation),
        ("groups", spec.groups),
        ("bias", spec.bias),
        ("padding_mode", spec.padding_mode),
    ]
    if spec.transposed:
        kwargs.insert(5, ("output_padding", spec.output_padding))
        cls = f"ConvTranspose{dims}d"
    elif len(spec.output_padding) != dims or any(op != 0 for op in spec.output_padding):
        raise CannotExpress(f"output_padding={spec.output_padding}: torch.nn.Conv{dims}d takes no output_padding")
    else:
        cls = f"Conv{dims}d"
    expected = tuple((name, value) for name, value in kwargs if name != "bias")
    return ModulePlan(cls, tuple(kwargs), expected)


def check_module(m: torch.nn.Module, p: ModulePlan, spec: ConvSpec) -> None:
    """``AssertionError`` naming every attribute of ``m`` that does not say what ``p`` asked for."""
    wrong = [
        f"m.{name}={getattr(m, name, '<missing>')!r}, but should be {value!r}"
        for name, value in p.expected
        if getattr(m, name, object()) != value
    ]
    if (m.bias is None) == bool(spec.bias):
        wrong.append(f"m.bias is {'None' if m.bias is None else 'set'}, but spec.bias={spec.bias}")
    if wrong:
        raise AssertionError(f"torch.nn.{p.cls} built for {spec.descriptor()}: " + "; ".join(wrong))


def check_grad_fn(y: torch.Tensor, p: ModulePlan, spec: ConvSpec) -> None:
    if y.grad_fn is None:
        raise AssertionError(
            f"torch.nn.{p.cls}(x).grad_fn=None, but should be set: the weight requires grad [{spec.descriptor()}]"
        )


class TorchModules(Adapter):
    """``torch.nn`` convolution modules, forward and backward, with their attributes checked."""

    name = "torch-nn"

    def capabilities(self) -> Capabilities:
        precision, notes = tc.precision_model()
        return Capabilities(
            devices=tc.devices(),
            padding_forms=("none", "symmetric", "same", "valid"),
            transposed=True,
            transposed_padding_forms=("none", "symmetric"),
            backward=True,
            empty_batch=True,
            precision=precision,
            notes=(
                *notes,
                "a module takes one pad per axis: asymmetric (before, after) padding is not expressible",
                "every call checks the module's attributes against the problem and that the output has a "
                "grad_fn; a mismatch is an AssertionError",
                "layouts: channels_last is torch.channels_last(_3d) for the input, weight and output gradient "
                "(1-D: an (N, L, C) buffer seen as (N, C, L)); strided makes each a view into a larger "
                "NaN-filled buffer; the parameters are nn.Parameters of those tensors",
            ),
        )

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        p = plan(spec)
        xt, wt, bt = tc.tensors(spec, x, w, b)
        m = p.build(spec, wt, bt)
        y = m(xt)
        check_grad_fn(y, p, spec)
        return tc.as_numpy(y)

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        p = plan(spec)
        xt, wt, bt, gy = tc.tensors(spec, x, w, b, grad_out)
        m = p.build(spec, wt, bt)
        xt.requires_grad_()
        y = m(xt)
        check_grad_fn(y, p, spec)
        return tc.gradients(y, gy, (xt, m.weight, m.bias))

    def versions(self) -> dict[str, str]:
        return tc.versions()

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        p = plan(spec)
        lines = [tc.repro_header(spec, self.name, f"torch.nn.{p.cls}", operation), ""]
        lines += ["def _module(w, b):", *tc.indent(p.source()), "", ""]
        lines += [
            "def candidate(x, w, b):",
            "    m = _module(w, b)",
            "    y = m(as_tensor(x, DTYPE, DEVICE, LAYOUT))",
            "    assert y.grad_fn is not None, 'the weight requires grad, so the output should have a grad_fn'",
            "    return as_numpy(y)",
        ]
        if operation == "backward":
            lines += [
                "",
                "",
                "def candidate_backward(x, w, b, grad_out):",
                "    m = _module(w, b)",
                "    x = as_tensor(x, DTYPE, DEVICE, LAYOUT).requires_grad_()",
                "    m(x).backward(as_tensor(grad_out, DTYPE, DEVICE, LAYOUT))",
                "    gb = None if m.bias is None else as_numpy(m.bias.grad)",
                "    return as_numpy(x.grad), as_numpy(m.weight.grad), gb",
            ]
        return "\n".join(lines) + "\n"


__all__ = ["CannotExpress", "ModulePlan", "TorchModules", "check_module", "plan"]
