"""The precision model and the verdicts of :mod:`conformance.tolerance`.

Two halves.  The first runs real PyTorch CPU convolutions on a fixed, seeded set
of problems and shows that the bound is tight enough to catch three classic
precision bugs while a correct backend never fails.  The second pins each rule of
:func:`tolerance.check` on hand-built arrays.

What PyTorch 2.13 CPU was measured to do (x86 with AVX512-FP16 / AMX-BF16):
float16 and bfloat16 convolutions accumulate in float32 and round once to the
output dtype, which is what :func:`tolerance.default_precision` declares;
``test_torch_reduced_precision_rounds_once`` keeps checking it.  On that CPU the
bfloat16 path also flushes subnormals (inputs read as zero, products flushed):
``test_flushing_declaration_covers_subnormal_data`` shows the declaration for it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conformance import oracle, tolerance
from conformance.formats import round_to
from conformance.spec import ConvSpec
from conformance.tolerance import Precision, check, default_precision

# ----------------------------------------------------------------------------- cases


def _make_specs(count: int = 36, seed: int = 20_240) -> list[ConvSpec]:
    """A fixed spread of forward problems: dims 1-3 in turn, groups, stride, dilation,
    asymmetric explicit padding, and reduction lengths K from 1 to a few hundred."""
    rng = np.random.default_rng(seed)
    # per dims: largest kernel side, channels per group and input side; they keep K <= ~400
    # and every case a few milliseconds
    limits = {1: (7, 64, 40), 2: (4, 32, 12), 3: (3, 16, 6)}
    specs: list[ConvSpec] = []
    while len(specs) < count:
        dims = 1 + len(specs) % 3
        kmax, cmax, smax = limits[dims]
        if len(specs) < 3:  # K = 1: one channel per group, a 1-tap kernel
            kernel, cin_g = (1,) * dims, 1
        else:
            kernel = tuple(int(k) for k in rng.integers(1, kmax + 1, size=dims))
            # alternately uniform and log-uniform, so both short and long reductions are common
            uniform = len(specs) % 2
            cin_g = int(rng.integers(1, cmax + 1) if uniform else np.exp(rng.uniform(0, np.log(cmax + 1))))
        groups = int(rng.choice([1, 1, 2, 3]))
        spec = ConvSpec(
            in_channels=cin_g * groups,
            out_channels=int(rng.integers(1, 4)) * groups,
            input_size=tuple(int(s) for s in rng.integers(3, smax + 1, size=dims)),
            kernel_size=kernel,
            batch=int(rng.integers(1, 3)),
            stride=tuple(int(s) for s in rng.integers(1, 3, size=dims)),
            dilation=tuple(int(d) for d in rng.integers(1, 3, size=dims)),
            padding=tuple((int(a), int(b)) for a, b in rng.integers(0, 3, size=(dims, 2))),
            groups=groups,
            bias=bool(rng.integers(0, 4)),  # mostly with bias
        )
        # A drawn kernel may not fit a small input; redrawing is simpler than
        # constraining every axis, and the list is fixed by the seed anyway.
        if spec.is_valid():
            specs.append(spec)
    # and two long reductions, K = 384 and 288
    specs.append(ConvSpec(64, 4, (20,), (6,), stride=2, padding=((1, 2),)).validate())
    specs.append(ConvSpec(64, 6, (7, 9), (3, 3), groups=2, dilation=(1, 2), padding=((1, 0), (2, 1))).validate())
    return specs


SPECS = _make_specs()
DTYPES = ("float32", "bfloat16", "float16")


def _real_data(spec: ConvSpec, seed: int):
    """Standard normal data rounded to the dtype (so the candidate reads it exactly)."""
    rng = np.random.default_rng(seed)
    x = round_to(rng.standard_normal(spec.input_shape), spec.dtype)
    w = round_to(rng.standard_normal(spec.weight_shape), spec.dtype)
    b = round_to(rng.standard_normal(spec.bias_shape), spec.dtype) if spec.bias else None
    return x, w, b


def _integer_data(spec: ConvSpec, seed: int):
    """Small integers, the weights' density tied to K (benchdnn's recipe): about six
    nonzero products per output, so sums stay far below 2**8 yet rarely vanish."""
    rng = np.random.default_rng(seed)
    k = spec.reduction_length
    x = rng.integers(-2, 3, size=spec.input_shape).astype(np.float64)
    w = rng.integers(-2, 3, size=spec.weight_shape) * (rng.random(spec.weight_shape) < min(1.0, 6 / k))
    b = rng.integers(-3, 4, size=spec.bias_shape).astype(np.float64) if spec.bias else None
    return x, w.astype(np.float64), b


def _spread(rng: np.random.Generator, shape, low: int, high: int) -> np.ndarray:
    """Normal values times 2**e, e uniform in [low, high), rounded to bfloat16."""
    return round_to(rng.standard_normal(shape) * 2.0 ** rng.integers(low, high, shape), "bfloat16")


def _case_id(spec: ConvSpec) -> str:
    return f"K{spec.reduction_length}-{spec.descriptor()}"


# ----------------------------------------------------------------------------- torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _as_torch(torch, a: np.ndarray | None, dtype):
    return None if a is None else torch.from_numpy(a).to(dtype)


def _padded(torch, spec: ConvSpec, xt):
    # F.pad takes (before, after) pairs starting from the last axis.
    return torch.nn.functional.pad(xt, [p for pair in reversed(spec.pads) for p in pair])


def torch_conv(torch, spec: ConvSpec, x, w, b, *, dtype: str | None = None) -> np.ndarray:
    """PyTorch's forward convolution of ``spec`` (zeros padding, explicit pads), as float64."""
    dt = getattr(torch, dtype or spec.dtype)
    F = torch.nn.functional
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spec.dims]
    xt = _padded(torch, spec, _as_torch(torch, x, dt))
    y = conv(
        xt, _as_torch(torch, w, dt), _as_torch(torch, b, dt), stride=spec.stride, dilation=spec.dilation,
        groups=spec.groups,
    )  # fmt: skip
    return y.to(torch.float64).numpy()


