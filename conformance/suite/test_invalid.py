"""Invalid problems: each breaks exactly one named rule, and the candidate must raise.

Answering an invalid problem is a failure: a backend that silently computes
something for ``dilation=0`` or an ``output_padding`` beyond the stride gives
its users a wrong answer instead of an error.
"""

import pytest
from hypothesis import given

from conformance.cells import Cell
from conformance.runner import run_invalid_case
from conformance.session import BAD, ConformanceFailure
from conformance.strategies import INVALID_RULES, invalid_conv_specs
from conformance.suite.explore import run_examples

# A negative batch cannot reach a backend: tensors have no negative extents, so
# the candidate would see an empty batch, which is valid.  Every other rule can
# be put to a backend through its own API.
RULES = tuple(rule for rule in INVALID_RULES if rule != "batch_nonnegative")


@pytest.mark.conformance
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dims", (1, 2, 3))
def test_invalid_problems_are_rejected(conformance, adapter_name, dims, rule):
    # One cell per rule: a backend typically misses one check, and a draw over all
    # rules at once can leave that one untried in a cell's budget.
    cell = Cell("invalid", dims, "float32", rule)
    record = conformance.open_cell(cell.id, adapter_name)
    caller = conformance.callers[adapter_name]

    @given(case=invalid_conv_specs(rules=(rule,), dims=(dims,), dtypes=("float32",), layouts=("contiguous",)))
    def example(case):
        spec, rule = case
        # Checks are put to a batch of at least one: an empty batch is the forward chapters' edge
        # case, and a backend that skips work on it (PyTorch does, checks included) returns nothing wrong.
        spec = spec.replace(batch=max(spec.batch, 1))
        result = run_invalid_case(caller, spec, rule)
        record.add(result.status, None, result.to_dict() if result.status in BAD else None,
                   attributes={"operation": "invalid", "invalid rule": rule})  # fmt: skip
        if result.status in BAD:
            raise ConformanceFailure(f"{adapter_name}.conv({spec.descriptor()}): {result.reason}")

    run_examples(conformance, cell.id, adapter_name, example)
