"""The tinygrad adapter: parameter mapping, capabilities, refusals, precision, caching, repro scripts.

Hermetic: tinygrad's on-disk cache of compiled kernels (``CACHEDB``, by default
``~/.cache/tinygrad/cache.db``) is switched off for this module
(``Context(CACHELEVEL=0)``), so nothing is read from or written to it; tinygrad
keeps its compiled programs in memory only.
"""

from __future__ import annotations

import ast
import functools
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("tinygrad", reason="tinygrad is not installed: pip install 'conv-conformance[tinygrad]'")
if shutil.which("clang") is None:
    pytest.skip("tinygrad's CPU device compiles with clang, which is not installed", allow_module_level=True)

from tinygrad.helpers import Context

from adapters import tinygrad_adapter
from adapters.base import CannotExpress
from adapters.tinygrad_adapter import Tinygrad, conv_recipe, flat_pads
from conformance import oracle, tolerance
from conformance.data import DataRecipe, make_inputs
from conformance.spec import ConvSpec
from conformance.strategies import conv_cases
from tests.adapter_checks import judge

#: Every distribution but "special": NaN/Inf propagation is the special-values chapter's business.
DISTRIBUTIONS = ("ones", "integers", "real", "cancellation")

adapter = functools.cache(Tinygrad)


@pytest.fixture(autouse=True, scope="module")
def _no_disk_cache():
    with Context(CACHELEVEL=0):
        yield


# ------------------------------------------------------------ the mapping


def test_flat_pads_are_last_axis_first() -> None:
    assert flat_pads(((1, 2), (3, 4), (5, 6))) == [5, 6, 3, 4, 1, 2]


def test_asymmetric_padding_is_native_and_reversed() -> None:
    spec = ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, stride=(2, 1), dilation=(1, 2),
                    padding=((1, 0), (0, 2)))  # fmt: skip
    recipe = conv_recipe(spec)
    assert recipe["op"] == "conv2d" and recipe["pad"] is None
    assert recipe["kwargs"] == {"groups": 2, "stride": [2, 1], "dilation": [1, 2], "padding": [0, 2, 1, 0]}


def test_transposed_takes_crops_and_output_padding_natively() -> None:
    spec = ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3),
                    padding=((1, 0), (0, 1)), output_padding=(1, 2), transposed=True)  # fmt: skip
    recipe = conv_recipe(spec)
    assert recipe["op"] == "conv_transpose2d"
    assert recipe["kwargs"] == {"groups": 2, "stride": [2, 3], "dilation": [1, 1], "padding": [0, 1, 1, 0],
                                "output_padding": [1, 2]}  # fmt: skip


def test_same_goes_to_nn_conv2d_and_modes_to_tensor_pad() -> None:
    same = conv_recipe(ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding="same"))
    assert same["op"] == "nn.Conv2d" and same["module"]["padding"] == "same" and same["module"]["stride"] == 1
    valid = conv_recipe(ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding="valid"))
    assert valid["kwargs"]["padding"] == [0, 0, 0, 0]
    reflect = conv_recipe(ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (0, 1)),
                                   padding_mode="reflect"))  # fmt: skip
    assert (reflect["pad"], reflect["pad_mode"], reflect["kwargs"]["padding"]) == ([0, 1, 2, 1], "reflect", 0)
    same_circular = conv_recipe(ConvSpec(1, 1, input_size=(6,), kernel_size=(4,), padding="same",
                                         padding_mode="circular"))  # fmt: skip
    assert (same_circular["pad"], same_circular["pad_mode"]) == ([1, 2], "circular")


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), device="cuda"),
        ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), dtype="int8"),
        ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), layout="nhwc"),
        ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding_mode="symmetric"),
        ConvSpec(2, 2, input_size=(4,), kernel_size=(2,), padding=1, padding_mode="reflect", transposed=True),
        ConvSpec(2, 2, input_size=(4,), kernel_size=(2,), padding="same", transposed=True),
        ConvSpec(2, 3, input_size=(4,), kernel_size=(2,), groups=2, transposed=True),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(2,), output_padding=(1,)),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(2,), padding="same", padding_mode="reflect"),
        ConvSpec(2, 2, input_size=(4,), kernel_size=(2,), groups=0),
    ],
    ids=str,
)
def test_what_the_api_cannot_carry_is_refused_not_emulated(spec: ConvSpec) -> None:
    with pytest.raises(CannotExpress):
        conv_recipe(spec)


# ------------------------------------------------------------ declarations