def float16_accumulating_conv(torch, spec: ConvSpec, x, w, b) -> np.ndarray:
    """Mutant (a): im2col, then one float16 multiply and one float16 add per reduction term."""
    h = torch.float16
    cols = _padded(torch, spec, _as_torch(torch, x, h))
    for axis, (k, s, d) in enumerate(zip(spec.kernel_size, spec.stride, spec.dilation)):
        cols = cols.unfold(2 + axis, d * (k - 1) + 1, s)[..., ::d]  # appends this axis' taps
    n, g, og = spec.batch, spec.groups, spec.out_channels // spec.groups
    # (N, C, *out, *kernel) -> (N, G, 1, positions, C/G * prod(kernel)), ordered as w flattens
    cols = cols.reshape(n, g, spec.in_channels // g, *spec.output_size, *spec.kernel_size)
    cols = cols.movedim(2, 2 + spec.dims).reshape(n, g, 1, math.prod(spec.output_size), -1)
    wt = _as_torch(torch, w, h).reshape(1, g, og, 1, -1)
    acc = torch.zeros((n, g, og, math.prod(spec.output_size)), dtype=h)
    for t in range(spec.reduction_length):
        acc = acc + cols[..., t] * wt[..., t]  # each op rounds to float16
    y = acc.reshape(spec.output_shape)
    if b is not None:
        y = y + _as_torch(torch, b, h).reshape(-1, *(1,) * spec.dims)
    return y.to(torch.float64).numpy()


def tf32_input_conv(torch, spec: ConvSpec, x, w, b) -> np.ndarray:
    """Mutant (b): the product's operands rounded to TF32 (10 stored mantissa bits)."""
    return torch_conv(torch, spec, round_to(x, "tf32"), round_to(w, "tf32"), b)


def bfloat16_output_conv(torch, spec: ConvSpec, x, w, b) -> np.ndarray:
    """Mutant (c): a correct float32 result passed through bfloat16 on its way out."""
    return round_to(torch_conv(torch, spec, x, w, b), "bfloat16")


def _verdict(spec: ConvSpec, got, x, w, b, precision: Precision | None = None):
    return check(
        got, oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b), inputs=(x, w, b),
        reduction_length=spec.reduction_length, precision=precision or default_precision(spec.dtype),
        bias=spec.bias,
    )  # fmt: skip


