"""One convolution problem: :class:`ConvSpec`, its validation, descriptor and JSON form.

The vocabulary is PyTorch's (``in_channels``, ``kernel_size``, ``padding_mode``, ...),
with every per-axis field held as a tuple of one entry per spatial axis: square
problems hide axis-swap bugs, so nothing here assumes H == W.

Conventions, stated once:

* dilation 1 is an ordinary (dense) convolution; 0 is rejected.
* ``padding`` is stored either as per-axis ``(before, after)`` pairs or as the
  string ``'same'`` / ``'valid'``; the string is kept, not resolved, because how a
  backend resolves it is itself under test.  ``'same'`` resolves with the
  *dilated* kernel extent and puts the odd extra pad after, as PyTorch does.
* For a transposed convolution, padding crops the full output (``before`` from
  the start, ``after`` from the end) and ``output_padding`` adds positions at the
  end, as ``nn.ConvTranspose*d`` and ONNX ``ConvTranspose`` define them.

A spec is built unvalidated (so that invalid problems can be described and fed
to candidates); :meth:`ConvSpec.validate` raises one :class:`InvalidSpec` that
names the first rule the spec breaks.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

DTYPES = ("float64", "float32", "float16", "bfloat16")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("same", "valid")
#: How a problem's padding is written, simplest first: see :attr:`ConvSpec.padding_form`.
PADDING_FORMS = ("none", "symmetric", "asymmetric", "same", "valid")
LAYOUTS = ("contiguous", "channels_last", "strided")

Pairs = tuple[tuple[int, int], ...]
Padding = str | Pairs

#: Every rule :meth:`ConvSpec.validate` can report, with what it demands.
RULES: dict[str, str] = {
    "rank": "1, 2 or 3 spatial axes, and every per-axis field has one entry per axis",
    "batch_nonnegative": "batch >= 0",
    "channels_positive": "in_channels >= 1 and out_channels >= 1",
    "groups_positive": "groups >= 1",
    "in_channels_divisible_by_groups": "in_channels % groups == 0",
    "out_channels_divisible_by_groups": "out_channels % groups == 0",
    "input_size_positive": "every input_size entry >= 1",
    "kernel_size_positive": "every kernel_size entry >= 1",
    "stride_positive": "every stride entry >= 1",
    "dilation_positive": "every dilation entry >= 1 (1 is a dense kernel)",
    "padding_nonnegative": "every padding entry >= 0",
    "padding_string_known": "padding string is 'same' or 'valid'",
    "padding_mode_known": "padding_mode is one of " + ", ".join(PADDING_MODES),
    "dtype_known": "dtype is one of " + ", ".join(DTYPES),
    "layout_known": "layout is one of " + ", ".join(LAYOUTS),
    "same_requires_stride_1": "padding='same' needs stride 1 on every axis",
    "transposed_padding_explicit": "a transposed convolution takes explicit padding, not a string",
    "transposed_padding_mode_zeros": "a transposed convolution pads with zeros only",
    "output_padding_requires_transposed": "output_padding is non-zero only for a transposed convolution",
    "output_padding_nonnegative": "every output_padding entry >= 0",
    "output_padding_smaller_than_stride_or_dilation": "output_padding < max(stride, dilation) on every axis",
    "reflect_padding_smaller_than_input": "reflect padding < input size on every axis and side",
    "circular_padding_not_larger_than_input": "circular padding <= input size on every axis and side",
    "kernel_fits_padded_input": "dilated kernel extent <= padded input size on every axis",
    "output_size_positive": "every output size >= 1",
}


class InvalidSpec(ValueError):
    """A problem that breaks a convolution rule; ``rule`` is a key of :data:`RULES`."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


