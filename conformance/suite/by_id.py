"""Run one cell, named by its id, through its chapter's own test function: what pytest does when ``--cell``
selects it, without collection (the campaign worker's chunks, the mutant meta-test's measurements)."""

from __future__ import annotations

from typing import Any

from conformance.cells import Cell


def run_cell(session: Any, adapter: str, cell_id: str) -> None:
    """Call the chapter's own test function for one cell of ``session`` (a ``ConformanceSession``) on ``adapter``."""
    from conformance.suite import test_backward, test_forward, test_invalid, test_special_values, test_transposed

    chapter, dims_text, dtype, form = cell_id.split("/")
    dims = int(dims_text.rstrip("d"))
    tests = {
        "forward": test_forward.test_forward,
        "transposed": test_transposed.test_transposed,
        "backward": test_backward.test_backward,
        "transposed-backward": test_backward.test_transposed_backward,
    }
    if chapter in tests:
        tests[chapter](session, adapter, Cell(chapter, dims, dtype, form))
    elif chapter == "special":
        test_special_values.test_special_values(session, adapter, dims, dtype)
    elif chapter == "invalid":
        test_invalid.test_invalid_problems_are_rejected(session, adapter, dims, form)
    else:
        raise ValueError(f"cell {cell_id!r}: no chapter {chapter!r} to run")


__all__ = ["run_cell"]