# ------------------------------------------------------------- a correct backend


@pytest.mark.torch
@pytest.mark.parametrize("dtype", (*DTYPES, "float64"))
def test_correct_torch_never_fails_real_data(torch, dtype):
    verdicts = []
    for i, base in enumerate(SPECS):
        spec = base.replace(dtype=dtype)
        x, w, b = _real_data(spec, seed=i)
        v = _verdict(spec, torch_conv(torch, spec, x, w, b), x, w, b)
        assert v.tier == "real", _case_id(spec)
        assert v.status != "failed", f"{_case_id(spec)}: {v.reason}"
        verdicts.append(v)
    # Normal data is never mostly zero: these are real passes, and the bound is not slack
    # to the point of uselessness (the worst case uses a visible part of it).
    assert all(v.status == "passed" for v in verdicts)
    assert max(v.ratio for v in verdicts) > 0


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_correct_torch_is_bit_exact_on_exact_tier(torch, dtype):
    passed = 0
    for i, base in enumerate(SPECS):
        spec = base.replace(dtype=dtype)
        x, w, b = _integer_data(spec, seed=1000 + i)
        got = torch_conv(torch, spec, x, w, b)
        v = _verdict(spec, got, x, w, b)
        assert v.tier == "exact", _case_id(spec)
        assert v.status != "failed", f"{_case_id(spec)}: {v.reason}"
        np.testing.assert_array_equal(got, oracle.forward(spec, x, w, b))
        passed += v.status == "passed"
    assert passed >= 0.8 * len(SPECS)  # the density recipe keeps most cases trustworthy


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_torch_reduced_precision_rounds_once(torch, dtype):
    """The measurement behind default_precision: a float16 / bfloat16 convolution equals a
    float32 convolution rounded once, up to the float32 summation order (ties moved)."""
    probe = ConvSpec(17, 1, (1,), (1,), bias=False, dtype=dtype)
    x = np.ones(probe.input_shape)
    x[0, 0, 0] = 2048.0 if dtype == "float16" else 256.0  # 2048 + 1 == 2048 in float16 (256 + 1 in bf16)
    w = np.ones(probe.weight_shape)
    expected = 2064.0 if dtype == "float16" else 272.0  # 2048 + 16 (256 + 16), rounded once
    assert torch_conv(torch, probe, x, w, None)[0, 0, 0] == expected
    assert torch_conv(torch, probe, x[:, ::-1].copy(), w, None)[0, 0, 0] == expected
    for i, base in enumerate(SPECS[::4]):
        spec = base.replace(dtype=dtype)
        x, w, b = _real_data(spec, seed=i)
        once = round_to(torch_conv(torch, spec, x, w, b, dtype="float32"), dtype)
        assert np.mean(torch_conv(torch, spec, x, w, b) == once) > 0.99, _case_id(spec)


@pytest.mark.torch
def test_flushing_declaration_covers_subnormal_data(torch):
    """Measured on PyTorch 2.13 CPU with AVX512-BF16: the bfloat16 convolution reads subnormal
    inputs as zero and flushes subnormal products, which the default (gradual underflow)
    declaration rightly fails.  Declared, with ``subnormal_mag``, it conforms; a CPU that
    does not flush meets the wider flushing bound just as well."""
    flushing = Precision(None, "float32", "bfloat16", flushes_subnormals=True)
    for i, base in enumerate(SPECS[::3]):
        spec = base.replace(dtype="bfloat16")
        rng = np.random.default_rng(500 + i)
        # x straddles the smallest normal 2**-126 (half subnormal), w is O(1) or tiny so that
        # products land on both sides of it, b is tiny.
        x, w = _spread(rng, spec.input_shape, -134, -118), _spread(rng, spec.weight_shape, -8, 3)
        b = _spread(rng, spec.bias_shape, -127, -125) if spec.bias else None
        inputs = (x, w, b)
        hazard = tolerance.subnormal_hazard(inputs, flushing)
        assert hazard == "float32"
        mag = oracle.magnitude(spec, x, w, b)
        flushed = [None if a is None else tolerance.flush_subnormals(a, hazard) for a in inputs]
        v = check(
            torch_conv(torch, spec, x, w, b), oracle.forward(spec, x, w, b), mag, inputs=inputs,
            reduction_length=spec.reduction_length, precision=flushing, bias=spec.bias,
            subnormal_mag=mag - oracle.magnitude(spec, *flushed),
        )  # fmt: skip
        assert v.status != "failed", f"{_case_id(spec)}: {v.reason}"


