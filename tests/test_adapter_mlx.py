"""The MLX adapter: parameter mapping, capabilities, refusals, precision evidence and repro scripts.

Every drawn forward problem inside the declared capabilities must pass
:func:`conformance.tolerance.check` under the declared precision, except the
classes MLX 0.32.4 (CPU) refuses although the problem is valid; those are pinned
by tests that say they are still refused (so an exclusion is dropped the day MLX
runs them).
"""

from __future__ import annotations

import ast
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("mlx.core", reason="the mlx adapter needs MLX: pip install 'conv-conformance[mlx]'")

import mlx.core as mx

from adapters import mlx_adapter
from adapters.base import CannotExpress
from adapters.mlx_adapter import Mlx
from conformance import oracle, tolerance
from conformance.data import DataRecipe, make_inputs, reduction_lengths
from conformance.spec import ConvSpec
from conformance.strategies import conv_cases
from tests.adapter_checks import judge

#: Every distribution but "special": NaN/Inf propagation is the special-values chapter's business.
DISTRIBUTIONS = ("ones", "integers", "real", "cancellation")

adapter = functools.cache(Mlx)


def _float64_general_path(spec: ConvSpec) -> bool:
    """MLX 0.32.4 CPU: float64 runs only on the im2col + GEMM paths; the general (slow) path, taken for kernel
    dilation, input dilation (a strided transposed convolution) and groups (2-D/3-D, or flipped as a transposed
    convolution is), raises "[Convolution::eval] got unsupported data type"."""
    if spec.dtype != "float64":
        return False
    dilated = any(d > 1 for d in spec.dilation)
    input_dilated = spec.transposed and any(s > 1 for s in spec.stride)
    grouped = spec.groups > 1 and (spec.dims > 1 or spec.transposed)
    return dilated or input_dilated or grouped


def _grouped_3d(spec: ConvSpec) -> bool:
    """MLX 0.32.4: "[conv] Can only handle groups != 1 in 1D or 2D convolutions"."""
    return spec.dims == 3 and spec.groups > 1


#: The valid problems MLX refuses, with what it says (checked in this order).
KNOWN_REFUSALS = {
    "Can only handle groups != 1 in 1D or 2D": _grouped_3d,
    "unsupported data type": _float64_general_path,
}


def _known_refusal(spec: ConvSpec) -> str | None:
    return next((message for message, applies in KNOWN_REFUSALS.items() if applies(spec)), None)


def _verdict(spec: ConvSpec, recipe: DataRecipe) -> tolerance.Verdict:
    return judge(adapter(), spec, recipe)["output"]


def _declared_cases() -> st.SearchStrategy:
    caps = adapter().capabilities()
    return conv_cases(
        dims=caps.dims,
        dtypes=caps.dtypes,
        padding_modes=caps.padding_modes,
        layouts=caps.layouts,
        padding_forms=caps.padding_forms,
        distributions=DISTRIBUTIONS,
        max_macs=20_000,
    )


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.deferred(_declared_cases))
def test_every_declared_case_conforms(case: tuple[ConvSpec, DataRecipe]) -> None:
    spec, recipe = case
    assert adapter().capabilities().unsupported(spec) is None, spec
    try:
        mlx_adapter.recipe(spec)
    except CannotExpress:
        event("cannot express")
        return
    refusal = _known_refusal(spec)
    if refusal is not None:
        # Excluded from the verdict, but it must still be a refusal, never an answer.
        with pytest.raises(Exception, match=refusal):
            adapter().forward(spec, *make_inputs(spec, recipe))
        event(f"known MLX refusal: {refusal}")
        return
    verdict = _verdict(spec, recipe)
    event(f"{verdict.status} ({verdict.tier} tier, {spec.dtype})")
    assert not verdict.failed, f"mlx conv({spec}) on {recipe}: {verdict.reason}"


# ------------------------------------------------------------ parameter mapping


