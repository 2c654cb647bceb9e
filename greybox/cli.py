"""The ``greybox`` command line.

``greybox check FILE.rules`` lints a rule file with Z3 (exit 0: clean, 1: an error or a
warning, 2: the file is invalid); ``greybox entails``, ``greybox evaluate`` and
``greybox graph`` prove properties, evaluate rules on a CSV and draw the concept graph;
``greybox explain MODEL DATA.csv --row N`` explains one decision of a saved model;
``greybox debug MODEL DATA.csv --target COLUMN`` opens the local web debugger. Both read
a model's tensor inputs (images...) from ``--tensors FILE.npz`` or ``FILE.pt`` files beside
(or instead of) the CSV of its table inputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from greybox.errors import GreyboxError

from ._cli_files import _URL, _Invalid, _read_csv
from ._cli_model import load_model, tensor_data

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2

#: Largest CSV file ``--set NAME=@FILE.csv`` reads, in bytes once decompressed (as
#: ``greybox.rules.load`` reads rule files of at most 10 MB).
MAX_SET_BYTES = 10_000_000
#: Largest data CSV (the DATA argument) the commands read, in bytes once decompressed.
MAX_DATA_BYTES = 1_000_000_000


def _load(path: str, sets: list[tuple[str, str]] | None = None):
    """The rule file at ``path``, with the members of its data sets given by ``--set``."""
    import greybox.rules as gr

    members = {name: _members(name, spec) for name, spec in sets or []}
    try:
        return gr.load(path, sets=members or None)
    except OSError as err:
        raise _Invalid(f"cannot read {path}: {err.strerror or err}") from None
    except gr.RuleError as err:
        needed = _data_sets(path, members)
        if not needed:
            raise
        raise _Invalid(f"{err}\non the command line, give the members of "
                       f"{', '.join(needed)} with --set {needed[0]}=a,b,c or --set "
                       f"{needed[0]}=@FILE.csv:COLUMN") from None


def _data_sets(path: str, given) -> list[str]:
    """The sets of the rule file that take their members from the data and were not
    given (read again only when loading failed)."""
    import greybox.rules as gr

    try:
        with open(path, encoding="utf-8-sig") as f:
            statements = gr.engine.parse_statements(f.read())
    except (OSError, ValueError):
        return []
    return [s.name for s in statements if isinstance(s, gr.ast.SetDecl)
            and s.members is None and s.name not in given]


def _set_arg(text: str) -> tuple[str, str]:
    """argparse type of ``--set``: ``NAME=a,b,c`` or ``NAME=@FILE.csv:COLUMN``."""
    name, eq, spec = text.partition("=")
    if not eq or not name.strip() or not spec.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=a,b,c or NAME=@FILE.csv:COLUMN, got "
                                         f"{text!r}")
    return name.strip(), spec.strip()


def _members(name: str, spec: str) -> list[str]:
    """The members ``--set NAME=SPEC`` gives: listed (``a,b,c``) or the cells of a CSV
    file's column (``@people.csv:name``; the column may be left out when there is one)."""
    if not spec.startswith("@"):
        members = [m.strip() for m in spec.split(",")]
        if not all(members):
            raise _Invalid(f"--set {name}={spec}: an empty member (members are separated by "
                           "commas)")
        return members

    if _URL.match(spec[1:]):
        raise _Invalid(f"--set {name}: {spec[1:]} is a URL; greybox reads local files only "
                       "(download it first)")
    path, colon, column = spec[1:].rpartition(":")
    if not colon or not path:   # no column named: the file's only one
        path, column = spec[1:], None
    frame = _read_csv(path, what=f"--set {name}", limit=MAX_SET_BYTES,
                      holding="the members of a set", dtype=str, keep_default_na=False)
    if column is None:
        if frame.shape[1] != 1:
            raise _Invalid(f"--set {name}: {path} has {frame.shape[1]} columns; name one "
                           f"(@{path}:COLUMN)")
        column = frame.columns[0]
    if column not in frame.columns:
        raise _Invalid(f"--set {name}: {path} has no column {column!r} (columns: "
                       f"{', '.join(map(str, frame.columns))})")
    cells = frame[column].str.strip()
    if (cells == "").any():
        raise _Invalid(f"--set {name}: column {column!r} of {path} has an empty cell at row "
                       f"{int((cells == '').to_numpy().argmax())}")
    return list(dict.fromkeys(cells))   # each member once, in the file's order


