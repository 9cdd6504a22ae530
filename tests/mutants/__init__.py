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
from .geometry import (
    CeilOutputSize,
    DepthwiseIgnoresDilation,
    DilationAxesSwapped,
    FlippedKernel,
    OneByOneIgnoresStride,
    StrideAxesSwapped,
)
from .layouts import ChannelsLastReadAsNCHW, StridedViewReadAsContiguous
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
#: transposed, backward, precision, validation.  (The fast-path mutants of tests/mutants/fastpath.py are
#: not in the catalog yet: the ci cells catch them only with the fast-path regimes on, see FAST_PATHS.)
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
    OutputPaddingUnchecked,
)


def adapter_ref(mutant: type[Mutant]) -> str:
    """``tests.mutants.padding:ReflectAsEdge``: the name ``--adapter`` and the suite's callers take."""
    return f"{mutant.__module__}:{mutant.__qualname__}"


__all__ = ["MUTANTS", "Mutant", "Unmutated", "adapter_ref"]