def test_capabilities() -> None:
    caps = adapter().capabilities()
    assert caps.dims == (1, 2, 3) and caps.backward and caps.transposed
    assert {"float64", "float32", "float16"} <= set(caps.dtypes)
    if "bfloat16" not in caps.dtypes:  # clang < 17 cannot compile tinygrad's __bf16 kernels on x86
        assert any(note.startswith("bfloat16 does not run") for note in caps.notes)
    assert caps.precision[("float16", "cpu")] == tolerance.Precision(None, "float32", "float16")
    assert caps.unsupported(ConvSpec(2, 2, input_size=(5,), kernel_size=(2,), padding="same", layout="strided")) is None
    notes = " ".join(caps.notes)
    for what in ("device='CPU'", "Tensor.pad(mode=...)", "nn.Conv2d(padding=...)", "TinyJit"):
        assert what in notes


def test_versions() -> None:
    from importlib.metadata import version

    assert adapter().versions() == {"tinygrad": version("tinygrad")}


# ---------------------------------------------------------- conformance


def _verdict(spec: ConvSpec, recipe: DataRecipe) -> tolerance.Verdict:
    return judge(adapter(), spec, recipe)["output"]


def _known_discrepancy(spec: ConvSpec) -> str | None:
    """The classes the baseline (conformance/baselines/tinygrad.json) explains, excluded from the property."""
    if spec.padding == "same" and spec.padding_mode == "zeros" and len(set(zip(spec.kernel_size, spec.dilation))) > 1:
        return "nn.Conv2d 'same' pairs the reversed kernel with the unreversed dilation"
    if spec.dtype == "float16" and spec.bias:
        return "float16: the bias is added to the sum already rounded to float16"
    return None


def _declared_cases() -> st.SearchStrategy:
    caps = adapter().capabilities()
    return conv_cases(
        dims=caps.dims, dtypes=caps.dtypes, padding_modes=caps.padding_modes, layouts=caps.layouts,
        padding_forms=caps.padding_forms, distributions=DISTRIBUTIONS, max_macs=4_000,
    )  # fmt: skip


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.deferred(_declared_cases))
def test_every_declared_case_conforms(case: tuple[ConvSpec, DataRecipe]) -> None:
    spec, recipe = case
    assert adapter().capabilities().unsupported(spec) is None, spec
    known = _known_discrepancy(spec)
    verdict = _verdict(spec, recipe)
    event(f"{verdict.status} ({verdict.tier} tier, {spec.dtype})")
    if known is None:
        assert not verdict.failed, f"tinygrad conv({spec}) on {recipe}: {verdict.reason}"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("transposed", [False, True])
def test_backward_is_exact_on_integers(layout: str, transposed: bool) -> None:
    spec = ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 1), dilation=(1, 2),
                    padding=((1, 0), (2, 1)), transposed=transposed, layout=layout,
                    output_padding=(1, 0) if transposed else 0)  # fmt: skip
    x, w, b = make_inputs(spec, DataRecipe("integers", seed=5))
    gy = np.arange(np.prod(spec.output_shape), dtype=np.float64).reshape(spec.output_shape) % 5 - 2
    got = adapter().backward(spec, x, w, b, gy)
    for g, ref in zip(got, (*oracle.backward(spec, x, w, gy)[:2], gy.sum(axis=(0, *range(2, gy.ndim))))):
        np.testing.assert_array_equal(g, ref)


# ------------------------------------------------------------ precision


def test_float16_accumulates_in_float32() -> None:
    """2048 + sixteen 1s: a float16 accumulator stays at 2048; float32 accumulation gives 2064."""
    spec = ConvSpec(17, 1, input_size=(1,), kernel_size=(1,), bias=False, dtype="float16")
    x = np.array([2048.0] + [1.0] * 16).reshape(spec.input_shape)
    assert adapter().forward(spec, x, np.ones(spec.weight_shape), None).ravel().tolist() == [2064.0]


def test_float16_bias_is_added_after_rounding() -> None:
    """The known double rounding (baseline tinygrad-float16-bias-double-rounding): 2049 rounds to 2048 in float16
    before the bias -2048 is added, so the output is 0, where one rounding of 2049 - 2048 gives 1."""
    spec = ConvSpec(2, 1, input_size=(1,), kernel_size=(1,), dtype="float16")
    x = np.array([2048.0, 1.0]).reshape(spec.input_shape)
    got = adapter().forward(spec, x, np.ones(spec.weight_shape), np.array([-2048.0]))
    assert got.ravel().tolist() == [0.0]


# ---------------------------------------------------------- caching and repro


def test_one_jit_per_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    import tinygrad

    made = []
    real = tinygrad.TinyJit
    monkeypatch.setattr(tinygrad, "TinyJit", lambda f: made.append(f) or real(f))
    fresh = Tinygrad()
    spec = ConvSpec(3, 4, input_size=(6, 5), kernel_size=(3, 2), padding=((1, 0), (0, 1)))
    answers = []
    for seed in range(4):  # the JIT runs the function, captures on the second call and replays from the third
        x, w, b = make_inputs(spec, DataRecipe("real", seed=seed))
        answers.append(fresh.forward(spec, x, w, b))
        np.testing.assert_array_equal(answers[-1], Tinygrad(jit_cache_size=0).forward(spec, x, w, b))
    assert len(made) == 1
    fresh.backward(spec, x, w, b, np.ones(spec.output_shape))
    assert len(made) == 2