def _seconds(text: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") \
            from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds above 0, got "
                                         f"{text!r}")
    return value


def _port(text: str) -> int:
    """argparse type of ``--port``: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free port) to 65535, got {text!r}")
    return value


def _cmd_check(args) -> int:
    import greybox.rules as gr

    kb = _load(args.file, args.set)
    report = gr.check(kb, timeout=args.timeout)
    if args.json:
        print(report.to_json())
    else:
        print(f"{args.file}: {len(kb.variables) - len(kb.layers)} variables, {len(kb.rules)} rules, "
              f"{len(kb.constraints)} constraints")
        print(report)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _cmd_entails(args) -> int:
    import greybox.rules as gr

    kb = _load(args.file, args.set)
    result = gr.entails(kb, args.property, timeout=args.timeout)
    print(result)
    return EXIT_OK if result.holds else EXIT_FINDINGS


def _cmd_evaluate(args) -> int:

    import greybox.rules as gr

    kb = _load(args.file, args.set)
    data = _read_csv(args.data, what="DATA", limit=MAX_DATA_BYTES, holding="data")
    ev = gr.evaluate(kb, data)
    if args.output:
        try:
            ev.to_frame().to_csv(args.output)
        except OSError as err:
            raise _Invalid(f"cannot write {args.output}: {err.strerror or err}") from None
        print(f"wrote {len(ev.index)} rows to {args.output}")
    print(ev)
    return EXIT_OK


def _cmd_graph(args) -> int:
    kb = _load(args.file, args.set)
    sys.stdout.write(kb.to_dot())
    return EXIT_OK


def _model_and_data(args, keep=()):
    """The saved model and its data: the CSV of table inputs and the tensor files
    (``keep``: other names the command reads from the tensor files, as numpy arrays)."""
    model = load_model(args)
    frame = None if args.data is None else \
        _read_csv(args.data, what="DATA", limit=MAX_DATA_BYTES, holding="data")
    return model, tensor_data(model, frame, args, keep)


def _explanation_json(ex) -> str:
    """The explanation of its one row as JSON."""
    import json

    def clean(frame):
        return json.loads(frame.to_json(orient="records", default_handler=str))

    d = ex.decision.iloc[0]
    label = ex.index[0]
    out = {
        "row": str(label),
        "output": ex.output,
        "decision": json.loads(d.to_json(default_handler=str)),
        "rules": clean(ex.rules[ex.rules.row == label].drop(columns="row")),
        "concepts": clean(ex.concepts[ex.concepts.row == label].drop(columns="row")),
        "attributions": {k: v[0].tolist() for k, v in ex.attributions.items()},
        "parameters": clean(ex.top_parameters[ex.top_parameters.row == label].drop(
            columns="row")) if len(ex.top_parameters) else [],
        "text": ex.row_text(),
    }
    return json.dumps(out, indent=2)


def _cmd_explain(args) -> int:
    import greybox as gb

    model, data = _model_and_data(args)
    if not 0 <= args.row < data.rows:
        raise _Invalid(f"--row {args.row} is outside {data.source} (rows 0..{data.rows - 1})")
    ex = gb.explain.explain(model, data.row(model, args.row), method=args.method,
                            parameters=not args.no_parameters)
    if args.format == "json":
        print(_explanation_json(ex))
    elif args.format == "html":
        print(ex._repr_html_())
    else:
        print(ex.row_text())
        if args.reason:
            number = ex.output in model.kb.additive
            if number and not args.target:
                print(f"no reason: {ex.output!r} is a number; say which values count with "
                      f"--target, e.g. --target '{ex.output} >= 150'")
                return EXIT_OK
            print(ex.reason(target=args.target) if number else ex.reason())
            try:
                print(ex.counterfactual(target=args.target) if args.target
                      else ex.counterfactual())
            except GreyboxError as err:
                print(f"no counterfactual: {err}")
    return EXIT_OK


def _cmd_debug(args) -> int:
    import greybox as gb
    from greybox.explain.debug._server import DebugServer

    model, data = _model_and_data(args, keep=[args.target])
    if data.frame is not None and args.target in data.frame.columns:
        target = data.frame[args.target]
    elif args.target in data.kept:
        target = data.kept[args.target]
    else:
        where = [f"columns of {args.data}: {', '.join(map(str, data.frame.columns))}"] \
            if data.frame is not None else []
        where += [f"arrays of the tensor files: {', '.join(data.names) or 'none'}"] \
            if args.tensors else []
        what = "column" if not args.tensors else "column or array" if args.data else "array"
        raise _Invalid(f"--target: no {what} {args.target!r} in {data.source} "
                       f"({'; '.join(where)})")
    dbg = gb.explain.Debugger(model, data.mapping(), target, output=args.output)
    try:
        server = DebugServer(dbg, port=args.port)
    except OSError as err:
        raise _Invalid(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror or err}"
                       + (" (choose another --port, or 0 for any free one)" if args.port
                          else "")) from None
    print(f"greybox debugger for {args.model} on {data.source}: {server.url}", flush=True)
    print("(bound to 127.0.0.1; the token in the URL is required; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``greybox`` argument parser: one sub-command per ``_add_*`` function."""
    parser = argparse.ArgumentParser(
        prog="greybox",
        description="greybox: neuro-symbolic grey-box models. Rules, checks and proofs.",
    )
    from greybox import __version__

    parser.add_argument("--version", action="version", version=f"greybox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_check, _add_entails, _add_evaluate, _add_graph, _add_explain, _add_debug):
        add(sub)
    return parser


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="lint a rule file with Z3",
                       description="Analyse FILE.rules with Z3: contradictory constraints, "
                       "infeasible inputs, dead and subsumed rules, opposite rules that fire "
                       "together, uncovered inputs. Exit 0 when there is no error or warning, "
                       "1 when there is one, 2 when the file is invalid.")
    p.add_argument("file", help="a .rules file")
    _add_sets(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per solver call")
    p.set_defaults(func=_cmd_check)


def _add_entails(sub) -> None:
    p = sub.add_parser("entails", help="prove a property of the rules' decisions",
                       description="Prove PROPERTY (e.g. 'age < 18 -> not approve') for the "
                       "crisp decisions of FILE.rules on every input, or print a "
                       "counterexample. Exit 0 when proved, 1 when refuted, 2 when invalid.")
    p.add_argument("file", help="a .rules file")
    _add_sets(p)
    p.add_argument("property", help="a formula over the rule file's variables")
    p.add_argument("--timeout", type=_seconds, default=30.0, help="seconds for the solver")
    p.set_defaults(func=_cmd_entails)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate rules crisply on a CSV file",
                       description="Evaluate FILE.rules on every row of DATA.csv and print "
                       "a summary; --output writes decisions, scores, rule bodies, "
                       "contributions and constraint violations per row.")
    p.add_argument("file", help="a .rules file")
    _add_sets(p)
    p.add_argument("data", help="a CSV file with a column per input")
    p.add_argument("--output", "-o", help="write the per-row table to this CSV file")
    p.set_defaults(func=_cmd_evaluate)


