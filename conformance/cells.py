"""The report's matrix: one cell per (chapter, dims, dtype, padding form, device).

Each cell gets its own Hypothesis run, so each gets its own minimal failure.
Its id (``forward/2d/float32/same``, ``@cuda`` appended off the CPU) is the key
in results files and baselines.

Beside the padding forms, each arithmetic chapter has a ``fastpath`` cell per dims
and dtype: problems in the shapes on which backends switch algorithm (Winograd,
FFT, GEMM, SIMD channel blocking, real network layers; see
:mod:`conformance.regimes`) with the data that exposes a normwise-accurate fast
algorithm.  They are cells of their own, not a share of every cell's draws:
fifteen ci examples cannot serve both the fast paths and the bug classes that
need unequal axes, dilation or groups (measured in the README).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from adapters.base import Capabilities
from conformance.data import DISTRIBUTIONS
from conformance.spec import DTYPES, PADDING_FORMS
from conformance.strategies import TRANSPOSED_PADDING_FORMS, conv_cases
from conformance.valid_strategies import WIDE_SCALES

#: The cell "form" of the fast-path cells (their problems are of the padding forms below).
FAST_PATH = "fastpath"
#: The padding forms of fast-path problems: unpadded and "same"-padded layers, zero padding.
FAST_PATH_FORMS = {False: ("none", "same", "symmetric"), True: ("none", "symmetric")}
#: The fast regime twice as often as real layers; never the free draw, which every other cell has.
FAST_PATH_REGIMES = ("fast", "layer", "fast")

#: chapter -> (transposed, operation)
CHAPTERS = {
    "forward": (False, "forward"),
    "transposed": (True, "forward"),
    "backward": (False, "backward"),
    "transposed-backward": (True, "backward"),
    # Special values run over every padding form an adapter has: "any" in the cell id.
    "special": (False, "forward"),
}
#: Special values have a chapter of their own; the arithmetic chapters use finite data.
FINITE_DISTRIBUTIONS = tuple(d for d in DISTRIBUTIONS if d != "special")


@dataclass(frozen=True)
class Cell:
    chapter: str
    dims: int
    dtype: str
    padding_form: str
    device: str = "cpu"

    @property
    def id(self) -> str:
        suffix = "" if self.device == "cpu" else f"@{self.device}"
        return f"{self.chapter}/{self.dims}d/{self.dtype}/{self.padding_form}{suffix}"

    def __str__(self) -> str:
        return self.id

    @property
    def transposed(self) -> bool:
        return CHAPTERS[self.chapter][0]

    @property
    def operation(self) -> str:
        return CHAPTERS[self.chapter][1]

    def unsupported(self, caps: Capabilities) -> str | None:
        """Why no problem of this cell can run on an adapter with ``caps``, or None."""
        forms = caps.transposed_padding_forms if self.transposed else caps.padding_forms
        if self.padding_form == FAST_PATH:
            forms = (FAST_PATH,) if set(forms) & set(FAST_PATH_FORMS[self.transposed]) else ()
        reasons = [
            (self.dims in caps.dims, f"{self.dims}-D convolution"),
            (self.dtype in caps.dtypes, f"dtype {self.dtype}"),
            (self.device.split(":")[0] in caps.devices, f"device {self.device}"),
            (not self.transposed or caps.transposed, "transposed convolution"),
            (self.operation != "backward" or caps.backward, "backward"),
            (self.padding_form == "any" or self.padding_form in forms, f"{self.padding_form} padding"),
        ]
        for ok, what in reasons:
            if not ok:
                return f"{what} is not supported"
        return None

    def cases(self, caps: Capabilities, *, max_macs: int = 20_000) -> st.SearchStrategy:
        """``(spec, recipe)`` pairs of this cell, within what ``caps`` supports."""
        if self.padding_form == FAST_PATH:
            forms = caps.transposed_padding_forms if self.transposed else caps.padding_forms
            return conv_cases(
                dims=(self.dims,), dtypes=(self.dtype,), transposed=self.transposed,
                padding_forms=tuple(f for f in FAST_PATH_FORMS[self.transposed] if f in forms),
                padding_modes=("zeros",), layouts=caps.layouts, devices=(self.device,), max_macs=max_macs,
                distributions=FINITE_DISTRIBUTIONS, regimes=FAST_PATH_REGIMES, wide_scales=WIDE_SCALES,
                weigh_first_less=True,
            )  # fmt: skip
        modes = ("zeros",) if self.transposed else caps.padding_modes
        if self.padding_form == "none":
            modes = ("zeros",)  # a mode means nothing without padding; one cell, not four
        return conv_cases(
            dims=(self.dims,), dtypes=(self.dtype,), transposed=self.transposed,
            padding_forms=(self.padding_form,), padding_modes=modes, layouts=caps.layouts,
            devices=(self.device,), max_macs=max_macs, distributions=FINITE_DISTRIBUTIONS,
        )  # fmt: skip


def arithmetic_cells(chapter: str, devices: tuple[str, ...] = ("cpu",)) -> list[Cell]:
    forms = (*(TRANSPOSED_PADDING_FORMS if CHAPTERS[chapter][0] else PADDING_FORMS), FAST_PATH)
    return [
        Cell(chapter, dims, dtype, form, device)
        for device in devices
        for dims in (1, 2, 3)
        for dtype in DTYPES
        for form in forms
    ]


__all__ = ["CHAPTERS", "FAST_PATH", "FAST_PATH_FORMS", "FAST_PATH_REGIMES", "FINITE_DISTRIBUTIONS", "Cell",
           "arithmetic_cells"]  # fmt: skip
