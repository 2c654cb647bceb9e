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
import contextlib
import io
import os
import re
import stat
import sys
from collections.abc import Sequence
from typing import NamedTuple

from greybox.errors import GreyboxError, listed

EXIT_OK, EXIT_FINDINGS, EXIT_INVALID = 0, 1, 2

#: Largest CSV file ``--set NAME=@FILE.csv`` reads, in bytes once decompressed (as
#: ``greybox.rules.load`` reads rule files of at most 10 MB).
MAX_SET_BYTES = 10_000_000
#: Largest data CSV (the DATA argument) the commands read, in bytes once decompressed.
MAX_DATA_BYTES = 1_000_000_000
#: compressed CSV files, by suffix (as pandas infers them): opened and bounded here
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma", ".lzma": "lzma", ".zip": "zip"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
            statements = gr.parse_statements(f.read())
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


class _Invalid(Exception):
    pass


class _TooLarge(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A stream read no further than ``limit`` bytes: one byte more raises _TooLarge, so
    an endless or inflating input stops there, never read (or decompressed) whole."""

    def __init__(self, stream, limit: int):
        super().__init__()
        self.stream, self.limit, self.count = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(min(len(buffer), self.limit + 1 - self.count))
        self.count += len(data)
        if self.count > self.limit:
            raise _TooLarge
        buffer[:len(data)] = data
        return len(data)


def _read_csv(path: str, *, what: str, limit: int, holding: str, **options):
    """``pd.read_csv`` of a local regular file (compressed by its suffix as pandas infers
    it: .gz, .bz2, .xz, .zip), read no further than ``limit`` bytes of CSV text; a URL, a
    device, a pipe, a larger file or a header naming a column twice (which pandas would
    rename ``NAME.1``) is refused naming ``what`` (the argument), and the limit (for
    ``holding``, what the file holds)."""
    import csv
    import lzma
    import zipfile
    import zlib

    import pandas as pd

    if _URL.match(path):
        raise _Invalid(f"{what}: {path} is a URL; greybox reads local files only "
                       "(download it first)")
    kind = _COMPRESSED.get(os.path.splitext(path)[1].lower())
    try:
        with _opened(path, kind, what) as stream:
            text = io.TextIOWrapper(io.BufferedReader(_Bounded(stream, limit)),
                                    encoding="utf-8-sig", newline="")
            header = next(csv.reader(text), [])
        seen: dict[str, int] = {}
        for i, name in enumerate(header):
            if name in seen:
                raise _Invalid(f"{what}: {path} names the column {name!r} twice in its header "
                               f"(columns {seen[name] + 1} and {i + 1}); name each column once")
            seen[name] = i
        with _opened(path, kind, what) as stream:
            return pd.read_csv(io.BufferedReader(_Bounded(stream, limit)), **options)
    except _TooLarge:
        once = " once decompressed" if kind else ""
        raise _Invalid(f"{what}: {path} is larger than {limit:,} bytes{once}, the command "
                       f"line's limit for {holding} (the Python API takes a DataFrame of any "
                       "size)") from None
    except (OSError, ValueError, EOFError, csv.Error, zlib.error, lzma.LZMAError,
            zipfile.BadZipFile) as err:
        raise _Invalid(f"{what}: cannot read {path}: {getattr(err, 'strerror', None) or err}") \
            from None


@contextlib.contextmanager
def _opened(path: str, kind: str | None, what: str):
    """The bytes of the regular file ``path``, decompressed as ``kind`` says (a stream)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    with open(path, "rb") as raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise _Invalid(f"{what}: {path} is not a regular file (a device, a pipe or a "
                           "folder); greybox reads local files only")
        if kind == "zip":
            with zipfile.ZipFile(raw) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise _Invalid(f"{what}: {path} holds {len(members)} files; a zipped CSV "
                                   "holds one")
                with archive.open(members[0]) as inner:
                    yield inner
        elif kind is None:
            yield raw
        else:
            opener = {"gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "lzma": lzma.LZMAFile}[kind]
            with opener(fileobj=raw) if kind == "gzip" else opener(raw) as inner:
                yield inner


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
        print(f"{args.file}: {len(kb.variables)} variables, {len(kb.rules)} rules, "
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


def _factory(spec: str):
    """``module:function`` -> the object it names (the user's own code, by name)."""
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise _Invalid(f"--networks must look like 'package.module:function', got {spec!r}")
    here = os.getcwd()   # the current folder, as it is now (not a cached ".")
    if here not in sys.path:
        sys.path.insert(0, here)
    importlib.invalidate_caches()
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise _Invalid(f"cannot import {spec}: {err}") from None
    return obj() if callable(obj) else obj


class _Data(NamedTuple):
    """What a command read: the CSV of table inputs and the tensor files."""

    #: the CSV (DATA), or None without one
    frame: object
    #: tensor input (or whole family) name -> tensor, from the tensor files
    tensors: dict
    #: other arrays the command named (--target) -> numpy array, from the tensor files
    kept: dict
    #: the number of rows
    rows: int
    #: the files, for messages: "table.csv + images.npz"
    source: str
    #: the names of the arrays in the tensor files
    names: tuple

    def mapping(self):
        """The data as the model reads it: the CSV, or a mapping of its columns and the
        tensors."""
        if not self.tensors:
            return self.frame
        columns = {} if self.frame is None else {c: self.frame[c] for c in self.frame.columns}
        return {**columns, **self.tensors}

    def row(self, model, i: int):
        """Row ``i`` alone, labelled as in the data."""
        if not self.tensors:
            return self.frame.iloc[[i]]
        import pandas as pd

        from greybox._batch import Batch

        one = {} if self.frame is None else {c: self.frame[c].iloc[[i]]
                                             for c in self.frame.columns}
        one.update({k: t[i:i + 1] for k, t in self.tensors.items()})
        batch = model.batch(one)
        label = i if self.frame is None else self.frame.index[i]
        return Batch(batch.values, batch.n, pd.Index([label]), batch.columns)


def _model_and_data(args, keep=()):
    """The saved model and its data: the CSV of table inputs and the tensor files
    (``keep``: other names the command reads from the tensor files, as numpy arrays).
    Networks and residuals built from standard ``torch.nn`` layers are rebuilt from the
    file; ``--networks`` builds custom ones."""

    import greybox as gb
    from greybox._io import ModulesNeeded, NetworksMismatch

    networks, residual = None, None
    if args.networks:
        built = _factory(args.networks)
        networks, residual = built if isinstance(built, tuple) else (built, None)
    try:
        model = gb.load(args.model, networks=networks, residual=residual)
    except ModulesNeeded as err:
        raise _Invalid(_needs_networks(err, given=bool(args.networks))) from None
    except NetworksMismatch as err:
        raise _Invalid(f"{err.path}: the model uses networks {err.expected}; the function "
                       f"given by --networks {args.networks} built {err.given}") from None
    frame = None if args.data is None else \
        _read_csv(args.data, what="DATA", limit=MAX_DATA_BYTES, holding="data")
    return model, _tensor_data(model, frame, args, keep)


def _tensor_data(model, frame, args, keep) -> _Data:
    """The tensor files of ``--tensors`` read and checked against ``model``'s tensor
    inputs (and the CSV ``frame``'s rows); each conversion made is noted on stderr."""
    from greybox._tensor_files import read_tensor_file, tensor_inputs
    from greybox.errors import DataError
    from greybox.rules import ast as A
    from greybox.rules import type_to_text

    kb = model.kb
    paths = list(args.tensors or [])
    if frame is None and not paths:
        raise _Invalid("no data: give DATA.csv (table inputs), --tensors FILE.npz or "
                       "FILE.pt (tensor inputs), or both")
    twice = next((p for i, p in enumerate(paths) if p in paths[:i]), None)
    if twice is not None:
        raise _Invalid(f"--tensors {twice} is given twice")
    if frame is not None:
        for column in frame.columns:
            var = kb.variables.get(column)
            if var is not None and isinstance(var.type, A.TensorType):
                raise DataError(
                    f"{args.data}: column {column!r} is the tensor input {column!r} "
                    f"({type_to_text(var.type)}); a CSV holds table inputs only: give it "
                    f"with --tensors FILE.npz (or FILE.pt) holding an array named {column!r}")
    files = {path: read_tensor_file(path) for path in paths}
    keep = [k for k in keep if k is not None and (frame is None or k not in frame.columns)]
    tensors, kept, notes = tensor_inputs(model, files, rows=None if frame is None else
                                         len(frame), rows_from=args.data, keep=keep)
    if frame is None:
        table = [n for n in kb.inputs if not isinstance(kb.variables[n].type, A.TensorType)]
        if table:
            raise _Invalid(f"the model's table inputs ({listed(table)}) come from a CSV file: "
                           "give DATA.csv after MODEL")
    for note in notes:
        print(f"greybox {args.command}: note: {note}", file=sys.stderr)
    arrays = [*tensors.values(), *kept.values()]
    rows = len(frame) if frame is not None else (arrays[0].shape[0] if arrays else 0)
    source = " + ".join([*([args.data] if args.data is not None else []), *paths])
    names = tuple(sorted({k for arrays in files.values() for k in arrays}))
    return _Data(frame, tensors, kept, rows, source, names)


def _needs_networks(err, *, given: bool) -> str:
    """The CLI's words for a model that needs modules the file cannot rebuild."""
    names = ", ".join(map(repr, err.names))
    if err.group == "networks":
        what = f"network{'s' if len(err.names) > 1 else ''} {names}"
        returns = "{" + ", ".join(f"{n!r}: module" for n in err.needed) + "}"
    else:
        what = f"the residual network for {names}"
        returns = "(networks, residual): a pair, with the residual module (or {output: " \
                  "module}) second"
    told = (" --networks was given, but its function did not build it;" if given
            and err.group == "residual" else "")
    return (f"{err.path}: {what} cannot be rebuilt from the file: {err.reason};{told} give "
            f"--networks module:function, naming a function of yours (module.py in the "
            f"current folder or an installed package) that returns {returns}")


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