def _add_graph(sub) -> None:
    p = sub.add_parser("graph", help="print the concept graph as Graphviz DOT",
                       description="Print the concept graph of FILE.rules (inputs -> neural "
                       "-> defined -> rules -> outputs) in Graphviz DOT.")
    p.add_argument("file", help="a .rules file")
    _add_sets(p)
    p.set_defaults(func=_cmd_graph)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="explain one decision of a saved model",
                       description="Load MODEL (written by GreyBox.save), run it on row ROW "
                       "of DATA.csv and explain the decision: rule contributions, concepts, "
                       "input and parameter attributions (and with --reason a Z3-proved "
                       "minimal reason and a counterfactual). Networks and residuals built "
                       "from standard torch.nn layers are rebuilt from the file; custom "
                       "modules need --networks naming a function of yours that builds "
                       "them. Tensor inputs (images...) come from --tensors files, beside "
                       "DATA.csv or instead of it.")
    _add_model_and_data(p)
    p.add_argument("--row", type=int, default=0, help="the row to explain (0-based)")
    p.add_argument("--format", choices=["text", "json", "html"], default="text")
    p.add_argument("--method", default="integrated_gradients",
                   help="Captum attribution method (integrated_gradients, saliency, "
                   "deeplift, gradient_shap, occlusion, ...)")
    _add_networks(p)
    p.add_argument("--reason", action="store_true",
                   help="also print a formal reason and a counterfactual (text format)")
    p.add_argument("--target", default=None,
                   help="with --reason: the values that count, for a number output "
                   "(e.g. 'y >= 150', 'y > 10 and y < 20'), or the class a counterfactual "
                   "should reach")
    p.add_argument("--no-parameters", action="store_true",
                   help="skip parameter attributions")
    p.set_defaults(func=_cmd_explain)


