"""The PaddlePaddle adapter: parameter mapping, declarations, refusals, repro scripts, and a bounded
property that every declared case conforms (forward and backward) under the declared precision.

Problems Paddle 3.3.1 gets wrong are excluded from the property, exactly those classes, and each is
pinned by a test that says it is still wrong (so the exclusion is dropped the day Paddle fixes it).
"""

from __future__ import annotations

import ast
import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("paddle", reason="PaddlePaddle is not installed: pip install 'conv-conformance[paddle]'")

from adapters import paddle_adapter
from adapters.base import CannotExpress
from adapters.paddle_adapter import Paddle, make_plan
from conformance import oracle, tolerance
from conformance.data import DataRecipe, make_grad_output, make_inputs, reduction_lengths
from conformance.spec import ConvSpec
from conformance.strategies import conv_cases
from tests.adapter_checks import judge

DISTRIBUTIONS = ("ones", "integers", "real", "cancellation")

# One adapter for the module, built on first use: its capabilities are probed by running Paddle.
adapter = functools.cache(Paddle)


# ----------------------------------------------------------- parameter mapping


def test_zeros_padding_is_native_symmetric_as_ints_asymmetric_per_side() -> None:
    sym = make_plan(ConvSpec(2, 3, input_size=(5, 4), kernel_size=(3, 2), padding=1, stride=(2, 1), dilation=(1, 2)))
    assert sym["function"] == "conv2d" and sym["pad"] is None
    assert sym["kwargs"] == {"padding": [1, 1], "stride": [2, 1], "dilation": [1, 2], "groups": 1,
                             "data_format": "NCHW"}  # fmt: skip
    asym = make_plan(ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=((1, 0), (0, 2)), groups=2))
    assert asym["kwargs"]["padding"] == [[0, 0], [0, 0], [1, 0], [0, 2]] and asym["kwargs"]["groups"] == 2
    cl = make_plan(ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=((1, 0), (0, 2)),
                            layout="channels_last"))  # fmt: skip
    assert cl["kwargs"]["padding"] == [[0, 0], [1, 0], [0, 2], [0, 0]] and cl["kwargs"]["data_format"] == "NHWC"


@pytest.mark.parametrize(("dims", "formats"), [(1, ("NCL", "NLC")), (2, ("NCHW", "NHWC")), (3, ("NCDHW", "NDHWC"))])
def test_data_format_per_dims(dims: int, formats: tuple[str, str]) -> None:
    spec = ConvSpec(1, 1, input_size=(4,) * dims, kernel_size=(2,) * dims)
    assert make_plan(spec)["kwargs"]["data_format"] == formats[0]
    assert make_plan(spec.replace(layout="channels_last"))["kwargs"]["data_format"] == formats[1]
    assert make_plan(spec.replace(transposed=True))["function"] == f"conv{dims}d_transpose"


def test_padding_strings_go_to_paddle() -> None:
    assert make_plan(ConvSpec(1, 1, input_size=(6,), kernel_size=(2,), padding="same"))["kwargs"]["padding"] == "SAME"
    valid = make_plan(ConvSpec(1, 1, input_size=(6,), kernel_size=(2,), padding="valid", padding_mode="reflect"))
    assert valid["kwargs"]["padding"] == "VALID" and valid["pad"] is None


def test_padding_modes_compose_paddles_own_pad() -> None:
    plan = make_plan(ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (1, 0)),
                              padding_mode="reflect"))  # fmt: skip
    assert (plan["pad"], plan["pad_mode"], plan["kwargs"]["padding"]) == ([1, 0, 2, 1], "reflect", [0, 0])
    # 'same' in a mode is resolved by the adapter: dilated extent 2*(2-1) = 2 -> (1, 1); 3-1 = 2 -> (1, 1).
    same = make_plan(ConvSpec(1, 1, input_size=(6, 5), kernel_size=(3, 2), dilation=(1, 2), padding="same",
                              padding_mode="circular"))  # fmt: skip
    assert (same["pad"], same["pad_mode"]) == ([1, 1, 1, 1], "circular")


def test_transposed_takes_asymmetric_crops_and_output_padding_natively() -> None:
    spec = ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3),
                    padding=((1, 0), (0, 1)), output_padding=(1, 2), transposed=True)  # fmt: skip
    plan = make_plan(spec)
    assert plan["function"] == "conv2d_transpose" and plan["pad"] is None
    assert plan["kwargs"] == {
        "stride": [2, 3], "padding": [[0, 0], [0, 0], [1, 0], [0, 1]], "output_padding": [1, 2], "groups": 2,
        "dilation": [1, 1], "data_format": "NCHW",
    }  # fmt: skip


# -------------------------------------------------------------- declarations


