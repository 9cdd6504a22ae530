"""The oracle against four independent witnesses.

(a) the literal reference (every product listed, summed with math.fsum);
(b) exact rational arithmetic (fractions) on small problems;
(c) PyTorch float64 (F.conv*d, F.conv_transpose*d, autograd, F.pad) on thousands
    of random problems of every kind, within 1e-13 of the magnitude;
(d) the seed article's two worked examples;
and (e) checks that the oracle's blocks and memory cap change nothing but speed.
"""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import literal, oracle
from conformance.spec import ConvSpec
from conformance.strategies import conv_specs

SMALL = {"max_macs": 400, "max_batch": 2, "max_channels_per_group": 3, "max_groups": 2, "max_kernel": 3}
# float64 BLAS contractions over K terms: the error is far below 1e-13 of the magnitude.
TORCH_AGREEMENT = 1e-13


def _data(spec: ConvSpec, seed: int, integers: bool = False):
    rng = np.random.default_rng(seed)

    def draw(shape):
        if shape is None:
            return None
        if integers:
            return rng.integers(-3, 4, size=shape).astype(np.float64)
        return rng.standard_normal(shape) * np.exp2(rng.integers(-4, 5, size=shape))

    return draw(spec.input_shape), draw(spec.weight_shape), draw(spec.bias_shape), draw(spec.output_shape)


def _as_float(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _assert_close(got, want, scale, tolerance, what, spec):
    if want is None:
        assert got is None, f"{what}: got an array, but should be None [{spec}]"
        return
    assert got.shape == want.shape, f"{what}.shape={got.shape}, but should be {want.shape} [{spec}]"
    error = np.abs(got - want)
    limit = tolerance * np.maximum(scale, np.finfo(np.float64).tiny)
    if not np.all(error <= limit):
        i = np.unravel_index(np.argmax(error - limit), error.shape)
        raise AssertionError(
            f"{what}{list(i)}={got[i]!r}, but should be {want[i]!r} "
            f"(error {error[i]:.3g} > {limit[i]:.3g}) [oracle({spec})]"
        )


# ------------------------------------------------------------- (a) literal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(**SMALL), seed=st.integers(0, 2**32 - 1))
def test_forward_and_backward_agree_with_the_literal_reference(spec, seed):
    x, w, b, gy = _data(spec, seed)
    scale = oracle.magnitude(spec, x, w, b)
    _assert_close(oracle.forward(spec, x, w, b), _as_float(literal.forward(spec, x, w, b)), scale, 1e-14, "y", spec)
    got = oracle.backward(spec, x, w, gy)
    want = literal.backward(spec, x, w, gy)
    scales = oracle.backward_magnitude(spec, x, w, gy)
    for name, g, lit, m in zip(("grad_input", "grad_weight", "grad_bias"), got, want, scales):
        _assert_close(g, _as_float(lit), m, 1e-14, name, spec)


# ----------------------------------------------------------- (b) fractions


def _fractions(a):
    if a is None:
        return None
    out = np.empty(a.shape, dtype=object)
    for i in np.ndindex(*a.shape):
        out[i] = Fraction(float(a[i]))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(**SMALL), seed=st.integers(0, 2**32 - 1))
def test_integer_problems_are_exact_in_rational_arithmetic(spec, seed):
    x, w, b, gy = _data(spec, seed, integers=True)
    fx, fw, fb, fgy = map(_fractions, (x, w, b, gy))
    exact = literal.forward(spec, fx, fw, fb, total=sum)
    assert np.array_equal(oracle.forward(spec, x, w, b), exact.astype(np.float64)), spec
    for got, want in zip(oracle.backward(spec, x, w, gy), literal.backward(spec, fx, fw, fgy, total=sum)):
        if want is not None:
            assert np.array_equal(got, want.astype(np.float64)), spec


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(**SMALL), seed=st.integers(0, 2**32 - 1))
def test_real_problems_are_within_the_float64_bound_of_the_exact_result(spec, seed):
    x, w, b, _ = _data(spec, seed)
    exact = literal.forward(spec, *map(_fractions, (x, w, b)), total=sum)
    n = spec.reduction_length + 1
    gamma = n * 2.0**-53 / (1 - n * 2.0**-53)
    got = oracle.forward(spec, x, w, b)
    scale = oracle.magnitude(spec, x, w, b)
    for i in np.ndindex(*spec.output_shape):
        error = abs(Fraction(float(got[i])) - exact[i])
        bound = Fraction(gamma) * Fraction(float(scale[i]))
        assert error <= bound, f"y{list(i)}={got[i]!r}, but should be {float(exact[i])!r} [oracle({spec})]"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(**SMALL))
