"""Standalone repro scripts: they judge as the suite does, and run without it.

Every script here runs in a fresh ``python -I`` in a temporary directory, behind an
import hook that refuses this project's packages (the venv has the suite installed
in editable mode, so ``-I`` alone would not keep it out).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conformance import oracle, tolerance
from conformance.data import DataRecipe, make_grad_output, make_inputs, reduction_lengths
from conformance.repro import MEETS_SOURCE, repro_script
from conformance.spec import ConvSpec
from conformance.tolerance import FINITE_OR_OVERFLOW, FREE, INF, NAN, VALUE, Requirement
from tests import faulty_adapters

SPEC = ConvSpec(2, 3, (5, 4), (3, 2), padding=((1, 0), (2, 1)), stride=(2, 1))

# Runs the script as __main__ with this project's packages unimportable.
_ISOLATED = textwrap.dedent("""
    import importlib.abc, runpy, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("conformance", "adapters", "reports", "tests"):
                raise ImportError(f"a standalone repro imported {name}")

    sys.meta_path.insert(0, Refuse())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def run_script(text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "repro.py"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def forward_case(adapter, spec: ConvSpec, recipe: DataRecipe, data=None):
    """(script, verdict, got) for the adapter's forward on spec, judged as the runner judges it."""
    x, w, b = make_inputs(spec, recipe) if data is None else data
    precision = adapter.capabilities().precision_for(spec)
    inputs = (x, w, b) if spec.bias else (x, w)
    kwargs = dict(inputs=inputs, reduction_length=reduction_lengths(spec)["forward"], precision=precision,
                  bias=spec.bias)  # fmt: skip
    ref, mag = oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b)
    got = adapter.forward(spec, x, w, b)
    verdict = tolerance.check(got, ref, mag, **kwargs)
    script = repro_script(
        adapter_name=adapter.name, backend_source=adapter.repro_source(spec, "forward"),
        spec_descriptor=spec.descriptor(), operation="forward", product="output", inputs={"x": x, "w": w, "b": b},
        requirement=tolerance.requirement(ref, mag, **kwargs), recipe=recipe.describe(), reason=verdict.reason,
    )  # fmt: skip
    return script, verdict, got


# ------------------------------------------------------------ the inlined meets


def test_inlined_meets_agrees_with_tolerance():
    namespace: dict = {}
    exec(MEETS_SOURCE, namespace)
    inlined = namespace["repro_meets"]
    rng = np.random.default_rng(7)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1.0, -1.0])
    for _ in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 6, size=rng.integers(1, 4)))
        kind = rng.choice([VALUE, NAN, INF, FREE, FINITE_OR_OVERFLOW], size=shape).astype(np.int8)
        expected = np.where(kind == INF, rng.choice([np.inf, -np.inf], size=shape), rng.standard_normal(shape))
        bound = np.abs(rng.standard_normal(shape)) * rng.choice([0.0, 1e-3, 1.0], size=shape)
        bound[rng.random(shape) < 0.05] = rng.choice([np.nan, np.inf])
        # got: near, exactly on and beyond the bound, or a special value
        with np.errstate(invalid="ignore"):
            offset = bound * rng.choice([0.0, 0.5, 1.0, 1.5, -1.0, -2.0], size=shape)
            got = np.where(rng.random(shape) < 0.3, rng.choice(specials, size=shape), expected + offset)
        req = Requirement("real", expected, bound, kind)
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(inlined(got, expected, bound, kind), tolerance.meets(got, req))
    # and on requirements tolerance itself builds, with a shape mismatch
    ref = np.array([1.0, np.nan, np.inf, 2.0])
    req = tolerance.requirement(ref, np.abs(ref), inputs=(np.array([np.nan, np.inf, 0.5]),), reduction_length=3,
                                precision=tolerance.default_precision("float32"))  # fmt: skip
    for got in (ref, np.array([1.0, 0.0, -np.inf, 2.5]), np.zeros(3)):
        np.testing.assert_array_equal(inlined(got, req.expected, req.bound, req.kind), tolerance.meets(got, req))


# ------------------------------------------------------------------- forward


def test_wrong_forward_fails_and_names_its_worst_element(tmp_path):
    script, verdict, got = forward_case(faulty_adapters.OffByOne(), SPEC, DataRecipe("integers", seed=3, scale=2))
    assert verdict.status == "failed" and verdict.tier == "exact"
    last = tuple(n - 1 for n in SPEC.output_shape)  # OffByOne adds 1 to the last element
    assert verdict.worst_index == last
    run = run_script(script, tmp_path)
    assert run.returncode == 1, run.stderr
    expected = verdict.expected
    assert f"FAIL output at {last}: got {expected + 1!r}, expected exactly {expected!r}" in run.stdout
    assert f"1 of {got.size} elements fail (exact tier) on {SPEC.descriptor()}" in run.stdout


