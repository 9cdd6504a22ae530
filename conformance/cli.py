"""The ``conv-conformance`` command.

* ``run``: the conformance suite on one or more adapters; writes the results file.
* ``fuzz --minutes N``: the fuzz profile (long runs, Hypothesis database on) until the time is spent;
  ``fuzz --campaign redis://HOST:PORT/DB``: the same as one worker of a campaign shared through Redis
  (see :mod:`conformance.cli_campaign`); ``campaign status URL``: the campaign's progress.
* ``adapters``: the adapters this machine can load, with their capabilities.
* ``report RESULTS -o report.html [--baseline OLD]``: the self-contained HTML compliance report
  (``report --campaign URL``: of a campaign's state).
* ``repro RESULTS FAILURE``: re-run one recorded failure (and optionally write its standalone script).
* ``describe DESCRIPTOR``: validate one problem and print its shapes.
* ``baseline draft RESULTS``: candidate baseline entries from a run's unexpected failures;
  ``baseline check FILE``: read a baseline file as a run would, and list its entries.
* ``scoreboard RESULTS... -o scoreboard.html``: several backends' results files on one page.

Exit status of ``run`` and ``fuzz`` (a supervised run, see :mod:`conformance.supervisor`):

* 0: every selected cell was recorded and nothing unexpected failed;
* 1: unexpected failures;
* 2: bad usage or an unreadable file (nothing ran); with ``--campaign``, also its Redis unreachable at the start;
* 3: the run did not finish: a process died (an adapter that exits or crashes
  in-process, a dead xdist worker, a call the watchdog ended), an adapter could
  not be run at all, or selected cells were never recorded; with ``--campaign``,
  its Redis went away mid-campaign.  Wins over 1;
* 130: interrupted by SIGINT (Ctrl-C); 143: terminated by SIGTERM.

Whatever the exit status, the results gathered are written, marked incomplete
where they are, and so is ``--report``.  ``repro`` exits 0 when the case passes
now, 1 while the bug is there, 2 on bad usage; ``report`` and ``describe`` 0 or 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from conformance import __version__
from conformance.cli_tools import (
    REPRO_EXIT_STATUSES,
    adapters_command,
    describe_command,
    report_command,
    repro_command,
    write_report_file,
)

SUITE = str(Path(__file__).resolve().parent / "suite")
#: The built-in adapters' known discrepancies (a folder: one file per backend), used unless --baseline says otherwise.
DEFAULT_BASELINE = str(Path(__file__).resolve().parent / "baselines")


# ----------------------------------------------------------------------- run


def _pytest_args(args: argparse.Namespace, profile: str) -> list[str]:
    """The suite's pytest arguments, less --results and --run-id (the supervisor adds those)."""
    out = [SUITE, "-p", "no:cacheprovider", "-q", "-rfEX", "--conformance-profile", profile,
           "--case-timeout", str(args.case_timeout), "--startup-timeout", str(args.startup_timeout)]  # fmt: skip
    for name in args.adapter or ["torch"]:
        out += ["--adapter", name]
    if args.baseline != "none":
        out += ["--baseline", args.baseline]
    if args.isolate:
        out.append("--isolate")
    if args.workers and args.workers != "1":
        out += ["-n", args.workers]
    if args.select:
        out += ["-k", args.select]
    for pattern in args.cell or []:
        out += ["--cell", pattern]
    if args.max_examples is not None:
        out += ["--max-examples", str(args.max_examples)]
    if args.seed is not None:
        out.append(f"--hypothesis-seed={args.seed}")
    return out + list(args.pytest_args or [])


def _summary(results_path: str) -> None:
    from conformance.results import ResultsError, read, summary_lines

    try:
        results = read(results_path)
    except ResultsError as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return
    by_adapter: dict[str, dict[str, int]] = {}
    outcomes: dict[str, dict[str, int]] = {}
    for (_, adapter), record in results.cells.items():
        counts = by_adapter.setdefault(adapter, {})
        for status, n in record.counts.items():
            counts[status] = counts.get(status, 0) + n
        cells = outcomes.setdefault(adapter, {})
        cells[record.outcome] = cells.get(record.outcome, 0) + 1
    print(f"\nresults: {results_path} ({'complete' if results.complete else 'INCOMPLETE'})")
    for adapter in sorted(by_adapter):
        cases = ", ".join(f"{s} {n}" for s, n in by_adapter[adapter].items() if n)
        cells = ", ".join(f"{s} {n}" for s, n in sorted(outcomes[adapter].items()))
        print(f"  {adapter}: cells: {cells}; cases: {cases}")
    for line in summary_lines(results):
        print(line)


