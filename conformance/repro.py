"""Standalone repro scripts: one per failure, runnable where only numpy and the backend are installed.

:func:`repro_script` writes a Python script that embeds a failing case's inputs
and the per-element :class:`~conformance.tolerance.Requirement` on the failing
product, runs the backend's own code (``adapter.repro_source(spec, operation)``,
which defines ``candidate(x, w, b)`` or ``candidate_backward(x, w, b, grad_out)``)
and judges its answer with an inlined copy of :func:`conformance.tolerance.meets`
(:data:`MEETS_SOURCE`; a test keeps the two equal).  It prints the worst element
and exits 1 while the bug is there, 0 once it is fixed: a backend team can put
it in their own tracker or CI without installing this suite.

Arrays are embedded exactly: little-endian float64 bytes (int8 for the
requirement kinds), zlib-compressed and base64-encoded, with their shapes.
Every NaN, infinity, -0.0 and subnormal survives, and a minimal (shrunk)
problem makes a script of a few kilobytes.
"""

from __future__ import annotations

import ast
import base64
import re
import textwrap
import zlib

import numpy as np

from conformance import tolerance
from conformance.tolerance import Requirement

#: The products each operation returns, in the order of its return value.
PRODUCTS = {"forward": ("output",), "backward": ("grad_input", "grad_weight", "grad_bias")}
_ENTRY = {"forward": "candidate", "backward": "candidate_backward"}

#: :func:`conformance.tolerance.meets` as the scripts carry it: the same expression on the
#: requirement's arrays.  Self-contained (its own numpy import and kind numbers), so that no
#: name in the backend's source can change its meaning.
MEETS_SOURCE = f'''\
def repro_meets(got, expected, bound, kind):
    """Per element: does got meet its requirement?  (conformance.tolerance.meets, inlined.)"""
    import numpy as np

    VALUE, NAN, INF, FREE, FINITE_OR_OVERFLOW = {tolerance.VALUE}, {tolerance.NAN}, {tolerance.INF}, \
{tolerance.FREE}, {tolerance.FINITE_OR_OVERFLOW}
    if got.shape != expected.shape:
        return np.zeros(expected.shape, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(got)
        within = np.abs(got - expected) <= bound  # NaN on either side: False
    return (
        ((kind == VALUE) & finite & within)
        | ((kind == NAN) & np.isnan(got))
        | ((kind == INF) & (got == expected))
        | (kind == FREE)
        | ((kind == FINITE_OR_OVERFLOW) & (~finite | within))
    )
'''

