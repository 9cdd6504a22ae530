"""The structure of the files this suite reads back: results files and baseline files, checked in one place.

A results or baseline file may come from another machine, another version of the
suite or another tool, so every reader (``report``, ``repro``, ``--baseline``,
the shard merge) trusts it only after :func:`check_results` or
:func:`check_baseline` has passed.  A failed check raises :class:`SchemaError`
naming the path and the problem, e.g. ``cells[3].counts.passed: 'x' is not an
integer``; callers turn it into their own error (``ResultsError``,
``BaselineError``) and the command line into exit 2 and one line.

The schema is a few small Python types rather than JSON Schema documents: the
checks are the same ones a JSON Schema would state (types, required keys,
list lengths), but the messages read as above instead of "is not valid under
any of the given schemas", a number may be written as the strings "inf", "-inf"
or "nan" (strict JSON has no non-finite numbers), and no dependency is added.

Every object tolerates keys it does not know: a newer writer may add fields, and
an older reader must still read what it knows.  Parts of a file no reader
interprets (the environment's free-form extras, a failure's spec) are held to a
nesting depth, checked without recursion, so nothing downstream can hit
Python's recursion limit on them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: Deepest nesting accepted inside a free-form part of a file (the suite itself writes at most 3).
MAX_FREE_DEPTH = 16
#: Largest magnitude of an integer field (a count, an index, a shape): 2**53, the last integer every JSON
#: reader holds exactly.  Python reads any length, and a 400-digit count would overflow the report's rates.
MAX_INT = 2**53


class SchemaError(ValueError):
    """A file whose structure is wrong; ``path`` is where (``cells[3].counts.passed``), ``problem`` what."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def show(value: Any, limit: int = 40) -> str:
    """A value as a message quotes it: short, whatever its size."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _key(path: str, key: str) -> str:
    if _NAME.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{show(key)}]"


class Type:
    """One node of a schema: :meth:`check` raises :class:`SchemaError` or returns None."""

    #: How a message names what was expected ("an integer").
    name = "a value"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError

    def fail(self, value: Any, path: str) -> SchemaError:
        return SchemaError(path, f"{show(value)} is not {self.name}")


class Str(Type):
    name = "a string"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise self.fail(value, path)


class Bool(Type):
    name = "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise self.fail(value, path)


class Int(Type):
    name = "an integer"

    def __init__(self, minimum: int | None = None) -> None:
        self.minimum = minimum
        if minimum == 0:
            self.name = "a non-negative integer"
        elif minimum is not None:
            self.name = f"an integer >= {minimum}"

    def check(self, value: Any, path: str) -> None:
        # bool is an int to Python, never to a reader of the file.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(value, path)
        if self.minimum is not None and value < self.minimum:
            raise self.fail(value, path)
        if abs(value) > MAX_INT:
            raise SchemaError(path, f"{show(value)} is out of range (at most 2**53 in magnitude)")


class Number(Type):
    """A JSON number, or its text: strict JSON writes non-finite values as "inf", "-inf", "nan"."""

    name = "a number"

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, bool):
            raise self.fail(value, path)
        if isinstance(value, float):
            return
        if isinstance(value, int):
            try:  # readers take float() of it: an integer past a double's range would raise OverflowError there
                float(value)
            except OverflowError:
                raise SchemaError(path, f"{show(value)} is too large for a number") from None
            return
        if isinstance(value, str) and len(value) <= 64:
            try:
                float(value)
                return
            except ValueError:
                pass
        raise self.fail(value, path)


class Scalar(Type):
    """A string, number, boolean or null: something a page can print as it is."""

    name = "a string, number, boolean or null"

    def check(self, value: Any, path: str) -> None:
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise self.fail(value, path)


class Const(Type):
    def __init__(self, value: Any) -> None:
        self.value = value
        self.name = repr(value)

    def check(self, value: Any, path: str) -> None:
        if value != self.value or type(value) is not type(self.value):
            raise self.fail(value, path)


class Nullable(Type):
    def __init__(self, inner: Type) -> None:
        self.inner = inner
        self.name = f"{inner.name} or null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            try:
                self.inner.check(value, path)
            except SchemaError as error:
                if error.path == path:  # the value itself is wrong: say null was fine too
                    raise self.fail(value, path) from None
                raise


class ListOf(Type):
    def __init__(self, item: Type, length: int | None = None) -> None:
        self.item = item
        self.length = length
        self.name = f"a list of {length} items" if length is not None else "a list"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise self.fail(value, path)
        if self.length is not None and len(value) != self.length:
            raise SchemaError(path, f"a list of {len(value)} items, not {self.length}")
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")


class MapOf(Type):
    """An object whose keys are free (adapter names, attribute values) and whose values share a type."""

    name = "an object"

    def __init__(self, value: Type) -> None:
        self.value = value

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(value, path)
        for key, item in value.items():
            self.value.check(item, _key(path, key))


class Object(Type):
    """An object with known keys; unknown keys are allowed (a newer file stays readable)."""

    name = "an object"

    def __init__(self, required: Mapping[str, Type] | None = None, optional: Mapping[str, Type] | None = None,
                 free_depth: int | None = MAX_FREE_DEPTH) -> None:  # fmt: skip
        self.required = dict(required or {})
        self.optional = dict(optional or {})
        self.free_depth = free_depth

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(value, path)
        for key, kind in self.required.items():
            if key not in value:
                raise SchemaError(path, f"no {key!r} key (required)")
            kind.check(value[key], _key(path, key))
        for key, item in value.items():
            kind = self.optional.get(key)
            if kind is not None:
                kind.check(item, _key(path, key))
            elif key not in self.required and self.free_depth is not None:
                Free(self.free_depth).check(item, _key(path, key))


class Free(Type):
    """Any JSON value no reader interprets, nested at most ``depth`` levels (checked without recursion)."""

    name = "any value"

    def __init__(self, depth: int = MAX_FREE_DEPTH) -> None:
        self.depth = depth

    def check(self, value: Any, path: str) -> None:
        stack: list[tuple[Any, int]] = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, (dict, list)):
                if depth >= self.depth:
                    raise SchemaError(path, f"nested more than {self.depth} levels deep")
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
            elif isinstance(item, float) and not math.isfinite(item):
                continue  # old files wrote bare NaN/Infinity; json reads them as floats


# ----------------------------------------------------------------- the files

_VERDICT = Object(optional={
    "status": Str(), "tier": Str(), "reason": Str(), "checked": Nullable(Int()),
    "worst_index": Nullable(ListOf(Int())), "mismatches": Nullable(Int()), "excused": Nullable(Int()),
    **{name: Nullable(Number()) for name in ("expected", "got", "error", "bound", "ratio", "sum_sq_error",
                                             "zero_fraction", "near_bound")},
})  # fmt: skip

_HEATMAP = Object(
    required={"values": ListOf(ListOf(Number()))},
    optional={"product": Str(), "slice": Str(), "shape": ListOf(Int(0)), "block": ListOf(Int(1), 2),
              "worst": ListOf(Int(0), 2)},
)  # fmt: skip

FAILURE = Object(optional={
    "descriptor": Str(), "operation": Str(), "status": Str(), "product": Nullable(Str()), "reason": Str(),
    # A spec or recipe is checked field by field where it is used (ConvSpec.from_dict, DataRecipe):
    # here only its shape, so an invalid problem recorded by the invalid chapter stays readable.
    "spec": Nullable(MapOf(Free(3))), "recipe": Nullable(MapOf(Free(1))),
    "verdicts": Nullable(MapOf(_VERDICT)), "heatmap": Nullable(_HEATMAP),
    "seconds_candidate": Number(), "seconds_oracle": Number(), "repro": Nullable(Str()), "repro_note": Str(),
})  # fmt: skip

CELL = Object(
    required={"cell": Str(), "adapter": Str()},
    optional={
        "outcome": Str(), "expected_failure": Bool(), "counts": MapOf(Int(0)), "worst_ratio": Number(),
        "notes": ListOf(Str()), "seconds": Object(optional={"candidate": Number(), "oracle": Number()}),
        "coverage": MapOf(MapOf(Int(0))), "failures": ListOf(Nullable(FAILURE)),
        "explained": MapOf(Int(0)), "expected_examples": ListOf(FAILURE), "detection": MapOf(Number()),
    },
)  # fmt: skip

ENVIRONMENT = Object(optional={
    **{name: Scalar() for name in ("suite", "python", "numpy", "platform", "cpu", "profile", "seed", "command",
                                   "max_examples")},
    "gpus": ListOf(Scalar()), "backends": MapOf(MapOf(Scalar())), "cpu_flags": Nullable(ListOf(Str())),
    "machine": Scalar(), "system": Scalar(), "adapters": MapOf(Str()), "capabilities": MapOf(Free()),
    "threads": MapOf(Str()),
})  # fmt: skip

RESULTS = Object(
    required={"schema": Str(), "version": Int(), "cells": ListOf(CELL)},
    optional={
        "complete": Bool(), "started": Nullable(Str()), "finished": Nullable(Str()), "run_id": Nullable(Str()),
        "environment": Nullable(ENVIRONMENT), "incomplete_reasons": ListOf(Str()), "not_reached": ListOf(Str()),
        "adapter_errors": MapOf(Object(optional={"status": Str(), "message": Str()})),
        "baseline": Object(optional={
            "source": Nullable(Str()), "deprecated": Nullable(Str()),
            "entries": ListOf(Object(required={"id": Str()}, optional={
                "adapter": ListOf(Str()), "reason": Str(), "state": Str(), "why": Str(), "explained": Int(0),
                "cells": MapOf(Int(0))})),
        }),
    },
)  # fmt: skip

BASELINE = Object(
    required={"expected_failures": ListOf(Object(required={"cell": Str(), "adapter": Str(), "reason": Str()}))},
)


def check(value: Any, schema: Type, path: str = "") -> None:
    """Raise :class:`SchemaError` unless ``value`` fits ``schema``."""
    try:
        schema.check(value, path)
    except RecursionError:  # the checks do not recurse past the schema's own depth; this is a backstop
        raise SchemaError(path, "nested too deeply to read") from None


def check_results(data: Any) -> None:
    """The structure of a results file (its ``schema`` and ``version`` are checked by the caller first)."""
    check(data, RESULTS)
    # A failure entry that is null would pass Nullable above only to be skipped by every reader; the
    # writer never writes one, so refuse it with its place rather than let a card quietly vanish.
    for i, cell in enumerate(data["cells"]):
        for j, failure in enumerate(cell.get("failures") or []):
            if failure is None:
                raise SchemaError(f"cells[{i}].failures[{j}]", "null is not an object")


def check_baseline(data: Any) -> None:
    """The structure of a version-1 baseline file: ``{"expected_failures": [{"cell", "adapter", "reason"}]}``
    (version 2 is checked field by field in :mod:`conformance.baseline`, which refuses unknown fields)."""
    check(data, BASELINE)


__all__ = ["BASELINE", "RESULTS", "SchemaError", "check", "check_baseline", "check_results", "show"]
