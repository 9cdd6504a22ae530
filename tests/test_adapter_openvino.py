"""The OpenVINO adapter: parameter mapping, declarations, refusals, repro scripts, and its declared cases conform.

Every drawn problem inside the declared capabilities (ordinary data: NaN and
infinities are the special-values chapter's business) must pass
:func:`conformance.tolerance.check` under the declared precision.  One class of
valid problems segfaults the CPU plugin (a kernel-1 axis with stride > 1,
dilation > 1 and padding; see ``conformance/baselines/openvino.json``): it is
left out of the property, and a test runs its reproducer in a child process to
say it still crashes, so the exclusion is dropped the day it is fixed.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install -e '.[openvino]')")

from adapters import openvino_adapter
from adapters.base import CannotExpress
from adapters.openvino_adapter import OpenVino, model_recipe
from conformance import tolerance
from conformance.data import DataRecipe, make_inputs
from conformance.spec import ConvSpec
from conformance.strategies import conv_cases
from tests.adapter_checks import judge

DISTRIBUTIONS = ("ones", "integers", "real", "cancellation")

# One adapter for the module, built on first use: its capabilities are probed by running OpenVINO.
adapter = functools.cache(OpenVino)


def _segfaults(spec: ConvSpec) -> bool:
    """The known crash: an axis with kernel 1, stride > 1, dilation > 1 and padding on it (forward)."""
    return not spec.transposed and any(
        k == 1 and s > 1 and d > 1 and (pb or pa)
        for k, s, d, (pb, pa) in zip(spec.kernel_size, spec.stride, spec.dilation, spec.pads)
    )


def _declared_cases() -> st.SearchStrategy:
    caps = adapter().capabilities()
    return conv_cases(
        dims=caps.dims,
        dtypes=caps.dtypes,
        padding_modes=caps.padding_modes,
        layouts=caps.layouts,
        padding_forms=caps.padding_forms,
        distributions=DISTRIBUTIONS,
        max_macs=5_000,
    )


def _verdict(spec: ConvSpec, recipe: DataRecipe) -> tolerance.Verdict:
    return judge(adapter(), spec, recipe)["output"]


# ---------------------------------------------------------- conformance


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.deferred(_declared_cases))
def test_every_declared_case_conforms(case: tuple[ConvSpec, DataRecipe]) -> None:
    spec, recipe = case
    caps = adapter().capabilities()
    assert caps.unsupported(spec) is None, spec
    if _segfaults(spec):
        event("known OpenVINO segfault: skipped")
        return
    if spec.batch == 0 and spec.padding_mode == "reflect":
        # Known: OpenVINO's reflect Pad refuses an empty batch (baselined); it must refuse, not answer.
        with pytest.raises(RuntimeError, match="PadMode::REFLECT"):
            adapter().forward(spec, *make_inputs(spec, recipe))
        return
    verdict = _verdict(spec, recipe)
    event(f"{verdict.status} ({verdict.tier} tier, {spec.dtype})")
    assert not verdict.failed, f"openvino.conv({spec}) on {recipe}: {verdict.reason}"


@pytest.mark.parametrize(
    "spec",
    [
        ConvSpec(1, 1, input_size=(6,), kernel_size=(2,), padding="same", bias=False),
        ConvSpec(2, 3, input_size=(5, 7), kernel_size=(4, 3), padding="same", dilation=(1, 2)),
        ConvSpec(2, 2, input_size=(3, 4, 5), kernel_size=(2, 1, 4), padding="same", groups=2, dtype="float16"),
        ConvSpec(3, 2, input_size=(9, 6), kernel_size=(4, 3), padding="same", padding_mode="reflect"),
    ],
    ids=str,
)
def test_same_puts_the_odd_pad_at_the_end(spec: ConvSpec) -> None:
    """same_upper (and the adapter's own resolution for reflect) puts the odd pad after, as PyTorch does."""
    assert any(before != after for before, after in spec.pads)
    verdict = _verdict(spec, DataRecipe("integers", seed=3, scale=2))
    assert (verdict.tier, verdict.status) == ("exact", "passed"), verdict.reason


# ------------------------------------------------------------ mapping


def test_grouped_and_transposed_ops_and_weight_shapes() -> None:
    plain = model_recipe(ConvSpec(4, 6, input_size=(5, 5), kernel_size=(3, 2)))
    assert (plain["op"], plain["w_shape"]) == ("convolution", [6, 4, 3, 2])
    grouped = model_recipe(ConvSpec(4, 6, input_size=(5, 5), kernel_size=(3, 2), groups=2))
    assert (grouped["op"], grouped["w_shape"]) == ("group_convolution", [2, 3, 2, 3, 2])
    tr = model_recipe(ConvSpec(4, 6, input_size=(5, 5), kernel_size=(3, 2), transposed=True, output_padding=(0, 0)))
    assert (tr["op"], tr["w_shape"]) == ("convolution_backprop_data", [4, 6, 3, 2])
    trg = model_recipe(ConvSpec(4, 6, input_size=(5, 5), kernel_size=(3, 2), groups=2, transposed=True))
    assert (trg["op"], trg["w_shape"]) == ("group_convolution_backprop_data", [2, 2, 3, 3, 2])
    assert plain["bias_shape"] == [1, 6, 1, 1]
    assert model_recipe(ConvSpec(4, 6, input_size=(5,), kernel_size=(3,), bias=False))["bias_shape"] is None


def test_padding_is_passed_natively() -> None:
    asym = model_recipe(ConvSpec(1, 1, input_size=(7, 6), kernel_size=(3, 2), padding=((1, 0), (0, 2))))
    assert asym["attributes"]["pads_begin"] == [1, 0] and asym["attributes"]["pads_end"] == [0, 2]
    assert asym["pad"] is None
    same = model_recipe(ConvSpec(1, 1, input_size=(7,), kernel_size=(4,), padding="same", dilation=2))
    assert same["attributes"]["auto_pad"] == "same_upper" and same["attributes"]["dilations"] == [2]
    assert model_recipe(ConvSpec(1, 1, input_size=(7,), kernel_size=(4,), padding="valid"))["attributes"][
        "auto_pad"] == "valid"  # fmt: skip
    tr = model_recipe(ConvSpec(2, 2, input_size=(4,), kernel_size=(3,), stride=2, padding=((2, 1),),
                               output_padding=1, transposed=True))  # fmt: skip
    assert tr["attributes"] == {"strides": [2], "pads_begin": [2], "pads_end": [1], "dilations": [1],
                                "output_padding": [1]}  # fmt: skip


@pytest.mark.parametrize(("mode", "ov_mode"), [("reflect", "reflect"), ("replicate", "edge")])
def test_reflect_and_replicate_are_openvinos_pad(mode: str, ov_mode: str) -> None:
    spec = ConvSpec(2, 3, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (0, 1)), padding_mode=mode)
    recipe = model_recipe(spec)
    assert recipe["pad"] == [ov_mode, [0, 0, 2, 0], [0, 0, 1, 1]]
    assert recipe["attributes"]["pads_begin"] == [0, 0] and recipe["attributes"]["pads_end"] == [0, 0]
    verdict = _verdict(spec, DataRecipe("integers", seed=5, scale=2))
    assert (verdict.tier, verdict.status) == ("exact", "passed"), verdict.reason


