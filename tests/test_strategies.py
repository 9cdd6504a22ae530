"""The strategies: valid by construction, within budget, every bucket reached, shrinking well.

The bucket and rejection checks share one derandomized run of 500 examples
(a module fixture), so CI sees the same examples every time.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.internal import observability
from hypothesis.internal.conjecture.data import Status

from adapters.base import Capabilities
from conformance.cells import CHAPTERS, FAST_PATH, FAST_PATH_FORMS, Cell, arithmetic_cells
from conformance.data import DataRecipe
from conformance.regimes import LAYERS, SIMD_EDGE_CHANNELS
from conformance.spec import DTYPES, LAYOUTS, PADDING_MODES, RULES, ConvSpec, InvalidSpec
from conformance.strategies import (
    FAST_PATHS,
    INVALID_RULES,
    conv_cases,
    conv_specs,
    data_recipes,
    invalid_conv_specs,
)

EXAMPLES = 500
DERANDOMIZED = settings(
    max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)


def _run(strategy: st.SearchStrategy, examples: int = EXAMPLES) -> tuple[list, collections.Counter]:
    """Every example ``strategy`` generates in a derandomized run, and how each test case ended.

    Counted from Hypothesis's observability callbacks, one observation per
    test case: "passed", or "gave_up", which lumps together draws rejected by
    a filter or assume (counted again as "rejected", from the data status
    INVALID) and overruns (Hypothesis replaying a mutated choice sequence that
    ran out of choices).
    """
    examples_seen: list = []
    statuses: collections.Counter = collections.Counter()

    def observe(observation: observability.Observation) -> None:
        if observation.type == "test_case":
            statuses[observation.status] += 1
            if observation.metadata.data_status == Status.INVALID:
                statuses["rejected"] += 1

    @settings(DERANDOMIZED, max_examples=examples)
    @given(strategy)
    def collect(example):
        examples_seen.append(example)

    # Line coverage is part of every observation by default and would slow
    # the run several times over; only the statuses are wanted here.
    saved = observability.OBSERVABILITY_COLLECT_COVERAGE
    observability.OBSERVABILITY_COLLECT_COVERAGE = False
    try:
        with observability.with_observability_callback(observe):
            collect()
    finally:
        observability.OBSERVABILITY_COLLECT_COVERAGE = saved
    return examples_seen, statuses


@pytest.fixture(scope="module")
def default_run() -> tuple[list[tuple[ConvSpec, DataRecipe]], collections.Counter]:
    return _run(conv_cases())


# ------------------------------------------------------------------ validity


BUDGETS = {
    "default": {},
    "oracle-small": {"max_macs": 400, "max_batch": 2, "max_channels_per_group": 3, "max_groups": 2, "max_kernel": 3},
    "tight": {"max_macs": 12, "max_pad": 5, "max_dilation": 4},
    "transposed-3d": {"dims": (3,), "transposed": True, "max_macs": 3_000},
    "reflect-same": {"padding_forms": ("same",), "padding_modes": ("reflect", "circular"), "max_macs": 2_000},
    "wide": {"max_macs": 1_000_000, "max_kernel": 7, "max_pad": 6, "max_groups": 8},
}


@pytest.mark.parametrize("name", BUDGETS)
def test_every_problem_is_valid_and_within_its_mac_budget(name):
    kwargs = BUDGETS[name]
    budget = kwargs.get("max_macs", 100_000)

    @settings(max_examples=300, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(spec=conv_specs(**kwargs))
    def check(spec):
        spec.validate()
        assert spec.macs <= budget, f"macs={spec.macs}, but should be <= {budget} [{spec}]"
        assert spec.batch <= kwargs.get("max_batch", 6)
        assert all(k <= kwargs.get("max_kernel", 5) for k in spec.kernel_size), spec
        if "dims" in kwargs:
            assert spec.dims in kwargs["dims"]
        if "transposed" in kwargs:
            assert spec.transposed == kwargs["transposed"]
        if "padding_modes" in kwargs:
            assert spec.padding_mode in kwargs["padding_modes"]

    check()


def _gave_up(statuses: collections.Counter) -> float:
    return statuses["gave_up"] / (statuses["passed"] + statuses["gave_up"])


def test_no_example_is_rejected(default_run):
    # The design promises valid by construction; measure it instead of trusting it.
    _, statuses = default_run
    assert statuses["passed"] == EXAMPLES, statuses
    assert statuses["rejected"] == 0, f"no filter or assume may reject a draw: {dict(statuses)}"
    assert _gave_up(statuses) < 0.05, f"gave up too often: {dict(statuses)}"


def test_invalid_problems_are_not_rejected_either():
    _, statuses = _run(invalid_conv_specs(), examples=200)
    assert statuses["rejected"] == 0, dict(statuses)
    assert _gave_up(statuses) < 0.05, dict(statuses)


# ------------------------------------------------------------------ cells

# Everything supported, so that every arithmetic cell draws.
EVERYTHING = Capabilities(backward=True)
PADDED = ("symmetric", "asymmetric")


ARITHMETIC_CELLS = [cell for chapter in CHAPTERS if chapter != "special" for cell in arithmetic_cells(chapter)]


@pytest.mark.parametrize("cell", ARITHMETIC_CELLS, ids=str)
def test_every_cell_draws_only_problems_of_its_padding_form(cell):
    # A case of another form would make the cell's minimal failure belong to another cell.
    assert cell.unsupported(EVERYTHING) is None

    @settings(DERANDOMIZED, max_examples=10 if cell.padding_form in PADDED else 3)
    @given(case=cell.cases(EVERYTHING))
    def check(case):
        spec, _ = case
        spec.validate()
        if cell.padding_form == FAST_PATH:  # a fast-path cell's problems come in the forms fast paths take
            assert spec.padding_form in FAST_PATH_FORMS[cell.transposed], repr(spec)
        else:
            assert spec.padding_form == cell.padding_form, repr(spec)
        assert (spec.dims, spec.dtype, spec.transposed) == (cell.dims, cell.dtype, cell.transposed), repr(spec)

    check()


@pytest.mark.parametrize("chapter", ["forward", "transposed"])
@pytest.mark.parametrize("form", PADDED)
def test_padded_cells_reject_nothing(chapter, form):
    # Valid by construction in the padded forms too: no filter behind the guarantee above.
    cases, statuses = _run(Cell(chapter, 3, "float32", form).cases(EVERYTHING), examples=150)
    assert all(spec.padding_form == form for spec, _ in cases)
    assert statuses["rejected"] == 0, dict(statuses)
    # 3-D transposed cells overran about 6% of mutated replays before their forms were enforced
    # too: output_padding takes one draw or two, as the stride and dilation allow it.
    assert _gave_up(statuses) < (0.10 if chapter == "transposed" else 0.05), dict(statuses)


@pytest.mark.parametrize(
    ("chapter", "form", "pads", "kernel"),
    [
        ("forward", "symmetric", ((0, 0), (1, 1)), (1, 1)),
        ("forward", "asymmetric", ((0, 0), (1, 0)), (1, 1)),
        # A transposed axis crops at most dilation * (kernel - 1): pads (1, 1) need kernel 3.
        ("transposed", "symmetric", ((0, 0), (1, 1)), (1, 3)),
        ("transposed", "asymmetric", ((0, 0), (1, 0)), (1, 2)),
    ],
)
def test_a_padded_cell_shrinks_to_pad_1_on_one_axis(chapter, form, pads, kernel):
    spec, _ = find(Cell(chapter, 2, "float32", form).cases(EVERYTHING), lambda case: True, settings=SHRINK)
    assert (spec.padding, spec.kernel_size, spec.input_size) == (pads, kernel, (1, 1)), repr(spec)
    assert (spec.in_channels, spec.out_channels, spec.batch, spec.padding_mode) == (1, 1, 1, "zeros"), repr(spec)


@pytest.mark.parametrize("form", PADDED)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_padded_failure_shrinks_to_padding_on_the_axis_it_needs(form, axis):
    # Not one axis padded by default and another because the failure needs it.
    spec = find(conv_specs(dims=(3,), padding_forms=(form,)), lambda s: s.pads[axis] != (0, 0), settings=SHRINK)
    assert all(spec.pads[a] == (0, 0) for a in range(3) if a != axis), repr(spec)
    assert spec.pads[axis] in ([(1, 1)] if form == "symmetric" else [(1, 0), (0, 1)]), repr(spec)


def test_forms_the_limits_leave_no_room_for_are_not_drawn():
    cases, _ = _run(conv_specs(max_pad=0), examples=50)
    assert {spec.padding_form for spec in cases} <= {"none", "same", "valid"}
    cases, _ = _run(conv_specs(transposed=True, max_kernel=2, max_dilation=1), examples=50)
    assert {spec.padding_form for spec in cases} <= {"none", "asymmetric"}


# ------------------------------------------------------------------ buckets


def _padding_form(spec: ConvSpec) -> str:
    if isinstance(spec.padding, str):
        return spec.padding
    if not any(p for pair in spec.padding for p in pair):
        return "none"
    return "symmetric" if all(b == a for b, a in spec.padding) else "asymmetric"


def _group_kind(spec: ConvSpec) -> str:
    g = spec.groups
    if g == 1:
        return "one"
    if spec.in_channels == g and spec.out_channels == g:
        return "depthwise"
    if spec.in_channels == g and spec.out_channels // g >= 2:
        return "depthwise_multiplier"
    return "other"


def _covers_padded_input(spec: ConvSpec) -> bool:
    return not spec.transposed and any(
        d * (k - 1) + 1 == i + b + a
        for i, k, d, (b, a) in zip(spec.input_size, spec.kernel_size, spec.dilation, spec.pads)
    )


BUCKETS: dict[str, Callable[[ConvSpec, DataRecipe], bool]] = {
    **{f"dims={n}": (lambda s, r, n=n: s.dims == n) for n in (1, 2, 3)},
    **{f"padding={form}": (lambda s, r, form=form: _padding_form(s) == form) for form in
       ("none", "symmetric", "asymmetric", "same", "valid")},
    # A mode only matters where something is padded.
    **{f"mode={m} (padded)": (lambda s, r, m=m: s.padding_mode == m and any(map(any, s.pads)))
       for m in PADDING_MODES},
    **{f"groups={kind}": (lambda s, r, kind=kind: _group_kind(s) == kind) for kind in
       ("one", "depthwise", "depthwise_multiplier", "other")},
    "dilation>1": lambda s, r: any(d > 1 for d in s.dilation),
    "stride>kernel": lambda s, r: any(st_ > k for st_, k in zip(s.stride, s.kernel_size)),
    "kernel covers padded input": lambda s, r: _covers_padded_input(s),
    "batch=0": lambda s, r: s.batch == 0,
    "batch>4": lambda s, r: s.batch > 4,
    "channels/group >4, not 4k": lambda s, r: any(
        c > 4 and c % 4 for c in (s.in_channels // s.groups, s.out_channels // s.groups)
    ),
    "transposed": lambda s, r: s.transposed,
    "transposed output_padding>0": lambda s, r: s.transposed and any(s.output_padding),
    "non-square": lambda s, r: s.dims > 1 and len(set(s.input_size)) > 1,
    "bias": lambda s, r: s.bias,
    "no bias": lambda s, r: not s.bias,
    **{f"dtype={d}": (lambda s, r, d=d: s.dtype == d) for d in DTYPES},
    **{f"layout={lay}": (lambda s, r, lay=lay: s.layout == lay) for lay in LAYOUTS},
    **{f"tier={t}": (lambda s, r, t=t: r.tier == t) for t in ("exact", "real", "special")},
}


def _table(counts: dict[str, int], total: int) -> str:
    width = max(map(len, counts))
    return "\n".join(f"  {name:<{width}}  {n:4d}  {100 * n / total:5.1f}%" for name, n in counts.items())


def test_every_bucket_is_reached_within_500_examples(default_run):
    cases, _ = default_run
    counts = {name: sum(bool(hit(s, r)) for s, r in cases) for name, hit in BUCKETS.items()}
    missing = [name for name, n in counts.items() if n == 0]
    assert not missing, f"buckets never reached in {len(cases)} examples: {missing}\n{_table(counts, len(cases))}"


# ------------------------------------------------------------------ shrinking

SHRINK = settings(database=None, derandomize=True, max_examples=2_000, suppress_health_check=list(HealthCheck))


def test_shrinks_to_the_simplest_grouped_2d_problem():
    spec = find(conv_specs(), lambda s: s.dims == 2 and s.groups > 1, settings=SHRINK)
    assert spec == ConvSpec(
        in_channels=2, out_channels=2, groups=2, input_size=(1, 1), kernel_size=(1, 1), batch=1,
        stride=1, dilation=1, padding=((0, 0), (0, 0)), bias=False, dtype=DTYPES[0],
    ), repr(spec)


def test_shrinks_to_the_simplest_transposed_problem_with_output_padding():
    spec = find(conv_specs(), lambda s: s.transposed and any(s.output_padding), settings=SHRINK)
    # output_padding 1 needs stride or dilation 2; stride is drawn first and
    # shrinks first, so dilation takes the 2.
    assert spec == ConvSpec(
        in_channels=1, out_channels=1, input_size=(1,), kernel_size=(1,), dilation=2, output_padding=1,
        transposed=True, bias=False, dtype=DTYPES[0],
    ), repr(spec)


def test_a_large_problem_shrinks_to_its_smallest_input():
    # The input range starts at the smallest valid size, so a failure that needs
    # a 3-tap dilated kernel with reflect padding shrinks to exactly that.
    spec = find(
        conv_specs(),
        lambda s: s.padding_mode == "reflect" and s.kernel_size[0] == 3 and s.dilation[0] == 2 and s.macs > 0,
        settings=SHRINK,
    )
    assert spec.input_size == (5,) and spec.padding == ((0, 0),) and spec.batch == 1, repr(spec)


def test_recipes_shrink_towards_all_ones():
    assert find(data_recipes(), lambda r: True, settings=SHRINK) == DataRecipe("ones", 0.0, 0, 0)
    assert find(data_recipes(), lambda r: r.tier == "special", settings=SHRINK) == DataRecipe("special", 0.0, 0, 0)


# ------------------------------------------------------------- invalid problems


def test_the_invalid_strategy_covers_every_rule():
    assert set(INVALID_RULES) == set(RULES)


# Rules whose breaking necessarily makes later checks fail or meaningless too:
# an empty input cannot hold the kernel, an unknown padding string cannot be
# resolved, a forward stride <= 0 or groups 0 leave divisions undefined, and a
# kernel that does not fit has no output.  All other rules break alone.
INHERENT_COMPANIONS = {
    "groups_positive",
    "input_size_positive",
    "padding_string_known",
    "stride_positive",
    "kernel_fits_padded_input",
}


def _broken_rules(spec: ConvSpec) -> list[str]:
    """Every rule spec breaks, not just the first; a check that cannot be evaluated counts as broken.

    Uses ConvSpec._checks, the list validate() walks, so it stays in step with spec.py.
    """
    broken = []
    for rule, ok, _ in spec._checks():
        try:
            if not ok():
                broken.append(rule)
        except Exception:
            broken.append(rule)
    return broken


@pytest.mark.parametrize("rule", INVALID_RULES)
def test_each_invalid_problem_breaks_its_named_rule(rule):
    # One rule at a time, as the invalid chapter draws them: a draw over all rules at once
    # need not reach every rule in a fixed budget.
    cases, _ = _run(invalid_conv_specs(rules=(rule,)), examples=40)
    assert cases
    for spec, named in cases:
        assert named == rule
        with pytest.raises(InvalidSpec) as info:
            spec.validate()
        assert info.value.rule == rule, f"validate() says {info.value.rule}, but should say {rule} [{spec}]"
        if rule not in INHERENT_COMPANIONS:
            assert _broken_rules(spec) == [rule], f"{rule} broken with others: {_broken_rules(spec)} [{spec!r}]"


def test_invalid_problems_respect_the_spec_arguments():
    cases, _ = _run(invalid_conv_specs(transposed=False, dims=(2,)), examples=100)
    assert all(spec.transposed is False for spec, _ in cases)
    assert {rule for _, rule in cases}.isdisjoint({"transposed_padding_explicit", "output_size_positive"})
    with pytest.raises(InvalidArgument, match="output_size_positive"):
        invalid_conv_specs(rules=("output_size_positive",), transposed=False)
    with pytest.raises(InvalidArgument, match="rules="):
        invalid_conv_specs(rules=("no_such_rule",))


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: conv_specs(dims=(4,)), "dims"),
        (lambda: conv_specs(dims=()), "dims"),
        (lambda: conv_specs(dtypes=("float8",)), "dtypes"),
        (lambda: conv_specs(transposed="yes"), "transposed"),
        (lambda: conv_specs(padding_forms=("full",)), "padding_forms"),
        (lambda: conv_specs(padding_modes=("constant",)), "padding_modes"),
        (lambda: conv_specs(layouts=("nhwc",)), "layouts"),
        (lambda: conv_specs(devices=()), "devices"),
        (lambda: conv_specs(max_macs=0), "max_macs"),
        (lambda: conv_specs(max_batch=-1), "max_batch"),
        (lambda: conv_specs(max_kernel=0), "max_kernel"),
        (lambda: conv_specs(max_stride=1.5), "max_stride"),
        (lambda: conv_specs(max_pad=-1), "max_pad"),
        (lambda: conv_specs(transposed=True, padding_forms=("same", "valid")), "padding_forms"),
        (lambda: conv_specs(transposed=True, padding_modes=("reflect",)), "padding_modes"),
        (lambda: conv_specs(group_kinds=("depthwise",), max_groups=1), "group_kinds"),
        (lambda: conv_specs(padding_forms=("symmetric",), max_pad=0), "padding_forms"),
        (lambda: conv_specs(padding_forms=("asymmetric",), transposed=True, max_kernel=1), "padding_forms"),
        (lambda: conv_specs(padding_forms=("symmetric",), padding_modes=("reflect",), max_macs=3), "padding_forms"),
        (lambda: data_recipes(distributions=("gaussian",)), "distributions"),
        (lambda: data_recipes(sparsities=(1.0,)), "sparsities"),
        (lambda: data_recipes(min_scale=3, max_scale=2), "max_scale"),
        (lambda: conv_cases(dims=(0,)), "dims"),
        (lambda: conv_specs(regimes=("winograd",)), "regimes"),
        (lambda: conv_specs(simd_channels=(0,)), "simd_channels"),
        (lambda: data_recipes(wide_scales=(99,)), "wide_scales"),
    ],
)
def test_bad_arguments_fail_when_the_strategy_is_built(build, name):
    with pytest.raises(InvalidArgument, match=f"{name}="):
        build()


def test_restrictions_are_respected():
    cases, _ = _run(
        conv_specs(dims=(2,), dtypes=("bfloat16",), padding_forms=("asymmetric",), padding_modes=("circular",),
                   group_kinds=("other",), layouts=("channels_last",), bias=True),
        examples=100,
    )
    for spec in cases:
        assert (spec.dims, spec.dtype, spec.padding_mode, spec.layout, spec.bias) == (
            2, "bfloat16", "circular", "channels_last", True), spec
        assert spec.groups > 1 and not isinstance(spec.padding, str), spec


# ------------------------------------------------------------------ fast-path regimes

CI_BUDGET = 20_000
SIMD_EDGES = set(SIMD_EDGE_CHANNELS)


def _plain(spec: ConvSpec) -> bool:
    """Every axis stride 1 and dilation 1, one group: what Winograd, FFT and GEMM paths need."""
    return all(s == 1 for s in spec.stride) and all(d == 1 for d in spec.dilation) and spec.groups == 1


@pytest.mark.parametrize("form", ["none", "same", "symmetric"])
def test_the_fast_regime_draws_plain_isotropic_problems(form):
    cases, statuses = _run(conv_specs(regimes=("fast",), padding_forms=(form,), max_macs=CI_BUDGET), examples=200)
    assert statuses["rejected"] == 0, dict(statuses)
    for spec in cases:
        spec.validate()
        assert spec.macs <= CI_BUDGET and _plain(spec), spec
        # One kernel on every axis (a transposed symmetric axis may need a larger one to crop its pads).
        assert len(set(spec.kernel_size)) == 1 or spec.transposed, spec
    kernels = collections.Counter(spec.kernel_size[0] for spec in cases if not spec.transposed)
    assert {3, 5, 7} <= set(kernels) and max(kernels) >= 9, kernels
    channels = {c for spec in cases for c in (spec.in_channels, spec.out_channels)}
    assert channels & SIMD_EDGES and channels & {1, 2, 3, 4}, channels


def test_the_layer_regime_draws_the_real_layers_scaled_to_the_budget():
    cases, statuses = _run(conv_specs(regimes=("layer",), dims=(2,), max_macs=CI_BUDGET), examples=300)
    assert statuses["rejected"] == 0, dict(statuses)
    seen = set()
    for spec in cases:
        spec.validate()
        assert spec.macs <= CI_BUDGET, spec
        matches = [
            layer.name for layer in LAYERS
            if layer.transposed == spec.transposed and spec.kernel_size == (layer.kernel,) * 2
            and spec.stride in ((layer.stride,) * 2, (1, 1))  # a 'same' problem keeps stride 1
            and (spec.dilation == (layer.dilation,) * 2 or spec.transposed)  # a 2x2 crop of (1, 1) needs dilation 2
            and (spec.groups == 1) == (layer.kind == "one")
        ]  # fmt: skip
        assert matches, spec
        seen.update(matches)
    assert len(seen) >= len(LAYERS) - 2, sorted(seen)


def test_the_regimes_restricted_to_free_draw_as_before():
    cases, _ = _run(conv_specs(simd_channels=()), examples=200)
    # The free regime's kernels stay at most 5, and no fast-path channel count beyond max_channels_per_group.
    assert all(max(spec.kernel_size) <= 5 for spec in cases)
    assert all(spec.in_channels // spec.groups <= 9 and spec.out_channels // spec.groups <= 9 for spec in cases)


def _shares(cases: list[tuple[ConvSpec, DataRecipe]]) -> dict[str, float]:
    n = len(cases)

    def share(hit: Callable[[ConvSpec, DataRecipe], bool]) -> float:
        return sum(bool(hit(s, r)) for s, r in cases) / n

    return {
        "plain": share(lambda s, r: _plain(s)),
        "3x3 plain": share(lambda s, r: _plain(s) and set(s.kernel_size) == {3}),
        "large-kernel plain": share(lambda s, r: _plain(s) and max(s.kernel_size) >= 5),
        "simd edge": share(lambda s, r: bool({s.in_channels // s.groups, s.out_channels // s.groups} & SIMD_EDGES)),
        "wide spread": share(lambda s, r: r.tier == "real" and r.scale >= 8),
    }


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fast_path_regimes_are_a_good_share_of_the_ci_budget(dims):
    # What issue 12 asks: a bug living only in a fast path must be reachable in a cell's 15 examples.
    # Before the regimes: every axis stride 1, dilation 1 and groups 1 came up in 1 of 16 (1-D) to 1 of
    # 256 (3-D) draws of the strategies' own independent per-axis draws, 3x3 of them almost never in 3-D.
    cases, _ = _run(conv_cases(dims=(dims,), max_macs=CI_BUDGET, **FAST_PATHS), examples=400)
    shares = _shares(cases)
    assert shares["plain"] >= 0.4, shares
    assert shares["3x3 plain"] >= 0.12, shares
    assert shares["large-kernel plain"] >= 0.1, shares
    assert shares["simd edge"] >= 0.3, shares
    assert shares["wide spread"] >= 0.1, shares
