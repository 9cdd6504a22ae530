"""Finding adapters by name: built-ins, the ``conv_conformance.adapters`` entry-point group, or ``module:Class``.

A backend team plugs in without touching this repository by registering its
adapter class under the entry-point group, in its own ``pyproject.toml``::

    [project.entry-points."conv_conformance.adapters"]
    mykernel = "mykernel_conformance.adapter:MyKernelAdapter"

after which ``--adapter mykernel`` finds it; or, with nothing installed, by
naming the class directly: ``--adapter mykernel_conformance.adapter:MyKernelAdapter``.

Adapters are created with no arguments, so that a name is all another process
needs to rebuild the same adapter (:func:`adapter_ref`, for child-process
isolation).  Built-in modules are imported only when their adapter is asked
for: the onnxruntime adapter must not need PyTorch, and neither must the suite.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import Any

from adapters.base import Adapter

#: The entry-point group third-party adapters register under.
ENTRY_POINT_GROUP = "conv_conformance.adapters"

#: Adapters that ship with the suite: name -> "module:Class".
BUILTINS: dict[str, str] = {
    "torch": "adapters.torch_functional:TorchFunctional",
    "torch-nn": "adapters.torch_modules:TorchModules",
    "onnxruntime": "adapters.onnxruntime_adapter:OnnxRuntime",
    "jax": "adapters.jax_adapter:Jax",
    "openvino": "adapters.openvino_adapter:OpenVino",
    "tensorflow": "adapters.tensorflow_adapter:TensorFlow",
    "mlx": "adapters.mlx_adapter:Mlx",
    "tinygrad": "adapters.tinygrad_adapter:Tinygrad",
    "paddle": "adapters.paddle_adapter:Paddle",
}

# What to install when a built-in's backend is missing.
_INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install 'conv-conformance[torch]'",
    "torch-nn": "pip install 'conv-conformance[torch]'",
    "onnxruntime": "pip install onnx onnxruntime",
    "jax": "pip install 'conv-conformance[jax]'",
    "openvino": "pip install 'conv-conformance[openvino]'",
    "tensorflow": "pip install 'conv-conformance[tensorflow]'",
    "mlx": "pip install 'conv-conformance[mlx]'",
    "tinygrad": "pip install 'conv-conformance[tinygrad]' (and a clang for its CPU device: apt install clang)",
    "paddle": "pip install 'conv-conformance[paddle]'",
}

_REQUIRED = ("name", "capabilities", "forward")


class UnknownAdapter(ValueError):
    """No adapter by that name, and not an importable ``module:Class``."""


class AdapterUnavailable(ImportError):
    """The adapter is known, but it (or the backend it wraps) cannot be imported here."""


class InvalidAdapter(TypeError):
    """The named object is not an adapter: it lacks ``name``, ``capabilities`` or ``forward``."""


# ----------------------------------------------------------------------- lookup


def _entry_points() -> dict[str, tuple[str, str | None]]:
    """Registered name -> (target, distribution name), first registration winning."""
    found: dict[str, tuple[str, str | None]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(ep.name, (ep.value, dist.name if dist is not None else None))
    return found


def known_adapters() -> dict[str, str]:
    """Every adapter name this environment knows -> its ``"module:Class"`` target.

    Built-ins first; an entry point cannot take over a built-in's name (so
    ``--adapter torch`` means the same thing everywhere).
    """
    known = dict(BUILTINS)
    for name, (target, _) in _entry_points().items():
        known.setdefault(name, target)
    return known


def _unknown(name: str, why: str) -> UnknownAdapter:
    names = ", ".join(sorted(known_adapters()))
    return UnknownAdapter(
        f"{why}.  Known adapters: {names}.  Any importable adapter class can also be named as "
        f"'package.module:ClassName', or registered by its own package under the entry-point group "
        f"{ENTRY_POINT_GROUP!r}."
    )


def load_adapter(name: str) -> Adapter:
    """The adapter called ``name``: a built-in, an entry point, or ``"package.module:Class"``.

    Raises :class:`UnknownAdapter` for a name that is none of those,
    :class:`AdapterUnavailable` when a known adapter (or its backend) cannot be
    imported, and :class:`InvalidAdapter` when the target is not an adapter.
    """
    if not isinstance(name, str) or not name.strip():
        raise _unknown(str(name), f"adapter name {name!r} is empty")
    name = name.strip()
    if name in BUILTINS:
        return _instantiate(name, BUILTINS[name], _INSTALL_HINTS[name])
    points = _entry_points()
    if name in points:
        target, dist = points[name]
        hint = f"reinstall the distribution that registers it ({dist})" if dist else "reinstall the package"
        return _instantiate(name, target, hint)
    if ":" in name:
        return _instantiate(name, name, None)
    raise _unknown(name, f"no adapter named {name!r}")


def _label(name: str, target: str) -> str:
    """``adapter 'torch' (adapters.torch_functional:TorchFunctional)``, or just the target when it is the name."""
    return f"adapter {name!r}" if name == target else f"adapter {name!r} ({target})"


def _instantiate(name: str, target: str, install_hint: str | None) -> Adapter:
    cls = _resolve(name, target, install_hint)
    label = _label(name, target)
    if not callable(cls):
        raise InvalidAdapter(f"{label} is a {type(cls).__name__}, not an adapter class")
    _check_attributes(label, cls, required=("capabilities", "forward"))
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InvalidAdapter(f"{label} is abstract: it does not implement {missing}")
    try:
        adapter = cls()
    except ImportError as err:
        # Adapters may import their backend when created rather than when imported.
        raise AdapterUnavailable(_unavailable(label, err, install_hint)) from err
    _check_attributes(label, adapter, required=_REQUIRED)
    for method in ("capabilities", "forward"):
        if not callable(getattr(adapter, method)):
            raise InvalidAdapter(f"{label}: {method} is not callable")
    if not isinstance(adapter.name, str) or not adapter.name:
        raise InvalidAdapter(f"{label}: name={adapter.name!r}, but should be a non-empty string")
    return adapter


def _resolve(name: str, target: str, install_hint: str | None) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise _unknown(name, f"{target!r} is not of the form 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        if install_hint is None and missing and module_name.startswith(missing):
            # The user's own module:Class, and its module (not a dependency) is what is missing.
            raise AdapterUnavailable(
                f"{_label(name, target)}: no module named {missing!r} can be imported.  Is the package that provides "
                f"{module_name!r} installed in this environment (pip install it), or its directory on "
                f"sys.path / PYTHONPATH?  The form is 'package.module:ClassName'."
            ) from err
        raise AdapterUnavailable(_unavailable(_label(name, target), err, install_hint)) from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _unknown(name, f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _unavailable(label: str, err: ImportError, install_hint: str | None) -> str:
    missing = getattr(err, "name", None)
    what = f"it needs {missing!r}, which is not installed" if missing else "it cannot be imported"
    fix = f"  To fix: {install_hint}" if install_hint else "  Install what it needs (pip install ...)."
    return f"{label} is unavailable: {what} ({type(err).__name__}: {err}).{fix}"


def _check_attributes(label: str, obj: Any, required: tuple[str, ...]) -> None:
    missing = [attr for attr in required if not hasattr(obj, attr)]
    if missing:
        raise InvalidAdapter(
            f"{label} lacks {', '.join(missing)}; an adapter needs a 'name' and the methods "
            "capabilities() and forward(spec, x, w, b) (see adapters.base.Adapter)"
        )


# ------------------------------------------------------------------ references


def adapter_ref(adapter: Adapter) -> str:
    """A string :func:`load_adapter` turns back into the same adapter in another process.

    The adapter's registered name when its class is the one registered under it
    (built-in or entry point), else ``"module:Class"``.  Raises ``ValueError`` for
    a class no other process could import (defined in ``__main__`` or in a function).
    """
    cls = type(adapter)
    target = f"{cls.__module__}:{cls.__qualname__}"
    known = known_adapters()
    own = getattr(adapter, "name", None)
    if isinstance(own, str) and own in known:
        # The registered target may name a re-export ("pkg:Class" for pkg.module.Class):
        # compare the class itself, not its spelling.
        try:
            registered_cls = _resolve(own, known[own], None)
        except (ImportError, ValueError):
            registered_cls = None
        if registered_cls is cls:
            return own
    for registered, registered_target in known.items():
        if registered_target == target:
            return registered
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ValueError(
            f"adapter class {target} cannot be imported by another process; define it in an importable "
            "module (or register it under the entry-point group) to run it in isolation"
        )
    return target


__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "AdapterUnavailable",
    "InvalidAdapter",
    "UnknownAdapter",
    "adapter_ref",
    "known_adapters",
    "load_adapter",
]
