"""The ``greybox`` command line.

``greybox check FILE.rules`` lints a rule file with Z3 (exit 0: clean, 1: an error or a
warning, 2: the file is invalid); ``greybox entails``, ``greybox evaluate`` and
``greybox graph`` prove properties, evaluate rules on a CSV and draw the concept graph.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from greybox.errors import GreyboxError

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2


def _load(path: str):
    import greybox.rules as gr

    try:
        return gr.load(path)
    except OSError as err:
        raise _Invalid(f"cannot read {path}: {err.strerror or err}") from None


class _Invalid(Exception):
    pass


def _cmd_check(args) -> int:
    import greybox.rules as gr

    kb = _load(args.file)
    report = gr.check(kb, timeout=args.timeout)
    if args.json:
        print(report.to_json())
    else:
        print(f"{args.file}: {len(kb.variables)} variables, {len(kb.rules)} rules, "
              f"{len(kb.constraints)} constraints")
        print(report)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _cmd_entails(args) -> int:
    import greybox.rules as gr

    kb = _load(args.file)
    result = gr.entails(kb, args.property, timeout=args.timeout)
    print(result)
    return EXIT_OK if result.holds else EXIT_FINDINGS


def _cmd_evaluate(args) -> int:
    import pandas as pd

    import greybox.rules as gr

    kb = _load(args.file)
    try:
        data = pd.read_csv(args.data)
    except (OSError, ValueError) as err:
        raise _Invalid(f"cannot read {args.data}: {err}") from None
    ev = gr.evaluate(kb, data)
    if args.output:
        ev.to_frame().to_csv(args.output)
        print(f"wrote {len(ev.index)} rows to {args.output}")
    print(ev)
    return EXIT_OK


def _cmd_graph(args) -> int:
    kb = _load(args.file)
    sys.stdout.write(kb.to_dot())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greybox",
        description="greybox: neuro-symbolic grey-box models. Rules, checks and proofs.",
    )
    from greybox import __version__

    parser.add_argument("--version", action="version", version=f"greybox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check", help="lint a rule file with Z3",
                       description="Analyse FILE.rules with Z3: contradictory constraints, "
                       "infeasible inputs, dead and subsumed rules, opposite rules that fire "
                       "together, uncovered inputs. Exit 0 when there is no error or warning, "
                       "1 when there is one, 2 when the file is invalid.")
    p.add_argument("file", help="a .rules file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per solver call")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("entails", help="prove a property of the rules' decisions",
                       description="Prove PROPERTY (e.g. 'age < 18 -> not approve') for the "
                       "crisp decisions of FILE.rules on every input, or print a "
                       "counterexample. Exit 0 when proved, 1 when refuted, 2 when invalid.")
    p.add_argument("file", help="a .rules file")
    p.add_argument("property", help="a formula over the rule file's variables")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the solver")
    p.set_defaults(func=_cmd_entails)

    p = sub.add_parser("evaluate", help="evaluate rules crisply on a CSV file",
                       description="Evaluate FILE.rules on every row of DATA.csv and print "
                       "a summary; --output writes decisions, scores, rule bodies, "
                       "contributions and constraint violations per row.")
    p.add_argument("file", help="a .rules file")
    p.add_argument("data", help="a CSV file with a column per input")
    p.add_argument("--output", "-o", help="write the per-row table to this CSV file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("graph", help="print the concept graph as Graphviz DOT",
                       description="Print the concept graph of FILE.rules (inputs -> neural "
                       "-> defined -> rules -> outputs) in Graphviz DOT.")
    p.add_argument("file", help="a .rules file")
    p.set_defaults(func=_cmd_graph)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INVALID
    try:
        return args.func(args)
    except (_Invalid, GreyboxError) as err:
        print(f"greybox {args.command}: {err}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