def test_forward_asymmetric_padding_is_native() -> None:
    spec = ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 2)),
                    stride=(2, 1), dilation=(1, 2))  # fmt: skip
    r = mlx_adapter.recipe(spec)
    assert r["function"] == "conv_general" and r["pad"] is None
    assert r["kwargs"] == {"stride": [2, 1], "padding": ([1, 0], [0, 2]), "kernel_dilation": [1, 2], "groups": 2}


def test_same_and_valid_are_resolved_to_pairs() -> None:
    same = mlx_adapter.recipe(ConvSpec(1, 1, input_size=(6, 6), kernel_size=(4, 3), dilation=(1, 2), padding="same"))
    assert same["kwargs"]["padding"] == ([1, 2], [2, 2])
    valid = mlx_adapter.recipe(ConvSpec(1, 1, input_size=(6,), kernel_size=(4,), padding="valid"))
    assert valid["kwargs"]["padding"] == ([0], [0])


@pytest.mark.parametrize(("mode", "mx_mode"), [("reflect", "reflect"), ("replicate", "edge")])
def test_padding_modes_go_through_mx_pad(mode: str, mx_mode: str) -> None:
    spec = ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=((2, 1), (0, 1)), padding_mode=mode)
    r = mlx_adapter.recipe(spec)
    assert (r["pad"], r["pad_mode"]) == ([(2, 1), (0, 1)], mx_mode)
    assert r["kwargs"]["padding"] == ([0, 0], [0, 0])
    verdict = _verdict(spec, DataRecipe("integers", seed=2, scale=2))
    assert (verdict.tier, verdict.status) == ("exact", "passed"), verdict.reason


def test_transposed_symmetric_is_conv_transpose() -> None:
    spec = ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3), padding=1,
                    output_padding=(1, 2), transposed=True)  # fmt: skip
    r = mlx_adapter.recipe(spec)
    assert r["function"] == "conv_transpose2d"
    assert r["kwargs"] == {"stride": (2, 3), "padding": (1, 1), "dilation": (1, 1), "output_padding": (1, 2),
                           "groups": 2}  # fmt: skip
    one = mlx_adapter.recipe(ConvSpec(1, 1, input_size=(3,), kernel_size=(2,), stride=2, transposed=True))
    assert one["function"] == "conv_transpose1d" and one["kwargs"]["stride"] == 2


def test_transposed_asymmetric_is_conv_general_with_input_dilation() -> None:
    spec = ConvSpec(2, 3, input_size=(4,), kernel_size=(3,), stride=(2,), dilation=(2,), padding=((0, 3),),
                    output_padding=(1,), transposed=True)  # fmt: skip
    r = mlx_adapter.recipe(spec)
    assert r["function"] == "conv_general"
    assert r["kwargs"] == {"stride": [1], "padding": ([4], [2]), "kernel_dilation": [2], "input_dilation": [2],
                           "groups": 1, "flip": True}  # fmt: skip
    verdict = _verdict(spec, DataRecipe("integers", seed=5, scale=2))
    assert (verdict.tier, verdict.status) == ("exact", "passed"), verdict.reason


def test_symmetric_transposed_equals_its_conv_general_form_bit_for_bit() -> None:
    """The asymmetric route is the same primitive conv_transpose uses: on a symmetric problem they agree."""
    spec = ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 1), padding=1,
                    dilation=(1, 2), output_padding=(1, 0), transposed=True)  # fmt: skip
    x, w, b = make_inputs(spec, DataRecipe("real", seed=3))
    native = mlx_adapter.run_forward(mlx_adapter.recipe(spec), x, w, b)
    general = mlx_adapter._recipe(spec, "conv_general", {
        "stride": [1, 1], "padding": ([1, 1], [2, 1]), "kernel_dilation": [1, 2], "input_dilation": [2, 1],
        "groups": 2, "flip": True})  # fmt: skip
    assert np.array_equal(mlx_adapter.run_forward(general, x, w, b), native)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_layouts_hold_the_same_values(layout: str) -> None:
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    m = mlx_adapter.as_mlx(a, "float32", layout)
    assert m.shape == a.shape and np.array_equal(mlx_adapter.as_numpy(m), a)
    spec = ConvSpec(3, 4, input_size=(4, 5), kernel_size=(2, 3), padding=((1, 0), (0, 1)), layout=layout)
    verdict = _verdict(spec, DataRecipe("integers", seed=9, scale=2))
    assert (verdict.tier, verdict.status) == ("exact", "passed"), verdict.reason


