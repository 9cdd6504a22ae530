"""The ``conv-conformance`` commands that read files rather than run the suite: ``report``, ``adapters``,
``repro`` and ``describe``.  The parser and the run/fuzz commands are in :mod:`conformance.cli`.

Exit statuses: ``report`` and ``describe`` 0 or 2 (bad input or a file that cannot be read or
written: one line on stderr, never a traceback); ``repro`` (see :data:`REPRO_EXIT_STATUSES`) 0 when
the recorded case passes now (fixed), 1 while the bug is still there, 2 on bad usage or input (an
unknown failure id, a failure recorded without a problem, a script path that cannot be written or
names the results file, an adapter that cannot be loaded or no longer runs the problem: unsupported).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

from conformance.spec import ConvSpec, InvalidSpec, parse_descriptor

#: Characters of one adapter-supplied value a command prints (a capabilities note, an error's first line).
MAX_PRINTED = 4_000


def _clip(text: str) -> str:
    from conformance.calls import clip

    return clip(text, MAX_PRINTED)


def _say(text: str, *, error: bool = False) -> None:
    """Print adapter-supplied text: a lone surrogate in an exception message must not end in a traceback."""
    stream = sys.stderr if error else sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


# -------------------------------------------------------------------- report


def report_command(args: argparse.Namespace) -> int:
    from conformance.results import same_file, unwritable

    # Before anything is read or written: the page must never replace the evidence it was made from
    # (the same path, a symlink to it, or a hard link: same_file compares inodes too).
    for name, path in (("the results file", args.results_file), ("the --baseline file", args.baseline)):
        if path and same_file(path, args.output):
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
    """List every known adapter with its versions and capabilities; one that cannot load or describe
    itself is listed as unavailable, with the first line of why, and never stops the listing."""
    from adapters.registry import known_adapters
    from conformance.faults import AdapterCaller
    from conformance.results import strict

    for name, target in sorted(known_adapters().items()):
        try:
            # Through the caller, as a run does: info() gives checked capabilities and versions() sanitised to
            # short strings (NaN, a huge int or an object there must not end the listing in a traceback).
            with AdapterCaller(name, timeout=60.0) as caller:
                info = caller.info()
            caps = strict(info.capabilities.to_dict())
        except Exception as error:  # AdapterLoadError, AdapterBroken or worse: listed, never fatal
            first = (str(error).splitlines() or [type(error).__name__])[0]
            _say(f"{name} ({target}): unavailable: {_clip(first)}")
            continue
        _say(f"{name} ({target}) {_clip(json.dumps(strict(info.versions)))}")
        for key, value in caps.items():
            _say(f"  {key}: {_clip(json.dumps(value))}")
    return 0


# --------------------------------------------------------------------- repro

#: For ``repro --help`` (the parser's epilog): a CI job branches on these, so they are part of the interface.
REPRO_EXIT_STATUSES = (
    "exit status: 0 the recorded case passes now (fixed); 1 the bug is still there; 2 usage or input error "
    "(unknown failure id, unreadable results file, a failure recorded without a usable problem, a --script "
    "that cannot be written, an adapter that cannot be loaded or no longer runs the problem)"
)


def repro_command(args: argparse.Namespace) -> int:
    from conformance.results import ResultsError, read, same_file

    timeout = args.case_timeout
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):  # NaN fails both tests
        print(f"conv-conformance: --case-timeout {timeout}: should be a positive, finite number of seconds",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.script and same_file(args.script, args.results_file):
        print(f"conv-conformance: --script {args.script} is the results file: the script would overwrite it",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        results = read(args.results_file)
    except ResultsError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return 2
    # Failures are named by the adapter's declared name; the results say which spec loaded it.
    specs = results.environment.get("adapters") if isinstance(results.environment.get("adapters"), dict) else {}
    failures = {
        f"{adapter}/{cell}/{i}": (str(specs.get(adapter) or adapter), failure)
        for (cell, adapter), record in results.cells.items()
        for i, failure in enumerate(record.failures)
    }
    if args.failure not in failures:
        known = "\n  ".join(sorted(failures)) or "(none)"
        _say(f"conv-conformance: no failure {args.failure!r}; recorded failures:\n  {known}", error=True)
        return 2
    adapter, failure = failures[args.failure]
    try:
        return _repro(args, adapter, failure)
    except _Refused as refused:
        _say(_clip(f"conv-conformance: {refused}".replace("\n", " ")), error=True)  # one line, whatever it quotes
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
    # The file may have been edited or come from elsewhere: a forward or backward case was a valid problem
    # of a size a test makes, and anything else would fail in numpy with a traceback, not in the adapter.
    try:
        spec.validate()
    except InvalidSpec as error:
        raise _Refused(f"{args.failure} records an invalid problem ({error})") from None
    elements = _elements(spec)
    if elements is None or elements > MAX_REPRO_ELEMENTS:
        raise _Refused(f"{args.failure} records a problem too large to re-run (more than "
                       f"{MAX_REPRO_ELEMENTS:,} elements in one array, or a number past 18 digits)")  # fmt: skip
    if args.script:
        if not failure.get("repro"):
            note = failure.get("repro_note") or "its adapter gives none"
            raise _Refused(f"this failure has no standalone script ({note})")
        why = unwritable(args.script)
        if why:
            raise _Refused(f"--script {args.script} {why}")
        try:
            _write_atomically(Path(args.script), failure["repro"])
        except (OSError, UnicodeEncodeError) as error:
            why = getattr(error, "strerror", None) or error
            raise _Refused(f"cannot write --script {args.script}: {why}") from None
        print(f"wrote {args.script}: python {args.script} exits 1 while the bug is there")
    try:
        with AdapterCaller(adapter, timeout=args.case_timeout, isolate=args.isolate) as caller:
            result = run_case(caller, spec, recipe, operation)
    except (AdapterLoadError, AdapterBroken) as error:
        raise _Refused((str(error).splitlines() or [type(error).__name__])[0]) from None
    _say(f"{adapter}.conv({spec.descriptor()}) [{recipe.describe()}] {operation}: {result.status}")
    if result.reason:
        _say(f"  {_clip(result.reason)}")
    if result.status == "unsupported":
        raise _Refused(f"{adapter} no longer runs this problem ({result.reason}): cannot tell whether it is fixed")
    return 1 if result.status in ("failed", "error", "crashed", "hung") else 0


#: Elements in any one array (input, weight, output) of a problem repro re-runs: recorded failures are shrunk
#: minimal cases, far below this; a larger one means the file was edited and would only exhaust memory.
MAX_REPRO_ELEMENTS = 50_000_000


def _elements(spec: ConvSpec) -> int | None:
    """The most elements of any one of the problem's arrays, or None when its shapes cannot be worked out
    or one of its numbers does not fit numpy's index type (a stride of 10**30 is valid but unindexable)."""
    numbers = json.dumps(spec.to_dict())
    if any(len(token) > 18 for token in re.findall(r"\d+", numbers)):
        return None
    try:
        return max(math.prod(shape) for shape in (spec.input_shape, spec.weight_shape, spec.output_shape))
    except (ValueError, TypeError, ArithmeticError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file beside it: a failed write leaves neither half a
    script nor the temporary file."""
    import contextlib
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's file is private; the script is the user's, as write_text made it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