# ---------------------------------------------------------- declarations


def test_capabilities_say_why() -> None:
    caps = adapter().capabilities()
    base = ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1)
    assert "padding_mode 'circular'" in caps.unsupported(base.replace(padding_mode="circular"))
    assert "layout channels_last" in caps.unsupported(base.replace(layout="channels_last"))
    assert "layout strided" in caps.unsupported(base.replace(layout="strided"))
    assert "backward" in caps.unsupported(base, "backward")
    assert caps.unsupported(base) is None and caps.unsupported(base.replace(padding_mode="reflect")) is None
    notes = " ".join(caps.notes)
    for why in ("circular", "NC[D]HW", "autodiff", "INFERENCE_PRECISION_HINT", "Constants"):
        assert why in notes, why


def test_precision_declarations_match_what_was_measured() -> None:
    caps = adapter().capabilities()
    p = {d: caps.precision[(d, "cpu")] for d in caps.dtypes}
    assert set(caps.dtypes) == {"float32", "float16", "bfloat16", "float64"}
    assert (p["float32"].accumulation, p["float32"].output, p["float32"].flushes_subnormals) == (
        "float32", "float32", True)  # fmt: skip
    assert p["float16"] == tolerance.Precision(None, "float32", "float16")
    assert p["bfloat16"] == tolerance.Precision(None, "float32", "bfloat16", True)
    # No float64 kernels: declared as the float32 it runs in.
    assert p["float64"] == tolerance.Precision("float32", "float32", "float32", True)


