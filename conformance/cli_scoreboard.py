"""``conv-conformance scoreboard RESULTS... -o scoreboard.html [--json scoreboard.json]``.

A command of its own rather than ``report`` with several files: a report is one
run (one environment, one command, a diff against an earlier run of the same
suite), while a scoreboard joins runs made in different environments (each
framework in its own, their pins clash), so it shows each backend's own
versions, machine, declared precision and run time, and refuses two files that
claim one backend.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_STATUSES = """exit status: 0 every backend ran completely with no unexplained failure; 1 a backend has an
unexplained failing cell or an incomplete run; 2 a results file could not be read (the page is still written for
the others, listing it) or the files contradict each other (nothing written)."""


def add_scoreboard_command(commands: Any) -> None:
    board = commands.add_parser("scoreboard", help="one page judging several backends' results files side by side",
                                epilog=EXIT_STATUSES)  # fmt: skip
    board.add_argument("results_files", nargs="+", metavar="RESULTS", help="one results file per backend run")
    board.add_argument("-o", "--output", default="scoreboard.html", help="the page (default: scoreboard.html)")
    board.add_argument("--json", metavar="FILE", help="also write the scoreboard's facts as JSON here")
    board.add_argument("--markdown", metavar="FILE", help="also write the backends table in Markdown here")
    board.set_defaults(handler=scoreboard_command)


def scoreboard_command(args: argparse.Namespace) -> int:
    from conformance.results import same_file, unwritable
    from reports.scoreboard import ScoreboardError, write_scoreboard

    for output in filter(None, (args.output, args.json, args.markdown)):
        for path in args.results_files:
            if same_file(path, output):
                print(f"conv-conformance: {output} is the results file {path}: it would be overwritten",
                      file=sys.stderr)
                return 2
        why = unwritable(output)
        if why:
            print(f"conv-conformance: {output} {why}", file=sys.stderr)
            return 2
    try:
        board = write_scoreboard(args.results_files, args.output, args.json, args.markdown)
    except ScoreboardError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return 2
    for _path, why in board.missing:
        print(f"conv-conformance: {why}", file=sys.stderr)
    for b in board.backends:
        cells = b.summary.cells
        failed = sum(cells[o] for o in ("failed", "error", "crashed", "hung"))
        seconds = "" if b.seconds is None else f", {b.seconds:.0f} s"
        state = "" if b.complete else ", INCOMPLETE"
        print(f"{b.adapter:<12} passed {cells['passed']:>4}  failed {failed:>3}  "
              f"expected {cells['expected failure']:>3}  unsupported {cells['unsupported']:>4}{seconds}{state}")
    print("scoreboard: " + ", ".join(filter(None, (args.output, args.json, args.markdown))))
    if board.missing:
        return 2
    return 0 if board.clean else 1