def test_term_counts_are_what_all_ones_data_sums(spec):
    # With all-ones data each product's element is the number of its terms; term_counts
    # must say so from the geometry alone, zeros (uncovered positions) included.
    spec = spec.replace(bias=False)
    ones = [np.ones(shape) for shape in (spec.input_shape, spec.weight_shape, spec.output_shape)]
    gx, gw, _ = oracle.backward(spec, *ones)
    want = {"output": oracle.forward(spec, *ones[:2]), "grad_input": gx, "grad_weight": gw,
            "grad_bias": np.full(spec.out_channels, float(spec.batch * math.prod(spec.output_size)))}  # fmt: skip
    counts = oracle.term_counts(spec)
    assert set(counts) == set(oracle.PRODUCTS)
    for product, values in want.items():
        got = np.broadcast_to(counts[product], values.shape)
        np.testing.assert_array_equal(got, values, err_msg=f"{product} [{spec}]")


def test_a_stride_past_the_kernel_leaves_input_positions_without_terms():
    spec = ConvSpec(in_channels=1, out_channels=2, input_size=(7,), kernel_size=(2,), stride=(3,))
    np.testing.assert_array_equal(oracle.term_counts(spec)["grad_input"].ravel(), [2, 2, 0, 2, 2, 0, 0])
    transposed = spec.replace(in_channels=2, out_channels=1, input_size=(3,), transposed=True)
    np.testing.assert_array_equal(oracle.term_counts(transposed)["output"].ravel(), [2, 2, 0, 2, 2, 0, 2, 2])


# -------------------------------------------------------------- (c) torch


MEDIUM = {"max_macs": 20_000}


def _check_against_torch(spec, seed, backward):
    from tests import torch_reference

    x, w, b, gy = _data(spec, seed)
    if not backward:
        _assert_close(
            oracle.forward(spec, x, w, b), torch_reference.forward(spec, x, w, b),
            oracle.magnitude(spec, x, w, b), TORCH_AGREEMENT, "y", spec,
        )
        return
    got = oracle.backward(spec, x, w, gy)
    want = torch_reference.backward(spec, x, w, b, gy)
    scales = oracle.backward_magnitude(spec, x, w, gy)
    for name, g, t, m in zip(("grad_input", "grad_weight", "grad_bias"), got, want, scales):
        _assert_close(g, t, m, TORCH_AGREEMENT, name, spec)


KINDS = {
    "forward": (False, False),
    "transposed": (True, False),
    "backward": (False, True),
    "transposed-backward": (True, True),
}


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_agrees_with_pytorch_float64_on_2000_problems(kind):
    pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")
    transposed, backward = KINDS[kind]

    @settings(max_examples=2000, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(spec=conv_specs(transposed=transposed, **MEDIUM), seed=st.integers(0, 2**32 - 1))
    def check(spec, seed):
        _check_against_torch(spec, seed, backward)

    check()


# ------------------------------------------------------- (d) golden vectors

ARTICLE_INPUT = np.array(
    [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]], dtype=np.float64
)
ARTICLE_KERNEL = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]], dtype=np.float64)


@pytest.mark.parametrize(
    ("stride", "padding", "expected"),
    [
        (1, 0, [[12, 12, 17], [10, 17, 19], [9, 6, 14]]),
        (2, 1, [[6, 17, 3], [8, 17, 13], [6, 4, 4]]),
    ],
)
def test_the_seed_articles_worked_examples(stride, padding, expected):
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(5, 5), kernel_size=(3, 3),
                    stride=stride, padding=padding, bias=False).validate()
    y = oracle.forward(spec, ARTICLE_INPUT[None, None], ARTICLE_KERNEL[None, None])
    assert y[0, 0].tolist() == expected


def test_padding_modes_mean_what_pytorch_means():
    # One row 1..4 padded by (3, 2): the four modes, written out by hand.
    expected = {
        "zeros": [0, 0, 0, 1, 2, 3, 4, 0, 0],
        "reflect": [4, 3, 2, 1, 2, 3, 4, 3, 2],
        "replicate": [1, 1, 1, 1, 2, 3, 4, 4, 4],
        "circular": [2, 3, 4, 1, 2, 3, 4, 1, 2],
    }
    row = np.arange(1.0, 5.0)[None, None]
    for mode, want in expected.items():
        spec = ConvSpec(in_channels=1, out_channels=1, input_size=4, kernel_size=1, padding=((3, 2),),
                        padding_mode=mode, bias=False).validate()
        assert oracle.forward(spec, row, np.ones((1, 1, 1)))[0, 0].tolist() == want, mode


def test_bias_is_required_when_the_spec_has_one():
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=3, kernel_size=1)
    with pytest.raises(ValueError, match="bias"):
        oracle.forward(spec, np.ones((1, 1, 3)), np.ones((1, 1, 1)))


def test_wrong_shapes_are_named():
    spec = ConvSpec(in_channels=2, out_channels=1, input_size=(3, 4), kernel_size=1, bias=False)
    with pytest.raises(ValueError, match=r"x has shape \(1, 2, 4, 3\)"):
        oracle.forward(spec, np.ones((1, 2, 4, 3)), np.ones((1, 2, 1, 1)))
    assert math.prod(spec.output_shape) == 12


