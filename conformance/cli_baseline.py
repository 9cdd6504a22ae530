"""``conv-conformance baseline draft|check``: start a baseline from real failures, and check one before a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DRAFT_HELP = """Write candidate baseline entries for every cell with an unexpected failure in RESULTS: a predicate
from the cell's minimal failing problem, a signature from how it failed, the scope pinned to the backend versions
of the run. Each entry's reason is left for a person: say what the backend does wrong, add a one-line reproducer,
and widen or narrow the predicate to what the evidence supports. Exit 0, or 2 for an unreadable file."""


def add_baseline_commands(commands: Any) -> None:
    baseline = commands.add_parser("baseline", help="draft or check a baseline of known discrepancies")
    actions = baseline.add_subparsers(dest="baseline_command", required=True)
    draft = actions.add_parser("draft", help="candidate entries from a run's unexpected failures",
                               description=DRAFT_HELP)  # fmt: skip
    draft.add_argument("results_file")
    draft.add_argument("-o", "--output", metavar="FILE", help="write the baseline here (default: standard output)")
    draft.add_argument("--include-expected", action="store_true",
                       help="also draft entries for failures an existing baseline already explained")
    draft.set_defaults(handler=draft_command)
    check = actions.add_parser("check", help="read a baseline file as a run would and list its entries")
    check.add_argument("baseline_file")
    check.set_defaults(handler=check_command)


def _read(reader: Any, path: str) -> Any:
    """``reader(path)``, or None after one line on stderr: ResultsError and BaselineError are ValueErrors."""
    try:
        return reader(path)
    except ValueError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return None


def draft_command(args: argparse.Namespace) -> int:
    from conformance.baseline import SCHEMA, VERSION
    from conformance.baseline_draft import draft_entries
    from conformance.results import read, write_json

    results = _read(read, args.results_file)
    if results is None:
        return 2
    entries = draft_entries(results, include_expected=args.include_expected)
    document = {"schema": SCHEMA, "version": VERSION,
                "about": f"Drafted from {args.results_file} ({results.environment.get('cpu', 'unknown CPU')}); "
                         "every reason is still to be written.", "entries": entries}  # fmt: skip
    if args.output:
        write_json(args.output, document)
        print(f"{len(entries)} draft entr{'y' if len(entries) == 1 else 'ies'} written to {args.output}")
    else:
        print(json.dumps(document, indent=1))
    return 0


def check_command(args: argparse.Namespace) -> int:
    from conformance.baseline import read_baseline

    baseline = _read(read_baseline, args.baseline_file)
    if baseline is None:
        return 2
    if baseline.deprecated:
        print(f"note: {args.baseline_file} {baseline.deprecated}")
    for entry in baseline.entries:
        print(f"{entry.id} [{', '.join(entry.adapters)}]: {len(entry.when)} condition(s)")
    print(f"{len(baseline.entries)} entries: OK")
    return 0


__all__ = ["add_baseline_commands", "check_command", "draft_command"]