def test_wrong_forward_in_the_real_tier_prints_the_bound(tmp_path):
    spec = SPEC.replace(dtype="float32")
    script, verdict, _ = forward_case(faulty_adapters.OffByOne(), spec, DataRecipe("real", seed=5, scale=3))
    assert verdict.status == "failed" and verdict.tier == "real"
    run = run_script(script, tmp_path)
    assert run.returncode == 1, run.stderr
    line = run.stdout.splitlines()[0]
    assert line.startswith(
        f"FAIL output at {verdict.worst_index}: got {verdict.got!r}, expected {verdict.expected!r} +- "
    )
    assert "error/bound" in line


def test_correct_adapter_passes(tmp_path):
    script, verdict, _ = forward_case(faulty_adapters.Correct(), SPEC, DataRecipe("integers", seed=3, scale=2))
    assert verdict.status == "passed"
    run = run_script(script, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("PASS output: all")


def test_a_required_nan_is_enforced(tmp_path):
    spec = SPEC.replace(dtype="float32")
    x, w, b = make_inputs(spec, DataRecipe("real", seed=1))
    x[0, 1, 2, 3] = np.nan  # every output reading it must be NaN, in any summation order
    skipping, verdict, _ = forward_case(faulty_adapters.SkipsNaN(), spec, DataRecipe("real", seed=1), (x, w, b))
    assert verdict.status == "failed" and verdict.reason.startswith("NaN expected at")
    run = run_script(skipping, tmp_path)
    assert run.returncode == 1, run.stderr
    assert f"FAIL output at {verdict.worst_index}: got {verdict.got!r}, expected NaN" in run.stdout
    correct, verdict, _ = forward_case(faulty_adapters.Correct(), spec, DataRecipe("real", seed=1), (x, w, b))
    assert verdict.status == "passed"
    assert run_script(correct, tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        (faulty_adapters.Raises(), "FAIL output: the candidate raised"),
        (faulty_adapters.WrongShape(), "FAIL output: shape"),
    ],
)
def test_a_raising_or_misshapen_candidate_fails(tmp_path, adapter, message):
    x, w, b = make_inputs(SPEC, DataRecipe())
    ref = oracle.forward(SPEC, x, w, b)
    precision = tolerance.default_precision("float32")
    req = tolerance.requirement(ref, oracle.magnitude(SPEC, x, w, b), inputs=(x, w, b),
                                reduction_length=SPEC.reduction_length, precision=precision, bias=True)  # fmt: skip
    script = repro_script(
        adapter_name=adapter.name, backend_source=adapter.repro_source(SPEC), spec_descriptor=SPEC.descriptor(),
        operation="forward", product="output", inputs={"x": x, "w": w, "b": b}, requirement=req, recipe="ones seed=0",
        reason="test",
    )  # fmt: skip
    run = run_script(script, tmp_path)
    assert run.returncode == 1 and message in run.stdout, run.stdout + run.stderr


# ------------------------------------------------------------------ backward


def backward_script(product: str) -> str:
    spec, recipe = SPEC.replace(batch=2), DataRecipe("integers", seed=11, scale=1)
    adapter = faulty_adapters.WrongGradBias()
    x, w, b = make_inputs(spec, recipe)
    gy = make_grad_output(spec, recipe)
    index = ("grad_input", "grad_weight", "grad_bias").index(product)
    ref = oracle.backward(spec, x, w, gy)[index]
    mag = oracle.backward_magnitude(spec, x, w, gy)[index]
    inputs = {"grad_input": (w, gy), "grad_weight": (x, gy), "grad_bias": (gy,)}[product]
    req = tolerance.requirement(ref, mag, inputs=inputs, reduction_length=reduction_lengths(spec)[product],
                                precision=tolerance.default_precision(spec.dtype))  # fmt: skip
    assert req.tier == "exact"
    return repro_script(
        adapter_name=adapter.name, backend_source=adapter.repro_source(spec, "backward"),
        spec_descriptor=spec.descriptor(), operation="backward", product=product,
        inputs={"x": x, "w": w, "b": b, "grad_out": gy}, requirement=req, recipe=recipe.describe(), reason="test",
    )  # fmt: skip