# ------------------------------------------------------------ capabilities and refusals


def test_capabilities_say_why() -> None:
    caps = adapter().capabilities()
    base = ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1)
    assert "padding_mode 'circular'" in caps.unsupported(base.replace(padding_mode="circular"))
    assert "device cuda" in caps.unsupported(base.replace(device="cuda"))
    assert caps.unsupported(base) is None and caps.unsupported(base, "backward") is None
    assert set(caps.dtypes) == {"float64", "float32", "float16", "bfloat16"}
    notes = " ".join(caps.notes)
    for why in ("no circular mode", "rounds a biased forward", "computes in float32", "mx.vjp"):
        assert why in notes


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        (ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), padding=1, padding_mode="circular"), "no such mode"),
        (ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), device="cuda"), "CPU backend only"),
        (ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), dtype="float16"), "second time"),
        (ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), dtype="bfloat16", transposed=True), "second time"),
        (ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=2, padding="same"), "stride 1 only"),
        (ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="valid", transposed=True), "explicit padding"),
        (ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), output_padding=1), "no output_padding"),
        (
            ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=1, padding_mode="reflect", transposed=True),
            "zeros only",
        ),
        (ConvSpec(3, 4, input_size=(5,), kernel_size=(2,), groups=2, transposed=True), "cannot be formed"),
        (
            ConvSpec(
                1, 1, input_size=(2,), kernel_size=(2,), stride=2, padding=((1, 0),), output_padding=2, transposed=True
            ),
            "could not see",
        ),
    ],
    ids=lambda v: str(v) if isinstance(v, ConvSpec) else None,
)
def test_what_mlx_cannot_be_asked_is_refused(spec: ConvSpec, why: str) -> None:
    with pytest.raises(CannotExpress, match=why):
        adapter().forward(spec, *make_inputs(spec, DataRecipe()) if spec.is_valid() else _ones(spec))


def test_half_bias_is_refused_for_forward_only() -> None:
    """The gradients do not pass through the second rounding of y + b, so backward runs."""
    spec = ConvSpec(2, 3, input_size=(5,), kernel_size=(3,), dtype="float16")
    x, w, b = make_inputs(spec, DataRecipe("integers", seed=1))
    gy = np.ones(spec.output_shape)
    gx, gw, gb = adapter().backward(spec, x, w, b, gy)
    ref = oracle.backward(spec, x, w, gy)
    for got, want in zip((gx, gw, gb), ref):
        np.testing.assert_array_equal(got, want)