def _add_debug(sub) -> None:
    p = sub.add_parser("debug", help="open the local web debugger on a saved model",
                       description="Serve the web debugger for MODEL on DATA.csv, with the "
                       "correct answers in column TARGET: failures, cohorts, decisions with "
                       "their reasons, the rules as text with their numbers editable in "
                       "place and per-rule statistics, suggested fixes to apply, and the "
                       "fixed/broken diff of every edit. Bound "
                       "to 127.0.0.1; the printed URL carries the access token. Networks "
                       "and residuals built from standard torch.nn layers are rebuilt from "
                       "the file; custom modules need --networks. Tensor inputs (images...) "
                       "come from --tensors files, beside DATA.csv or instead of it.")
    _add_model_and_data(p)
    p.add_argument("--target", required=True, help="the column of DATA.csv (or the array "
                   "of a --tensors file) with the correct answers")
    p.add_argument("--output", help="the output to debug (default: the only one)")
    p.add_argument("--port", type=_port, default=0,
                   help="port, 0 to 65535 (default 0: a free one)")
    _add_networks(p)
    p.set_defaults(func=_cmd_debug)


def _add_sets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", type=_set_arg, metavar="NAME=MEMBERS",
                   help="the members of a set the rules take from the data (`set person`): "
                   "NAME=a,b,c, or NAME=@FILE.csv:COLUMN for a CSV column's cells; repeat for "
                   "several sets")


def _add_model_and_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model file written by GreyBox.save")
    p.add_argument("data", nargs="?", metavar="DATA.csv",
                   help="a CSV file with a column per table input (optional when every "
                   "input is a tensor given by --tensors)")
    p.add_argument("--tensors", action="append", metavar="FILE.npz|FILE.pt",
                   help="the tensor inputs (images...): an .npz file (numpy.savez, no "
                   "pickled objects) or a .pt file (torch.save of a dict name -> tensor) "
                   "holding an array per tensor input, named as the input, one row per "
                   "row of DATA.csv; repeat for several files")


def _add_networks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--networks", help="package.module:function returning {name: module} "
                   "(or (networks, residual)); only for custom modules, which the file "
                   "cannot rebuild")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "data", "") is None and len(extra) == 1 \
            and not extra[0].startswith("-"):
        args.data, extra = extra[0], []   # argparse leaves DATA after an option unread
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