@pytest.mark.parametrize("transposed", [False, True])
def test_empty_batch_bypasses_the_jit(transposed: bool) -> None:
    spec = ConvSpec(2, 3, input_size=(4, 3), kernel_size=(2, 2), batch=0, stride=(2, 1), transposed=transposed)
    got = adapter().forward(spec, *make_inputs(spec, DataRecipe()))
    assert got.shape == spec.output_shape == (0, 3, *spec.output_size)


REPRO_SPECS = [
    ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 2)), stride=(2, 1)),
    ConvSpec(3, 2, input_size=(9,), kernel_size=(4,), padding="same", bias=False, dtype="float16", layout="strided"),
    ConvSpec(2, 2, input_size=(4, 3, 5), kernel_size=(2, 1, 3), padding="valid", dilation=(1, 1, 2),
             layout="channels_last", dtype="float64"),
    ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (0, 1)), padding_mode="reflect"),
    ConvSpec(4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3), padding=((1, 0), (0, 1)),
             output_padding=(1, 2), transposed=True, dtype="float16"),
]  # fmt: skip


@pytest.mark.parametrize("spec", REPRO_SPECS, ids=str)
def test_repro_source_recomputes_forward_and_backward_bit_for_bit(spec: ConvSpec) -> None:
    source = adapter().repro_source(spec, "backward")
    assert source is not None and spec.descriptor() in source
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy", "tinygrad"}, imported
    namespace: dict = {}
    exec(compile(source, f"<repro {spec}>", "exec"), namespace)
    x, w, b = make_inputs(spec, DataRecipe("real", seed=7, scale=3))
    gy = make_inputs(spec, DataRecipe("real", seed=8))[0].ravel()[: int(np.prod(spec.output_shape))]
    gy = np.resize(gy, spec.output_shape)
    for got, expected in [
        ((namespace["candidate"](x, w, b),), (adapter().forward(spec, x, w, b),)),
        (namespace["candidate_backward"](x, w, b, gy), adapter().backward(spec, x, w, b, gy)),
    ]:
        for g, e in zip(got, expected):
            assert (g is None) == (e is None)
            if e is not None:
                assert g.shape == e.shape and np.array_equal(g.view(np.uint64), e.view(np.uint64))


def test_forward_repro_has_no_backward() -> None:
    assert "candidate_backward" not in adapter().repro_source(REPRO_SPECS[0])


# ---------------------------------------------------------- invalid problems


INVALID = [
    ConvSpec(4, 6, input_size=(5,), kernel_size=(2,), groups=3),  # in_channels % groups
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(0,)),
    ConvSpec(1, 1, input_size=(3,), kernel_size=(5,)),  # kernel larger than the padded input
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(2,), padding="same"),
]


@pytest.mark.parametrize("spec", INVALID, ids=str)
def test_invalid_problem_raises(spec: ConvSpec) -> None:
    assert not spec.is_valid()
    shape = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    b = np.ones(spec.bias_shape) if spec.bias else None
    with pytest.raises(Exception):  # noqa: B017  (any exception is a refusal: see adapters/base.py)
        adapter().forward(spec, np.ones(shape[0]), np.ones(shape[1]), b)


# The baselined discrepancies (conformance/baselines/tinygrad.json), pinned through the adapter: when one of
# these fails, tinygrad has changed, and its baseline entry (and _known_discrepancy above) should go.


def test_known_same_with_per_axis_dilation_has_the_wrong_shape() -> None:
    spec = ConvSpec(1, 1, input_size=(6, 5), kernel_size=(3, 2), padding="same", dilation=(1, 2), bias=False)
    assert adapter().forward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape), None).shape == (1, 1, 8, 4)


def test_known_reflect_padding_refuses_an_empty_batch() -> None:
    spec = ConvSpec(2, 2, input_size=(4,), kernel_size=(2,), padding=1, padding_mode="reflect", batch=0)
    with pytest.raises(ValueError, match="should be less than the input size=0 for dim=0"):
        adapter().forward(spec, *make_inputs(spec, DataRecipe()))


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding="SAME"),  # nn.Conv2d lower-cases the string
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), dilation=(0,)),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=((-1, 1),)),
        ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(2,), output_padding=(2,), transposed=True),
    ],
    ids=str,
)
def test_known_invalid_problems_answered(spec: ConvSpec) -> None:
    assert not spec.is_valid()
    adapter().forward(spec, np.ones(spec.input_shape), np.ones(spec.weight_shape), np.ones(spec.bias_shape))


def test_module_is_importable_without_running_anything() -> None:
    assert tinygrad_adapter.Tinygrad.name == "tinygrad"