# --------------------------------------------------------------- wrong backends


def _detections(torch, mutant, dtype: str, precision: Precision | None = None) -> dict[ConvSpec, str]:
    out = {}
    for i, base in enumerate(SPECS):
        spec = base.replace(dtype=dtype)
        x, w, b = _real_data(spec, seed=i)
        out[spec] = _verdict(spec, mutant(torch, spec, x, w, b), x, w, b, precision).status
    return out


def _assert_detected(statuses: dict[ConvSpec, str], min_k: int, min_rate: float) -> None:
    """Every case with K >= min_k fails, and at least min_rate of all cases do."""
    missed = [_case_id(s) for s, st in statuses.items() if s.reduction_length >= min_k and st != "failed"]
    assert not missed, f"not detected: {missed}"
    rate = sum(st == "failed" for st in statuses.values()) / len(statuses)
    assert rate >= min_rate, f"detection rate {rate:.0%}"
    assert "passed" not in {st for s, st in statuses.items() if s.reduction_length >= min_k}


@pytest.mark.torch
def test_float16_accumulation_is_caught(torch):
    # (a) declared float32 accumulation, accumulates in float16
    _assert_detected(_detections(torch, float16_accumulating_conv, "float16"), min_k=2, min_rate=0.9)


@pytest.mark.torch
def test_undeclared_tf32_inputs_are_caught(torch):
    # (b) declared full float32 inputs, multiplies TF32-rounded ones
    _assert_detected(_detections(torch, tf32_input_conv, "float32"), min_k=1, min_rate=0.95)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("mutant", "dtype", "truth"),
    [
        (float16_accumulating_conv, "float16", Precision(None, "float16", "float16")),
        (tf32_input_conv, "float32", Precision("tf32", "float32", "float32")),
        (bfloat16_output_conv, "float32", Precision(None, "float32", "bfloat16")),
    ],
    ids=["a-float16-accumulation", "b-tf32-inputs", "c-bfloat16-output"],
)
def test_each_mutant_passes_when_its_precision_is_declared(torch, mutant, dtype, truth):
    # The model tells the truth, so nothing fails; this also shows each mutant computes the
    # right convolution and differs from a correct backend in its rounding only.
    statuses = _detections(torch, mutant, dtype, truth)
    assert set(statuses.values()) == {"passed"}


@pytest.mark.torch
def test_bfloat16_output_of_float32_is_caught(torch):
    # (c) declared float32 output, returns it through bfloat16
    _assert_detected(_detections(torch, bfloat16_output_conv, "float32"), min_k=1, min_rate=0.95)


# --------------------------------------------------------------- check(): rules

F32 = default_precision("float32")
F16 = default_precision("float16")


def _check(got, ref, mag=None, *, inputs=None, k=4, precision=F32, bias=False, **kw):
    ref = np.asarray(ref, dtype=np.float64)
    mag = np.abs(ref) if mag is None else np.asarray(mag, dtype=np.float64)
    # Non-integer inputs keep these cases in the real tier unless a test says otherwise.
    inputs = (np.array([0.5, 1.5]), np.array([0.25])) if inputs is None else inputs
    return check(np.asarray(got), ref, mag, inputs=inputs, reduction_length=k, precision=precision, bias=bias, **kw)


