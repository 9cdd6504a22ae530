"""What every chapter does with a cell: skip it when unsupported, explore it, honour the baseline."""

from __future__ import annotations

import warnings

import pytest

from conformance.cells import Cell
from conformance.session import ConformanceFailure, ConformanceSession, reproducible


def run_examples(session: ConformanceSession, cell_id: str, adapter: str, examples) -> None:
    """Run a Hypothesis test of one cell; a baselined failure becomes an expected one."""
    __tracebackhide__ = True
    try:
        reproducible(examples, cell_id)()
    except ConformanceFailure:
        entry = session.expected(cell_id, adapter)
        if entry:
            pytest.xfail(f"baseline: {entry.reason}")
        raise
    finally:
        session.write_shard()


class UnexpectedPass(UserWarning):
    """A cell the baseline expects to fail passed: the baseline entry can go."""


def explore_cell(session: ConformanceSession, adapter: str, cell: Cell, strategy=None) -> None:
    __tracebackhide__ = True
    if session.out_of_time:
        pytest.skip("time budget spent")
    caps = session.capabilities(adapter)
    why = cell.unsupported(caps)
    if why:
        session.record_unsupported(cell, adapter, why)
        pytest.skip(f"unsupported: {why}")
    expected = session.expected(cell.id, adapter)
    try:
        session.explore(cell, adapter, strategy if strategy is not None else cell.cases(caps))
    except ConformanceFailure:
        if expected:
            pytest.xfail(f"baseline: {expected.reason}")
        raise
    if expected:
        warnings.warn(UnexpectedPass(f"{cell.id} [{adapter}] passed, but the baseline expects: {expected.reason}"),
                      stacklevel=1)  # fmt: skip
