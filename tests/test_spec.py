"""ConvSpec: normalization, derived shapes, validation rules, JSON and descriptor round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from conformance.spec import RULES, ConvSpec, InvalidSpec, parse_descriptor
from conformance.strategies import conv_specs, invalid_conv_specs

ISSUE_EXAMPLE = ConvSpec(
    batch=2, in_channels=4, out_channels=6, input_size=(9, 7), kernel_size=(3, 2), stride=(2, 1),
    padding=((1, 0), (0, 1)), dilation=(1, 2), groups=2, bias=True, padding_mode="zeros", dtype="float32",
)


def test_ints_are_normalized_to_one_entry_per_axis():
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(5, 4, 3), kernel_size=2, stride=1, padding=1)
    assert spec.kernel_size == (2, 2, 2)
    assert spec.stride == (1, 1, 1)
    assert spec.padding == ((1, 1), (1, 1), (1, 1))
    assert spec.output_padding == (0, 0, 0)
    assert ConvSpec(in_channels=1, out_channels=1, input_size=5, kernel_size=2).input_size == (5,)


def test_per_axis_padding_ints_become_symmetric_pairs():
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(5, 4), kernel_size=1, padding=(2, 0))
    assert spec.padding == ((2, 2), (0, 0))


def test_derived_shapes_follow_pytorch():
    spec = ISSUE_EXAMPLE.validate()
    assert spec.input_shape == (2, 4, 9, 7)
    assert spec.weight_shape == (6, 2, 3, 2)
    assert spec.bias_shape == (6,)
    # H: (9 + 1 + 0 - 3) // 2 + 1 = 4;  W: (7 + 0 + 1 - (2*(2-1)+1)) // 1 + 1 = 6
    assert spec.output_shape == (2, 6, 4, 6)
    assert spec.reduction_length == 2 * 3 * 2
    assert spec.macs == 2 * 6 * 4 * 6 * 12


def test_transposed_shapes():
    spec = ConvSpec(in_channels=4, out_channels=6, input_size=(3, 5), kernel_size=(3, 2), stride=(2, 3),
                    padding=((1, 0), (0, 2)), output_padding=(1, 2), groups=2, transposed=True).validate()
    assert spec.weight_shape == (4, 3, 3, 2)
    # (3-1)*2 - 1 - 0 + 3 + 1 = 7;  (5-1)*3 - 0 - 2 + 2 + 2 = 14
    assert spec.output_size == (7, 14)
    assert spec.reduction_length == 2 * 2 * 1  # ceil(3*1/2) * ceil(2*1/3) taps per output
    assert spec.replace(stride=2, dilation=2, output_padding=0).reduction_length == 2 * 3 * 2


def test_same_padding_uses_the_dilated_extent_and_puts_the_extra_after():
    spec = ConvSpec(in_channels=1, out_channels=1, input_size=(6, 6), kernel_size=(4, 2), dilation=(1, 3),
                    padding="same").validate()
    assert spec.pads == ((1, 2), (1, 2))
    assert spec.output_size == spec.input_size


def test_same_keeps_the_size_for_even_kernels_where_the_articles_formula_does_not():
    # The seed article's (k*2+1)//2 padding grows the output for even kernels.
    for k in (2, 4, 6):
        article = ConvSpec(in_channels=1, out_channels=1, input_size=(9,), kernel_size=k, padding=(k * 2 + 1) // 2)
        same = ConvSpec(in_channels=1, out_channels=1, input_size=(9,), kernel_size=k, padding="same")
        assert article.output_size != (9,)
        assert same.output_size == (9,)


def test_json_round_trip():
    for spec in (ISSUE_EXAMPLE, ISSUE_EXAMPLE.replace(padding="same", stride=1, layout="channels_last"),
                 ISSUE_EXAMPLE.replace(transposed=True, output_padding=(1, 0), dtype="bfloat16", device="cuda:1")):
        again = ConvSpec.from_json(spec.to_json())
        assert again == spec
        assert hash(again) == hash(spec)


def test_unknown_json_fields_are_rejected_by_name():
    with pytest.raises(ValueError, match="colour"):
        ConvSpec.from_dict({**ISSUE_EXAMPLE.to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    "spec",
    [
        ISSUE_EXAMPLE,
        ISSUE_EXAMPLE.replace(padding="same", stride=1, padding_mode="reflect", bias=False),
        ISSUE_EXAMPLE.replace(padding="valid", dtype="float16", layout="strided"),
        ISSUE_EXAMPLE.replace(transposed=True, output_padding=(1, 1), device="cuda:0"),
        ConvSpec(batch=0, in_channels=3, out_channels=3, input_size=(4, 5, 6), kernel_size=(1, 2, 3), groups=3),
    ],
    ids=str,
)
def test_descriptor_round_trip(spec):
    assert parse_descriptor(spec.descriptor()) == spec


def test_descriptor_prints_only_non_defaults_beyond_the_essentials():
    spec = ConvSpec(in_channels=3, out_channels=8, input_size=(7, 5), kernel_size=(3, 1))
    assert spec.descriptor() == "conv2d_mb1_ic3_oc8_i7x5_k3x1"
    assert ISSUE_EXAMPLE.descriptor() == "conv2d_mb2_ic4_oc6_g2_i9x7_k3x2_s2x1_d1x2_p1x0_pe0x1"


@pytest.mark.parametrize("text", ["conv_mb1_ic1_oc1_i3_k1", "conv1d_mb1_ic1_oc1_i3", "conv1d_mb1_ic1_oc1_i3_k1_zz9",
                                  "conv2d_mb1_ic1_oc1_i3_k1"])
def test_malformed_descriptors_are_rejected(text):
    with pytest.raises(ValueError, match="descriptor"):
        parse_descriptor(text)


BASE = ConvSpec(batch=1, in_channels=4, out_channels=4, input_size=(6, 5), kernel_size=(3, 2), padding=1, groups=2)
BROKEN = {
    "rank": BASE.replace(kernel_size=(3, 2, 1)),
    "batch_nonnegative": BASE.replace(batch=-1),
    "channels_positive": BASE.replace(in_channels=0, groups=1),
    "groups_positive": BASE.replace(groups=0),
    "in_channels_divisible_by_groups": BASE.replace(in_channels=3),
    "out_channels_divisible_by_groups": BASE.replace(out_channels=5),
    "input_size_positive": BASE.replace(input_size=(0, 5)),
    "kernel_size_positive": BASE.replace(kernel_size=(0, 2)),
    "stride_positive": BASE.replace(stride=(1, 0)),
    "dilation_positive": BASE.replace(dilation=0),  # the seed article's "dilation=0 is ordinary"
    "padding_nonnegative": BASE.replace(padding=((1, -1), (0, 0))),
    "padding_string_known": BASE.replace(padding="full"),
    "padding_mode_known": BASE.replace(padding_mode="mirror"),
    "dtype_known": BASE.replace(dtype="int8"),
    "layout_known": BASE.replace(layout="nhwc"),
    "same_requires_stride_1": BASE.replace(padding="same", stride=(1, 2)),
    "transposed_padding_explicit": BASE.replace(transposed=True, padding="valid"),
    "transposed_padding_mode_zeros": BASE.replace(transposed=True, padding_mode="reflect"),
    "output_padding_requires_transposed": BASE.replace(output_padding=(1, 0), stride=2),
    "output_padding_nonnegative": BASE.replace(transposed=True, output_padding=(-1, 0)),
    "output_padding_smaller_than_stride_or_dilation": BASE.replace(transposed=True, stride=(2, 1),
                                                                   output_padding=(2, 0)),
    "reflect_padding_smaller_than_input": BASE.replace(padding_mode="reflect", padding=((0, 0), (5, 0))),
    "circular_padding_not_larger_than_input": BASE.replace(padding_mode="circular", padding=((7, 0), (0, 0))),
    "kernel_fits_padded_input": BASE.replace(kernel_size=(9, 2)),
    "output_size_positive": BASE.replace(transposed=True, input_size=(1, 5), kernel_size=(1, 2),
                                         padding=((1, 0), (0, 0))),
}


def test_every_rule_has_an_example():
    assert set(BROKEN) == set(RULES)


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_validate_names_the_broken_rule(rule):
    BASE.validate()
    with pytest.raises(InvalidSpec) as caught:
        BROKEN[rule].validate()
    assert caught.value.rule == rule
    assert rule in str(caught.value)
    assert not BROKEN[rule].is_valid()


def test_pytorch_limits_on_padding_modes():
    # reflect needs pad < size; circular allows pad == size (one full wrap), as F.pad does.
    ok = BASE.replace(padding_mode="circular", padding=((6, 6), (5, 0)))
    assert ok.is_valid()
    assert not BASE.replace(padding_mode="reflect", padding=((5, 0), (0, 0))).replace(
        input_size=(5, 5)).is_valid()


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_specs())
def test_every_generated_problem_round_trips_through_its_descriptor(spec):
    assert parse_descriptor(spec.descriptor()) == spec


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_conv_specs())
def test_invalid_problems_round_trip_too(case):
    # Repro scripts and test ids of error-conformance cases name invalid problems.
    spec, _ = case
    assert parse_descriptor(spec.descriptor()) == spec