# ------------------------------------------------ (e) blocks, threads, memory

# Problems whose im2col columns are several times the tensors, so the oracle cuts
# them into blocks of batch items and of rows; the literal reference has no blocks.
BLOCKED = [
    ConvSpec(batch=2, in_channels=1, out_channels=4, input_size=(9, 9), kernel_size=(5, 5), padding=1),
    ConvSpec(batch=3, in_channels=2, out_channels=4, input_size=(7, 6), kernel_size=(3, 4), stride=(2, 1),
             dilation=(1, 2), padding=((2, 1), (3, 0)), groups=2, padding_mode="circular"),
    ConvSpec(batch=2, in_channels=1, out_channels=2, input_size=(5, 4, 4), kernel_size=(3, 3, 2), padding=1,
             padding_mode="reflect"),
    ConvSpec(batch=2, in_channels=2, out_channels=3, input_size=(6, 5), kernel_size=(4, 3), stride=(2, 3),
             padding=1, output_padding=(1, 2), transposed=True),
    ConvSpec(batch=3, in_channels=2, out_channels=4, input_size=(7,), kernel_size=(5,), dilation=2, groups=2,
             transposed=True),
    ConvSpec(batch=1, in_channels=1, out_channels=4, input_size=(6, 6), kernel_size=(5, 5), stride=(1, 2),
             padding=((1, 3), (0, 2)), transposed=True),
]  # fmt: skip


def _block_count(spec: ConvSpec) -> tuple[int, int]:
    """How many blocks, and how many distinct row ranges, the oracle cuts ``spec`` into."""
    g = spec.groups
    if spec.transposed:
        blocks = oracle._blocks(spec, spec.out_channels // g, spec.input_size)
    else:
        blocks = oracle._blocks(spec, spec.in_channels // g, spec.output_size)
    return len(blocks), len({(rows.start, rows.stop) for _, rows in blocks})


def test_the_blocked_problems_cut_rows_and_group_batch_items():
    assert any(_block_count(spec)[1] > 1 for spec in BLOCKED)  # rows of one item in several blocks
    assert any(_block_count(spec)[0] < spec.batch for spec in BLOCKED)  # several items in one block


@pytest.mark.parametrize("spec", BLOCKED, ids=str)
def test_problems_cut_into_blocks_agree_with_the_literal_reference(spec):
    spec.validate()
    assert _block_count(spec)[0] > 1, f"{spec} is not cut into blocks"
    x, w, b, gy = _data(spec, 7)
    scale = oracle.magnitude(spec, x, w, b)
    _assert_close(oracle.forward(spec, x, w, b), _as_float(literal.forward(spec, x, w, b)), scale, 1e-14, "y", spec)
    got, want = oracle.backward(spec, x, w, gy), literal.backward(spec, x, w, gy)
    for name, g, lit, m in zip(("grad_input", "grad_weight", "grad_bias"), got, want,
                               oracle.backward_magnitude(spec, x, w, gy)):  # fmt: skip
        _assert_close(g, _as_float(lit), m, 1e-14, name, spec)


MEMORY = [
    ("forward", ConvSpec(batch=4, in_channels=32, out_channels=32, input_size=(28, 24), kernel_size=(3, 3),
                         padding=1, bias=False)),
    ("forward", ConvSpec(batch=2, in_channels=16, out_channels=24, input_size=(9, 10, 8), kernel_size=(3, 3, 3),
                         padding=1, bias=False)),
    ("forward", ConvSpec(batch=4, in_channels=32, out_channels=16, input_size=(14, 12), kernel_size=(4, 4),
                         stride=2, padding=1, transposed=True, bias=False)),
    ("backward", ConvSpec(batch=4, in_channels=32, out_channels=32, input_size=(20, 18), kernel_size=(3, 3),
                          padding=1, bias=False)),
    ("backward", ConvSpec(batch=2, in_channels=16, out_channels=8, input_size=(14, 12), kernel_size=(4, 3),
                          stride=(2, 1), padding=1, transposed=True, bias=False)),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "spec"), MEMORY, ids=lambda v: str(v))
def test_peak_extra_memory_stays_within_three_times_the_tensors(operation, spec):
    # im2col columns of a whole problem would be taps times the input; blocks keep
    # the oracle's buffers (results included) within 3x input + weight + output.
    x, w, _, gy = _data(spec, 1)
    tensors = x.nbytes + w.nbytes + gy.nbytes
    if operation == "backward":
        tensors += x.nbytes + w.nbytes  # the gradients are outputs too
    oracle._scratch.clear()  # a cold call: its buffers count
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        if operation == "forward":
            oracle.forward(spec, x, w)
        else:
            oracle.backward(spec, x, w, gy)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= 3 * tensors, f"peak extra memory {peak / tensors:.2f}x the tensors [{spec}]"