def _run(args: argparse.Namespace) -> int:
    return _supervised(args, _pytest_args(args, args.profile))


def _fuzz(args: argparse.Namespace) -> int:
    problem = check_run_options(args)
    if problem:
        print(f"conv-conformance: {problem}", file=sys.stderr)
        return 2
    if args.campaign:
        from conformance.cli_campaign import campaign_worker_args

        code, child_args, child = campaign_worker_args(args)
        return code if code else _supervised(args, child_args, child=child)
    print(f"fuzzing {', '.join(args.adapter or ['torch'])} for {args.minutes:g} minute(s); "
          "each dot is a cell, the Hypothesis database keeps what it finds")  # fmt: skip
    return _supervised(args, [*_pytest_args(args, "fuzz"), "--time-budget", str(args.minutes)])


def _worker_count(args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", None) or "1"
    return (os.cpu_count() or 1) if workers in ("auto", "logical") else int(workers) if workers.isdigit() else 1


def _supervised(args: argparse.Namespace, pytest_args: list[str], *, child: str | None = None) -> int:
    """Check the options, run the suite supervised, then summarize and write the report, finished or not."""
    from conformance.supervisor import supervise, thread_budget

    problem = check_run_options(args)
    if problem:
        print(f"conv-conformance: {problem}", file=sys.stderr)
        return 2
    context = {"profile": getattr(args, "profile", "fuzz"), "command": " ".join(sys.argv)}
    # A signal that comes after the run, while the summary and the report are written, must not leave the
    # results without their report: it is remembered, and only changes the exit status.
    # (Installed only once the run is over: a Ctrl-C before or during it must stop it, and supervise() has
    # its own handlers for while the child runs.)
    code = supervise(pytest_args, args.results, context, extra_env=thread_budget(_worker_count(args)),
                     **({"child": child} if child else {}))  # fmt: skip
    if code == 2 or not Path(args.results).exists():
        return code
    late: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: late.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _summary(args.results)
        if args.report:
            try:
                written = write_report_file(args.results, args.report, None)
            except Exception as error:  # a page that cannot be rendered must not hide how the run ended
                print(f"conv-conformance: no report: {type(error).__name__}: {error}", file=sys.stderr)
                written = 2
            if written and code == 0:
                code = written
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if late and code not in (130, 143):
        return 143 if late[0] == signal.SIGTERM else 130
    return code


def check_run_options(args: argparse.Namespace) -> str | None:
    """Why these options cannot make a run, or None: checked before anything runs, so that a bad path is
    one line now rather than a traceback after an hour's run."""
    import math

    from conformance.results import same_file

    numbers = [("--case-timeout", args.case_timeout), ("--startup-timeout", args.startup_timeout)]
    if getattr(args, "minutes", None) is not None:
        numbers.append(("--minutes", args.minutes))
    for option, value in numbers:
        if not math.isfinite(value) or value <= 0:
            return f"{option}={value!r}, but should be a positive, finite number"
    if args.max_examples is not None and not 1 <= args.max_examples <= 1_000_000:
        return f"--max-examples={args.max_examples}, but should be between 1 and 1,000,000 (a cell must finish)"
    if not args.results or not args.results.strip():
        return "--results is empty: give the results file's path"
    paths = [("--results", args.results)] + ([("--report", args.report)] if args.report is not None else [])
    for option, path in paths:
        why = _unwritable(path)
        if why:
            return f"{option}={path!r} {why}"
    if args.report is not None and same_file(args.report, args.results):
        return "--report is the --results file: the page would overwrite the results"
    if args.baseline not in (None, "none") and os.path.exists(args.baseline):
        if same_file(args.baseline, args.results):
            return "--results is the --baseline file: the run would overwrite its own baseline"
        if args.report is not None and same_file(args.report, args.baseline):
            return "--report is the --baseline file: the page would overwrite it"
    return None


def _unwritable(path: str) -> str | None:
    from conformance.results import unwritable

    return "is empty" if not path.strip() else unwritable(path)


# -------------------------------------------------------------------- parser


def _suite_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", action="append", metavar="NAME",
                        help="adapter under test, repeatable (default: torch)")  # fmt: skip
    parser.add_argument("--results", default="results.json", help="results file (default: results.json)")
    parser.add_argument("--report", metavar="HTML", help="also write the HTML compliance report here")
    parser.add_argument("--baseline", metavar="FILE", default=DEFAULT_BASELINE,
                        help="expected failures (a baseline file, a folder of them, or a results file; "
                             "default: the built-in adapters' "
                             "known discrepancies; 'none' for no baseline)")  # fmt: skip
    parser.add_argument("--isolate", action="store_true", help="adapter calls in a child process")
    parser.add_argument("--case-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="an adapter call taking longer is recorded as hung (default 60)")
    parser.add_argument("--startup-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="with --isolate: loading the adapter in its worker taking longer is hung (default 300)")
    parser.add_argument("-n", "--workers", default="1", help="pytest-xdist workers (a number or 'auto')")
    parser.add_argument("--cell", action="append", metavar="GLOB",
                        help="only the cells whose id matches, repeatable (e.g. 'backward/1d/*'; anchored, unlike -k)")
    parser.add_argument("-k", dest="select", metavar="EXPR", help="only the tests matching this pytest -k expression")
    # Checked by the plugin's option of the same name (a usage error, exit 2).
    parser.add_argument("--max-examples", type=int, metavar="N", help="examples per cell instead of the profile's")
    parser.add_argument("--seed", type=int, help="Hypothesis seed for the dev and fuzz profiles (ci is derandomized)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conv-conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the conformance suite")
    _suite_options(run)
    run.add_argument("--profile", choices=("ci", "dev", "fuzz"), default="ci")
    run.set_defaults(handler=_run)

    fuzz = commands.add_parser("fuzz", help="fuzz for a fixed time with the Hypothesis database on")
    _suite_options(fuzz)
    fuzz.add_argument("--minutes", type=float, required=True)
    fuzz.set_defaults(handler=_fuzz)
    from conformance.cli_campaign import add_campaign_commands, add_campaign_options, add_report_campaign_option

    add_campaign_options(fuzz)

    adapters = commands.add_parser("adapters", help="list adapters and their capabilities")
    adapters.set_defaults(handler=adapters_command)

    report = commands.add_parser("report", help="render a results file as a self-contained HTML report")
    report.add_argument("results_file", nargs="?", help="a results file (or --campaign instead)")
    report.add_argument("-o", "--output", default="report.html", help="the page to write (default: report.html)")
    report.add_argument("--baseline", metavar="OLD.json",
                        help="an earlier results file: what changed since goes first on the page")  # fmt: skip
    report.set_defaults(handler=report_command)
    add_report_campaign_option(report)

    repro = commands.add_parser("repro", help="re-run one recorded failure", epilog=REPRO_EXIT_STATUSES)
    repro.add_argument("results_file")
    repro.add_argument("failure", help="ADAPTER/CELL/N, as listed when the id is unknown")
    repro.add_argument("--script", metavar="FILE", help="also write the failure's standalone repro script here")
    repro.add_argument("--isolate", action="store_true")
    repro.add_argument("--case-timeout", type=float, default=60.0, metavar="SECONDS")
    repro.set_defaults(handler=repro_command)

    describe = commands.add_parser("describe", help="validate one problem and print its shapes")
    describe.add_argument("problem", help="a descriptor such as conv2d_mb2_ic4_oc6_i9x7_k3x2, or the spec's JSON")
    describe.set_defaults(handler=describe_command)

    from conformance.cli_baseline import add_baseline_commands
    from conformance.cli_scoreboard import add_scoreboard_command

    add_baseline_commands(commands)
    add_scoreboard_command(commands)
    add_campaign_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("conv-conformance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
