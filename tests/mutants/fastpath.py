"""Fast-path algorithms whose only bug is precision: a float32 FFT and a float16 Winograd transform.

Real backends switch algorithm on the problem's shape, and the fast algorithms are
*normwise* accurate: their error in one output element scales with the norms of
the whole signal (FFT) or of the whole transformed tile (Winograd), not with the
magnitude of that element's own products.  The suite's bound is *componentwise*
(``gamma_K(u) * sum |x||w|`` per element, plus the output rounding), which is
what the declared precision model (PyTorch's: IEEE float32; float16 accumulated
in float32 and rounded once) promises.  So each of these mutants is correct
arithmetic used where a real backend would use it, and a bug only because its
error exceeds what the adapter declares.  Both take the fast path only where
the backend they model would; every other problem is PyTorch's own convolution.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from conformance.spec import ConvSpec

from ._base import Mutant
from .precision import NP_PAD_MODES

#: FFT convolution pays off from about this kernel extent on one axis (cuDNN's FFT and FFT_TILING
#: heuristics and cuDNN's own documentation of CUDNN_CONVOLUTION_FWD_ALGO_FFT: large filters).
FFT_MIN_KERNEL = 5
#: The smallest transform length per axis: cuDNN pads each image to a power-of-two FFT size.
FFT_TILE = 64


def _padded_input(spec: ConvSpec, x: np.ndarray) -> np.ndarray:
    """``x`` with the spec's padding applied: the fast paths then run an unpadded ("valid") correlation."""
    return np.pad(x, [(0, 0), (0, 0), *spec.pads], mode=NP_PAD_MODES[spec.padding_mode])


def _plain_geometry(spec: ConvSpec) -> bool:
    """Stride 1, dilation 1, one group, forward, a batch to transform: what both fast algorithms need."""
    return (
        not spec.transposed
        and spec.batch > 0
        and spec.groups == 1
        and all(s == 1 for s in spec.stride)
        and all(d == 1 for d in spec.dilation)
    )


def fft_size(n: int) -> int:
    """The transform length for an axis of ``n`` (padded) inputs: a power of two, at least
    :data:`FFT_TILE`, as cuDNN's FFT algorithms pad each image to a power-of-two tile."""
    return max(FFT_TILE, 1 << (n - 1).bit_length())


def uses_fft(spec: ConvSpec) -> bool:
    """Where :class:`Float32FFTConvolution` takes its FFT path."""
    return (
        spec.dtype == "float32"
        and spec.dims <= 2
        and _plain_geometry(spec)
        and max(spec.kernel_size) >= FFT_MIN_KERNEL
        # One output position is one dot product: no heuristic transforms a whole tile for it.
        and math.prod(spec.output_size) > 1
    )