def test_precision_defaults_and_json():
    assert default_precision("float64") == Precision(None, "float64", "float64")
    assert default_precision("float32") == Precision(None, "float32", "float32")
    assert default_precision("float16") == Precision(None, "float32", "float16")
    assert default_precision("bfloat16") == Precision(None, "float32", "bfloat16")
    tf32 = Precision("tf32", "float32", "float16", flushes_subnormals=True)
    assert Precision.from_dict(json.loads(json.dumps(tf32.to_dict()))) == tf32
    with pytest.raises(ValueError, match="unknown format"):
        Precision(None, "float24", "float32")
    with pytest.raises(ValueError, match="unknown Precision fields"):
        Precision.from_dict({**tf32.to_dict(), "rounding": "rtz"})


def test_gamma_and_the_bound_formula():
    assert tolerance.gamma(0, 0.1) == 0
    assert tolerance.gamma(4, 2.0**-24) == pytest.approx(4 * 2.0**-24 / (1 - 4 * 2.0**-24), rel=1e-15)
    assert tolerance.gamma(10, 0.1) == math.inf
    # float32 throughout, K = 3 plus a bias: gamma_4 * M + underflow + the oracle's own error
    ref, mag = np.array([2.0]), np.array([5.0])
    bound = tolerance.error_bound(ref, mag, reduction_length=3, precision=F32, bias=True)[0]
    g, g64 = tolerance.gamma(4, 2.0**-24), tolerance.gamma(4, 2.0**-53)
    m = 5.0 * (1 + 2 * g64)
    assert bound == pytest.approx(g64 * m + g * m + 3 * 2.0**-150 * (1 + g), rel=1e-12)
    # float16 output adds one rounding of |ref| + the accumulated bound, and its underflow
    b16 = tolerance.error_bound(ref, mag, reduction_length=3, precision=F16, bias=True)[0]
    assert b16 == pytest.approx(bound + 2.0**-11 * (2.0 + bound) + 2.0**-25, rel=1e-12)
    # declared TF32 inputs add (2u + u^2) M and scale the accumulation term
    tf32 = tolerance.error_bound(ref, mag, reduction_length=3, precision=Precision("tf32", "float32", "float32"))
    assert tf32[0] > (2 * 2.0**-11) * 5.0


def test_nan_in_reference_is_demanded():
    x = np.array([np.nan, 1.0])  # a NaN input, so every summation order gives NaN
    v = _check([3.0, 1.0], [np.nan, 1.0], [np.nan, 1.0], inputs=(x, np.array([0.5])))
    assert v.status == "failed"
    assert v.reason.startswith("NaN expected at (0,): got 3.0")
    assert _check([np.nan, 1.0], [np.nan, 1.0], [np.nan, 1.0], inputs=(x, np.array([0.5]))).status == "passed"


def test_infinity_must_match():
    x = np.array([np.inf, 1.0])
    args = dict(ref=[np.inf, 1.0], mag=[np.inf, 1.0], inputs=(x, np.array([0.5])))
    assert _check([np.inf, 1.0], **args).status == "passed"
    wrong = _check([-np.inf, 1.0], **args)
    assert wrong.status == "failed"
    assert "inf expected at (0,): got -inf" in wrong.reason
    assert _check([np.nan, 1.0], **args).status == "failed"
    assert _check([3.0e38, 1.0], **args).status == "failed"


def test_overflowed_magnitude_is_excused():
    # float16 output, float32 accumulator: the final rounding of 65500 + its error may overflow.
    inputs = (np.array([0.5, 300.0]), np.array([0.25]))
    near_max = _check([np.inf], [65500.0], [70000.0], inputs=inputs, precision=F16)
    assert near_max.status == "passed" and near_max.excused == 1
    # A finite answer in a may-overflow element still has to meet the bound.
    assert _check([60000.0], [65500.0], [70000.0], inputs=inputs, precision=F16).status == "failed"
    # Far from the float16 range, an infinity is simply wrong.
    v = _check([np.inf], [1.0], [70000.0], inputs=inputs, precision=F16)
    assert v.status == "failed" and "no overflow is possible" in v.reason
    # Accumulator overflow: partial sums of magnitude 1e39 may overflow float32 even if ref is small.
    big = _check([np.nan], [1.0], [1e39], inputs=(np.array([1.5e19]), np.array([1.5e19])))
    assert big.status == "passed" and big.excused == 1
    # The float64 magnitude itself overflowed: no requirement at all.
    assert _check([-7.0], [1.0], [np.inf], inputs=(np.array([1e308]), np.array([1e10]))).status == "passed"


