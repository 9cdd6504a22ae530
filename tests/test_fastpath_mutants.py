"""The fast-path mutants compute the right convolution: their only bug is precision.

Winograd F(4x4, 3x3) run in float64 and the FFT correlation checked normwise
must agree with the float64 oracle, so that what the suite catches in
``tests/mutants/fastpath.py`` is rounding and nothing else; and each takes its
fast path only on the shapes its docstring names.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is not installed: pip install -e '.[torch]'")

from conformance import oracle
from conformance.data import DataRecipe, make_inputs
from conformance.spec import ConvSpec
from tests.mutants.fastpath import fft_correlate_float32, uses_fft, uses_winograd, winograd_f4x4_3x3

pytestmark = pytest.mark.torch

WINOGRAD_SHAPES = [
    dict(in_channels=1, out_channels=1, input_size=(3, 3)),
    dict(in_channels=3, out_channels=5, input_size=(9, 7), batch=2),
    dict(in_channels=2, out_channels=2, input_size=(6, 11), padding="same", bias=True),
    dict(in_channels=4, out_channels=3, input_size=(5, 5), padding=((1, 0), (2, 1)), padding_mode="reflect"),
]


@pytest.mark.parametrize("shape", WINOGRAD_SHAPES, ids=str)
def test_winograd_in_float64_is_the_convolution(shape):
    spec = ConvSpec(kernel_size=(3, 3), dtype="float16", **shape).validate()
    x, w, b = make_inputs(spec, DataRecipe("real", seed=3, scale=4))
    got = winograd_f4x4_3x3(spec, x, w, b, dtype=np.float64)
    scale = oracle.magnitude(spec, x, w, b).max()
    np.testing.assert_allclose(got, oracle.forward(spec, x, w, b), rtol=0, atol=1e-12 * scale)


FFT_SHAPES = [
    dict(in_channels=1, out_channels=1, input_size=(12,), kernel_size=(5,)),
    dict(in_channels=3, out_channels=2, input_size=(40,), kernel_size=(9,), batch=2, bias=True),
    dict(in_channels=2, out_channels=3, input_size=(10, 13), kernel_size=(5, 7), padding=((1, 2), (0, 3))),
    dict(in_channels=2, out_channels=2, input_size=(9, 9), kernel_size=(7, 5), padding="same", padding_mode="circular"),
]


@pytest.mark.parametrize("shape", FFT_SHAPES, ids=str)
def test_fft_correlation_is_the_convolution_to_float32_normwise(shape):
    spec = ConvSpec(dtype="float32", **shape).validate()
    x, w, b = make_inputs(spec, DataRecipe("real", seed=5, scale=3))
    ref = oracle.forward(spec, x, w, b)
    error = np.abs(fft_correlate_float32(spec, x, w, b) - ref).max()
    # Normwise: a few float32 roundings of the largest magnitude, never a wrong index.
    assert error <= 64 * np.finfo(np.float32).eps * oracle.magnitude(spec, x, w, b).max(), error


def test_each_mutant_takes_its_fast_path_only_where_a_backend_would():
    winograd = ConvSpec(in_channels=2, out_channels=2, input_size=(6, 6), kernel_size=(3, 3), dtype="float16")
    assert uses_winograd(winograd)
    for other in (
        winograd.replace(dtype="float32"),
        winograd.replace(kernel_size=(3, 5)),
        winograd.replace(stride=(1, 2)),
        winograd.replace(dilation=(2, 1)),
        winograd.replace(groups=2),
        winograd.replace(transposed=True),
        winograd.replace(batch=0),
    ):
        assert not uses_winograd(other), other
    fft = ConvSpec(in_channels=2, out_channels=2, input_size=(12,), kernel_size=(5,), dtype="float32")
    assert uses_fft(fft) and uses_fft(fft.replace(input_size=(9, 9), kernel_size=(3, 5)))
    for other in (
        fft.replace(kernel_size=(4,)),
        fft.replace(dtype="float16"),
        fft.replace(stride=(2,)),
        fft.replace(dilation=(2,)),
        fft.replace(groups=2),
        fft.replace(input_size=(5,)),  # one output position
        fft.replace(input_size=(6, 6, 6), kernel_size=(5, 5, 5)),
    ):
        assert not uses_fft(other), other