def fft_correlate_float32(spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The forward convolution (a cross-correlation) through float32 FFTs: rfftn, a complex64
    product summed over input channels, irfftn, and the bias added in float32.

    The transforms are at least the padded input's size on every axis (see
    :func:`fft_size`): every valid output position ``i`` reads ``x[i + t]`` with
    ``i + t`` inside it, so the circular correlation equals the linear one there,
    and nothing wraps.
    """
    xp = torch.from_numpy(_padded_input(spec, x).astype(np.float32))
    wt = torch.from_numpy(np.asarray(w, dtype=np.float32))
    axes = tuple(range(2, 2 + spec.dims))
    size = tuple(fft_size(n) for n in xp.shape[2:])
    xf = torch.fft.rfftn(xp, s=size, dim=axes)  # complex64: float32 data stays float32
    wf = torch.fft.rfftn(wt, s=size, dim=axes)
    # Correlation is convolution with the conjugate transform of the kernel.
    yf = torch.einsum("nc...,oc...->no...", xf, wf.conj())
    y = torch.fft.irfftn(yf, s=size, dim=axes)
    y = y[(..., *(slice(0, o) for o in spec.output_size))]
    if b is not None:
        y = y + torch.from_numpy(np.asarray(b, dtype=np.float32)).reshape(1, -1, *(1,) * spec.dims)
    return y.to(torch.float64).numpy()


class Float32FFTConvolution(Mutant):
    """float32 convolutions with a large kernel computed through float32 FFTs, declaring IEEE float32.

    Models cuDNN's ``CUDNN_CONVOLUTION_FWD_ALGO_FFT`` / ``FFT_TILING`` (chosen by the
    heuristics and by ``cudnnFind`` for stride-1, dilation-1 problems with large
    filters; PyTorch's ``torch.backends.cudnn.benchmark`` picks them) and
    FFT-based convolutions such as ``scipy.signal.fftconvolve`` behind a direct-
    convolution API; oneDNN has no FFT path.  Bug class: FFT convolution error is
    normwise, so outputs whose own products are small carry the error of the
    largest ones: gpu-mode/reference-kernels#164 (cuDNN picks FFT for a large
    kernel, and its float32 error "scales with the *global* output magnitude ...
    not each element's local value", 10x over a 1e-3 gate at near-zero outputs),
    pytorch/pytorch#52983 (FFT convolution errors of 1e-2..1e-3 against 1e-4..1e-5
    for GEMM; non-negative inputs giving negative outputs), uxlfoundation/oneDNN#1221
    (exact results only from direct or GEMM algorithms, "not fft or wino").  Only
    stride 1, dilation 1, one group, 1-D and 2-D, some kernel axis >=
    ``FFT_MIN_KERNEL``, more than one output position; elsewhere PyTorch's.
    """

    name = "mutant-float32-fft-convolution"
    BUG_CLASS = "float32 FFT convolution for large kernels (normwise error)"
    # 1-D only: on all-ones data an FFT result misses the exact integer only for some channel counts and
    # sizes (not monotonically), so a 2-D catch made with ones can stall shrinking at hundreds of MACs.
    TARGET_CELLS = ("forward/1d/float32/fastpath",)
    MIN_DETECTION = 0.9

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if not uses_fft(spec):
            return super().forward(spec, x, w, b)
        self.plan_for(spec)  # refuse what the torch adapter refuses
        return fft_correlate_float32(spec, x, w, b)


# F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), the output
# tile ACL's F16 Winograd kernels use: Y = A^T [ (G g G^T) * (B^T d B) ] A on 6x6 input tiles, stride 4.
_TILE, _OUT = 6, 4
_B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def uses_winograd(spec: ConvSpec) -> bool:
    """Where :class:`Float16WinogradTransform` takes its Winograd path: 3x3, stride 1, dilation 1,
    one group, 2-D, float16."""
    return spec.dtype == "float16" and spec.dims == 2 and spec.kernel_size == (3, 3) and _plain_geometry(spec)


def _transform(left: np.ndarray, a: np.ndarray, right: np.ndarray, dtype: type) -> np.ndarray:
    """``left @ a @ right`` over the last two axes, every product and sum rounded to ``dtype``.

    Written as broadcast multiplies and a sum one term at a time, so that numpy rounds each
    step to float16 (a float16 matmul may accumulate wider).
    """
    out = None
    for j in range(left.shape[1]):
        term = left[:, j, None] * a[..., j, None, :]  # (..., rows, cols) per j
        out = term if out is None else out + term
    first = out.astype(dtype)
    out = None
    for j in range(right.shape[0]):
        term = first[..., :, j, None] * right[j, :]
        out = term if out is None else out + term
    return out.astype(dtype)


def winograd_f4x4_3x3(
    spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dtype: type = np.float16
) -> np.ndarray:
    """The forward convolution through Winograd F(4x4, 3x3) with its tiles stored in ``dtype``.

    The transform matrices, the input and filter transforms, the transformed
    products and the output transform are all ``dtype`` (float16: the half-precision
    kernel keeps its tiles so; its 1/6 and 1/12 are already rounded); the channel
    reduction of the transformed products accumulates in float32 (as declared), so
    the bug is the float16 intermediates alone, not a float16 accumulator (that is
    :class:`~tests.mutants.precision.Float16AccumulatesInFloat16`).  With
    ``dtype=np.float64`` it is the exact algorithm (the tests check it against the oracle).
    """
    b_t, g, a_t = (np.array(m, dtype=dtype) for m in (_B_T, _G, _A_T))
    xp = _padded_input(spec, x).astype(dtype)
    n, c, height, width = xp.shape
    out_h, out_w = spec.output_size
    tiles_h, tiles_w = math.ceil(out_h / _OUT), math.ceil(out_w / _OUT)
    # Zero-extend so every 6x6 tile is whole: the extra outputs are cut off at the end.
    full = np.zeros((n, c, _OUT * tiles_h + 2, _OUT * tiles_w + 2), dtype=dtype)
    full[:, :, :height, :width] = xp
    tiles = np.lib.stride_tricks.sliding_window_view(full, (_TILE, _TILE), axis=(2, 3))[:, :, ::_OUT, ::_OUT]
    v = _transform(b_t, tiles, b_t.T, dtype)  # (n, c, th, tw, 6, 6)
    u = _transform(g, np.asarray(w).astype(dtype), g.T, dtype)  # (o, c, 6, 6)
    wide = np.float64 if dtype == np.float64 else np.float32
    m = np.einsum("nchwij,ocij->nohwij", v.astype(wide), u.astype(wide)).astype(dtype)
    y_tiles = _transform(a_t, m, a_t.T, dtype)  # (n, o, th, tw, 4, 4)
    y = y_tiles.transpose(0, 1, 2, 4, 3, 5).reshape(n, -1, _OUT * tiles_h, _OUT * tiles_w)[:, :, :out_h, :out_w]
    if b is not None:
        y = (y + np.asarray(b).astype(dtype).reshape(1, -1, 1, 1)).astype(dtype)
    return y.astype(np.float64)


class Float16WinogradTransform(Mutant):
    """float16 3x3 convolutions through Winograd F(4x4, 3x3) whose transformed tiles are float16,
    while declaring (as PyTorch) float32 accumulation rounded once to float16.

    Models the half-precision Winograd kernels of the ARM Compute Library
    (``NEWinogradConvolutionLayer`` / ``CLWinogradConvolutionLayer`` in F16, which
    oneDNN's AArch64 build calls) and cuDNN's ``WINOGRAD_NONFUSED`` in half precision.
    Bug class: Winograd transforms amplify rounding (the transform matrices mix a
    whole tile, with entries up to 8 and 1/24), so float16 tiles lose several bits
    against the direct sum: ARM-software/ComputeLibrary#1154
    ("NEWinogradConvolutionLayer - accuracy issue with FP16", found through oneDNN's
    ACL integration, gone with Winograd disabled), ROCm/AMDMIGraphX#508 (fp16
    convolutions pass once MIOpen's Winograd is disabled), ROCm/rocm-libraries#3508
    (gfx12 FP16 Conv2D "significantly reduced accuracy when using Winograd kernels"),
    openvinotoolkit/openvino#21623 (GPU docs: disable Winograd for accuracy).  Only
    3x3, stride 1, dilation 1, one group, 2-D float16; elsewhere PyTorch's.
    """

    name = "mutant-float16-winograd-transform"
    BUG_CLASS = "float16 Winograd F(4x4,3x3) tiles (declared float32 accumulation)"
    TARGET_CELLS = ("forward/2d/float16/fastpath",)
    MIN_DETECTION = 0.9

    def forward(self, spec: ConvSpec, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if not uses_winograd(spec):
            return super().forward(spec, x, w, b)
        self.plan_for(spec)  # refuse what the torch adapter refuses
        return winograd_f4x4_3x3(spec, x, w, b)


__all__ = [
    "FFT_MIN_KERNEL",
    "FFT_TILE",
    "Float16WinogradTransform",
    "Float32FFTConvolution",
    "fft_correlate_float32",
    "fft_size",
    "uses_fft",
    "uses_winograd",
    "winograd_f4x4_3x3",
]
