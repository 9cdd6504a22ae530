"""The report's matrix: one cell per (chapter, dims, dtype, padding form, device).

Each cell gets its own Hypothesis run, so each gets its own minimal failure.
Its id (``forward/2d/float32/same``, ``@cuda`` appended off the CPU) is the key
in results files and baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from adapters.base import Capabilities
from conformance.data import DISTRIBUTIONS
from conformance.spec import DTYPES, PADDING_FORMS
from conformance.strategies import TRANSPOSED_PADDING_FORMS, conv_cases

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
        modes = ("zeros",) if self.transposed else caps.padding_modes
        if self.padding_form == "none":
            modes = ("zeros",)  # a mode means nothing without padding; one cell, not four
        return conv_cases(
            dims=(self.dims,), dtypes=(self.dtype,), transposed=self.transposed,
            padding_forms=(self.padding_form,), padding_modes=modes, layouts=caps.layouts,
            devices=(self.device,), max_macs=max_macs, distributions=FINITE_DISTRIBUTIONS,
        )  # fmt: skip


def arithmetic_cells(chapter: str, devices: tuple[str, ...] = ("cpu",)) -> list[Cell]:
    forms = TRANSPOSED_PADDING_FORMS if CHAPTERS[chapter][0] else PADDING_FORMS
    return [
        Cell(chapter, dims, dtype, form, device)
        for device in devices
        for dims in (1, 2, 3)
        for dtype in DTYPES
        for form in forms
    ]


__all__ = ["CHAPTERS", "FINITE_DISTRIBUTIONS", "Cell", "arithmetic_cells"]
