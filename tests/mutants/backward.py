"""Gradient bugs: grad_input at a stride remainder, grad_weight across groups."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from adapters import torch_common as tc
from adapters.base import Grads
from conformance.spec import ConvSpec

from ._base import Mutant, along, conv_function


class GradInputMissesLastCovered(Mutant):
    """grad_input misses the last input position the windows cover, when the stride leaves a remainder.

    Bug class: col2im's extent computed one short when ``(padded - extent)`` is not
    a multiple of the stride, so the last covered position gets no gradient.  The
    same remainder broke Torch7's SpatialConvolution backward
    (torch/DEPRECEATED-torch7-distro#20: gradInput 31x31 for a 32x32 input when
    ``input - kW`` is not divisible by ``dW``) and Opacus's per-sample conv
    gradients (meta-pytorch/opacus#245).  Without a remainder the extent is right.

    Computed on PyTorch's own gradients: the gradient of the padded input is taken
    from PyTorch's convolution backward, the position is dropped there, and
    F.pad's backward folds the padding onto the input as PyTorch does.
    """

    name = "mutant-grad-input-misses-last-covered"
    BUG_CLASS = "grad_input wrong at the last covered position (stride remainder)"
    TARGET_CELLS = ("backward/1d/float32/none",)
    BACKWARD = True

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        if spec.transposed:
            return super().backward(spec, x, w, b, grad_out)
        self.plan_for(spec)  # whatever PyTorch cannot be asked is refused as the torch adapter refuses it
        xt, wt, bt = tc.tensors(spec, x, w, b, requires_grad=True)
        (gy,) = tc.tensors(spec, grad_out)
        padded = F.pad(xt, tc.pad_list(spec.pads), mode=tc.PAD_MODES[spec.padding_mode])
        leaf = padded.detach().requires_grad_()
        y = conv_function(spec.dims)(leaf, wt, bt, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)
        y.backward(gy)
        grad_padded = leaf.grad.clone()
        for axis, (n, k, s, d, out) in enumerate(
            zip(leaf.shape[2:], spec.kernel_size, spec.stride, spec.dilation, spec.output_size)
        ):
            extent = d * (k - 1) + 1
            if (n - extent) % s:
                grad_padded[along(axis, (out - 1) * s + extent - 1, grad_padded.dim())] = 0
        padded.backward(grad_padded)
        return tc.as_numpy(xt.grad), tc.as_numpy(wt.grad), None if bt is None else tc.as_numpy(bt.grad)


class GradWeightIgnoresGroups(Mutant):
    """grad_weight of every group is computed against the input channels of group 0.

    Bug class: the weight-gradient GEMM run as if ``groups == 1`` over the first
    ``in_channels / groups`` channels (a missing per-group input offset in the
    backward-by-weights kernel only; forward and grad_input are right).
    """

    name = "mutant-grad-weight-ignores-groups"
    BUG_CLASS = "grad_weight ignores groups (reads group 0's input)"
    TARGET_CELLS = ("backward/1d/float32/none",)
    BACKWARD = True

    def backward(
        self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray
    ) -> Grads:
        gx, gw, gb = super().backward(spec, x, w, b, grad_out)
        if spec.transposed or spec.groups == 1:
            return gx, gw, gb
        cin_g = spec.in_channels // spec.groups
        group_zero = np.concatenate([x[:, :cin_g]] * spec.groups, axis=1)
        _, gw, _ = super().backward(spec, group_zero, w, b, grad_out)
        return gx, gw, gb


__all__ = ["GradInputMissesLastCovered", "GradWeightIgnoresGroups"]
