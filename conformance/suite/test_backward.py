"""Backward products (grad_input, grad_weight, grad_bias), of the convolution and of its transpose."""

import pytest

from conformance.cells import arithmetic_cells
from conformance.suite.explore import explore_cell


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return params["cell"].id


@pytest.mark.conformance
@pytest.mark.parametrize("cell", arithmetic_cells("backward"), ids=str)
def test_backward(conformance, adapter_name, cell):
    explore_cell(conformance, adapter_name, cell)


@pytest.mark.conformance
@pytest.mark.parametrize("cell", arithmetic_cells("transposed-backward"), ids=str)
def test_transposed_backward(conformance, adapter_name, cell):
    explore_cell(conformance, adapter_name, cell)
