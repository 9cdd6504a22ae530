"""What every chapter does with a cell: skip it when unsupported, explore it, say what the baseline explained."""

from __future__ import annotations

import pytest

from conformance.cells import Cell
from conformance.session import ConformanceSession, reproducible


def run_examples(session: ConformanceSession, cell_id: str, adapter: str, examples) -> None:
    """Run a Hypothesis test of one cell (its examples record through :meth:`ConformanceSession.judge`)."""
    __tracebackhide__ = True
    session.check_interrupted()
    record = session.results.cell(cell_id, adapter)
    try:
        reproducible(examples, cell_id)()
    except KeyboardInterrupt:
        session.cut_short(cell_id, adapter, "the run was interrupted")  # zero cases must not read as a pass
        raise
    finally:
        session.finish_cell(record)
        session.write_shard()
    _report_expected(record)


def _report_expected(record) -> None:
    """A cell whose only failures the baseline explains is an expected failure (pytest's xfail); an unexplained
    failure was raised before getting here.  A FlakyFailure (a backend that fails one call and not the next, as
    PyTorch's bfloat16 kernels do depending on what ran before) is raised as it is: still that cell's failure."""
    __tracebackhide__ = True
    if record.counts.get("expected"):
        entries = ", ".join(f"{entry} ({n})" for entry, n in sorted(record.explained.items()))
        pytest.xfail(f"baseline: {record.counts['expected']} failing case(s) explained by {entries}")


def explore_cell(session: ConformanceSession, adapter: str, cell: Cell, strategy=None) -> None:
    __tracebackhide__ = True
    if session.out_of_time:
        session.not_reached(cell.id, adapter)
        pytest.skip("time budget spent")
    caps = session.capabilities(adapter)
    why = cell.unsupported(caps)
    if why:
        session.record_unsupported(cell, adapter, why)
        pytest.skip(f"unsupported: {why}")
    session.explore(cell, adapter, strategy if strategy is not None else cell.cases(caps))
    # Read, not results.cell(): that would mark the cell changed (re-encoded at the next shard write), and
    # bring back the record of a cell the time budget cut short before its first case (see cut_short).
    record = session.results.cells.get((cell.id, adapter))
    if record is not None:
        _report_expected(record)
