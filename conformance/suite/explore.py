"""What every chapter does with a cell: skip it when unsupported, explore it, honour the baseline."""

from __future__ import annotations

import warnings

import pytest
from hypothesis.errors import FlakyFailure

from conformance.cells import Cell
from conformance.session import ConformanceFailure, ConformanceSession, reproducible


def run_examples(session: ConformanceSession, cell_id: str, adapter: str, examples) -> None:
    """Run a Hypothesis test of one cell; a baselined failure becomes an expected one."""
    __tracebackhide__ = True
    session.check_interrupted()
    try:
        reproducible(examples, cell_id)()
    except KeyboardInterrupt:
        session.cut_short(cell_id, adapter, "the run was interrupted")  # zero cases must not read as a pass
        raise
    except Exception as error:
        _expected_or_raise(session, cell_id, adapter, error)
    finally:
        session.write_shard()


def _expected_or_raise(session: ConformanceSession, cell_id: str, adapter: str, error: Exception) -> None:
    """xfail a baselined cell's failure; re-raise anything else.

    A failure Hypothesis could not replay (``FlakyFailure``: a backend that
    fails one call and not the next, as PyTorch's bfloat16 kernels do depending
    on what ran before) is still that cell's failure, already recorded.
    """
    __tracebackhide__ = True
    parts = error.exceptions if isinstance(error, FlakyFailure) else (error,)
    if all(isinstance(part, ConformanceFailure) for part in parts):
        entry = session.expected(cell_id, adapter)
        if entry:
            pytest.xfail(f"baseline: {entry.reason}")
    raise error


class UnexpectedPass(UserWarning):
    """A cell the baseline expects to fail passed: the baseline entry can go."""


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
    expected = session.expected(cell.id, adapter)
    try:
        session.explore(cell, adapter, strategy if strategy is not None else cell.cases(caps))
    except Exception as error:
        _expected_or_raise(session, cell.id, adapter, error)
    if expected:
        warnings.warn(UnexpectedPass(f"{cell.id} [{adapter}] passed, but the baseline expects: {expected.reason}"),
                      stacklevel=1)  # fmt: skip
