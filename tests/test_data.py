"""The data module: recipes, ranges that fit the dtype, special values, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from conformance import oracle
from conformance.data import (
    DISTRIBUTIONS,
    TIERS,
    DataRecipe,
    make_grad_output,
    make_inputs,
    reduction_lengths,
)
from conformance.formats import FORMATS, is_representable
from conformance.spec import ConvSpec, parse_descriptor
from conformance.strategies import conv_cases, conv_specs

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _tensors(spec: ConvSpec, recipe: DataRecipe) -> dict[str, np.ndarray]:
    x, w, b = make_inputs(spec, recipe)
    out = {"x": x, "w": w, "grad_output": make_grad_output(spec, recipe)}
    if b is not None:
        out["b"] = b
    return out


def _peak(a: np.ndarray | None) -> float:
    return float(np.max(np.abs(a))) if a is not None and a.size else 0.0


# ------------------------------------------------------------------ recipes


def test_recipe_round_trips_through_json():
    recipe = DataRecipe("cancellation", sparsity=0.5, seed=17, scale=3)
    assert DataRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert recipe.describe() == "cancellation scale=3 sparsity=0.5 seed=17"
    assert DataRecipe().describe() == "ones seed=0"
    assert recipe.tier == "real"


def test_every_distribution_has_a_tier_in_simplest_first_order():
    assert tuple(TIERS) == DISTRIBUTIONS == ("ones", "integers", "real", "cancellation", "special")
    assert [TIERS[d] for d in DISTRIBUTIONS] == ["exact", "exact", "real", "real", "special"]


@pytest.mark.parametrize(
    "fields",
    [
        {"distribution": "gaussian"},
        {"sparsity": 1.0},
        {"sparsity": -0.1},
        {"seed": -1},
        {"scale": -1},
        {"scale": 2.5},
    ],
)
def test_bad_recipes_are_rejected_by_name(fields):
    name = next(iter(fields))
    with pytest.raises(ValueError, match=f"{name}="):
        DataRecipe(**fields)
    with pytest.raises(ValueError, match="unknown DataRecipe fields"):
        DataRecipe.from_dict({"distribution": "ones", "scale_bits": 3})


# ------------------------------------------------------------- shapes, determinism


@FAST
@given(case=conv_cases(max_macs=5_000))
def test_tensors_have_the_specs_shapes_and_are_representable_in_its_dtype(case):
    spec, recipe = case
    t = _tensors(spec, recipe)
    shapes = {"x": spec.input_shape, "w": spec.weight_shape, "b": spec.bias_shape, "grad_output": spec.output_shape}
    assert set(t) == {"x", "w", "grad_output"} | ({"b"} if spec.bias else set())
    for name, a in t.items():
        assert a.shape == shapes[name], f"{name}.shape={a.shape}, but should be {shapes[name]} [{spec} {recipe}]"
        assert a.dtype == np.float64 and a.flags.c_contiguous, f"{name}: {a.dtype}, {a.flags} [{spec}]"
        assert is_representable(a, spec.dtype), f"{name} has values outside {spec.dtype} [{spec} {recipe}]"


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_same_recipe_same_bits_and_other_seed_other_values(distribution):
    spec = ConvSpec(in_channels=3, out_channels=4, input_size=(9, 7), kernel_size=(3, 2), padding=1, dtype="float16")
    recipe = DataRecipe(distribution, sparsity=0.5, seed=11, scale=2)
    first, again = _tensors(spec, recipe), _tensors(spec, recipe)
    for name in first:
        # Bytes, so that NaN payloads and the sign of -0.0 count too.
        assert first[name].tobytes() == again[name].tobytes(), name
    other = _tensors(spec, DataRecipe(distribution, sparsity=0.5, seed=12, scale=2))
    assert any(first[n].tobytes() != other[n].tobytes() for n in first)


def test_grad_output_is_not_a_copy_of_x():
    # Equal shapes on purpose: a shared stream would make them equal.
    spec = ConvSpec(in_channels=2, out_channels=2, input_size=(5, 6), kernel_size=1, bias=False)
    for distribution in ("integers", "real", "cancellation", "special"):
        recipe = DataRecipe(distribution, seed=3, scale=2)
        x, _, _ = make_inputs(spec, recipe)
        assert x.shape == spec.output_shape
        assert x.tobytes() != make_grad_output(spec, recipe).tobytes(), distribution


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_an_empty_batch_gives_empty_tensors(distribution):
    spec = ConvSpec(in_channels=3, out_channels=2, input_size=(4,), kernel_size=2, batch=0)
    x, w, b = make_inputs(spec, DataRecipe(distribution, seed=1))
    assert x.shape == (0, 3, 4) and w.shape == (2, 3, 2) and b.shape == (2,)
    assert make_grad_output(spec, DataRecipe(distribution, seed=1)).shape == (0, 2, 3)


def test_an_invalid_problem_still_gets_tensors_of_its_shapes():
    # Error-conformance tests hand these to a candidate that should refuse them.
    spec = ConvSpec(in_channels=2, out_channels=2, input_size=(5,), kernel_size=3, dilation=0)
    x, w, b = make_inputs(spec, DataRecipe("integers", seed=1, scale=2))
    assert (x.shape, w.shape, b.shape) == ((1, 2, 5), (2, 2, 3), (2,))


def test_a_million_elements_are_cheap():
    # Not a timing assertion (CI machines vary): this is here so that a
    # per-element Python loop would show up as a slow test.
    spec = ConvSpec(in_channels=16, out_channels=4, input_size=(250, 250), kernel_size=1, dtype="bfloat16")
    for distribution in DISTRIBUTIONS:
        x, _, _ = make_inputs(spec, DataRecipe(distribution, sparsity=0.5, seed=5, scale=3))
        assert x.size == 1_000_000


def test_sparsity_is_the_fraction_of_zeros_in_x_when_sums_are_long():
    spec = ConvSpec(in_channels=64, out_channels=2, input_size=(40, 30), kernel_size=3, dtype="float32")
    for sparsity in (0.0, 0.5, 0.9):
        x, w, _ = make_inputs(spec, DataRecipe("real", sparsity=sparsity, seed=2))
        assert abs(np.mean(x == 0) - sparsity) < 0.02, sparsity
        assert np.all(w != 0)


def test_sparsity_leaves_a_few_nonzero_terms_in_short_sums():
    # K = 2: a 90%-sparse x would make most outputs exactly zero, a mistrusted case.
    spec = ConvSpec(in_channels=2, out_channels=2, input_size=(100, 100), kernel_size=1, dtype="float32")
    x, _, _ = make_inputs(spec, DataRecipe("integers", sparsity=0.9, seed=2))
    assert np.all(x != 0)


def test_sparsity_leaves_nonzero_terms_in_the_gradient_of_the_weight():
    # grad_weight sums x * grad_output over 4 terms (a batch of 4, one position per tap):
    # both factors thinned to 10% left 85% of its elements exactly zero, a mistrusted case
    # whatever the backend did.
    spec = ConvSpec(in_channels=24, out_channels=27, groups=3, input_size=(7,), kernel_size=(4,), stride=(4,),
                    dilation=(2,), batch=4, dtype="float64")  # fmt: skip
    recipe = DataRecipe("real", sparsity=0.9, seed=469216)
    x, w, _ = make_inputs(spec, recipe)
    gw = oracle.backward(spec, x, w, make_grad_output(spec, recipe))[1]
    assert np.mean(gw == 0) < 0.2


def test_the_exact_budget_of_long_gradient_sums_leaves_grad_input_nonzero():
    # grad_bias sums 2 x 112 positions: exact in bfloat16 (2**8) only with grad_output
    # thinned to a quarter, which left most of grad_input's 2-term sums exactly zero.
    spec = parse_descriptor("convtr3d_mb2_ic6_oc2_i4x7x4_k2x1x2_s1x2x3_d1x1x3_p0x0x1_op0x0x1_nobias_bf16")
    recipe = DataRecipe("ones", seed=47200)
    x, w, _ = make_inputs(spec, recipe)
    gx = oracle.backward(spec, x, w, make_grad_output(spec, recipe))[0]
    summed = np.broadcast_to(oracle.term_counts(spec)["grad_input"], gx.shape) > 0
    assert np.mean(gx[summed] == 0) < 0.2
    assert reduction_lengths(spec)["grad_input"] * _peak(w) <= FORMATS["bfloat16"].max_exact_integer


def test_integers_are_not_only_plus_or_minus_one():
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(64,), kernel_size=(1,), bias=False, dtype="bfloat16")
    x = make_inputs(spec, DataRecipe("integers", seed=1))[0]
    assert set(np.unique(np.abs(x))) == {1.0, 2.0}


def test_a_one_element_tensor_is_never_made_negative_zero():
    # Its only value zeroes every product, so the whole reference would be zero.
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(1,), kernel_size=(1,), bias=False, dtype="bfloat16")
    for seed in range(40):
        x, w, _ = make_inputs(spec, DataRecipe("special", seed=seed))
        assert x[0, 0, 0] != 0 and w[0, 0, 0] != 0, seed


# ------------------------------------------------------------------ tiers


def test_ones_are_ones():
    spec = ConvSpec(in_channels=3, out_channels=5, input_size=(6, 5), kernel_size=(3, 2), dtype="float16")
    for a in _tensors(spec, DataRecipe("ones", seed=9)).values():
        assert np.all(a == 1.0)


def test_ones_get_sparse_where_even_ones_would_not_sum_exactly():
    # 3*5*5*5 = 375 products per output: more than bfloat16's 2**8 exact integers.
    spec = ConvSpec(in_channels=3, out_channels=2, input_size=(5, 5, 5), kernel_size=5, dtype="bfloat16")
    assert reduction_lengths(spec)["forward"] == 375
    x, w, _ = make_inputs(spec, DataRecipe("ones", seed=4))
    assert np.all(x == 1.0)
    assert set(np.unique(w)) == {0.0, 1.0}
    # Sparse enough that the nonzero terms of every sum fit, with room to spare.
    assert np.max(np.count_nonzero(w.reshape(2, -1), axis=1)) < FORMATS["bfloat16"].max_exact_integer


def _fits(lengths: dict[str, int], bias: bool, limit: float) -> dict[str, bool]:
    """Which sums can fit the limit at all with magnitudes of 1."""
    return {
        "forward": lengths["forward"] + (1 if bias else 0) <= limit,
        "grad_input": lengths["grad_input"] <= limit,
        "grad_weight": lengths["grad_weight"] <= limit,
        "grad_bias": lengths["grad_bias"] <= limit,
    }


def _worst_cases(spec: ConvSpec, t: dict[str, np.ndarray]) -> dict[str, float]:
    lengths = reduction_lengths(spec)
    x, w, gy, b = (_peak(t.get(n)) for n in ("x", "w", "grad_output", "b"))
    return {
        "forward": lengths["forward"] * x * w + b,
        "grad_input": lengths["grad_input"] * gy * w,
        "grad_weight": lengths["grad_weight"] * gy * x,
        "grad_bias": lengths["grad_bias"] * gy,
    }


@FAST
@given(case=conv_cases(distributions=("ones", "integers")))
def test_exact_tier_is_integers_whose_worst_case_sums_fit_the_mantissa(case):
    spec, recipe = case
    t = _tensors(spec, recipe)
    for name, a in t.items():
        assert np.all(a == np.round(a)), f"{name} is not integer-valued [{spec} {recipe}]"
    limit = FORMATS[spec.dtype].max_exact_integer
    fits = _fits(reduction_lengths(spec), spec.bias, limit)
    for product, worst in _worst_cases(spec, t).items():
        if fits[product]:
            assert worst <= limit, f"{product} worst case {worst} > {limit} [{spec} {recipe}]"


@FAST
@given(case=conv_cases(distributions=("real", "cancellation", "special")))
def test_real_and_special_tiers_stay_normal_and_cannot_overflow(case):
    spec, recipe = case
    fmt = FORMATS[spec.dtype]
    t = _tensors(spec, recipe)
    finite = {n: np.where(np.isfinite(a), a, 0.0) for n, a in t.items()}
    for name, a in finite.items():
        magnitudes = np.abs(a[a != 0])
        if recipe.distribution != "special":
            assert np.all(np.isfinite(t[name])), f"{name} has non-finite values [{spec} {recipe}]"
            # Subnormals are the special tier's business.
            assert np.all(magnitudes >= fmt.smallest_normal), f"{name} has subnormals [{spec} {recipe}]"
    for product, worst in _worst_cases(spec, finite).items():
        assert worst <= fmt.max_finite / 8, f"{product} worst case {worst} near overflow [{spec} {recipe}]"


def test_cancellation_sums_are_much_smaller_than_their_magnitude():
    spec = ConvSpec(in_channels=8, out_channels=4, input_size=(12, 12), kernel_size=3, bias=False, dtype="float32")
    x, w, _ = make_inputs(spec, DataRecipe("cancellation", seed=1, scale=4))
    y, scale = oracle.forward(spec, x, w), oracle.magnitude(spec, x, w)
    assert np.median(np.abs(y) / scale) < 0.1


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_special_tier_holds_every_kind_of_special_value(dtype):
    spec = ConvSpec(in_channels=3, out_channels=4, input_size=(6, 7), kernel_size=(2, 3), dtype=dtype)
    subnormal = FORMATS[dtype].smallest_normal
    t = _tensors(spec, DataRecipe("special", seed=8, scale=2))
    for name in ("x", "w", "grad_output"):
        a = t[name]
        kinds = {
            "nan": np.isnan(a).any(),
            "+inf": np.isposinf(a).any(),
            "-inf": np.isneginf(a).any(),
            "-0.0": ((a == 0) & np.signbit(a)).any(),
            "subnormal": ((a != 0) & (np.abs(a) < subnormal)).any(),
        }
        assert all(kinds.values()), f"{name} lacks {[k for k, v in kinds.items() if not v]} [{spec}]"
        # A few, not a flood: the rest is ordinary real data.
        assert np.count_nonzero(~np.isfinite(a)) <= 3
    assert np.count_nonzero(~np.isfinite(t["b"]) | (np.abs(t["b"]) < subnormal)) <= 1


# -------------------------------------------------------------- sum lengths


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(max_macs=600, max_batch=2, max_channels_per_group=3, max_groups=2, max_kernel=4))
def test_reduction_lengths_are_the_oracles_term_counts(spec):
    # With all-ones data each oracle output is the number of its terms, so the
    # largest output is the longest sum: reduction_lengths must equal it.
    spec = spec.replace(bias=False)
    ones = [np.ones(shape) for shape in (spec.input_shape, spec.weight_shape, spec.output_shape)]
    counts = dict(
        zip(("forward", "grad_input", "grad_weight"), (oracle.forward(spec, *ones[:2]), *oracle.backward(spec, *ones)))
    )
    counts["grad_bias"] = np.full(1, spec.batch * math.prod(spec.output_size))
    lengths = reduction_lengths(spec)
    for product, values in counts.items():
        if values is not None and values.size:
            assert lengths[product] == values.max(), f"{product}: {lengths[product]} != {values.max()} [{spec}]"


def test_a_transposed_sum_where_stride_and_dilation_share_a_factor():
    # Taps 0, 2, 4 all land on even positions at stride 2: three terms, where
    # ceil(kernel / stride) = 2 would undercount.
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=5, kernel_size=3, stride=2, dilation=2, transposed=True)
    assert reduction_lengths(spec)["forward"] == 3


def test_padding_modes_that_copy_lengthen_the_input_gradient():
    # Replicate padding 3 copies the edge element to four padded positions,
    # which 1 + 2 + 3 + 3 (output, tap) pairs read: 9 terms per output
    # channel, where zero padding gives every element kernel_size = 3.
    spec = ConvSpec(in_channels=1, out_channels=2, input_size=6, kernel_size=3, padding=3, padding_mode="replicate")
    assert reduction_lengths(spec)["grad_input"] == 2 * 9
    assert reduction_lengths(spec.replace(padding_mode="zeros"))["grad_input"] == 2 * 3
