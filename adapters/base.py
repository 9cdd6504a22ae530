"""The adapter protocol: how a backend is put under test.

An adapter is a class with a ``name``, :meth:`Adapter.capabilities`, and
:meth:`Adapter.forward` (plus :meth:`Adapter.backward` where it declares
backward support).  Data goes in and out as numpy arrays:

* inputs are float64 arrays whose values are exactly representable in
  ``spec.dtype``; the adapter converts them to its own dtype, device and layout
  (``spec.layout``), which is part of what is under test;
* outputs are numpy floating arrays of ``spec.output_shape`` (float64 or float32
  are both fine: the verdict reads values, and checks that each is a value of
  the declared output format).

What a backend cannot do is declared in :class:`Capabilities`; a problem
outside them is *unsupported*, which is reported as such and never counted as a
pass.  An invalid problem (one ``spec.validate()`` rejects) must make
``forward`` raise; any exception will do.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conformance.spec import DTYPES, LAYOUTS, PADDING_FORMS, PADDING_MODES, ConvSpec
from conformance.tolerance import Precision, default_precision

OPERATIONS = ("forward", "backward")


class CannotExpress(ValueError):
    """Raised by an adapter for a problem its backend's API has no way to take (nothing was run).

    The suite records such a case as *unsupported*, never as the backend
    rejecting it: an invalid problem the adapter cannot even pass on says
    nothing about what the backend would do with it.
    """

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can run, and how it rounds.

    ``precision`` maps ``(dtype, device kind)`` to the declared
    :class:`~conformance.tolerance.Precision` (device kind: ``"cpu"``, ``"cuda"``,
    i.e. the device string before any ``:index``); a missing entry means
    :func:`~conformance.tolerance.default_precision` of the dtype.
    ``transposed_padding_forms`` is what the transposed op can express (often
    only symmetric padding).
    """

    dims: tuple[int, ...] = (1, 2, 3)
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = ("cpu",)
    padding_forms: tuple[str, ...] = PADDING_FORMS
    padding_modes: tuple[str, ...] = PADDING_MODES
    layouts: tuple[str, ...] = LAYOUTS
    transposed: bool = True
    transposed_padding_forms: tuple[str, ...] = ("none", "symmetric", "asymmetric")
    backward: bool = False
    empty_batch: bool = True
    precision: Mapping[tuple[str, str], Precision] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def precision_for(self, spec: ConvSpec) -> Precision:
        return self.precision.get((spec.dtype, device_kind(spec.device))) or default_precision(spec.dtype)

    def unsupported(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        """Why ``spec`` (a valid problem) is outside these capabilities, or None when it is inside."""
        if operation not in OPERATIONS:
            raise ValueError(f"operation={operation!r}, but should be one of {OPERATIONS}")
        checks = [
            (spec.dims in self.dims, f"{spec.dims}-D convolution"),
            (spec.dtype in self.dtypes, f"dtype {spec.dtype}"),
            (device_kind(spec.device) in self.devices, f"device {spec.device}"),
            (spec.layout in self.layouts, f"layout {spec.layout}"),
            (spec.padding_mode in self.padding_modes, f"padding_mode {spec.padding_mode!r}"),
            (spec.batch > 0 or self.empty_batch, "an empty batch"),
            (not spec.transposed or self.transposed, "transposed convolution"),
            (operation != "backward" or self.backward, "backward"),
        ]
        forms = self.transposed_padding_forms if spec.transposed else self.padding_forms
        op = "transposed " if spec.transposed else ""
        checks.append((spec.padding_form in forms, f"{spec.padding_form} padding on a {op}convolution"))
        for ok, what in checks:
            if not ok:
                return f"{what} is not supported"
        return None

    @classmethod
    def validated(cls, value: Any) -> Capabilities:
        """``value`` rebuilt from plain Python values, or TypeError saying what is wrong with it.

        What an adapter's ``capabilities()`` returns is untrusted: a subclass could
        answer differently each time it is asked, and an isolated adapter's answer
        crosses a process boundary, where unpickling a class of the adapter's would
        import the adapter's code into the parent.  The suite keeps this copy.
        """
        if not isinstance(value, Capabilities):
            raise TypeError(f"capabilities() returned {type(value).__name__}, not an adapters.base.Capabilities")

        def words(name: str) -> tuple[str, ...]:
            items = getattr(value, name)
            if isinstance(items, str) or not all(isinstance(item, str) for item in items):
                raise TypeError(f"capabilities().{name}={items!r}, but should be a tuple of strings")
            return tuple(str(item) for item in items)

        dims = value.dims
        if isinstance(dims, (str, bytes)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise TypeError(f"capabilities().dims={dims!r}, but should be a tuple of whole numbers")
        precision = {}
        for key, declared in dict(value.precision).items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
                raise TypeError(f"capabilities().precision key {key!r}, but should be a (dtype, device) pair")
            if not isinstance(declared, Precision):
                raise TypeError(f"capabilities().precision[{key!r}] is {type(declared).__name__}, not a Precision")
            precision[(str(key[0]), str(key[1]))] = Precision(**declared.to_dict())
        flags = {name: getattr(value, name) for name in ("transposed", "backward", "empty_batch")}
        for name, flag in flags.items():
            if not isinstance(flag, bool):
                raise TypeError(f"capabilities().{name}={flag!r}, but should be True or False")
        return cls(
            dims=tuple(int(d) for d in dims), **{name: words(name) for name in (
                "dtypes", "devices", "padding_forms", "padding_modes", "layouts", "transposed_padding_forms", "notes")},
            precision=precision, **flags,
        )  # fmt: skip

    def declared(self) -> dict[str, Any]:
        """What a reader of a results file or scoreboard needs: what runs, and the declared precision of every
        supported dtype on every device (the default written out), described in words."""
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in (
            "dims", "dtypes", "devices", "layouts", "padding_modes", "notes")}  # fmt: skip
        out.update(transposed=self.transposed, backward=self.backward)
        out["precision"] = {
            f"{dtype}@{device}": (self.precision.get((dtype, device)) or default_precision(dtype)).describe()
            for device in self.devices for dtype in self.dtypes
        }  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: list(getattr(self, name))
            for name in ("dims", "dtypes", "devices", "padding_forms", "padding_modes", "layouts",
                         "transposed_padding_forms", "notes")
        }  # fmt: skip
        out.update(transposed=self.transposed, backward=self.backward, empty_batch=self.empty_batch)
        out["precision"] = {f"{dtype}@{device}": p.to_dict() for (dtype, device), p in self.precision.items()}
        return out


