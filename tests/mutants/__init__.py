"""A catalog of deliberately wrong convolution adapters, for measuring what the suite catches.

Each mutant is PyTorch's real convolution (the ``torch`` adapter,
:class:`adapters.torch_functional.TorchFunctional`) with exactly one bug, modelled
on a documented class of real convolution bugs (its docstring says which).  Each
names the cells where the suite must catch it (``TARGET_CELLS``); the meta-test
``tests/test_mutants.py`` runs the ci profile on those cells and records how fast
the bug is caught and how small the minimal failing problem is.

Adapters are referenced as ``tests.mutants.<module>:<Class>``, e.g.
``conv-conformance run --adapter tests.mutants.padding:ReflectAsEdge -k ...``.
"""

from __future__ import annotations

from ._base import Mutant, Unmutated
from .backward import GradInputMissesLastCovered, GradWeightIgnoresGroups
from .channels import (
    BatchTailReadsPreviousTile,
    BiasDropped,
    BiasFromFirstGroup,
    GroupOutputsInterleaved,
    GroupsReadGroupZero,
    InputChannelTailDropped,
)
from .fastpath import Float16WinogradTransform, Float32FFTConvolution
from .geometry import (
    CeilOutputSize,
    DepthwiseIgnoresDilation,
    DilationAxesSwapped,
    FlippedKernel,
    OneByOneIgnoresStride,
    StrideAxesSwapped,
)
from .layouts import ChannelsLastReadAsNCHW, StridedViewReadAsContiguous
from .near_threshold import HalfPartialsAcrossChannelBlocks, TF32OnLongReductions
from .padding import (
    CircularLosesWrapWhenAfterIsZero,
    PadsInAxisOrder,
    ReflectAsEdge,
    ReflectAsSymmetric,
    SameExtraPadBefore,
)
from .precision import Float16AccumulatesInFloat16, Float32OutputThroughBFloat16, NaNFlushedToZero, UndeclaredTF32
from .transposed import TransposedGroupWeightsMisread, TransposedOutputPaddingLeftZero
from .validation import OutputPaddingUnchecked

#: Every mutant, grouped as the bug classes are: padding, geometry, channels and groups, layouts,
#: transposed, backward, precision (fast-path algorithms among them: caught in the fastpath cells), validation.
MUTANTS: tuple[type[Mutant], ...] = (
    ReflectAsEdge,
    ReflectAsSymmetric,
    CircularLosesWrapWhenAfterIsZero,
    PadsInAxisOrder,
    SameExtraPadBefore,
    StrideAxesSwapped,
    DilationAxesSwapped,
    OneByOneIgnoresStride,
    CeilOutputSize,
    DepthwiseIgnoresDilation,
    FlippedKernel,
    GroupsReadGroupZero,
    GroupOutputsInterleaved,
    BiasDropped,
    BiasFromFirstGroup,
    InputChannelTailDropped,
    BatchTailReadsPreviousTile,
    ChannelsLastReadAsNCHW,
    StridedViewReadAsContiguous,
    TransposedOutputPaddingLeftZero,
    TransposedGroupWeightsMisread,
    GradInputMissesLastCovered,
    GradWeightIgnoresGroups,
    Float16AccumulatesInFloat16,
    UndeclaredTF32,
    Float32OutputThroughBFloat16,
    NaNFlushedToZero,
    Float32FFTConvolution,
    Float16WinogradTransform,
    OutputPaddingUnchecked,
)


#: Near-threshold precision bugs (an error of a few times the bound, on some problems only): the ci budget is
#: not expected to catch them; the meta-test asks the targeted search of the fuzz profile to, and
#: ``benchmarks/targeting_bench.py`` measures the examples each search needs with and without targeting.
TARGETED_MUTANTS: tuple[type[Mutant], ...] = (HalfPartialsAcrossChannelBlocks, TF32OnLongReductions)


def adapter_ref(mutant: type[Mutant]) -> str:
    """``tests.mutants.padding:ReflectAsEdge``: the name ``--adapter`` and the suite's callers take."""
    return f"{mutant.__module__}:{mutant.__qualname__}"


__all__ = ["MUTANTS", "TARGETED_MUTANTS", "Mutant", "Unmutated", "adapter_ref"]
