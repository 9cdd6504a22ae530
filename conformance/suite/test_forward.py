"""Forward convolution: every dims x dtype x padding form, each cell explored by Hypothesis."""

import pytest

from conformance.cells import arithmetic_cells
from conformance.suite.explore import explore_cell


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return params["cell"].id


@pytest.mark.conformance
@pytest.mark.parametrize("cell", arithmetic_cells("forward"), ids=str)
def test_forward(conformance, adapter_name, cell):
    explore_cell(conformance, adapter_name, cell)
