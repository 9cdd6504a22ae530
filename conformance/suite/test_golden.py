"""Golden vectors: the seed article's worked examples, and the truths behind its wrong claims.

The article (a tutorial on ``torch.nn.Conv2d``) computes two examples by hand;
those are exact here.  It also claims that dilation 0 is an ordinary
convolution (it is invalid: 1 is dense), that ``(k*2+1)//2`` padding keeps the
size for even kernels (it does not; ``padding='same'`` does, asymmetrically)
and that there are two padding modes (there are four).
"""

import numpy as np
import pytest

from conformance.cells import Cell
from conformance.coverage import case_attributes
from conformance.data import DataRecipe
from conformance.runner import run_case, run_invalid_case
from conformance.session import BAD
from conformance.spec import PADDING_MODES, ConvSpec


def article_input() -> np.ndarray:
    """The article's 5x5 input, a fresh array each time: golden vectors are never shared mutable state
    (an adapter that wrote into a module-level array would change what later cells are judged on)."""
    rows = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
    return np.array(rows, dtype=np.float64)[None, None]


def article_kernel() -> np.ndarray:
    """The article's 3x3 kernel, a fresh array each time."""
    return np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]], dtype=np.float64)[None, None]


GOLDEN = {
    "stride1": (ConvSpec(in_channels=1, out_channels=1, input_size=(5, 5), kernel_size=3, bias=False),
                ((12, 12, 17), (10, 17, 19), (9, 6, 14))),
    "stride2-padding1": (ConvSpec(in_channels=1, out_channels=1, input_size=(5, 5), kernel_size=3, stride=2,
                                  padding=1, bias=False),
                         ((6, 17, 3), (8, 17, 13), (6, 4, 4))),
}  # fmt: skip


def _record(conformance, adapter_name, name, result):
    cell = Cell("golden", 2, "float32", name)
    record = conformance.open_cell(cell.id, adapter_name)
    try:
        conformance.judge(record, result.status, ratio=result.ratio,
                          failure=result.to_dict() if result.status in BAD else None,
                          attributes=case_attributes(result.spec, None, "forward"),
                          message=f"{adapter_name}: {result.spec.descriptor()}: {result.reason}")  # fmt: skip
    finally:
        conformance.write_shard()
    if result.status == "unsupported":
        pytest.skip(result.reason)
    if result.status in BAD:
        pytest.xfail(f"baseline: explained by {', '.join(record.explained)}")


def cell_of(params: dict) -> str:
    """The cell id a parametrization of this chapter explores (what ``--cell`` matches)."""
    if "name" in params:
        case = f"article-{params['name']}"
    elif "kernel" in params:
        case = f"same-even-kernel-{params['kernel']}"
    elif "mode" in params:
        case = f"padding-mode-{params['mode']}"
    else:
        case = "dilation-0-rejected"
    return Cell("golden", 2, "float32", case).id


@pytest.mark.conformance
@pytest.mark.parametrize("name", GOLDEN)
def test_the_articles_worked_examples(conformance, adapter_name, name):
    spec, expected = GOLDEN[name]
    caller = conformance.callers[adapter_name]
    result = run_case(caller, spec, DataRecipe(), data=(article_input(), article_kernel(), None))
    _record(conformance, adapter_name, f"article-{name}", result)
    assert result.verdicts["output"].tier == "exact"
    assert np.array_equal(caller.call("forward", spec, article_input(), article_kernel(), None).value[0, 0], expected)


@pytest.mark.conformance
def test_dilation_zero_is_rejected(conformance, adapter_name):
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(5, 5), kernel_size=3, dilation=0, bias=False)
    result = run_invalid_case(conformance.callers[adapter_name], spec, "dilation_positive")
    _record(conformance, adapter_name, "dilation-0-rejected", result)


@pytest.mark.conformance
@pytest.mark.parametrize("kernel", (2, 4))
def test_same_padding_keeps_the_size_for_even_kernels(conformance, adapter_name, kernel):
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(7, 6), kernel_size=kernel, padding="same", bias=False)
    result = run_case(conformance.callers[adapter_name], spec, DataRecipe("integers", seed=kernel, scale=3))
    _record(conformance, adapter_name, f"same-even-kernel-{kernel}", result)
    assert spec.output_size == spec.input_size


@pytest.mark.conformance
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_each_of_the_four_padding_modes(conformance, adapter_name, mode):
    spec = ConvSpec(in_channels=2, out_channels=3, input_size=(6, 5), kernel_size=(3, 2), padding=((2, 1), (1, 0)),
                    padding_mode=mode, bias=True)  # fmt: skip
    result = run_case(conformance.callers[adapter_name], spec, DataRecipe("integers", seed=7, scale=3))
    _record(conformance, adapter_name, f"padding-mode-{mode}", result)
