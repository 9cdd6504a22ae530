"""The campaign commands: ``fuzz --campaign URL``, ``campaign status URL`` and ``report --campaign URL``.

``fuzz --campaign redis://HOST:PORT/DB`` joins a campaign (see :mod:`conformance.campaign`): it runs one worker
(:mod:`conformance.campaign_worker`) under the same supervisor as ``fuzz``, so its exit statuses are fuzz's:
0, 1 (unexpected failures, replayed ones included), 2 (bad usage, or the campaign's Redis unreachable at the
start: nothing ran, nothing is written), 3 (the run did not finish: an adapter crashed the worker, or the Redis
went away mid-campaign; the results gathered are written, marked incomplete), 130/143 (interrupted).

``report --campaign URL`` renders the campaign's state as the usual report: the campaign becomes one results
file (every worker's chunks added up, see :meth:`Campaign.results`), written to ``--results`` or a temporary
file, and the report is made from it by the same code as a run's, so the page is the same page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from conformance.campaign import DEFAULT_LEASE_SECONDS, DEFAULT_NAME, Campaign, CampaignUnreachable, check_url

#: Examples per chunk: big enough that a chunk's fixed costs (Hypothesis's start, the database replay, two
#: Redis round trips) are small against it, small enough that the least-fuzzed cell changes often.
DEFAULT_CHUNK_EXAMPLES = 100


def add_campaign_options(fuzz: argparse.ArgumentParser) -> None:
    group = fuzz.add_argument_group("campaign", "fuzz as one worker of a campaign shared through Redis")
    group.add_argument("--campaign", metavar="URL", help="join the campaign kept in this Redis (redis://HOST:PORT/DB)")
    _name_option(group)
    group.add_argument("--chunk-examples", type=int, default=DEFAULT_CHUNK_EXAMPLES, metavar="N",
                       help=f"examples per leased cell before the next lease (default {DEFAULT_CHUNK_EXAMPLES})")
    group.add_argument("--lease-seconds", type=float, default=DEFAULT_LEASE_SECONDS, metavar="SECONDS",
                       help="a dead worker's cell is taken over after this long (renewed every third of it; "
                            f"default {DEFAULT_LEASE_SECONDS:g})")  # fmt: skip


def add_report_campaign_option(report: argparse.ArgumentParser) -> None:
    report.add_argument("--campaign", metavar="URL", help="render a campaign's state instead of a results file")
    _name_option(report)
    report.add_argument("--results", metavar="FILE", help="with --campaign: also write the campaign's results file")
    report.set_defaults(handler=_report)


def add_campaign_commands(commands: argparse._SubParsersAction) -> None:
    campaign = commands.add_parser("campaign", help="a fuzz campaign's progress")
    actions = campaign.add_subparsers(dest="campaign_command", required=True)
    status = actions.add_parser("status", help="cells, examples, failures and workers of a campaign")
    status.add_argument("url", help="the campaign's Redis, redis://HOST:PORT/DB")
    _name_option(status)
    status.set_defaults(handler=status_command)


def _name_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--campaign-name", default=DEFAULT_NAME, metavar="NAME",
                        help=f"which campaign of that Redis (default {DEFAULT_NAME!r})")  # fmt: skip


def _connect(url: str, name: str, **kwargs: float) -> Campaign | None:
    """The campaign, reachable; else None, having said why in one line that names the URL."""
    problem = check_url(url)
    if problem:
        print(f"conv-conformance: {problem}", file=sys.stderr)
        return None
    campaign = Campaign(url, name, **kwargs)
    try:
        campaign.ping()
    except CampaignUnreachable as error:
        print(f"conv-conformance: {error}", file=sys.stderr)
        return None
    return campaign


# ---------------------------------------------------------------------- fuzz


def campaign_worker_args(args: argparse.Namespace) -> tuple[int, list[str], str]:
    """(2, ...) having said why, or (0, the worker's arguments, the child's code) for the supervisor."""
    from conformance.campaign_worker import CHILD

    unsupported = [(args.select, "-k (use --cell)"), (args.pytest_args, "pytest arguments"),
                   (args.workers not in (None, "1"), "-n (start more workers instead)"),
                   (args.max_examples is not None, "--max-examples (use --chunk-examples)"),
                   (args.seed is not None, "--seed (a campaign's workers draw at random)")]  # fmt: skip
    for given, what in unsupported:
        if given:
            print(f"conv-conformance: fuzz --campaign does not take {what}", file=sys.stderr)
            return 2, [], CHILD
    if not 1 <= args.chunk_examples <= 1_000_000:
        print(f"conv-conformance: --chunk-examples={args.chunk_examples}, but should be between 1 and 1,000,000",
              file=sys.stderr)  # fmt: skip
        return 2, [], CHILD
    if not 0 < args.lease_seconds < 86_400:
        print(f"conv-conformance: --lease-seconds={args.lease_seconds}, but should be a positive number of seconds",
              file=sys.stderr)  # fmt: skip
        return 2, [], CHILD
    if _connect(args.campaign, args.campaign_name) is None:
        return 2, [], CHILD
    print(f"fuzzing {', '.join(args.adapter or ['torch'])} for {args.minutes:g} minute(s) in campaign "
          f"{args.campaign_name!r} at {args.campaign}", flush=True)  # fmt: skip
    config = {
        "campaign": args.campaign, "name": args.campaign_name, "lease_seconds": args.lease_seconds,
        "chunk_examples": args.chunk_examples, "adapters": args.adapter or ["torch"], "cells": args.cell or [],
        "baseline": None if args.baseline == "none" else args.baseline, "isolate": args.isolate,
        "case_timeout": args.case_timeout, "startup_timeout": args.startup_timeout, "minutes": args.minutes,
        "command": " ".join(sys.argv),
    }  # fmt: skip
    return 0, [json.dumps(config)], CHILD


# -------------------------------------------------------------------- status


def status_command(args: argparse.Namespace) -> int:
    campaign = _connect(args.url, args.campaign_name)
    if campaign is None:
        return 2
    try:
        print("\n".join(status_lines(campaign)))
    except Exception as error:  # the server went away between the ping and now
        print(f"conv-conformance: the campaign's Redis at {args.url} failed: {error}", file=sys.stderr)
        return 3
    return 0


def status_lines(campaign: Campaign) -> list[str]:
    """What ``campaign status`` prints: cells, examples per cell, failures with their minimal case, workers."""
    from conformance.campaign import split_key

    cells, examples, leased = campaign.cells(), campaign.examples(), campaign.leased()
    failures, workers, takeovers = campaign.failures(), campaign.workers(), campaign.takeovers()
    fuzzed = [k for k in cells if examples.get(k)]
    lines = [f"campaign {campaign.name!r} at {campaign.url}",
             f"cells: {len(cells)} total, {len(fuzzed)} fuzzed, {len(leased)} leased now",
             f"examples: {sum(examples.values())} in all"]  # fmt: skip
    for key in cells:
        adapter, cell = split_key(key)
        notes = [f"leased by {leased[key]}"] if key in leased else []
        notes += [f"taken over {takeovers[key]}x"] if takeovers.get(key) else []
        notes += ["FAILED"] if key in failures else []
        lines.append(f"  {adapter:<12} {cell:<36} {examples.get(key, 0):>8} examples  {'; '.join(notes)}".rstrip())
    lines.append(f"failures: {len(failures)}")
    for key, failure in sorted(failures.items()):
        adapter, cell = split_key(key)
        found = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(failure.get("found_at", 0)))
        lines.append(f"  {adapter} {cell}: {failure.get('status', 'failed')} {failure.get('descriptor', '?')} "
                     f"[{failure.get('operation', '?')}] found by {failure.get('found_by', '?')} at {found} UTC")
        reason = str(failure.get("reason", "")).splitlines()
        if reason:
            lines.append(f"      {reason[0][:200]}")
    lines.append(f"workers alive: {len(workers)}")
    for worker, beat in sorted(workers.items()):
        where = f"on {beat['cell']}" if beat.get("cell") else "between cells"
        lines.append(f"  {worker}: {', '.join(beat.get('adapters', []))}; {where}; {beat.get('chunks', 0)} chunk(s)")
    return lines


# -------------------------------------------------------------------- report


def _report(args: argparse.Namespace) -> int:
    from conformance.cli_tools import report_command

    if not args.campaign:
        if args.results_file is None:
            print("conv-conformance: report needs a results file, or --campaign URL", file=sys.stderr)
            return 2
        if args.results is not None:
            print("conv-conformance: report --results goes with --campaign", file=sys.stderr)
            return 2
        return report_command(args)
    if args.results_file is not None:
        print("conv-conformance: report takes a results file or --campaign, not both", file=sys.stderr)
        return 2
    return campaign_report(args)


def campaign_report(args: argparse.Namespace) -> int:
    """The campaign's state as a results file (``--results``, or a temporary one), then the usual report from it."""
    from conformance.cli_tools import report_command
    from conformance.results import same_file, unwritable

    if args.results is not None:
        why = unwritable(args.results)
        if why or same_file(args.results, args.output):
            print(f"conv-conformance: --results {args.results} "
                  f"{why or 'is the -o page: the page would overwrite it'}", file=sys.stderr)  # fmt: skip
            return 2
    campaign = _connect(args.campaign, args.campaign_name)
    if campaign is None:
        return 2
    try:
        results = campaign.results()
    except Exception as error:  # the server went away between the ping and now
        print(f"conv-conformance: the campaign's Redis at {args.campaign} failed: {error}", file=sys.stderr)
        return 3
    path = args.results
    if path is None:
        handle, path = tempfile.mkstemp(prefix="campaign-", suffix=".json")
        os.close(handle)
    try:
        results.write(path)
        return report_command(argparse.Namespace(results_file=path, output=args.output, baseline=args.baseline))
    finally:
        if args.results is None:
            os.unlink(path)


__all__ = ["DEFAULT_CHUNK_EXAMPLES", "add_campaign_commands", "add_campaign_options", "add_report_campaign_option",
           "campaign_report", "campaign_worker_args", "status_command", "status_lines"]  # fmt: skip