def test_the_f32_hint_is_set_because_the_default_rounds_to_bfloat16() -> None:
    """[1 + 2**-10, 2**-12] summed by a 1x1 convolution: the adapter (f32 hint) keeps 2**-10, while a model
    compiled with the CPU plugin's defaults on a bf16-capable CPU loses it."""
    assert openvino_adapter.CONFIG == {"INFERENCE_PRECISION_HINT": "f32"}
    spec = ConvSpec(2, 1, input_size=(1,), kernel_size=(1,), bias=False)
    x = np.array([1 + 2.0**-10, 2.0**-12]).reshape(spec.input_shape)
    w = np.ones(spec.weight_shape)
    assert adapter().forward(spec, x, w, None).ravel().tolist() == [1 + 2.0**-10 + 2.0**-12]
    recipe = model_recipe(spec)
    default = openvino_adapter.compile_model(openvino_adapter.build_model(recipe, w, None), {})
    hint = default.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    got = openvino_adapter.run_model(default, recipe, x).ravel().tolist()
    assert got == ([1 + 2.0**-12] if hint == "bf16" else [1 + 2.0**-10 + 2.0**-12]), (hint, got)


@pytest.mark.parametrize(("dtype", "big", "want"), [("float16", 2048.0, 2064.0), ("bfloat16", 256.0, 272.0)])
def test_half_types_accumulate_in_float32_and_round_once(dtype: str, big: float, want: float) -> None:
    """big + sixteen 1s: a half-precision accumulator would stay at big."""
    spec = ConvSpec(17, 1, input_size=(1,), kernel_size=(1,), bias=False, dtype=dtype)
    x = np.array([big] + [1.0] * 16).reshape(spec.input_shape)
    assert adapter().forward(spec, x, np.ones(spec.weight_shape), None).ravel().tolist() == [want]


@pytest.mark.parametrize("transposed", [False, True])
def test_empty_batch(transposed: bool) -> None:
    spec = ConvSpec(2, 3, input_size=(4, 3), kernel_size=(2, 2), batch=0, stride=(2, 1), transposed=transposed)
    got = adapter().forward(spec, *make_inputs(spec, DataRecipe()))
    assert got.shape == spec.output_shape == (0, 3, *spec.output_size)


def test_versions() -> None:
    import openvino

    assert adapter().versions() == {"openvino": openvino.__version__.split("-")[0]}


# ---------------------------------------------------------- refusals

CANNOT_EXPRESS = [
    ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1, padding_mode="circular"),
    ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1, layout="channels_last"),
    ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1, layout="strided"),
    ConvSpec(2, 2, input_size=(5, 4), kernel_size=(3, 2), padding=1, device="cuda"),
    ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), padding="same", stride=2),
    ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), padding="same", transposed=True),
    ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), padding=1, padding_mode="reflect", transposed=True),
    ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), output_padding=1),  # forward: no such attribute
    ConvSpec(2, 2, input_size=(5,), kernel_size=(3,), stride=()),  # [] would read as "not given"
    ConvSpec(6, 5, input_size=(4,), kernel_size=(2,), groups=3, transposed=True, bias=False),
    ConvSpec(4, 5, input_size=(4,), kernel_size=(2,), groups=2),
]


@pytest.mark.parametrize("spec", CANNOT_EXPRESS, ids=str)
def test_what_the_api_cannot_say_is_refused_not_approximated(spec: ConvSpec) -> None:
    shapes = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    with pytest.raises(CannotExpress):
        adapter().forward(spec, np.ones(shapes[0]), np.ones(shapes[1]), np.ones(spec.bias_shape) if spec.bias else None)


INVALID = [
    ConvSpec(4, 6, input_size=(5,), kernel_size=(2,), groups=3),  # in_channels % groups
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), stride=(0,)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), dilation=(0,)),
    ConvSpec(1, 1, input_size=(5,), kernel_size=(2,), padding=((-1, 1),)),
    ConvSpec(1, 1, input_size=(3,), kernel_size=(5,)),  # kernel larger than the padded input
    ConvSpec(1, 1, input_size=(3,), kernel_size=(2,), padding=3, padding_mode="reflect"),
]


