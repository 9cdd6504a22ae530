"""Metamorphic properties: relations between several calls of the candidate, no oracle needed.

Data is in the exact tier (small integers whose every partial sum fits the
significand), so every relation below holds bit for bit in any correct
backend, in any summation order: linearity in x and in w, the transposed
convolution as the adjoint of the forward one, a grouped convolution as the
concatenation of per-group convolutions, batch invariance.  The last property,
repeated calls giving identical bits, uses real-valued data: a backend whose
answer changes from call to call (racing atomics, say) breaks it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.cells import Cell
from conformance.coverage import case_attributes
from conformance.data import DataRecipe, make_inputs
from conformance.runner import cannot_express, modified_reason
from conformance.session import BAD
from conformance.spec import ConvSpec
from conformance.strategies import conv_specs
from conformance.suite.explore import run_examples

PROPERTIES = ("linearity-x", "linearity-w", "adjoint", "groups-concatenate", "batch-invariance", "repeatable")
EXACT = DataRecipe("integers", seed=0, scale=1)


class Broken(Exception):
    """The candidate broke a relation (or the contract) on this problem."""


class Unexpressible(Exception):
    """The adapter raised CannotExpress for one of the relation's problems (a derived one, often): nothing was
    run, so the example is unsupported, as in every other chapter, not a broken relation."""


def _call(caller, spec: ConvSpec, x, w, b) -> np.ndarray:
    """One forward call.  The caller hands the adapter copies of x, w and b (so a relation's second call
    sees the same inputs as its first) and copies what it returns; the float64 array made here is a copy
    again, so an adapter that reuses one output buffer can neither break a relation nor fake one."""
    outcome = caller.call("forward", spec, x, w, b)
    if cannot_express(outcome):
        raise Unexpressible(f"{spec.descriptor()}: {outcome.message.splitlines()[0] if outcome.message else ''}")
    if outcome.status != "ok":
        raise Broken(f"{outcome.status}: {outcome.message}")
    if outcome.modified:
        raise Broken(modified_reason(outcome.modified))
    value = np.array(outcome.value, dtype=np.float64)
    if value.shape != spec.output_shape:
        raise Broken(f"output shape {value.shape}, but should be {spec.output_shape}")
    return value


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if not np.array_equal(a, b, equal_nan=True):
        i = np.unravel_index(int(np.argmax(~((a == b) | (np.isnan(a) & np.isnan(b))))), a.shape)
        raise Broken(f"{what}: {a[i]!r} != {b[i]!r} at {tuple(int(v) for v in i)}")


def _data(spec: ConvSpec, seed: int, distribution: str = "integers"):
    # Integers in [-2, 2]: sums of two problems' worth of products stay far inside
    # float32's 24 bits, so every relation is exact in any summation order.
    return make_inputs(spec, DataRecipe(distribution, seed=seed, scale=1 if distribution == "integers" else 0))


def _check(prop: str, caller, spec: ConvSpec, seed: int) -> None:
    x, w, b = _data(spec, seed)
    if prop == "linearity-x":
        x2, _, _ = _data(spec, seed + 1)
        _same(_call(caller, spec, x + x2, w, None), _call(caller, spec, x, w, None) + _call(caller, spec, x2, w, None),
              "conv(x1 + x2) vs conv(x1) + conv(x2)")  # fmt: skip
    elif prop == "linearity-w":
        _, w2, _ = _data(spec, seed + 1)
        _same(_call(caller, spec, x, w + w2, None), _call(caller, spec, x, w, None) + _call(caller, spec, x, w2, None),
              "conv(w1 + w2) vs conv(w1) + conv(w2)")  # fmt: skip
    elif prop == "adjoint":
        adjoint = _adjoint_spec(spec)
        y = _data(adjoint, seed + 1)[0]
        forward = float(np.sum(_call(caller, spec, x, w, None) * y))
        backward = float(np.sum(x * _call(caller, adjoint, y, w, None)))
        if forward != backward:
            raise Broken(f"<conv(x), y> = {forward!r} but <x, conv_T(y)> = {backward!r} [{adjoint.descriptor()}]")
    elif prop == "groups-concatenate":
        g = spec.groups
        one = spec.replace(in_channels=spec.in_channels // g, out_channels=spec.out_channels // g, groups=1)
        xs, ws = np.split(x, g, axis=1), np.split(w, g, axis=0)
        parts = [_call(caller, one, xi, wi, None) for xi, wi in zip(xs, ws)]
        _same(_call(caller, spec, x, w, None), np.concatenate(parts, axis=1), "grouped vs per-group concatenated")
    elif prop == "batch-invariance":
        whole = _call(caller, spec, x, w, b)
        alone = spec.replace(batch=1)
        for i in range(spec.batch):
            _same(whole[i : i + 1], _call(caller, alone, x[i : i + 1], w, b), f"batch item {i} vs alone")
    elif prop == "repeatable":
        x, w, b = _data(spec, seed, "real")
        _same(_call(caller, spec, x, w, b), _call(caller, spec, x, w, b), "first call vs second call")


def _adjoint_spec(spec: ConvSpec) -> ConvSpec:
    """The transposed convolution that is the adjoint of ``spec`` (same weight array)."""
    extra = tuple(
        i - ((o - 1) * s - before - after + d * (k - 1) + 1)
        for i, o, s, (before, after), d, k in zip(
            spec.input_size, spec.output_size, spec.stride, spec.pads, spec.dilation, spec.kernel_size
        )
    )
    return spec.replace(transposed=True, in_channels=spec.out_channels, out_channels=spec.in_channels,
                        input_size=spec.output_size, padding=spec.pads, output_padding=extra,
                        batch=spec.batch)  # fmt: skip


def _specs(prop: str, dims: int, caps) -> st.SearchStrategy[ConvSpec]:
    """Problems the adapter supports, the derived ones (adjoint, per-group, single item) included."""
    # Explicit padding only: the relations do not depend on how a padding string is
    # resolved, which the arithmetic chapters test (and baseline) on their own.
    forms = [f for f in caps.padding_forms if f in ("none", "symmetric", "asymmetric")]
    if prop == "adjoint":
        forms = [f for f in forms if f in caps.transposed_padding_forms]
    kwargs: dict = {"dims": (dims,), "dtypes": ("float32",), "transposed": False, "layouts": ("contiguous",),
                    "max_macs": 5_000, "bias": prop in ("batch-invariance", "repeatable"),
                    "padding_forms": tuple(forms), "padding_modes": tuple(caps.padding_modes)}  # fmt: skip
    if prop == "adjoint":
        kwargs.update(padding_modes=("zeros",))
    if prop == "groups-concatenate":
        kwargs.update(group_kinds=("depthwise", "depthwise_multiplier", "other"))
    return conv_specs(**kwargs)


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return Cell("properties", params["dims"], "float32", params["prop"]).id


@pytest.mark.conformance
@pytest.mark.parametrize("dims", (1, 2, 3))
@pytest.mark.parametrize("prop", PROPERTIES)
def test_property(conformance, adapter_name, prop, dims):
    cell = Cell("properties", dims, "float32", prop)
    caller = conformance.callers[adapter_name]
    caps = caller.capabilities
    needs_transposed = prop == "adjoint"
    usable = (dims in caps.dims and "float32" in caps.dtypes and "contiguous" in caps.layouts
              and "zeros" in caps.padding_modes)  # fmt: skip
    if not usable or (needs_transposed and not caps.transposed):
        conformance.record_unsupported(cell, adapter_name, f"{prop} needs what {adapter_name} does not support")
        pytest.skip(f"unsupported by {adapter_name}")
    record = conformance.open_cell(cell.id, adapter_name)

    @given(spec=_specs(prop, dims, caps), seed=st.integers(0, 2**16))
    def example(spec, seed):
        try:
            _check(prop, caller, spec, seed)
        except Broken as broken:
            failure = {"descriptor": spec.descriptor(), "spec": spec.to_dict(), "recipe": EXACT.to_dict(),
                       "operation": prop, "status": "failed", "reason": str(broken)}  # fmt: skip
            conformance.judge(record, "failed", failure=failure, attributes=case_attributes(spec, EXACT, prop),
                              message=f"{adapter_name}: {prop} on {spec.descriptor()}: {broken}")  # fmt: skip
            return
        except Unexpressible as why:
            record.add("unsupported", attributes=case_attributes(spec, EXACT, prop))
            note = f"{prop}: the adapter cannot express {why}"[:300]
            if note not in record.notes and len(record.notes) < 5:
                record.notes.append(note)
            return
        record.add("passed", attributes=case_attributes(spec, EXACT, prop))

    run_examples(conformance, cell.id, adapter_name, example)


__all__ = ["BAD", "PROPERTIES"]