def test_mostly_zero_reference_is_mistrusted():
    ref = np.array([0.0, 0.0, 0.0, 1.5])
    v = _check(ref.copy(), ref)
    assert v.status == "mistrusted" and v.zero_fraction == 0.75
    assert "exactly zero" in v.reason
    # A wrong answer still fails: mistrust only replaces a pass.
    assert _check([0.0, 0.0, 0.0, 2.5], ref).status == "failed"
    assert _check([0.0, 0.0, 1.0, 1.5], np.array([0.0, 0.0, 1.0, 1.5])).status == "passed"


def test_shape_mismatch_fails_without_raising():
    v = _check(np.zeros((2, 3)), np.zeros((2, 4)))
    assert v.status == "failed" and v.reason == "shape mismatch: got (2, 3), expected (2, 4)"
    json.dumps(v.to_dict())
    empty = _check(np.zeros((0, 3)), np.zeros((0, 3)))
    assert (empty.status, empty.tier, empty.checked) == ("passed", "empty", 0)
    assert _check(np.zeros((0, 2)), np.zeros((0, 3))).status == "failed"


def test_exact_tier_treats_signed_zeros_as_equal():
    ints = (np.array([1.0, -1.0, 2.0]), np.array([3.0, 3.0]))
    v = _check([-0.0, 6.0], [0.0, 6.0], [6.0, 6.0], inputs=ints)
    assert (v.tier, v.status) == ("exact", "passed")


def test_exact_tier_fails_one_ulp():
    ints = (np.array([3.0, 4.0]), np.array([4.0]))
    ulp_up = float(np.nextafter(np.float32(12.0), np.float32(13.0)))
    v = _check([ulp_up, 16.0], [12.0, 16.0], [12.0, 16.0], inputs=ints)
    assert (v.tier, v.status, v.worst_index, v.mismatches) == ("exact", "failed", (0,), 1)
    assert "got 12.000000953674316, expected exactly 12.0" in v.reason
    # The same one-ulp error is within the real-tier bound of a non-integer case.
    assert _check([ulp_up, 16.0], [12.0, 16.0], [12.0, 16.0]).status == "passed"


def test_exact_tier_needs_integers_that_fit():
    ints = (np.array([3.0, 4.0]), np.array([4.0]))
    assert tolerance.certifies_exact(ints, np.array([2.0**24]), F32)
    assert not tolerance.certifies_exact(ints, np.array([2.0**24 + 2]), F32)
    assert not tolerance.certifies_exact(ints, np.array([4096.0]), F16)  # 2**11 for float16 output
    assert not tolerance.certifies_exact((np.array([0.5]), np.array([4.0])), np.array([2.0]), F32)
    assert not tolerance.certifies_exact((np.array([np.inf]), np.array([4.0])), np.array([2.0]), F32)
    # TF32 inputs: an integer needing more than 11 bits is rounded, so the sum is not exact
    assert not tolerance.certifies_exact((np.array([4097.0]), np.array([1.0])), np.array([4097.0]), Precision(
        "tf32", "float32", "float32"))  # fmt: skip


def test_ratio_sum_sq_error_and_reason_are_recorded():
    ref = np.array([[1.0, 2.0], [3.0, 1.5]])
    mag = np.full_like(ref, 4.0)
    got = ref.copy()
    got[1, 1] = 1.25
    got[0, 0] = 1.0 + 1e-7
    v = _check(got, ref, mag)
    bound = tolerance.error_bound(ref, mag, reduction_length=4, precision=F32)
    assert v.status == "failed" and v.worst_index == (1, 1) and v.mismatches == 1  # (0, 0) is within
    assert (v.expected, v.got, v.error) == (1.5, 1.25, 0.25)
    assert v.bound == bound[1, 1] and v.ratio == pytest.approx(0.25 / bound[1, 1])
    assert v.sum_sq_error == pytest.approx(0.25**2 + 1e-14)
    assert v.reason.startswith(f"value at (1, 1): got 1.25, expected 1.5 ± {bound[1, 1]:.3g} (error/bound ")
    roundtrip = tolerance.Verdict.from_dict(json.loads(v.to_json()))
    assert roundtrip == v
    # A pass records the closest call.
    ok = _check(ref + 1e-7, ref, mag)
    assert ok.status == "passed" and 0 < ok.ratio < 1 and ok.worst_index is not None


