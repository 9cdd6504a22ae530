"""Oracle speed next to PyTorch's own float64 convolution (a benchmark, not a test).

    python benchmarks/oracle_bench.py [--repeat N] [--quick]

For each problem it prints the oracle's median time, PyTorch float64's on the
same problem (same operation: forward, transposed or the three backward
products), their ratio, the oracle's GFLOP/s, and the oracle's peak extra memory
(tracemalloc, which sees numpy's buffers) as a multiple of input + weight +
output.  The numpy float64 matmul rate measured in the same run is the ceiling
the oracle's im2col + matrix-product blocks can approach.  Targets (README):
median ratio <= 1.0 on medium and large problems for every operation, >= 50% of
the matmul rate on large problems, <= 100 us per call on tiny ones, peak extra
memory <= 3x.

Both sides get the same cores: torch's intra-op threads and numpy's BLAS
threads both default to the cores this process may use (the header prints
torch's).  The oracle's copies run on one thread: copy threads next to
OpenBLAS's spinning workers measured slower, not faster, on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance import oracle
from conformance.spec import ConvSpec

# (size class, operation, spec)
PROBLEMS: list[tuple[str, str, ConvSpec]] = [
    ("tiny", "forward", ConvSpec(in_channels=2, out_channels=3, input_size=(6, 5), kernel_size=(3, 2))),
    ("tiny", "forward", ConvSpec(in_channels=3, out_channels=2, input_size=(9,), kernel_size=(3,), stride=2)),
    ("tiny", "transposed", ConvSpec(in_channels=2, out_channels=2, input_size=(4, 3), kernel_size=(2, 3),
                                    stride=(2, 1), transposed=True)),
    ("tiny", "backward", ConvSpec(in_channels=2, out_channels=2, input_size=(5, 4), kernel_size=(2, 2))),
    ("medium", "forward", ConvSpec(batch=4, in_channels=32, out_channels=32, input_size=(28, 24), kernel_size=(3, 3),
                                   padding=1)),
    ("medium", "forward", ConvSpec(batch=4, in_channels=64, out_channels=64, input_size=(20, 18), kernel_size=(3, 3),
                                   padding=1, groups=64)),
    ("medium", "forward", ConvSpec(batch=2, in_channels=16, out_channels=24, input_size=(9, 10, 8),
                                   kernel_size=(3, 3, 3), dilation=(2, 1, 1), padding=((2, 2), (1, 1), (1, 1)))),
    ("medium", "forward", ConvSpec(batch=8, in_channels=32, out_channels=48, input_size=(200,), kernel_size=(5,),
                                   dilation=(3,), groups=4, padding_mode="reflect", padding=6)),
    ("medium", "transposed", ConvSpec(batch=4, in_channels=32, out_channels=16, input_size=(14, 12),
                                      kernel_size=(4, 4), stride=2, padding=1, transposed=True)),
    ("medium", "backward", ConvSpec(batch=4, in_channels=32, out_channels=32, input_size=(20, 18),
                                    kernel_size=(3, 3), padding=1)),
    ("large", "forward", ConvSpec(batch=8, in_channels=64, out_channels=64, input_size=(56, 48), kernel_size=(3, 3),
                                  padding=1)),
    ("large", "forward", ConvSpec(batch=4, in_channels=128, out_channels=128, input_size=(28, 30), kernel_size=(3, 3),
                                  stride=(2, 1), padding=1, groups=2)),
    ("large", "transposed", ConvSpec(batch=4, in_channels=64, out_channels=32, input_size=(28, 26),
                                     kernel_size=(4, 3), stride=(2, 1), padding=1, transposed=True)),
    ("large", "backward", ConvSpec(batch=8, in_channels=64, out_channels=64, input_size=(28, 24), kernel_size=(3, 3),
                                   padding=1)),
    ("large", "forward", ConvSpec(batch=2, in_channels=32, out_channels=32, input_size=(16, 18, 14),
                                  kernel_size=(3, 3, 3), padding=1)),
]


def _data(spec: ConvSpec):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(spec.input_shape), rng.standard_normal(spec.weight_shape),
            rng.standard_normal(spec.bias_shape) if spec.bias else None, rng.standard_normal(spec.output_shape))


def _oracle_call(op: str, spec: ConvSpec, x, w, b, gy):
    if op == "backward":
        return lambda: oracle.backward(spec, x, w, gy)
    return lambda: oracle.forward(spec, x, w, b)


def _torch_call(op: str, spec: ConvSpec, x, w, b, gy):
    import torch

    from tests import torch_reference

    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)
    if op == "backward":
        tgy = torch.from_numpy(gy)

        def run():
            args = [None if t is None else t.detach().requires_grad_() for t in (tx, tw, tb)]
            torch_reference.run(spec, *args).backward(tgy)

        return run

    def run_forward():
        with torch.no_grad():
            torch_reference.run(spec, tx, tw, tb)

    return run_forward


def _median_time(fn, repeat: int) -> float:
    """Median seconds of ``fn`` over a block of calls.

    Blocks, not interleaved calls: OpenMP (torch) and OpenBLAS (numpy) worker
    threads spin for a while after each parallel region, so alternating the two
    libraries makes each one's spinning threads steal the other's core.
    """
    fn()  # warm-up: first-call allocation, dispatch and thread start
    times = []
    budget = time.perf_counter() + 2.0
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if time.perf_counter() > budget and len(times) >= 5:
            break
    return statistics.median(times)


def _peak_extra(fn) -> int:
    """Peak bytes a cold call allocates (scratch buffers emptied first), results included."""
    oracle._scratch.clear()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def _flops(op: str, spec: ConvSpec) -> float:
    return 2.0 * spec.macs * (2 if op == "backward" else 1)


def matmul_gflops() -> float:
    a = np.random.default_rng(0).standard_normal((512, 512))
    seconds = _median_time(lambda: a @ a, 20)
    return 2 * 512**3 / seconds / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per problem (capped at ~2 s each)")
    parser.add_argument("--quick", action="store_true", help="tiny and medium problems only")
    args = parser.parse_args(argv)
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch = None
        torch_version = "not installed"
    blas = matmul_gflops()
    print(f"numpy {np.__version__}, torch {torch_version}, float64 matmul 512x512: {blas:.1f} GFLOP/s")
    torch_threads = torch.get_num_threads() if torch else 0
    print(f"threads: torch intra-op {torch_threads}, numpy BLAS: its default (OPENBLAS_NUM_THREADS to change)")
    header = f"{'class':<7}{'op':<11}{'problem':<64}{'oracle':>10}{'torch':>10}{'ratio':>7}{'GFLOP/s':>9}{'mem':>6}"
    print(header)
    print("-" * len(header))
    ratios: dict[tuple[str, str], list[float]] = {}
    large_rates = []
    tiny_times = []
    for size, op, spec in PROBLEMS:
        if args.quick and size == "large":
            continue
        spec.validate()
        x, w, b, gy = _data(spec)
        ours = _median_time(_oracle_call(op, spec, x, w, b, gy), args.repeat)
        theirs = _median_time(_torch_call(op, spec, x, w, b, gy), args.repeat) if torch else math.nan
        tensors = sum(a.nbytes for a in (x, w, b, gy) if a is not None)
        if op == "backward":  # the three gradients are outputs too
            tensors += x.nbytes + w.nbytes
        extra = _peak_extra(_oracle_call(op, spec, x, w, b, gy)) / tensors
        ratio = ours / theirs
        ratios.setdefault((size, op), []).append(ratio)
        if size == "tiny":
            tiny_times.append(ours)
        if size == "large":
            large_rates.append(_flops(op, spec) / ours / 1e9)
        print(f"{size:<7}{op:<11}{spec.descriptor():<64}{ours * 1e3:>8.3f}ms{theirs * 1e3:>8.3f}ms"
              f"{ratio:>7.2f}{_flops(op, spec) / ours / 1e9:>9.2f}{extra:>5.1f}x")
    print()
    for size in dict.fromkeys(size for size, _ in ratios):
        values = [r for (s, _), r_list in ratios.items() if s == size for r in r_list]
        per_op = ", ".join(
            f"{op} {statistics.median(r_list):.2f}" for (s, op), r_list in ratios.items() if s == size
        )
        print(f"median oracle/torch ratio, {size}: {statistics.median(values):.2f} ({per_op})")
    if large_rates:
        print(
            f"large problems: median {statistics.median(large_rates):.1f} GFLOP/s "
            f"({statistics.median(large_rates) / blas:.0%} of matmul), "
            f"slowest {min(large_rates):.1f} ({min(large_rates) / blas:.0%})"
        )
    print(f"slowest tiny call: {max(tiny_times) * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
