"""One call of an adapter method, made where the adapter lives (this process, or an isolated worker).

The pieces of :mod:`conformance.faults` that both sides share: loading an
adapter by ref, running one method and saying how it ended (:func:`invoke`),
noticing which inputs the method wrote into, and the adapter's self-description
(:class:`AdapterInfo`), rebuilt from plain values so that nothing the adapter
returned can lie later or smuggle its own classes into the parent.
"""

from __future__ import annotations

import importlib
import math
import os
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The adapter methods a caller may invoke (``describe`` is the caller's own: name, capabilities, versions).
METHODS = ("forward", "backward", "repro_source", "describe")
#: The names of each method's arguments, for "modified its input x".
ARGUMENTS = {"forward": ("spec", "x", "w", "b"), "backward": ("spec", "x", "w", "b", "grad_out")}

# Characters of an exception's message kept in an Outcome.
_MESSAGE = 2000
# Traceback frames kept in an error message: the innermost few are where the backend broke.
_FRAMES = 3
# What is kept of an adapter's name and of each versions() entry.
_NAME, _VERSION, _VERSIONS = 200, 200, 50
_MACHINERY = {__file__, os.path.join(os.path.dirname(__file__), "faults.py"),
              os.path.join(os.path.dirname(__file__), "isolation.py")}  # fmt: skip


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter says about itself, as plain values: its declared name, capabilities and versions."""

    name: str
    capabilities: Any  # adapters.base.Capabilities (not imported here: adapters is the layer above)
    versions: dict[str, str]


class DescribeError(Exception):
    """The adapter could not describe itself: ``name`` or ``capabilities()`` raised or returned nonsense."""


# ---------------------------------------------------------------------- loading


def load(ref: str) -> Any:
    """The adapter instance for ``ref`` (through :func:`adapters.registry.load_adapter`)."""
    try:
        from adapters.registry import load_adapter
    except ModuleNotFoundError as exc:
        # Only while the registry does not exist yet: fall back to "package.module:Class".
        # Any other import failure inside the registry is a real error and propagates.
        if exc.name != "adapters.registry":
            raise
        return _load_module_attribute(ref)
    return load_adapter(ref)


def _load_module_attribute(ref: str) -> Any:
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"adapter ref {ref!r}, but should be 'package.module:Class' (no registry is installed)")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target() if isinstance(target, type) else target


def describe_exception(exc: BaseException) -> str:
    """``"ExceptionType: message"`` and the innermost traceback frames, one per line."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        text = str(exc)
    except Exception:  # an exception whose __str__ raises is still an exception
        text = "<its message cannot be printed>"
    text = clip(text, _MESSAGE)  # a backend may print a whole tensor into its message
    lines = [f"{name}: {text}" if text else name]
    # The call machinery's frames (this package's, the import system's) say nothing about the backend.
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename not in _MACHINERY and not f.filename.startswith("<frozen")
    ]
    lines += [f"  at {_short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames[-_FRAMES:]]
    return "\n".join(lines)


def _short_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    if not relative.startswith(".."):
        return relative
    parts = path.replace(os.sep, "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else path


# ---------------------------------------------------------------------- calling


def own_copies(args: tuple) -> tuple:
    """``args`` with every array copied: what the adapter gets, so the caller's arrays stay pristine.
    (The spec is a frozen dataclass of tuples; a copy of it guards against ``object.__setattr__``.)"""
    import copy

    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else copy.copy(a) for a in args)


def modified_inputs(method: str, pristine: tuple, given: tuple) -> tuple[str, ...]:
    """The names of the arguments the adapter wrote into: ``given`` (what it was handed) against
    ``pristine`` (an untouched copy), compared bit for bit (NaN payloads and -0.0 included)."""
    names = ARGUMENTS.get(method, ())
    changed = []
    for name, before, after in zip(names, pristine, given):
        if isinstance(before, np.ndarray):
            if not _same_bits(before, after):
                changed.append(name)
        elif before != after:  # the spec
            changed.append(name)
    return tuple(changed)


def _same_bits(before: np.ndarray, after: Any) -> bool:
    if not isinstance(after, np.ndarray) or after.shape != before.shape or after.dtype != before.dtype:
        return False
    return before.tobytes() == after.tobytes()


def detached(value: Any) -> Any:
    """What the adapter returned, with every array copied: an adapter that reuses one output buffer
    must not change an answer already handed back (or make two answers the same object)."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, tuple):  # a namedtuple too: the runner reads it as a plain tuple
        return tuple(detached(v) for v in value)
    if isinstance(value, list):
        return [detached(v) for v in value]
    return value


def invoke(adapter: Any, method: str, args: tuple, pristine: tuple | None = None) -> tuple[str, Any, float, tuple]:
    """``("ok", value, seconds, modified)`` or ``("error", message, seconds, modified)``.

    ``args`` are the adapter's own copies; ``pristine`` an untouched copy of them
    to compare with afterwards (made here when not given).  Catches
    BaseException: it runs on a worker thread or in the child, where a
    KeyboardInterrupt or SystemExit can only come from the backend itself
    (signals go to the main thread, and the child ignores SIGINT).
    """
    if method == "describe":
        start = time.perf_counter()
        try:
            return "ok", describe_adapter(adapter), time.perf_counter() - start, ()
        except DescribeError as exc:
            return "error", str(exc), time.perf_counter() - start, ()
    if pristine is None and method in ARGUMENTS:
        pristine = own_copies(args)
    start = time.perf_counter()
    try:
        value = getattr(adapter, method)(*args)
    except BaseException as exc:
        status, value = "error", describe_exception(exc)
    else:
        status = "ok"
    seconds = time.perf_counter() - start
    modified = modified_inputs(method, pristine, args) if pristine is not None else ()
    return status, value, seconds, modified


# ------------------------------------------------------------------ describing


def describe_adapter(adapter: Any) -> AdapterInfo:
    """The adapter's declared name, validated capabilities and sanitised versions; DescribeError when
    its name or capabilities() cannot be used (versions() is optional: its failure is recorded, not fatal)."""
    from adapters.base import Capabilities

    try:
        name = adapter.name
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"name={name!r}, but should be a non-empty string")
        capabilities = Capabilities.validated(adapter.capabilities())
    except BaseException as exc:
        raise DescribeError(f"the adapter cannot describe itself: {describe_exception(exc)}") from None
    return AdapterInfo(name[:_NAME], capabilities, plain_versions(adapter))


def plain_versions(adapter: Any) -> dict[str, str]:
    """``versions()`` as short strings: NaN, a 10,000-digit int or an object whose ``__str__`` raises
    becomes text, so the results file stays strict JSON and readable."""
    try:
        found = adapter.versions()
    except BaseException as exc:
        return {"error": _text(f"versions() raised {describe_exception(exc)}", _VERSION)}
    if not isinstance(found, Mapping):
        return {"error": f"versions() returned {type(found).__name__}, not a mapping"}
    out = {}
    for i, (key, value) in enumerate(found.items()):
        if i == _VERSIONS:
            out["..."] = f"{len(found) - _VERSIONS} more entries not kept"
            break
        out[_text(key, _NAME)] = _text(value, _VERSION)
    return out


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out: an adapter's text (an exception
    that prints a whole tensor, a 200 MB reason) is untrusted in size as in content."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def _text(value: Any, limit: int) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # huge ints refuse str() (sys.set_int_max_str_digits); __str__ may raise
        text = f"<a {type(value).__name__} that cannot be printed>"
    return clip(text, limit)


__all__ = [
    "ARGUMENTS",
    "METHODS",
    "AdapterInfo",
    "DescribeError",
    "clip",
    "describe_adapter",
    "describe_exception",
    "detached",
    "invoke",
    "load",
    "modified_inputs",
    "own_copies",
    "plain_versions",
]
