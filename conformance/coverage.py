"""What a case exercised, attribute by attribute: the report's "coverage by attribute value".

Each case counts once under each attribute, so a reader sees which strides,
groupings, padding forms, layouts, batch sizes and data tiers the run reached
and which it never did.  Values are short strings; per-axis attributes list
their distinct values (``"1,2"`` for a stride of ``(1, 2)``), which keeps the
table small whatever the dimensionality.  A case of the invalid chapter counts
only under ``operation`` and ``invalid rule``: its other attributes are broken
on purpose and would read as coverage of valid problems.
"""

from __future__ import annotations

from typing import Any

#: The attributes, in the order the report lists them.
ATTRIBUTES = (
    "operation", "dims", "dtype", "transposed", "stride", "dilation", "groups", "padding form",
    "padding mode", "output padding", "bias", "layout", "device", "batch", "data", "invalid rule",
)  # fmt: skip


def case_attributes(spec: Any, recipe: Any = None, operation: str = "forward") -> dict[str, str]:
    """The attribute values of one case."""
    return {
        "operation": operation,
        "dims": f"{spec.dims}-D",
        "dtype": str(spec.dtype),
        "transposed": "yes" if spec.transposed else "no",
        "stride": _axes(spec.stride),
        "dilation": _axes(spec.dilation),
        "groups": _groups(spec),
        "padding form": spec.padding_form,
        "padding mode": str(spec.padding_mode),
        "output padding": _axes(spec.output_padding) if spec.transposed else "n/a",
        "bias": "yes" if spec.bias else "no",
        "layout": str(spec.layout),
        "device": str(spec.device),
        "batch": _batch(spec.batch),
        "data": _data(recipe),
    }


def _axes(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in sorted(set(value))) or "?"
    return str(value)


def _groups(spec: Any) -> str:
    groups = spec.groups
    if groups == 1:
        return "1"
    if groups == spec.in_channels:
        return "depthwise"
    return "grouped"


def _batch(batch: Any) -> str:
    return str(batch) if isinstance(batch, int) and batch <= 4 else "5+"


def _data(recipe: Any) -> str:
    if recipe is None:
        return "fixed"
    sparse = " sparse" if getattr(recipe, "sparsity", 0) else ""
    return f"{recipe.distribution}{sparse}"


__all__ = ["ATTRIBUTES", "case_attributes"]
