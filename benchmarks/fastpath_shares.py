"""How often the strategies draw the shapes real backends give fast paths (a measurement, not a test).

    python benchmarks/fastpath_shares.py [--examples 2000] [--budget 20000] [--default]

Per dimensionality, one derandomized run of ``conv_cases`` at the ci profile's
MAC budget (forward problems, the finite distributions) as the ``fastpath`` cells
draw it (``conformance.cells``: the fast and layer regimes, the wide exponent
spreads; ``--default``: every padding form in the free draw, as every other cell),
and the share of drawn problems in each regime a backend may switch algorithm on.
The catch rates of the mutants that live in those regimes come from ``python -m tests.mutants.measure --seeds 10``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings

from conformance.cells import FAST_PATH_FORMS, FAST_PATH_REGIMES, FINITE_DISTRIBUTIONS
from conformance.data import DataRecipe
from conformance.regimes import SIMD_EDGE_CHANNELS
from conformance.spec import ConvSpec
from conformance.strategies import conv_cases
from conformance.valid_strategies import WIDE_SCALES

_SIMD = set(SIMD_EDGE_CHANNELS)


def _plain(s: ConvSpec) -> bool:
    return all(v == 1 for v in s.stride) and all(v == 1 for v in s.dilation) and s.groups == 1


#: name -> predicate on a drawn (spec, recipe)
REGIMES: dict[str, Callable[[ConvSpec, DataRecipe], bool]] = {
    "stride 1, dilation 1, groups 1 on every axis": lambda s, r: _plain(s),
    "isotropic (one kernel, stride, dilation)": lambda s, r: all(
        len(set(v)) == 1 for v in (s.kernel_size, s.stride, s.dilation)
    ),
    "3x3/5x5/7x7 stride 1 (every axis)": lambda s, r: len(set(s.kernel_size)) == 1
    and s.kernel_size[0] in (3, 5, 7)
    and all(v == 1 for v in s.stride),
    "Winograd shape (3x3.., stride/dilation 1, groups 1)": lambda s, r: _plain(s) and set(s.kernel_size) == {3},
    "FFT shape (some kernel >= 5, stride/dilation 1, groups 1)": lambda s, r: _plain(s) and max(s.kernel_size) >= 5,
    "large kernel (some axis >= 7)": lambda s, r: max(s.kernel_size) >= 7,
    "1x1 stride 1 groups 1": lambda s, r: _plain(s) and set(s.kernel_size) == {1},
    "SIMD-edge channels (7-9, 15-17, 31-33, 63-65 per group)": lambda s, r: bool(
        {s.in_channels // s.groups, s.out_channels // s.groups} & _SIMD
    ),
    "depthwise": lambda s, r: s.groups > 1 and s.in_channels == s.groups == s.out_channels,
    "real tier, wide exponent spread (scale >= 8)": lambda s, r: r.tier == "real" and r.scale >= 8,
}


def shares(dims: int, examples: int, budget: int, fast_paths: bool = True) -> dict[str, float]:
    seen: list[tuple[ConvSpec, DataRecipe]] = []
    extra = dict(regimes=FAST_PATH_REGIMES, wide_scales=WIDE_SCALES, weigh_first_less=True,
                 padding_forms=FAST_PATH_FORMS[False], padding_modes=("zeros",)) if fast_paths else {}  # fmt: skip

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(conv_cases(dims=(dims,), transposed=False, max_macs=budget, distributions=FINITE_DISTRIBUTIONS, **extra))
    def collect(case: tuple[ConvSpec, DataRecipe]) -> None:
        seen.append(case)

    collect()
    return {name: sum(bool(hit(s, r)) for s, r in seen) / len(seen) for name, hit in REGIMES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="draws per dimensionality (default 2000)")
    parser.add_argument("--budget", type=int, default=20_000, help="MACs per case (default 20000, the ci cells')")
    parser.add_argument("--default", action="store_true", help="every other cell's draw instead of the fastpath cells'")
    args = parser.parse_args(argv)
    table = {dims: shares(dims, args.examples, args.budget, not args.default) for dims in (1, 2, 3)}
    which = "other cells' draw" if args.default else "fastpath cells' draw"
    print(f"| regime ({which}, {args.examples} draws per dimensionality, {args.budget} MACs) | 1-D | 2-D | 3-D |")
    print("|---|---:|---:|---:|")
    for name in REGIMES:
        print(f"| {name} | " + " | ".join(f"{100 * table[d][name]:.1f}%" for d in (1, 2, 3)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