def test_subnormal_inputs_under_tf32_need_their_magnitude():
    tf32 = Precision("tf32", "float32", "float32")
    tiny = round_to(np.array([3e-39, 1.0]), "float32")  # a float32 subnormal that TF32 cannot hold
    inputs = (tiny, np.array([1.0]))
    assert tolerance.subnormal_hazard(inputs, tf32) == "tf32"
    assert tolerance.subnormal_hazard(inputs, F32) is None
    # Rounded to zero: outside the relative bound, but the suite cannot know the product's share.
    ref = tiny.copy()
    v = _check([0.0, 1.0], ref, ref, inputs=inputs, k=1, precision=tf32)
    assert v.status == "mistrusted" and "subnormal_mag" in v.reason
    sub = ref - np.abs(tolerance.flush_subnormals(tiny, "tf32"))  # mag - magnitude(flushed inputs)
    assert np.array_equal(tolerance.flush_subnormals(tiny, "tf32"), [0.0, 1.0])
    settled = _check([0.0, 1.0], ref, ref, inputs=inputs, k=1, precision=tf32, subnormal_mag=sub)
    assert settled.status == "passed"


def test_a_precision_that_bounds_nothing_is_mistrusted_not_nan():
    # bfloat16 accumulation over 300 terms: gamma_n(2**-8) is infinite.
    ref = np.linspace(-1.0, 1.0, 12)
    verdict = _check(ref.copy(), ref, np.abs(ref) + 1, k=300, precision=Precision(None, "bfloat16", "bfloat16"))
    assert verdict.status == "mistrusted"
    assert "no error bound" in verdict.reason


def test_free_elements_carry_no_requirement():
    ref = np.array([1.0, np.nan, 3.0])
    got = np.array([1.0, 2.0, 3.0])
    assert _check(got, ref, np.abs(np.nan_to_num(ref)) + 1).status == "failed"
    free = np.array([False, True, False])
    assert _check(got, ref, np.abs(np.nan_to_num(ref)) + 1, free=free).status == "passed"


# ----------------------------------------------------------------- zeros by structure

# Stride 3 past a 1-tap kernel: of 10 input positions only 0, 3, 6 and 9 are read, so the
# other 6 gradients are zero whatever the data.  Four output channels make K = 4, enough
# underflow allowance in the bound for a smallest subnormal to slip through without terms.
STRIDED = ConvSpec(in_channels=1, out_channels=4, input_size=(10,), kernel_size=(1,), stride=(3,), bias=False)


def _grad_input(spec: ConvSpec, seed: int, sparsity: float = 0.0):
    rng = np.random.default_rng(seed)
    x = round_to(rng.standard_normal(spec.input_shape), "float32")
    w = round_to(rng.standard_normal(spec.weight_shape), "float32")
    gy = round_to(rng.standard_normal(spec.output_shape), "float32")
    gy[rng.random(gy.shape) < sparsity] = 0.0
    ref = oracle.backward(spec, x, w, gy)[0]
    mag = oracle.backward_magnitude(spec, x, w, gy)[0]
    kwargs = {"inputs": (w, gy), "reduction_length": spec.out_channels, "precision": F32,
              "terms": oracle.term_counts(spec)["grad_input"]}  # fmt: skip
    return round_to(ref, "float32"), ref, mag, kwargs


def test_uncovered_gradient_positions_are_evidence_not_a_reason_for_mistrust():
    got, ref, mag, kwargs = _grad_input(STRIDED, seed=1)
    assert np.count_nonzero(ref == 0) == 6 and np.all(ref[..., ::3] != 0)
    verdict = check(got, ref, mag, **kwargs)
    assert verdict.status == "passed", verdict.reason
    assert verdict.zero_fraction == 0.0 and "6 that no product reaches are exactly 0" in verdict.reason
    # Without the geometry the same zeros look like data: the old, mistrusting rule.
    assert check(got, ref, mag, **{**kwargs, "terms": None}).status == "mistrusted"