def test_backward_judges_the_selected_product(tmp_path):
    # WrongGradBias: grad_input and grad_weight right, grad_bias[0] one too large.
    bias = run_script(backward_script("grad_bias"), tmp_path)
    assert bias.returncode == 1, bias.stderr
    assert bias.stdout.startswith("FAIL grad_bias at (0,): got ")
    for product in ("grad_input", "grad_weight"):
        run = run_script(backward_script(product), tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith(f"PASS {product}")


# -------------------------------------------------------------- the script


def test_script_embeds_inputs_exactly_and_says_what_it_is():
    x = np.array([[[np.nan, np.inf, -np.inf, -0.0, 5e-324, 1 / 3, -2.5e300]]])
    w = np.array([[[1.0]]])
    spec = ConvSpec(1, 1, (7,), (1,), bias=False, dtype="float64")
    req = Requirement("real", oracle.forward(spec, x, w), np.full(spec.output_shape, 1e-9),
                      np.array([[[NAN, INF, INF, VALUE, VALUE, FINITE_OR_OVERFLOW, FREE]]], dtype=np.int8))  # fmt: skip
    reason = "value at (0, 0, 5): got 1.0, expected 0.333\nsecond line of the reason"
    script = repro_script(
        adapter_name="numpy-correct", backend_source=faulty_adapters.Correct().repro_source(spec),
        spec_descriptor=spec.descriptor(), operation="forward", product="output", inputs={"x": x, "w": w, "b": None},
        requirement=req, recipe="special seed=4", reason=reason,
    )  # fmt: skip
    namespace: dict = {"__name__": "not_main"}
    exec(script, namespace)
    for name, array in (("x", x), ("w", w)):
        assert namespace["REPRO_INPUTS"][name].tobytes() == array.tobytes()
    assert namespace["REPRO_INPUTS"]["b"] is None
    for name in ("expected", "bound", "kind"):
        embedded = namespace[f"REPRO_{name.upper()}"]
        assert embedded.tobytes() == getattr(req, name).tobytes() and embedded.dtype == getattr(req, name).dtype
    header = script.split("\nimport ", 1)[0]
    for text in (spec.descriptor(), "special seed=4", "numpy-correct", "second line of the reason", "python"):
        assert text in header
    assert "import conformance" not in script and "from conformance" not in script


def test_future_imports_of_the_backend_are_hoisted(tmp_path):
    backend = "from __future__ import annotations\n\nimport numpy as np\n\n\ndef candidate(x, w, b) -> np.ndarray:\n"
    backend += "    return np.full((1, 1, 2), 2.0)\n"
    req = Requirement("real", np.full((1, 1, 2), 2.0), np.zeros((1, 1, 2)), np.zeros((1, 1, 2), dtype=np.int8))
    script = repro_script(
        adapter_name="hand-written", backend_source=backend, spec_descriptor="conv1d_mb1_ic1_oc1_i2_k1",
        operation="forward", product="output", inputs={"x": np.ones((1, 1, 2)), "w": np.ones((1, 1, 1)), "b": None},
        requirement=req, recipe="ones seed=0", reason="test",
    )  # fmt: skip
    assert script.index("from __future__") < script.index("import numpy")
    assert run_script(script, tmp_path).returncode == 0


def test_arguments_are_checked():
    x, w = np.ones((1, 1, 2)), np.ones((1, 1, 1))
    req = Requirement("real", np.ones((1, 1, 2)), np.zeros((1, 1, 2)), np.zeros((1, 1, 2), dtype=np.int8))
    good = dict(adapter_name="a", backend_source="def candidate(x, w, b):\n    return x\n", spec_descriptor="d",
                operation="forward", product="output", inputs={"x": x, "w": w, "b": None}, requirement=req,
                recipe="r", reason="r")  # fmt: skip
    repro_script(**good)
    with pytest.raises(ValueError, match="product='grad_bias'"):
        repro_script(**{**good, "product": "grad_bias"})
    with pytest.raises(ValueError, match="'grad_out'"):
        repro_script(**{**good, "operation": "backward", "product": "grad_bias",
                        "backend_source": "def candidate_backward(x, w, b, g):\n    pass\n"})  # fmt: skip
    with pytest.raises(ValueError, match=r"does not define candidate\(\)"):
        repro_script(**{**good, "backend_source": "def run(x, w, b):\n    return x\n"})
    with pytest.raises(ValueError, match="not valid Python"):
        repro_script(**{**good, "backend_source": "def candidate(:\n"})
