"""Hypothesis strategies for convolution problems, valid or broken on purpose: the public entry point.

Valid problems and their data come from :mod:`conformance.valid_strategies`
(their per-axis geometry from :mod:`conformance.geometry`), problems that
break one named rule from :mod:`conformance.invalid_strategies`.  This module
only gathers them: the invalid strategies build on the valid ones, so neither
of those could re-export the other without an import cycle.
"""

from __future__ import annotations

from conformance.invalid_strategies import INVALID_RULES, invalid_conv_specs
from conformance.spec import PADDING_FORMS
from conformance.valid_strategies import (
    FAST_PATHS,
    GROUP_KINDS,
    SPARSITIES,
    TRANSPOSED_PADDING_FORMS,
    conv_cases,
    conv_specs,
    data_recipes,
)

__all__ = [
    "FAST_PATHS",
    "GROUP_KINDS",
    "INVALID_RULES",
    "PADDING_FORMS",
    "SPARSITIES",
    "TRANSPOSED_PADDING_FORMS",
    "conv_cases",
    "conv_specs",
    "data_recipes",
    "invalid_conv_specs",
]
