"""Invalid problems: each breaks exactly one named rule, and the candidate must raise.

Answering an invalid problem is a failure: a backend that silently computes
something for ``dilation=0`` or an ``output_padding`` beyond the stride gives
its users a wrong answer instead of an error.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.cells import Cell
from conformance.runner import run_invalid_case
from conformance.session import BAD
from conformance.strategies import INVALID_RULES, invalid_conv_specs
from conformance.suite.explore import run_examples

# A negative batch cannot reach a backend: tensors have no negative extents, so
# the candidate would see an empty batch, which is valid.  Every other rule can
# be put to a backend through its own API.
RULES = tuple(rule for rule in INVALID_RULES if rule != "batch_nonnegative")


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    return Cell("invalid", params["dims"], "float32", params["rule"]).id


@pytest.mark.conformance
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dims", (1, 2, 3))
def test_invalid_problems_are_rejected(conformance, adapter_name, dims, rule):
    # One cell per rule: a backend typically misses one check, and a draw over all
    # rules at once can leave that one untried in a cell's budget.
    cell = Cell("invalid", dims, "float32", rule)
    record = conformance.open_cell(cell.id, adapter_name)
    caller = conformance.callers[adapter_name]

    @given(case=invalid_conv_specs(rules=(rule,), dims=(dims,), dtypes=("float32",), layouts=("contiguous",)),
           batch=st.sampled_from((1, 2)))
    def example(case, batch):
        spec, rule = case
        # Checks are put to a batch of one or two: an empty batch is the forward chapters' edge case, and a
        # backend that skips work on it (PyTorch does, checks included) returns nothing wrong; a backend may
        # check only a batch of one (PyTorch's transposed output size), which a batch of two shows.
        spec = spec.replace(batch=batch)
        result = run_invalid_case(caller, spec, rule)
        conformance.judge(record, result.status, failure=result.to_dict() if result.status in BAD else None,
                          attributes={"operation": "invalid", "invalid rule": rule},
                          message=f"{adapter_name}.conv({spec.descriptor()}): {result.reason}")  # fmt: skip

    run_examples(conformance, cell.id, adapter_name, example)