def _as_tuple(value: Any) -> Any:
    """Lists from JSON become tuples; anything else is left for validate() to judge."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def _per_axis(value: Any, dims: int) -> Any:
    """An int means the same value on every axis; a tuple is kept as given."""
    value = _as_tuple(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * dims
    return value


def _normalize_padding(value: Any, dims: int) -> Any:
    """int -> pairs on every axis; per-axis ints -> symmetric pairs; strings kept."""
    value = _as_tuple(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ((value, value),) * dims
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return tuple((v, v) for v in value)
    return value


@dataclass(frozen=True)
class ConvSpec:
    """One convolution problem.  Shapes follow PyTorch:

    * x: ``(batch, in_channels, *input_size)``
    * weight: ``(out_channels, in_channels/groups, *kernel_size)``, or
      ``(in_channels, out_channels/groups, *kernel_size)`` when ``transposed``
    * bias: ``(out_channels,)`` when ``bias``
    """

    in_channels: int
    out_channels: int
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...] | int
    batch: int = 1
    stride: tuple[int, ...] | int = 1
    padding: Padding | int | tuple[int, ...] = 0
    dilation: tuple[int, ...] | int = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    dtype: str = "float32"
    device: str = "cpu"
    transposed: bool = False
    output_padding: tuple[int, ...] | int = 0
    layout: str = "contiguous"
    # Derived values are cached here, never compared, hashed or serialized.
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        size = _as_tuple(self.input_size)
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size,)
        dims = len(size) if isinstance(size, tuple) else 0
        object.__setattr__(self, "input_size", size)
        for name in ("kernel_size", "stride", "dilation", "output_padding"):
            object.__setattr__(self, name, _per_axis(getattr(self, name), dims))
        object.__setattr__(self, "padding", _normalize_padding(self.padding, dims))

    # ------------------------------------------------------------------ derived

    @property
    def dims(self) -> int:
        return len(self.input_size)

    @property
    def pads(self) -> Pairs:
        """Explicit per-axis ``(before, after)`` padding, with strings resolved."""
        if "pads" not in self._cache:
            self._cache["pads"] = self._resolve_padding()
        return self._cache["pads"]

    def _resolve_padding(self) -> Pairs:
        if self.padding == "valid":
            return ((0, 0),) * self.dims
        if self.padding == "same":
            pairs = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        if isinstance(self.padding, str):
            raise InvalidSpec("padding_string_known", f"padding={self.padding!r}")
        return self.padding

    @property
    def padding_form(self) -> str:
        """``'same'`` or ``'valid'`` as written; else ``'none'`` (all zero), ``'symmetric'``
        (before == after on every axis) or ``'asymmetric'``: what a backend must be able to express."""
        if isinstance(self.padding, str):
            return self.padding
        if all(v == 0 for pair in self.padding for v in pair):
            return "none"
        return "symmetric" if all(before == after for before, after in self.padding) else "asymmetric"

    @property
    def output_size(self) -> tuple[int, ...]:
        if "output_size" not in self._cache:
            sizes = []
            for i, k, s, (pb, pa), d, op in zip(
                self.input_size, self.kernel_size, self.stride, self.pads, self.dilation, self.output_padding
            ):
                extent = d * (k - 1) + 1
                if self.transposed:
                    sizes.append((i - 1) * s - pb - pa + extent + op)
                else:
                    sizes.append((i + pb + pa - extent) // s + 1)
            self._cache["output_size"] = tuple(sizes)
        return self._cache["output_size"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.input_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.out_channels,) if self.bias else None

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.output_size)

    @property
    def reduction_length(self) -> int:
        """Most products summed into one output element (bias not counted).

        Forward: ``in_channels/groups * prod(kernel)``.  Transposed: an output
        position gathers ``in_channels/groups`` channels times the taps ``t`` with
        ``t*dilation`` in one residue class mod ``stride``; those recur every
        ``stride/gcd(stride, dilation)`` taps, so at most
        ``ceil(kernel * gcd(stride, dilation) / stride)`` taps per axis.
        """
        cin_g = self.in_channels // self.groups
        if self.transposed:
            return cin_g * math.prod(
                -(-k * math.gcd(s, d) // s) for k, s, d in zip(self.kernel_size, self.stride, self.dilation)
            )
        return cin_g * math.prod(self.kernel_size)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the forward (or transposed) product."""
        if self.transposed:
            per_input = (self.out_channels // self.groups) * math.prod(self.kernel_size)
            return self.batch * self.in_channels * math.prod(self.input_size) * per_input
        per_output = (self.in_channels // self.groups) * math.prod(self.kernel_size)
        return self.batch * self.out_channels * math.prod(self.output_size) * per_output

    # --------------------------------------------------------------- validation

    def validate(self) -> ConvSpec:
        """Return ``self`` if valid, else raise :class:`InvalidSpec` naming the rule."""
        for rule, ok, detail in self._checks():
            if not ok():
                raise InvalidSpec(rule, detail() + f" [{RULES[rule]}]")
        return self

    def is_valid(self) -> bool:
        try:
            self.validate()
        except InvalidSpec:
            return False
        return True

    def _checks(self):
        # Each check runs only after the ones it depends on have passed, so an
        # example that breaks one rule is reported under that rule and no other.
        def ints(value: Any) -> bool:
            return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)

        def pair_ok() -> bool:
            if isinstance(self.padding, str):
                return True
            return (
                isinstance(self.padding, tuple)
                and len(self.padding) == self.dims
                and all(isinstance(p, tuple) and len(p) == 2 and ints(p) for p in self.padding)
            )

        per_axis = ("kernel_size", "stride", "dilation", "output_padding")
        yield (
            "rank",
            lambda: ints(self.input_size)
            and 1 <= self.dims <= 3
            and all(ints(getattr(self, n)) and len(getattr(self, n)) == self.dims for n in per_axis)
            and pair_ok(),
            lambda: f"input_size={self.input_size}, "
            + ", ".join(f"{n}={getattr(self, n)}" for n in (*per_axis, "padding")),
        )
        yield "batch_nonnegative", lambda: self.batch >= 0, lambda: f"batch={self.batch}"
        yield (
            "channels_positive",
            lambda: self.in_channels >= 1 and self.out_channels >= 1,
            lambda: f"in_channels={self.in_channels}, out_channels={self.out_channels}",
        )
        yield "groups_positive", lambda: self.groups >= 1, lambda: f"groups={self.groups}"
        yield (
            "in_channels_divisible_by_groups",
            lambda: self.in_channels % self.groups == 0,
            lambda: f"in_channels={self.in_channels}, groups={self.groups}",
        )
        yield (
            "out_channels_divisible_by_groups",
            lambda: self.out_channels % self.groups == 0,
            lambda: f"out_channels={self.out_channels}, groups={self.groups}",
        )
        for name, rule, low in (
            ("input_size", "input_size_positive", 1),
            ("kernel_size", "kernel_size_positive", 1),
            ("stride", "stride_positive", 1),
            ("dilation", "dilation_positive", 1),
            ("output_padding", "output_padding_nonnegative", 0),
        ):
            yield (
                rule,
                lambda name=name, low=low: all(v >= low for v in getattr(self, name)),
                lambda name=name: f"{name}={getattr(self, name)}",
            )
        yield (
            "padding_string_known",
            lambda: not isinstance(self.padding, str) or self.padding in PADDING_STRINGS,
            lambda: f"padding={self.padding!r}",
        )
        yield (
            "padding_nonnegative",
            lambda: isinstance(self.padding, str) or all(v >= 0 for p in self.padding for v in p),
            lambda: f"padding={self.padding}",
        )
        yield (
            "padding_mode_known",
            lambda: self.padding_mode in PADDING_MODES,
            lambda: f"padding_mode={self.padding_mode!r}",
        )
        yield "dtype_known", lambda: self.dtype in DTYPES, lambda: f"dtype={self.dtype!r}"
        yield "layout_known", lambda: self.layout in LAYOUTS, lambda: f"layout={self.layout!r}"
        yield (
            "transposed_padding_explicit",
            lambda: not (self.transposed and isinstance(self.padding, str)),
            lambda: f"transposed=True, padding={self.padding!r}",
        )
        yield (
            "transposed_padding_mode_zeros",
            lambda: not self.transposed or self.padding_mode == "zeros",
            lambda: f"transposed=True, padding_mode={self.padding_mode!r}",
        )
        yield (
            "same_requires_stride_1",
            lambda: self.padding != "same" or all(s == 1 for s in self.stride),
            lambda: f"padding='same', stride={self.stride}",
        )
        yield (
            "output_padding_requires_transposed",
            lambda: self.transposed or all(v == 0 for v in self.output_padding),
            lambda: f"transposed=False, output_padding={self.output_padding}",
        )
        yield (
            "output_padding_smaller_than_stride_or_dilation",
            lambda: all(op < max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)),
            lambda: f"output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}",
        )
        yield (
            "reflect_padding_smaller_than_input",
            lambda: self.padding_mode != "reflect"
            or all(max(p) < i for p, i in zip(self.pads, self.input_size)),
            lambda: f"padding_mode='reflect', padding={self.pads}, input_size={self.input_size}",
        )
        yield (
            "circular_padding_not_larger_than_input",
            lambda: self.padding_mode != "circular"
            or all(max(p) <= i for p, i in zip(self.pads, self.input_size)),
            lambda: f"padding_mode='circular', padding={self.pads}, input_size={self.input_size}",
        )
        yield (
            "kernel_fits_padded_input",
            lambda: self.transposed
            or all(
                d * (k - 1) + 1 <= i + pb + pa
                for i, k, d, (pb, pa) in zip(self.input_size, self.kernel_size, self.dilation, self.pads)
            ),
            lambda: f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"input_size={self.input_size}, padding={self.pads}",
        )
        yield (
            "output_size_positive",
            lambda: all(o >= 1 for o in self.output_size),
            lambda: f"output_size={self.output_size}",
        )

    # ------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvSpec:
        """The spec a JSON object describes; ValueError naming the field when one has the wrong type.

        (A spec may break the rules of :meth:`validate`, since the invalid-problem chapter needs such
        specs, but each field must at least be of its kind: a whole number, a string, a flag.)
        """
        if not isinstance(data, dict):
            raise ValueError(f"a problem is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ConvSpec fields: {sorted(map(str, unknown))}")
        missing = {"in_channels", "out_channels", "input_size", "kernel_size"} - set(data)
        if missing:
            raise ValueError(f"missing ConvSpec fields: {sorted(missing)}")
        for name, value in data.items():
            if not _json_field_ok(name, value):
                raise ValueError(f"{name}={_short_repr(value)} is not a valid value for that field")
        return cls(**{k: _as_tuple(v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConvSpec:
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("the problem's JSON is nested too deeply") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ConvSpec:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        data.update(changes)
        return type(self)(**data)

    # --------------------------------------------------------------- descriptor

    def descriptor(self) -> str:
        """A compact one-line name that :func:`parse_descriptor` turns back into this spec.

        ``conv2d_mb2_ic4_oc6_g2_i9x7_k3x2_s2x1_d1x2_p1x0_pe0x1`` reads: 2-D forward
        convolution, batch 2, 4 -> 6 channels in 2 groups, input 9x7, kernel 3x2,
        stride 2x1, dilation 1x2, padding before 1x0 and after 0x1.  Only
        non-defaults are printed beyond batch, channels, input and kernel.
        """
        return format_descriptor(self)

    def __str__(self) -> str:
        return self.descriptor()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_field_ok(name: str, value: Any) -> bool:
    """Whether a JSON value has the kind its field needs (whether it is *valid* is validate()'s business)."""
    if name in ("bias", "transposed"):
        return isinstance(value, bool)
    if name in ("padding_mode", "dtype", "device", "layout"):
        return isinstance(value, str)
    if name in ("batch", "in_channels", "out_channels", "groups"):
        return _is_int(value)
    if name == "padding":
        if isinstance(value, str) or _is_int(value):
            return True
        return isinstance(value, list) and all(
            _is_int(v) or (isinstance(v, list) and len(v) == 2 and all(_is_int(p) for p in v)) for v in value
        )
    # per-axis fields: a whole number, or one per axis
    return _is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value))


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ descriptor

_DTYPE_TOKENS = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_LAYOUT_TOKENS = {"channels_last": "cl", "strided": "view"}
_WORDS = {
    **{tok: ("dtype", name) for name, tok in _DTYPE_TOKENS.items()},
    **{tok: ("layout", name) for name, tok in _LAYOUT_TOKENS.items()},
    **{mode: ("padding_mode", mode) for mode in PADDING_MODES if mode != "zeros"},
    "nobias": ("bias", False),
    "psame": ("padding", "same"),
    "pvalid": ("padding", "valid"),
}


def _free(text: str) -> str:
    """A free-form value (an unknown dtype, layout or mode) with '_' kept off the separator."""
    return str(text).replace("_", "~")


def _axes(values: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in values)


def format_descriptor(spec: ConvSpec) -> str:
    op = "convtr" if spec.transposed else "conv"
    dims = spec.dims
    tokens = [f"{op}{dims}d", f"mb{spec.batch}", f"ic{spec.in_channels}", f"oc{spec.out_channels}"]
    if spec.groups != 1:
        tokens.append(f"g{spec.groups}")
    tokens += [f"i{_axes(spec.input_size)}", f"k{_axes(spec.kernel_size)}"]
    # A field is printed when it differs from its default *for this rank*, so a
    # rank mismatch (an invalid spec) still shows.
    if spec.stride != (1,) * dims:
        tokens.append(f"s{_axes(spec.stride)}")
    if spec.dilation != (1,) * dims:
        tokens.append(f"d{_axes(spec.dilation)}")
    if spec.padding in PADDING_STRINGS:
        tokens.append(f"p{spec.padding}")
    elif isinstance(spec.padding, str):
        tokens.append(f"ptext-{_free(spec.padding)}")
    else:
        before = tuple(p[0] for p in spec.padding)
        after = tuple(p[1] for p in spec.padding)
        if before != (0,) * dims:
            tokens.append(f"p{_axes(before)}")
        if after != before:
            tokens.append(f"pe{_axes(after)}")
    if spec.output_padding != (0,) * dims:
        tokens.append(f"op{_axes(spec.output_padding)}")
    if spec.padding_mode in PADDING_MODES:
        if spec.padding_mode != "zeros":
            tokens.append(spec.padding_mode)
    else:
        tokens.append(f"mode-{_free(spec.padding_mode)}")
    if not spec.bias:
        tokens.append("nobias")
    if spec.dtype != "float32":
        tokens.append(_DTYPE_TOKENS.get(spec.dtype, f"dt-{_free(spec.dtype)}"))
    if spec.layout != "contiguous":
        tokens.append(_LAYOUT_TOKENS.get(spec.layout, f"layout-{_free(spec.layout)}"))
    if spec.device != "cpu":
        tokens.append(f"@{spec.device}")
    return "_".join(tokens)


_OP = re.compile(r"(conv|convtr)(\d+)d")
_NUMBER_TOKENS = {"mb": "batch", "ic": "in_channels", "oc": "out_channels", "g": "groups"}
_AXES_TOKENS = {
    "i": "input_size",
    "k": "kernel_size",
    "s": "stride",
    "d": "dilation",
    "p": "padding",
    "pe": "padding_after",
    "op": "output_padding",
}
_TOKEN = re.compile(r"(mb|ic|oc|g)(-?\d+)|(i|k|s|d|pe|op|p)(-?\d+(?:x-?\d+)*)?")


def parse_descriptor(text: str) -> ConvSpec:
    """Turn a :meth:`ConvSpec.descriptor` string back into the spec it names."""
    head, *tokens = text.strip().split("_")
    match = _OP.fullmatch(head)
    if not match:
        raise ValueError(f"descriptor {text!r} should start with conv<N>d or convtr<N>d, not {head!r}")
    values: dict[str, Any] = {"transposed": match.group(1) == "convtr"}
    dims = int(match.group(2))
    for token in tokens:
        if token in _WORDS:
            key, value = _WORDS[token]
            values[key] = value
        elif token.startswith("@"):
            values["device"] = token[1:]
        elif token.startswith("dt-"):
            values["dtype"] = token[3:].replace("~", "_")
        elif token.startswith("layout-"):
            values["layout"] = token[7:].replace("~", "_")
        elif token.startswith("ptext-"):
            values["padding"] = token[6:].replace("~", "_")
        elif token.startswith("mode-"):
            values["padding_mode"] = token[5:].replace("~", "_")
        elif m := _TOKEN.fullmatch(token):
            if m.group(1):
                values[_NUMBER_TOKENS[m.group(1)]] = int(m.group(2))
            else:
                values[_AXES_TOKENS[m.group(3)]] = tuple(int(v) for v in (m.group(4) or "").split("x") if v)
        else:
            raise ValueError(f"descriptor {text!r}: unknown token {token!r}")
    for required in ("batch", "in_channels", "out_channels", "input_size", "kernel_size"):
        if required not in values:
            raise ValueError(f"descriptor {text!r} lacks {required}")
    if len(values["input_size"]) != dims:
        raise ValueError(f"descriptor {text!r}: {head} but input has {len(values['input_size'])} axes")
    after = values.pop("padding_after", None)
    padding = values.get("padding", (0,) * dims)
    if not isinstance(padding, str):
        after = padding if after is None else after
        values["padding"] = tuple(zip(padding, after))
    elif after is not None:
        raise ValueError(f"descriptor {text!r}: 'pe' given with padding={padding!r}")
    return ConvSpec(**values)


__all__ = [
    "DTYPES",
    "LAYOUTS",
    "PADDING_FORMS",
    "PADDING_MODES",
    "PADDING_STRINGS",
    "RULES",
    "ConvSpec",
    "InvalidSpec",
    "format_descriptor",
    "parse_descriptor",
]
