"""The ``conv-conformance`` commands that read files rather than run the suite: ``report``, ``adapters``,
``repro`` and ``describe``.  The parser and the run/fuzz commands are in :mod:`conformance.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.spec import ConvSpec, InvalidSpec, parse_descriptor

# -------------------------------------------------------------------- report


def report_command(args: argparse.Namespace) -> int:
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
    from conformance.data import DataRecipe
    from conformance.faults import AdapterCaller
    from conformance.results import ResultsError, read
    from conformance.runner import run_case

    try:
        results = read(args.results_file)
    except ResultsError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return 2
    failures = {
        f"{adapter}/{cell}/{i}": failure
        for (cell, adapter), record in results.cells.items()
        for i, failure in enumerate(record.failures)
    }
    if args.failure not in failures:
        known = "\n  ".join(sorted(failures)) or "(none)"
        print(f"conv-conformance: no failure {args.failure!r}; recorded failures:\n  {known}", file=sys.stderr)
        return 2
    failure = failures[args.failure]
    adapter = args.failure.split("/", 1)[0]
    if args.script:
        if not failure.get("repro"):
            print("conv-conformance: this failure has no standalone script (its adapter gives none)", file=sys.stderr)
            return 2
        Path(args.script).write_text(failure["repro"])
        print(f"wrote {args.script}: python {args.script} exits 1 while the bug is there")
    spec = ConvSpec.from_dict(failure["spec"])
    recipe = DataRecipe.from_dict(failure["recipe"])
    with AdapterCaller(adapter, timeout=args.case_timeout, isolate=args.isolate) as caller:
        result = run_case(caller, spec, recipe, failure["operation"])
    print(f"{adapter}.conv({spec.descriptor()}) [{recipe.describe()}] {failure['operation']}: {result.status}")
    if result.reason:
        print(f"  {result.reason}")
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
