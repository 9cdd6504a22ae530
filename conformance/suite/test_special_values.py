"""Special values: NaN, +-Inf, -0.0 and subnormals in the data.

A NaN input must give NaN wherever it enters a sum (a NaN-skipping kernel is a
real bug class); an infinity must survive; outputs whose magnitude overflows
carry no requirement; a zero of the padding times an infinite weight may be
NaN or skipped (see ``runner._padding_meets_nonfinite_weight``).  Subnormals
are judged under the adapter's declared flushing.
"""

import pytest

from conformance.cells import Cell
from conformance.spec import DTYPES
from conformance.strategies import conv_cases
from conformance.suite.explore import explore_cell


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return Cell("special", params["dims"], params["dtype"], "any").id


@pytest.mark.conformance
@pytest.mark.parametrize("dims", (1, 2, 3))
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(conformance, adapter_name, dims, dtype):
    cell = Cell("special", dims, dtype, "any")
    caps = conformance.capabilities(adapter_name)
    strategy = conv_cases(
        dims=(dims,), dtypes=(dtype,), transposed=False, distributions=("special",),
        padding_forms=tuple(f for f in caps.padding_forms if f in ("none", "symmetric", "asymmetric")),
        padding_modes=caps.padding_modes, layouts=caps.layouts, max_macs=5_000,
    )  # fmt: skip
    explore_cell(conformance, adapter_name, cell, strategy)