def test_a_value_where_no_product_reaches_fails():
    got, ref, mag, kwargs = _grad_input(STRIDED, seed=2)
    got[0, 0, 4] = 2.0**-149  # float32's smallest subnormal, inside the bound's underflow allowance
    verdict = check(got, ref, mag, **kwargs)
    assert verdict.status == "failed" and verdict.worst_index == (0, 0, 4), verdict.reason
    assert "no product reaches this element" in verdict.reason
    assert check(got, ref, mag, **{**kwargs, "terms": None}).status != "failed"
    # The requirement a repro script carries says the same: exactly 0 there, the bound elsewhere.
    req = tolerance.requirement(ref, mag, **kwargs)
    assert req.bound[0, 0, 4] == 0 and np.all(req.bound[..., ::3] > 0)
    assert not tolerance.meets(got, req)[0, 0, 4]
    # Either sign of zero is exactly zero.
    got[0, 0, 4] = -0.0
    assert check(got, ref, mag, **kwargs).status == "passed"


def test_a_value_where_no_product_reaches_fails_the_exact_tier_too():
    rng = np.random.default_rng(3)
    w = rng.integers(1, 4, size=STRIDED.weight_shape).astype(np.float64)
    gy = rng.integers(1, 4, size=STRIDED.output_shape).astype(np.float64)
    ref = oracle.backward(STRIDED, np.ones(STRIDED.input_shape), w, gy)[0]
    mag = oracle.backward_magnitude(STRIDED, np.ones(STRIDED.input_shape), w, gy)[0]
    terms = oracle.term_counts(STRIDED)["grad_input"]
    got = ref.copy()
    got[0, 0, 1] = 1.0
    verdict = check(got, ref, mag, inputs=(w, gy), reduction_length=4, precision=F32, terms=terms)
    assert (verdict.tier, verdict.status) == ("exact", "failed")
    assert "no product reaches this element" in verdict.reason


def test_gradients_whose_summed_elements_are_mostly_zero_are_still_mistrusted():
    # A 90%-sparse grad_output: most positions that do sum products sum zero data.
    got, ref, mag, kwargs = _grad_input(STRIDED.replace(in_channels=1, input_size=(40,)), seed=4, sparsity=0.9)
    summed = np.broadcast_to(kwargs["terms"], ref.shape) > 0
    assert np.mean(ref[summed] == 0) > tolerance.MOSTLY_ZERO
    verdict = check(got, ref, mag, **kwargs)
    assert verdict.status == "mistrusted" and "that sum products" in verdict.reason
    assert verdict.zero_fraction == np.mean(ref[summed] == 0)


def test_a_product_that_sums_nothing_anywhere_is_passed_on_its_zeros():
    # A batch of 0: grad_weight is all zeros by structure, which is the whole assertion.
    spec = STRIDED.replace(batch=0)
    x, gy = np.zeros(spec.input_shape), np.zeros(spec.output_shape)
    ref = oracle.backward(spec, x, np.ones(spec.weight_shape), gy)[1]
    terms = oracle.term_counts(spec)["grad_weight"]
    kwargs = {"inputs": (x, gy), "reduction_length": 0, "precision": F32, "terms": terms}
    assert check(ref.copy(), ref, np.abs(ref), **kwargs).status == "passed"
    assert check(ref + 0.5, ref, np.abs(ref), **kwargs).failed


def test_subnormal_hazard_never_excuses_a_value_where_no_product_reaches():
    tf32 = Precision("tf32", "float32", "float32")
    tiny = round_to(np.array([3e-39, 1.0]), "float32")  # a subnormal TF32 cannot hold
    ref, terms = np.array([0.0, 1.0, 0.0]), np.array([0, 1, 0])
    got = np.array([0.0, 1.0, 1e-30])
    verdict = _check(got, ref, ref, inputs=(tiny, np.array([1.0])), k=1, precision=tf32, terms=terms)
    assert verdict.status == "failed", verdict.reason
