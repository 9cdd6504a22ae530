"""The ``conv-conformance`` command.

For now it answers questions about one problem (``describe``); the ``run``,
``fuzz``, ``adapters`` and ``repro`` commands arrive with the runner.
Exit status: 0 success, 2 bad usage or an invalid problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from conformance import __version__
from conformance.spec import ConvSpec, InvalidSpec, parse_descriptor


def _describe(args: argparse.Namespace) -> int:
    try:
        spec = ConvSpec.from_json(args.problem) if args.problem.lstrip().startswith("{") else parse_descriptor(
            args.problem
        )
    except (ValueError, TypeError) as error:
        print(f"conv-conformance: cannot read the problem: {error}", file=sys.stderr)
        return 2
    try:
        spec.validate()
    except InvalidSpec as error:
        print(f"{spec.descriptor()}: invalid: {error}")
        return 2
    facts = {
        "descriptor": spec.descriptor(),
        "input_shape": spec.input_shape,
        "weight_shape": spec.weight_shape,
        "bias_shape": spec.bias_shape,
        "output_shape": spec.output_shape,
        "padding": spec.pads,
        "reduction_length": spec.reduction_length,
        "macs": spec.macs,
        "spec": spec.to_dict(),
    }
    print(json.dumps(facts, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conv-conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="validate one problem and print its shapes")
    describe.add_argument("problem", help="a descriptor such as conv2d_mb2_ic4_oc6_i9x7_k3x2, or the spec's JSON")
    describe.set_defaults(handler=_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