# The check that follows the backend in every script.  Names carry a repro_ / REPRO_ prefix
# so that they cannot collide with whatever the backend's source defines.
_MAIN = """\
def repro_main():
    import traceback

    import numpy as np

    pristine = {{name: None if a is None else a.copy() for name, a in REPRO_INPUTS.items()}}
    x, w, b = REPRO_INPUTS["x"], REPRO_INPUTS["w"], REPRO_INPUTS["b"]
    grad_out = REPRO_INPUTS.get("grad_out")
    try:
        got = {call}
        got = np.array(got, dtype=np.float64)
    except Exception:
        traceback.print_exc()
        print(f"FAIL {{REPRO_PRODUCT}}: the candidate raised (see above) on {{REPRO_PROBLEM}}")
        return 1
    # A backend that writes into the arrays it is given does not conform, whatever it returns.
    modified = [name for name, a in REPRO_INPUTS.items()
                if a is not None and (a.shape != pristine[name].shape or a.tobytes() != pristine[name].tobytes())]
    if modified:
        print(f"FAIL: the candidate modified its input(s) {{', '.join(modified)}} on {{REPRO_PROBLEM}}")
        return 1
    expected, bound, kind = REPRO_EXPECTED, REPRO_BOUND, REPRO_KIND
    if got.shape != expected.shape:
        print(f"FAIL {{REPRO_PRODUCT}}: shape {{got.shape}}, expected {{expected.shape}} on {{REPRO_PROBLEM}}")
        return 1
    bad = ~repro_meets(got, expected, bound, kind)
    count = int(np.count_nonzero(bad))
    if not count:
        print(f"PASS {{REPRO_PRODUCT}}: all {{got.size}} elements meet the requirement ({{REPRO_TIER}} tier) "
              f"on {{REPRO_PROBLEM}}: fixed")
        return 0
    # Worst first, as the suite ranks it: a wrong special value or a non-finite answer,
    # then the largest error (exact tier) or error/bound (real tier).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        error = np.abs(got - expected)
        special = bad & (~np.isfinite(got) | (kind == {nan}) | (kind == {inf}))
        score = error if REPRO_TIER == "exact" else error / bound
        score = np.where(special, np.inf, np.where(bad, np.nan_to_num(score, nan=np.inf), -1.0))
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), got.shape))
    g, e, k = float(got[index]), float(expected[index]), int(kind[index])
    if k == {nan}:
        what = f"got {{g!r}}, expected NaN"
    elif k == {inf}:
        what = f"got {{g!r}}, expected {{e!r}}"
    elif REPRO_TIER == "exact":
        what = f"got {{g!r}}, expected exactly {{e!r}}"
    else:
        overflow = " (or an overflow)" if k == {finite_or_overflow} else ""
        ratio = f"error/bound {{error[index] / bound[index]:.3g}}" if np.isfinite(g) else "not finite"
        what = f"got {{g!r}}, expected {{e!r}} +- {{float(bound[index]):.3g}}{{overflow}} ({{ratio}})"
    print(f"FAIL {{REPRO_PRODUCT}} at {{index}}: {{what}}")
    print(f"{{count}} of {{got.size}} elements fail ({{REPRO_TIER}} tier) on {{REPRO_PROBLEM}}")
    return 1


if __name__ == "__main__":
    sys.exit(repro_main())
"""

_FUTURE = re.compile(r"^from __future__ import [^\n]*$", re.MULTILINE)
_LINE = 96  # characters of base64 per line


def repro_script(
    *,
    adapter_name: str,
    backend_source: str,
    spec_descriptor: str,
    operation: str,
    product: str,
    inputs: dict[str, np.ndarray | None],
    requirement: Requirement,
    recipe: str,
    reason: str,
) -> str:
    """The text of a standalone script that reproduces one failure (see the module docstring).

    ``inputs`` holds ``x``, ``w``, ``b`` (None without bias) and, for backward,
    ``grad_out``, as float64 arrays; ``product`` is ``"output"`` for forward, or
    the backward tuple's ``"grad_input"`` / ``"grad_weight"`` / ``"grad_bias"``;
    ``requirement`` is :func:`conformance.tolerance.requirement` of that product.
    """
    if operation not in PRODUCTS:
        raise ValueError(f"operation={operation!r}, but should be one of {tuple(PRODUCTS)}")
    if product not in PRODUCTS[operation]:
        raise ValueError(f"product={product!r}, but should be one of {PRODUCTS[operation]} for {operation}")
    names = ("x", "w", "b", "grad_out") if operation == "backward" else ("x", "w", "b")
    for name in names:
        if inputs.get(name) is None and name != "b":
            raise ValueError(f"inputs[{name!r}] is missing; {operation} needs {names}")
    unknown = set(inputs) - set(names)
    if unknown:
        raise ValueError(f"unknown inputs {sorted(unknown)} for {operation}; expected {names}")
    entry = _ENTRY[operation]
    _check_defines(backend_source, entry)

    # A __future__ import must be the script's first statement: hoist the backend's.
    futures = _FUTURE.findall(backend_source)
    backend = _FUTURE.sub("", backend_source).strip("\n")
    call = "candidate(x, w, b)"
    if operation == "backward":
        call = f"candidate_backward(x, w, b, grad_out)[{PRODUCTS['backward'].index(product)}]  # {product}"

    embedded = ",\n".join(
        f"    {name!r}: None" if inputs.get(name) is None else f"    {name!r}: {_literal(inputs[name], '<f8', 4)}"
        for name in names
    )  # fmt: skip
    parts = [
        "#!/usr/bin/env python3",
        _header(adapter_name, spec_descriptor, operation, product, recipe, requirement.tier, reason),
        *futures,
        "import base64\nimport sys\nimport zlib\n\nimport numpy as np\n",
        f"REPRO_ADAPTER = {adapter_name!r}\nREPRO_PROBLEM = {spec_descriptor!r}\n"
        f"REPRO_PRODUCT = {product!r}\nREPRO_TIER = {requirement.tier!r}\n",
        "\ndef repro_array(dtype, shape, data):\n"
        "    return np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=dtype).reshape(shape).copy()\n",
        f"\nREPRO_INPUTS = {{\n{embedded},\n}}",
        "# What each element of the product must be: a value within bound (kind 0, or 4 where an\n"
        "# overflow to +-inf / NaN is allowed too), NaN (1), this infinity (2), or anything (3).",
        f"REPRO_EXPECTED = {_literal(requirement.expected, '<f8', 0)}",
        f"REPRO_BOUND = {_literal(requirement.bound, '<f8', 0)}",
        f"REPRO_KIND = {_literal(requirement.kind, 'i1', 0)}\n",
        f"# {'-' * 30} the backend ({adapter_name}.repro_source)\n\n{backend}\n\n",
        f"# {'-' * 30} the check\n\n\n{MEETS_SOURCE}\n",
        _MAIN.format(call=call, nan=tolerance.NAN, inf=tolerance.INF, finite_or_overflow=tolerance.FINITE_OR_OVERFLOW),
    ]
    return "\n".join(parts)


