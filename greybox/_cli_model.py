"""The saved model and its data as the ``explain`` and ``debug`` commands read them: the
model file (custom networks built by ``--networks``), the CSV of table inputs and the
tensor files of ``--tensors``."""

from __future__ import annotations

import os
import sys
from typing import NamedTuple

from greybox.errors import listed

from ._cli_files import _Invalid


def load_model(args):
    """The saved model ``args.model``: networks and residuals built from standard
    ``torch.nn`` layers are rebuilt from the file; ``--networks`` builds custom ones."""
    import greybox as gb
    from greybox._io import ModulesNeeded, NetworksMismatch

    networks, residual = None, None
    if args.networks:
        built = _factory(args.networks)
        networks, residual = built if isinstance(built, tuple) else (built, None)
    try:
        return gb.load(args.model, networks=networks, residual=residual)
    except ModulesNeeded as err:
        raise _Invalid(_needs_networks(err, given=bool(args.networks))) from None
    except NetworksMismatch as err:
        raise _Invalid(f"{err.path}: the model uses networks {err.expected}; the function "
                       f"given by --networks {args.networks} built {err.given}") from None


def tensor_data(model, frame, args, keep) -> _Data:
    """The tensor files of ``--tensors`` read and checked against ``model``'s tensor
    inputs (and the CSV ``frame``'s rows); each conversion made is noted on stderr."""
    from greybox._tensor_files import read_tensor_file, tensor_inputs
    from greybox.errors import DataError
    from greybox.rules import ast as A
    from greybox.rules.engine import type_to_text

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