def test_capabilities() -> None:
    caps = adapter().capabilities()
    assert caps.dims == (1, 2, 3) and caps.backward and caps.transposed and caps.empty_batch
    assert set(caps.layouts) == {"contiguous", "channels_last", "strided"}
    assert set(caps.padding_modes) == {"zeros", "reflect", "replicate", "circular"}
    # paddlepaddle 3.3.1's CPU build registers conv kernels for float64 and float32 only.
    assert caps.dtypes == ("float64", "float32")
    for dtype in ("float16", "bfloat16"):
        assert any(note.startswith(f"{dtype} does not run") for note in caps.notes)
        assert f"dtype {dtype}" in caps.unsupported(ConvSpec(1, 1, input_size=(3,), kernel_size=(2,), dtype=dtype))
    for dtype in caps.dtypes:
        assert caps.precision[(dtype, "cpu")] == tolerance.Precision(None, dtype, dtype)
    notes = " ".join(caps.notes)
    for why in ("FLAGS_use_mkldnn=False", "F.pad", "data_format", "paddle.grad"):
        assert why in notes


def test_default_flags_are_reported() -> None:
    import paddle

    assert adapter().versions() == {"paddle": paddle.__version__, "use_mkldnn": "False"}


def test_float32_keeps_subnormals() -> None:
    """A subnormal input times 1 comes back unchanged: no flush-to-zero / denormals-are-zero."""
    spec = ConvSpec(3, 1, input_size=(1,), kernel_size=(1,), bias=False)
    tiny = float(np.finfo(np.float32).tiny)
    got = adapter().forward(spec, np.array([tiny / 4, 0.0, 0.0]).reshape(1, 3, 1), np.ones((1, 3, 1)), None)
    assert got.ravel().tolist() == [tiny / 4]


# ------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="SAME"),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="Valid"),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="full", padding_mode="reflect"),
        ConvSpec(1, 1, input_size=(6,), kernel_size=(2,), padding="same", stride=(2,)),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="same", transposed=True),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=1, padding_mode="reflect", transposed=True),
        ConvSpec(4, 6, input_size=(5,), kernel_size=(2,), groups=4, transposed=True),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), batch=-1),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), device="cuda"),
        ConvSpec(1, 1, input_size=(0,), kernel_size=(1,), padding=1, padding_mode="replicate"),
        # An unknown mode must not be dropped where there is nothing to pad (Paddle's conv has no mode).
        ConvSpec(1, 1, input_size=(1,), kernel_size=(1,), padding_mode="constant"),
        # A forward convolution has no output_padding, not even an all-zero one of the wrong rank.
        ConvSpec(1, 2, input_size=(4, 2), kernel_size=(4, 2), output_padding=(0, 0, 0)),
    ],
    ids=str,
)
def test_what_the_api_cannot_take_is_refused_not_approximated(spec: ConvSpec) -> None:
    shape = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    with pytest.raises(CannotExpress):
        adapter().forward(spec, np.ones(shape[0]), np.ones(shape[1]), np.ones(spec.out_channels))


INVALID = [
    ConvSpec(4, 6, input_size=(5,), kernel_size=(2,), groups=3),  # in_channels % groups
    ConvSpec(6, 4, input_size=(5,), kernel_size=(2,), groups=3),  # out_channels % groups
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(0,)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), dilation=(0,)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=((-1, 1),)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="full"),  # passed on: Paddle rejects it
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=""),
    ConvSpec(1, 1, input_size=(3,), kernel_size=(5,)),  # kernel larger than the padded input
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(2,), output_padding=(1,)),  # forward: CannotExpress
    ConvSpec(1, 1, input_size=(2,), kernel_size=(2,), stride=(2,), output_padding=(2,), transposed=True),
]


@pytest.mark.parametrize("spec", INVALID, ids=str)
def test_invalid_problem_raises(spec: ConvSpec) -> None:
    assert not spec.is_valid()
    shape = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    b = np.ones(spec.bias_shape) if spec.bias else None
    with pytest.raises(Exception):  # noqa: B017  (any exception is a refusal: see adapters/base.py)
        adapter().forward(spec, np.ones(shape[0]), np.ones(shape[1]), b)


# ------------------------------------------------------------ repro


REPRO_SPECS = [
    ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 2)), stride=(2, 1)),
    ConvSpec(3, 2, input_size=(9,), kernel_size=(4,), padding="same", bias=False, layout="channels_last"),
    ConvSpec(2, 2, input_size=(4, 3, 5), kernel_size=(2, 1, 3), padding=((1, 1), (0, 0), (2, 0)),
             padding_mode="circular", layout="strided", dtype="float64"),
    ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3), padding=((1, 0), (0, 1)),
             output_padding=(1, 2), transposed=True, layout="channels_last"),
]  # fmt: skip


@pytest.mark.parametrize("spec", REPRO_SPECS, ids=str)
def test_repro_source_recomputes_forward_and_backward_bit_for_bit(spec: ConvSpec) -> None:
    source = adapter().repro_source(spec, "backward")
    assert source is not None and spec.descriptor() in source
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy", "paddle", "os", "warnings"}, imported
    namespace: dict = {}
    exec(compile(source, f"<repro {spec}>", "exec"), namespace)
    recipe = DataRecipe("real", seed=7, scale=3)
    x, w, b = make_inputs(spec, recipe)
    expected, got = adapter().forward(spec, x, w, b), namespace["candidate"](x, w, b)
    assert got.shape == expected.shape and np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    gy = make_grad_output(spec, recipe)
    for mine, theirs in zip(adapter().backward(spec, x, w, b, gy), namespace["candidate_backward"](x, w, b, gy)):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert np.array_equal(mine.view(np.uint64), theirs.view(np.uint64)), "repro differs from the adapter"