def _ones(spec: ConvSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    shape = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    return np.ones(shape[0]), np.ones(shape[1]), (np.ones(spec.bias_shape) if spec.bias else None)


def test_versions() -> None:
    assert adapter().versions() == {"mlx": mx.__version__}


# ------------------------------------------------------------ precision evidence


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("path", ["gemm", "general"])
def test_half_accumulates_in_float32_and_rounds_once(dtype: str, path: str) -> None:
    """big + sixteen 1s, where big is 2**(p) of the type: a half accumulator would stay at big."""
    big = 2048.0 if dtype == "float16" else 256.0
    dilation = 1 if path == "gemm" else 2
    spec = ConvSpec(1, 1, input_size=(1 + 16 * dilation,), kernel_size=(17,), dilation=dilation, bias=False,
                    dtype=dtype)  # fmt: skip
    x = np.zeros(spec.input_shape)
    x[0, 0, ::dilation] = [big] + [1.0] * 16
    got = adapter().forward(spec, x, np.ones(spec.weight_shape), None)
    assert got.ravel().tolist() == [big + 16]
    assert adapter().capabilities().precision_for(spec) == tolerance.Precision(None, "float32", dtype)


def test_float64_is_computed_in_float32() -> None:
    """What the float64 declaration says: (1 + 2**-30) + 1 comes back as 2."""
    spec = ConvSpec(1, 1, input_size=(2,), kernel_size=(2,), bias=False, dtype="float64")
    got = adapter().forward(spec, np.array([[[1 + 2.0**-30, 1.0]]]), np.ones((1, 1, 2)), None)
    assert got.ravel().tolist() == [2.0]
    assert adapter().capabilities().precision_for(spec) == tolerance.Precision("float32", "float32", "float64")


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), dilation=2, dtype="float64"),
        ConvSpec(1, 1, input_size=(3,), kernel_size=(2,), stride=2, transposed=True, dtype="float64"),
    ],
    ids=str,
)
def test_float64_general_path_is_still_refused(spec: ConvSpec) -> None:
    """When this fails, MLX runs float64 there: drop _float64_general_path."""
    assert _float64_general_path(spec)
    with pytest.raises(ValueError, match="unsupported data type"):
        mx.eval(mx.conv_general(mx.ones((1, 5, 1), dtype=mx.float64), mx.ones((1, 2, 1), dtype=mx.float64),
                                kernel_dilation=2))  # fmt: skip
    with pytest.raises(Exception, match="unsupported data type"):
        adapter().forward(spec, *make_inputs(spec, DataRecipe("integers", seed=1)))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_subnormals_are_kept(dtype: str) -> None:
    tiny = {"float16": float(np.finfo(np.float16).tiny)}.get(dtype, float(np.finfo(np.float32).tiny))
    spec = ConvSpec(1, 1, input_size=(1,), kernel_size=(1,), bias=False, dtype=dtype)
    assert adapter().forward(spec, np.full((1, 1, 1), tiny / 4), np.ones((1, 1, 1)), None).item() == tiny / 4
    assert adapter().forward(spec, np.full((1, 1, 1), tiny), np.full((1, 1, 1), 0.5), None).item() == tiny / 2
    assert not adapter().capabilities().precision_for(spec).flushes_subnormals


# ------------------------------------------------------------ backward


BACKWARD_SPECS = [
    ConvSpec(4, 6, input_size=(6, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 1)), stride=(2, 1)),
    ConvSpec(3, 2, input_size=(7,), kernel_size=(3,), padding=2, padding_mode="reflect", layout="channels_last"),
    ConvSpec(2, 4, input_size=(4, 3), kernel_size=(2, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
             transposed=True, layout="strided", bias=False),
]  # fmt: skip


@pytest.mark.parametrize("spec", BACKWARD_SPECS, ids=str)
def test_backward_is_exact_on_integers(spec: ConvSpec) -> None:
    x, w, b = make_inputs(spec, DataRecipe("integers", seed=4, scale=2))
    gy = np.random.default_rng(5).integers(-3, 4, spec.output_shape).astype(np.float64)
    got = adapter().backward(spec, x, w, b, gy)
    for name, g, want in zip(("grad_input", "grad_weight", "grad_bias"), got, oracle.backward(spec, x, w, gy)):
        if want is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, want, err_msg=name)


def test_asymmetric_transposed_grad_input_still_has_the_wrong_shape() -> None:
    """MLX 0.32.4 bug (baseline mlx-input-dilation-vjp-shape): the vjp of conv_general with input_dilation and
    unequal padding returns a grad_input of the wrong shape.  When this fails, MLX fixed it: drop the entry."""
    x, w = mx.ones((1, 2, 1)), mx.ones((1, 1, 1))
    _, (g,) = mx.vjp(lambda x: [mx.conv_general(x, w, padding=([0], [1]), input_dilation=2)], [x], [mx.ones((1, 4, 1))])
    assert g.shape == (1, 1, 1)  # (1, 2, 1) is due


# ------------------------------------------------------------ repro scripts


REPRO_SPECS = [
    ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 2)), stride=(2, 1)),
    ConvSpec(3, 2, input_size=(9,), kernel_size=(4,), padding="same", bias=False, dtype="bfloat16",
             layout="channels_last"),
    ConvSpec(2, 2, input_size=(4, 3, 5), kernel_size=(2, 1, 3), padding=1, padding_mode="replicate",
             layout="strided"),
    ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3), padding=((1, 0), (0, 1)),
             output_padding=(1, 2), transposed=True, dtype="float16", bias=False),
]  # fmt: skip


