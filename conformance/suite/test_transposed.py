"""Transposed convolution, with output_padding: every dims x dtype x explicit padding form."""

import pytest

from conformance.cells import arithmetic_cells
from conformance.suite.explore import explore_cell


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return params["cell"].id


@pytest.mark.conformance
@pytest.mark.parametrize("cell", arithmetic_cells("transposed"), ids=str)
def test_transposed(conformance, adapter_name, cell):
    explore_cell(conformance, adapter_name, cell)