@pytest.mark.parametrize("spec", INVALID, ids=str)
def test_invalid_problem_raises(spec: ConvSpec) -> None:
    assert not spec.is_valid()
    shape = [tuple(max(v, 0) for v in s) for s in (spec.input_shape, spec.weight_shape)]
    b = np.ones(spec.bias_shape) if spec.bias else None
    with pytest.raises(Exception):  # noqa: B017  (any exception is a refusal: see adapters/base.py)
        adapter().forward(spec, np.ones(shape[0]), np.ones(shape[1]), b)


# ---------------------------------------------------------- caching and repro


def test_one_compile_per_spec_and_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    real = openvino_adapter.compile_model
    monkeypatch.setattr(openvino_adapter, "compile_model", lambda m, c: built.append(m) or real(m, c))
    fresh = OpenVino()
    spec = ConvSpec(3, 4, input_size=(6, 5), kernel_size=(3, 2), padding=((1, 0), (0, 1)))
    x, w, b = make_inputs(spec, DataRecipe("real", seed=1))
    for seed in range(3):
        x = make_inputs(spec, DataRecipe("real", seed=seed))[0]
        np.testing.assert_array_equal(fresh.forward(spec, x, w, b), fresh.forward(spec.replace(), x, w, b))
    assert len(built) == 1  # x is a Parameter: new data, same model
    fresh.forward(spec, x, w + 1, b)  # the weights are constants: new weights, new model
    assert len(built) == 2


REPRO_SPECS = [
    ConvSpec(4, 6, input_size=(7, 5), kernel_size=(3, 2), groups=2, padding=((1, 0), (0, 2)), stride=(2, 1)),
    ConvSpec(3, 2, input_size=(9,), kernel_size=(4,), padding="same", bias=False, dtype="float16"),
    ConvSpec(2, 2, input_size=(4, 3, 5), kernel_size=(2, 1, 3), padding="valid", dilation=(1, 1, 2),
             dtype="bfloat16"),
    ConvSpec(3, 2, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (0, 1)), padding_mode="reflect",
             dtype="float64"),
    ConvSpec(
        4, 6, input_size=(5, 4), kernel_size=(3, 2), groups=2, stride=(2, 3), padding=((1, 0), (0, 1)),
        output_padding=(1, 2), transposed=True,
    ),
]  # fmt: skip


@pytest.mark.parametrize("spec", REPRO_SPECS, ids=str)
def test_repro_source_recomputes_forward_bit_for_bit(spec: ConvSpec) -> None:
    source = adapter().repro_source(spec)
    assert source is not None and spec.descriptor() in source
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "numpy", "openvino"}, imported
    namespace: dict = {}
    exec(compile(source, f"<repro {spec}>", "exec"), namespace)
    x, w, b = make_inputs(spec, DataRecipe("real", seed=7, scale=3))
    expected = adapter().forward(spec, x, w, b)
    got = namespace["candidate"](x, w, b)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64)), "repro differs from the adapter"


def test_no_repro_for_backward() -> None:
    assert adapter().repro_source(REPRO_SPECS[0], "backward") is None


# ---------------------------------------------------------- the known crash

SEGFAULT = """
import numpy as np, openvino as ov, openvino.opset15 as ops
x = ops.parameter([1, 1, 1, 1], ov.Type.f32)
w = ops.constant(np.ones((1, 1, 1, 1), np.float32))
y = ops.add(ops.convolution(x, w, [1, 2], [1, 1], [1, 1], [1, 2]), ops.constant(np.ones((1, 1, 1, 1), np.float32)))
ov.Core().compile_model(ov.Model([y], [x]), "CPU")({0: np.ones((1, 1, 1, 1), np.float32)})
"""


def test_known_segfault_still_crashes() -> None:
    """When this fails, OpenVINO runs the class: drop _segfaults from the property above and the baseline entry."""
    spec = ConvSpec(1, 1, input_size=(1, 1), kernel_size=(1, 1), stride=(1, 2), dilation=(1, 2), padding=1)
    assert spec.is_valid() and _segfaults(spec)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SEGFAULT)], capture_output=True, timeout=120)
    assert done.returncode != 0, "the reproducer ran: OpenVINO no longer crashes on it"
