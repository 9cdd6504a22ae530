"""The ``conv-conformance`` commands that read files rather than run the suite: ``report``, ``adapters``,
``repro`` and ``describe``.  The parser and the run/fuzz commands are in :mod:`conformance.cli`.

Exit statuses: ``report`` and ``describe`` 0 or 2 (bad input or a file that cannot be read or
written: one line on stderr, never a traceback); ``repro`` 0 when the recorded case passes now
(fixed), 1 while the bug is still there, 2 on bad usage or input (an unknown failure id, a
failure recorded without a problem, a script path that cannot be written, an adapter that
cannot be loaded or no longer runs the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.spec import ConvSpec, InvalidSpec, parse_descriptor

# -------------------------------------------------------------------- report


def report_command(args: argparse.Namespace) -> int:
    import os

    from conformance.results import unwritable

    output = os.path.realpath(args.output)
    for name, path in (("the results file", args.results_file), ("the --baseline file", args.baseline)):
        if path and os.path.realpath(path) == output:
            print(f"conv-conformance: -o {args.output} is {name}: the page would overwrite it", file=sys.stderr)
            return 2
    why = unwritable(args.output)
    if why:
        print(f"conv-conformance: -o {args.output} {why}", file=sys.stderr)
        return 2
    return write_report_file(args.results_file, args.output, args.baseline)


def write_report_file(results_path: str, output: str, baseline: str | None) -> int:
    """0 when the page is written; 2, with the reason, when a file cannot be read."""
    from conformance.results import ResultsError
    from reports import write_report

    try:
        path = write_report(results_path, output, baseline)
    except ResultsError as error:
        print(f"conv-conformance: no report: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"conv-conformance: no report: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


# ------------------------------------------------------------------ adapters


def adapters_command(args: argparse.Namespace) -> int:
    from adapters.registry import known_adapters, load_adapter

    for name, target in sorted(known_adapters().items()):
        try:
            adapter = load_adapter(name)
            caps = adapter.capabilities().to_dict()
            versions = adapter.versions()
        except Exception as error:  # an adapter that cannot load is reported, not fatal
            print(f"{name} ({target}): unavailable: {error}")
            continue
        print(f"{name} ({target}) {json.dumps(versions)}")
        for key, value in caps.items():
            print(f"  {key}: {json.dumps(value)}")
    return 0


# --------------------------------------------------------------------- repro


def repro_command(args: argparse.Namespace) -> int:
    from conformance.results import ResultsError, read

    try:
        results = read(args.results_file)
    except ResultsError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return 2
    failures = {
        f"{adapter}/{cell}/{i}": (adapter, failure)
        for (cell, adapter), record in results.cells.items()
        for i, failure in enumerate(record.failures)
    }
    if args.failure not in failures:
        known = "\n  ".join(sorted(failures)) or "(none)"
        print(f"conv-conformance: no failure {args.failure!r}; recorded failures:\n  {known}", file=sys.stderr)
        return 2
    adapter, failure = failures[args.failure]
    try:
        return _repro(args, adapter, failure)
    except _Refused as refused:
        print(f"conv-conformance: {refused}", file=sys.stderr)
        return 2


class _Refused(Exception):
    """repro cannot do what was asked: one line, exit 2."""


def _repro(args: argparse.Namespace, adapter: str, failure: dict) -> int:
    from conformance.data import DataRecipe
    from conformance.faults import AdapterBroken, AdapterCaller, AdapterLoadError
    from conformance.results import unwritable
    from conformance.runner import run_case

    operation = failure.get("operation")
    if operation not in ("forward", "backward"):
        raise _Refused(f"{args.failure} was recorded by {operation!r}, which repro cannot re-run "
                       "(it re-runs forward and backward cases)")  # fmt: skip
    try:
        spec = ConvSpec.from_dict(failure.get("spec"))
        recipe = DataRecipe.from_dict(failure.get("recipe"))
    except (ValueError, TypeError, AttributeError) as error:
        raise _Refused(f"{args.failure} has no usable problem or data recipe: {error}") from None
    if args.script:
        if not failure.get("repro"):
            note = failure.get("repro_note") or "its adapter gives none"
            raise _Refused(f"this failure has no standalone script ({note})")
        why = unwritable(args.script)
        if why:
            raise _Refused(f"--script {args.script} {why}")
        try:
            Path(args.script).write_text(failure["repro"])
        except OSError as error:
            raise _Refused(f"cannot write --script {args.script}: {error.strerror or error}") from None
        print(f"wrote {args.script}: python {args.script} exits 1 while the bug is there")
    try:
        with AdapterCaller(adapter, timeout=args.case_timeout, isolate=args.isolate) as caller:
            result = run_case(caller, spec, recipe, operation)
    except (AdapterLoadError, AdapterBroken) as error:
        raise _Refused(str(error).splitlines()[0]) from None
    print(f"{adapter}.conv({spec.descriptor()}) [{recipe.describe()}] {operation}: {result.status}")
    if result.reason:
        print(f"  {result.reason}")
    if result.status == "unsupported":
        raise _Refused(f"{adapter} no longer runs this problem ({result.reason}): cannot tell whether it is fixed")
    return 1 if result.status in ("failed", "error", "crashed", "hung") else 0


# ------------------------------------------------------------------ describe


def describe_command(args: argparse.Namespace) -> int:
    try:
        spec = ConvSpec.from_json(args.problem) if args.problem.lstrip().startswith("{") else parse_descriptor(
            args.problem
        )
    except (ValueError, TypeError) as error:
        print(f"conv-conformance: cannot read the problem: {error}", file=sys.stderr)
        return 2
    try:
        spec.validate()
    except InvalidSpec as error:
        print(f"{spec.descriptor()}: invalid: {error}")
        return 2
    facts = {
        "descriptor": spec.descriptor(),
        "input_shape": spec.input_shape,
        "weight_shape": spec.weight_shape,
        "bias_shape": spec.bias_shape,
        "output_shape": spec.output_shape,
        "padding": spec.pads,
        "reduction_length": spec.reduction_length,
        "macs": spec.macs,
        "spec": spec.to_dict(),
    }
    print(json.dumps(facts, indent=2))
    return 0