def _repro_namespace(spec: ConvSpec, operation: str) -> dict:
    source = adapter().repro_source(spec, operation)
    assert source is not None and spec.descriptor() in source
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy", "mlx"}, imported
    namespace: dict = {}
    exec(compile(source, f"<repro {spec}>", "exec"), namespace)
    return namespace


def _same_bits(got: np.ndarray, expected: np.ndarray) -> bool:
    return got.shape == expected.shape and np.array_equal(got.view(np.uint64), expected.view(np.uint64))


@pytest.mark.parametrize("spec", REPRO_SPECS, ids=str)
def test_repro_source_recomputes_forward_bit_for_bit(spec: ConvSpec) -> None:
    namespace = _repro_namespace(spec, "forward")
    x, w, b = make_inputs(spec, DataRecipe("real", seed=7, scale=3))
    assert _same_bits(namespace["candidate"](x, w, b), adapter().forward(spec, x, w, b))


@pytest.mark.parametrize("spec", REPRO_SPECS[::3], ids=str)
def test_repro_source_recomputes_backward_bit_for_bit(spec: ConvSpec) -> None:
    namespace = _repro_namespace(spec, "backward")
    x, w, b = make_inputs(spec, DataRecipe("real", seed=7, scale=3))
    gy = np.random.default_rng(1).integers(-3, 4, spec.output_shape).astype(np.float64)
    for got, expected in zip(namespace["candidate_backward"](x, w, b, gy), adapter().backward(spec, x, w, b, gy)):
        assert (got is None and expected is None) or _same_bits(got, expected)


def test_repro_script_runs_standalone(tmp_path) -> None:
    """The suite's repro script around this adapter's source runs in a fresh interpreter: a correct answer exits 0."""
    import subprocess
    import sys

    from conformance.repro import repro_script

    spec = REPRO_SPECS[0]
    x, w, b = make_inputs(spec, DataRecipe("integers", seed=3))
    ref, mag = oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b)
    req = tolerance.requirement(ref, mag, inputs=(x, w, b), reduction_length=reduction_lengths(spec)["forward"],
                                precision=adapter().capabilities().precision_for(spec), bias=True)  # fmt: skip
    script = tmp_path / "repro.py"
    script.write_text(repro_script(
        adapter_name="mlx", backend_source=adapter().repro_source(spec), spec_descriptor=spec.descriptor(),
        operation="forward", product="output", inputs={"x": x, "w": w, "b": b}, requirement=req,
        recipe="integers seed=3", reason="test",
    ))  # fmt: skip
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------ invalid problems and empty batches


INVALID = [
    ConvSpec(4, 6, input_size=(5,), kernel_size=(2,), groups=3),  # in_channels % groups
    ConvSpec(6, 4, input_size=(5,), kernel_size=(2,), groups=3),  # out_channels % groups
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(0,)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), dilation=(0,)),
    ConvSpec(1, 1, input_size=(3,), kernel_size=(5,)),  # kernel larger than the input
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="SAME"),
]


@pytest.mark.parametrize("spec", INVALID, ids=str)
def test_invalid_problem_raises(spec: ConvSpec) -> None:
    assert not spec.is_valid()
    with pytest.raises(Exception):  # noqa: B017  (any exception is a refusal: see adapters/base.py)
        adapter().forward(spec, *_ones(spec))


@pytest.mark.parametrize("transposed", [False, True])
def test_empty_batch_forward(transposed: bool) -> None:
    spec = ConvSpec(2, 3, input_size=(4, 3), kernel_size=(2, 2), batch=0, stride=(2, 1), transposed=transposed,
                    bias=False)  # fmt: skip
    got = adapter().forward(spec, *make_inputs(spec, DataRecipe()))
    assert got.shape == spec.output_shape == (0, 3, *spec.output_size)