def device_kind(device: str) -> str:
    """``"cuda:1" -> "cuda"``."""
    return device.split(":", 1)[0]


def probe_dtypes(
    run: Callable[[ConvSpec], object], *, transposed: bool = True, bias: bool = True
) -> dict[str, str | None]:
    """Which of the suite's dtypes a backend really runs here, found at start-up rather than assumed.

    ``run`` gets one tiny 1-D problem per dtype (3 inputs, kernel 2, one channel each way), then its transposed
    twin when ``transposed``, and raises where the backend cannot run it.  Returns dtype -> None where every
    problem ran, or the first line of what was raised (an adapter quotes it in its notes).
    """
    outcome: dict[str, str | None] = {}
    for dtype in DTYPES:
        outcome[dtype] = None
        for flipped in (False, True) if transposed else (False,):
            spec = ConvSpec(1, 1, input_size=(3,), kernel_size=(2,), dtype=dtype, transposed=flipped, bias=bias)
            try:
                run(spec)
            except Exception as exc:  # whatever failed is what the note quotes
                outcome[dtype] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                break
    return outcome


class Adapter(abc.ABC):
    """A backend under test.  Subclass it, or provide the same attributes (duck typing is fine)."""

    #: The name users pass to ``--adapter``.
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend can run on this machine, and how it rounds."""

    @abc.abstractmethod
    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """The convolution (transposed when ``spec.transposed``) of ``x`` by ``w`` plus ``b``."""

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        """``(grad_input, grad_weight, grad_bias)`` for ``grad_out``; grad_bias is None without bias."""
        raise NotImplementedError(f"{self.name} does not implement backward")

    def versions(self) -> dict[str, str]:
        """Backend name -> version, for the results file's environment."""
        return {}

    def repro_source(self, spec: ConvSpec, operation: str = "forward") -> str | None:
        """Python source for a standalone repro script, or None where the backend cannot give one.

        It imports only numpy and the backend and defines ``candidate(x, w, b)``
        (forward) or ``candidate_backward(x, w, b, grad_out)`` taking and
        returning float64 numpy arrays, computing exactly what :meth:`forward` /
        :meth:`backward` compute for ``spec``.
        """
        return None


__all__ = ["OPERATIONS", "Adapter", "CannotExpress", "Capabilities", "Grads", "device_kind", "probe_dtypes"]