def _header(adapter: str, descriptor: str, operation: str, product: str, recipe: str, tier: str, reason: str) -> str:
    def lines(label: str, text: str) -> list[str]:
        # Long reasons wrap: the header stays readable in an editor and in a bug tracker.
        body = [part for line in str(text).splitlines() for part in textwrap.wrap(line, 88) or [""]] or [""]
        return [f"#   {label:<9}{body[0]}"] + [f"#   {'':<9}{line}" for line in body[1:]]

    what = operation if product == "output" else f"{operation}, {product}"
    out = [f"# Standalone repro from conv-conformance: {adapter} fails {what}.", "#"]
    out += lines("problem:", descriptor) + lines("data:", recipe) + lines("tier:", tier) + lines("reason:", reason)
    out += [
        "#",
        "# Run:  python <this file>",
        "# Exit status 1 while the bug is there (the worst element is printed), 0 once it is fixed.",
        "# Needs numpy and the backend below, not the suite; the inputs and the requirement on each",
        "# element are embedded exactly (float64 bytes, zlib + base64).",
    ]
    return "\n".join(out) + "\n"


def _literal(a: np.ndarray, dtype: str, indent: int) -> str:
    """``repro_array('<f8', (2, 3), (...base64...))``: exact, compact, wrapped."""
    array = np.ascontiguousarray(np.asarray(a), dtype=dtype)
    text = base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")
    chunks = [text[i : i + _LINE] for i in range(0, len(text), _LINE)] or [""]
    pad = " " * (indent + 4)
    body = "\n".join(f"{pad}{chunk!r}" for chunk in chunks)
    return f"repro_array({dtype!r}, {tuple(int(n) for n in array.shape)!r}, (\n{body}\n{' ' * indent}))"


def _check_defines(source: str, name: str) -> None:
    """Fail early, with the adapter's fault named, when the backend's source cannot serve the script."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError as exc:
        raise ValueError(f"backend_source is not valid Python: {exc}") from exc
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return
    raise ValueError(f"backend_source does not define {name}() at top level")


__all__ = ["MEETS_SOURCE", "PRODUCTS", "repro_script"]
