"""Finding adapters: built-in names, entry points, ``module:Class``, and the errors for the rest.

The entry-point tests build a real (if tiny) installed distribution: a
``*.dist-info`` directory with ``METADATA`` and ``entry_points.txt`` on
``sys.path``, which is exactly what ``importlib.metadata`` reads after a
``pip install`` of a third-party adapter package (see ``tests/example_adapter``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from adapters import registry
from adapters.base import Adapter
from adapters.registry import (
    BUILTINS,
    ENTRY_POINT_GROUP,
    AdapterUnavailable,
    InvalidAdapter,
    UnknownAdapter,
    adapter_ref,
    known_adapters,
    load_adapter,
)
from conformance import oracle, tolerance
from conformance.data import make_inputs, reduction_lengths
from conformance.strategies import conv_cases
from tests.example_adapter import NumpyDirect

EXAMPLE = "tests.example_adapter:NumpyDirect"
REPO = Path(__file__).resolve().parents[1]


def _install_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str) -> None:
    """A distribution 'example-pkg' whose entry_points.txt is ``entry_points``, importable from sys.path."""
    info = tmp_path / "example_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: example-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(tmp_path))


# ------------------------------------------------------------------ built-ins


def test_builtins_are_known_by_name() -> None:
    known = known_adapters()
    for name, target in BUILTINS.items():
        assert known[name] == target
    others = {"jax", "openvino", "tensorflow", "mlx", "tinygrad", "paddle"}
    assert set(BUILTINS) == {"torch", "torch-nn", "onnxruntime", *others}


@pytest.mark.torch
@pytest.mark.parametrize("name", ["torch", "torch-nn"])
def test_torch_builtins_load(name: str) -> None:
    pytest.importorskip("torch")
    adapter = load_adapter(name)
    assert adapter.name == name
    assert adapter_ref(adapter) == name
    assert "float32" in adapter.capabilities().dtypes


@pytest.mark.parametrize("name", ["onnxruntime", "jax", "openvino", "tensorflow", "mlx", "tinygrad", "paddle"])
def test_other_builtins_load_or_say_how_to_install(name: str) -> None:
    # Each framework lives in a tox env of its own, so here most of them are absent: that must read as an
    # install hint naming the extra, never as an unknown adapter or a traceback.
    try:
        adapter = load_adapter(name)
    except AdapterUnavailable as error:
        assert "pip install" in str(error)
    else:
        assert adapter.name == name


def test_builtin_modules_are_imported_only_when_asked_for() -> None:
    # A fresh interpreter: listing the adapters must not import torch or onnxruntime.
    code = (
        "import sys; from adapters.registry import known_adapters; known_adapters(); "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'jax', 'openvino', 'tensorflow', 'mlx', 'tinygrad', "
        "'paddle') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --------------------------------------------------------------- module:Class


def test_module_class_form_loads_any_importable_adapter() -> None:
    adapter = load_adapter(EXAMPLE)
    assert isinstance(adapter, NumpyDirect) and adapter.name == "numpy-direct"
    assert adapter_ref(adapter) == "tests.example_adapter.numpy_direct:NumpyDirect"
    assert type(load_adapter(adapter_ref(adapter))) is NumpyDirect


def test_missing_module_error_is_clear() -> None:
    with pytest.raises(AdapterUnavailable, match=r"no module named 'no_such_backend'.*installed.*sys\.path"):
        load_adapter("no_such_backend.adapter:Thing")


def test_missing_class_is_unknown() -> None:
    with pytest.raises(UnknownAdapter, match=r"has no attribute 'Nope'"):
        load_adapter("tests.example_adapter:Nope")


def test_missing_dependency_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A known adapter whose backend is not installed: the import error and the pip command."""
    (tmp_path / "needs_backend.py").write_text("import some_missing_backend_lib\n\nclass Adapter: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BUILTINS, "fake", "needs_backend:Adapter")
    monkeypatch.setitem(registry._INSTALL_HINTS, "fake", "pip install some-missing-backend-lib")
    with pytest.raises(AdapterUnavailable) as info:
        load_adapter("fake")
    message = str(info.value)
    assert "some_missing_backend_lib" in message and "pip install some-missing-backend-lib" in message


# ------------------------------------------------------------------ errors


def test_unknown_name_lists_the_known_ones_and_the_module_class_form() -> None:
    with pytest.raises(UnknownAdapter) as info:
        load_adapter("tensorflow-lite")
    message = str(info.value)
    for name in BUILTINS:
        assert name in message
    assert "module:ClassName" in message and ENTRY_POINT_GROUP in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["", "   ", "adapters.base:", ":Adapter", "justaname:"])