def test_repro_script_runs_standalone(tmp_path) -> None:
    """The whole script as the suite writes it (numpy and paddle only): exits 0 where Paddle is right."""
    import subprocess
    import sys

    from conformance.repro import repro_script
    from conformance.requirement import requirement

    spec = REPRO_SPECS[3]
    recipe = DataRecipe("integers", seed=2)
    x, w, b = make_inputs(spec, recipe)
    gy = make_grad_output(spec, recipe)
    need = requirement(
        oracle.backward(spec, x, w, gy)[1], oracle.backward_magnitude(spec, x, w, gy)[1], inputs=(x, gy),
        reduction_length=reduction_lengths(spec)["grad_weight"], precision=adapter().capabilities().precision_for(spec),
    )  # fmt: skip
    script = tmp_path / "repro.py"
    script.write_text(repro_script(
        adapter_name="paddle", backend_source=adapter().repro_source(spec, "backward"),
        spec_descriptor=spec.descriptor(), operation="backward", product="grad_weight",
        inputs={"x": x, "w": w, "b": b, "grad_out": gy}, requirement=need, recipe=recipe.describe(), reason="test",
    ))  # fmt: skip
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "PASS grad_weight" in done.stdout, done.stdout + done.stderr


# ------------------------------------------------- known Paddle discrepancies


def _same_with_dilation(spec: ConvSpec) -> bool:
    """Paddle's 'SAME' resets the dilation to 1 (phi UpdatePaddingAndDilation): the answer is the dense
    kernel's.  Pinned by test_same_ignores_dilation."""
    return not spec.transposed and spec.padding == "same" and spec.padding_mode == "zeros" and max(spec.dilation) > 1


def _output_padding_from_dilation(spec: ConvSpec) -> bool:
    """Paddle refuses output_padding >= stride (allowed while < dilation)."""
    return spec.transposed and any(op >= s for op, s in zip(spec.output_padding, spec.stride))


def test_same_ignores_dilation() -> None:
    """When this fails, Paddle honours the dilation in 'SAME': drop _same_with_dilation."""
    import paddle
    import paddle.nn.functional as F

    x = paddle.to_tensor(np.arange(1.0, 6.0).reshape(1, 1, 5))
    w = paddle.to_tensor(np.array([[[1.0, 10.0]]]))
    # PyTorch and the oracle: pads (1, 1), taps 2 apart -> [20, 31, 42, 53, 4].
    assert F.conv1d(x, w, padding="same", dilation=2).numpy().ravel().tolist() == [21, 32, 43, 54, 5]


def test_output_padding_from_dilation_is_refused() -> None:
    """When this fails, Paddle runs output_padding >= stride: drop _output_padding_from_dilation."""
    spec = ConvSpec(1, 1, input_size=(1,), kernel_size=(2,), dilation=(2,), output_padding=(1,), transposed=True)
    assert spec.is_valid()
    with pytest.raises(Exception):  # noqa: B017
        adapter().forward(spec, *make_inputs(spec, DataRecipe("integers", seed=1)))


# ----------------------------------------------------------- conformance


def _declared_cases() -> st.SearchStrategy:
    caps = adapter().capabilities()
    return st.tuples(
        conv_cases(dims=caps.dims, dtypes=caps.dtypes, padding_modes=caps.padding_modes, layouts=caps.layouts,
                   padding_forms=caps.padding_forms, distributions=DISTRIBUTIONS, max_macs=4_000),
        st.sampled_from(("forward", "backward")),
    )  # fmt: skip


def _check(spec: ConvSpec, recipe: DataRecipe, operation: str) -> list[tolerance.Verdict]:
    return list(judge(adapter(), spec, recipe, operation).values())


@settings(max_examples=80, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.deferred(_declared_cases))
def test_every_declared_case_conforms(case) -> None:
    (spec, recipe), operation = case
    assert adapter().capabilities().unsupported(spec, operation) is None, spec
    if _same_with_dilation(spec) or _output_padding_from_dilation(spec):
        event("known Paddle discrepancy")
        return
    for verdict in _check(spec, recipe, operation):
        event(f"{operation} {verdict.status} ({verdict.tier} tier, {spec.dtype})")
        assert not verdict.failed, f"paddle {operation} {spec} on {recipe}: {verdict.reason}"


def test_module_is_the_registered_adapter() -> None:
    from adapters.registry import BUILTINS

    assert BUILTINS["paddle"] == "adapters.paddle_adapter:Paddle" and paddle_adapter.Paddle.name == "paddle"