def test_malformed_names_are_unknown(name: str) -> None:
    with pytest.raises(UnknownAdapter):
        load_adapter(name)


class NotAnAdapter:
    """Has a name and nothing else."""

    name = "half"


class Nameless(Adapter):
    def capabilities(self):  # pragma: no cover - never called
        raise NotImplementedError

    def forward(self, spec, x, w, b):  # pragma: no cover - never called
        raise NotImplementedError


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("tests.test_registry:NotAnAdapter", "lacks capabilities, forward"),
        ("adapters.base:Adapter", "abstract: it does not implement capabilities, forward"),
        ("tests.test_registry:Nameless", r"name='', but should be a non-empty string"),
        ("tests.test_registry:EXAMPLE", "not an adapter class"),
    ],
)
def test_objects_that_are_not_adapters_are_refused(target: str, match: str) -> None:
    with pytest.raises(InvalidAdapter, match=match):
        load_adapter(target)


# -------------------------------------------------------------- entry points


def test_entry_points_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(
        tmp_path,
        monkeypatch,
        f"""
        [{ENTRY_POINT_GROUP}]
        numpy-direct = {EXAMPLE}
        torch = tests.example_adapter:NumpyDirect
        """,
    )
    assert known_adapters()["numpy-direct"] == EXAMPLE
    # A registered name cannot take over a built-in.
    assert known_adapters()["torch"] == BUILTINS["torch"]
    adapter = load_adapter("numpy-direct")
    assert isinstance(adapter, NumpyDirect)
    # Registered under a re-export of the class: the ref is still the name.
    assert adapter_ref(adapter) == "numpy-direct"


def test_broken_entry_point_names_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(
        tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nghost = ghost_package.adapter:Ghost\n"
    )
    with pytest.raises(AdapterUnavailable, match=r"ghost_package.*example-pkg"):
        load_adapter("ghost")
    with pytest.raises(UnknownAdapter, match="ghost"):  # listed among the known names
        load_adapter("not-registered")


def test_adapter_ref_survives_another_process() -> None:
    ref = adapter_ref(load_adapter(EXAMPLE))
    code = f"from adapters.registry import load_adapter; print(load_adapter({ref!r}).name)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy-direct"


def test_adapter_ref_refuses_classes_no_other_process_can_import() -> None:
    class Local(NumpyDirect):
        name = "local"

    with pytest.raises(ValueError, match="cannot be imported by another process"):
        adapter_ref(Local())


# ----------------------------------------------------------- the example


# Exactly the example's capabilities, on the non-special data.
EXAMPLE_CASES = conv_cases(
    dims=(1, 2),
    dtypes=("float64", "float32"),
    transposed=False,
    padding_modes=("zeros",),
    layouts=("contiguous",),
    distributions=("ones", "integers", "real", "cancellation"),
    max_macs=3_000,
)


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(case=EXAMPLE_CASES)
def test_example_adapter_conforms(case) -> None:
    spec, recipe = case
    adapter = NumpyDirect()
    caps = adapter.capabilities()
    assert caps.unsupported(spec) is None
    x, w, b = make_inputs(spec, recipe)
    verdict = tolerance.check(
        adapter.forward(spec, x, w, b), oracle.forward(spec, x, w, b), oracle.magnitude(spec, x, w, b),
        inputs=(x, w, b) if spec.bias else (x, w), reduction_length=reduction_lengths(spec)["forward"],
        precision=caps.precision_for(spec), bias=spec.bias,
    )  # fmt: skip
    assert not verdict.failed, f"numpy-direct({spec}) on {recipe}: {verdict.reason}"


def test_example_adapter_declares_what_it_cannot_do() -> None:
    from conformance.spec import ConvSpec

    caps = NumpyDirect().capabilities()
    assert "3-D" in caps.unsupported(ConvSpec(1, 1, (3, 3, 3), (1, 1, 1)))
    assert "reflect" in caps.unsupported(ConvSpec(1, 1, (5,), (3,), padding=1, padding_mode="reflect"))
    assert "transposed" in caps.unsupported(ConvSpec(1, 1, (5,), (3,), transposed=True))
    assert "backward" in caps.unsupported(ConvSpec(1, 1, (5,), (3,)), "backward")
    with pytest.raises(ValueError):  # an invalid problem is refused
        NumpyDirect().forward(ConvSpec(1, 1, (5,), (3,), dilation=0), np.ones((1, 1, 5)), np.ones((1, 1, 3)), None)
