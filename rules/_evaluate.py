"""Crisp (plain boolean) evaluation of a knowledge base on a table, vectorised with numpy."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from greybox.errors import DataError, RuleError, listed

from . import _ast as A
from ._decisions import MAX_ASSIGNMENTS, additive_value, candidates, closure, memo, plan
from ._domain import BIG_INT, big_int, domain
from ._exact import ScoreScale, compile_truth, compile_value
from ._ground import family_columns
from ._kb import KnowledgeBase, parse_formula
from ._missing import definite, missing_key, not_false, placeholder

__all__ = ["Evaluation", "crisp_truth", "evaluate", "prepare_columns"]

_Fn = Callable[["_Env"], object]

# ------------------------------------------------------------------------- compiling


def _enum_of(e, kb) -> A.EnumType | None:
    if isinstance(e, A.Var):
        t = kb.variables[e.name].type
        return t if isinstance(t, A.EnumType) else None
    return None


def compile_expr(e, kb: KnowledgeBase, enum: A.EnumType | None = None) -> _Fn:
    """Turn a validated expression into ``f(env) -> ndarray | scalar``.

    Enum values are integer codes (their position in the enum's declaration).
    """
    if isinstance(e, A.Num):
        value = float(e.value)
        return lambda env: value
    if isinstance(e, A.BoolConst):
        value = bool(e.value)
        return lambda env: value
    if isinstance(e, A.Var):
        name = e.name
        return lambda env: env[name]
    if isinstance(e, A.IsMissing):
        key = missing_key(e.operand.name)
        return lambda env: env[key]
    if isinstance(e, A.Sym):
        code = domain(enum).code(e.name)
        return lambda env: code
    if isinstance(e, A.Neg):
        f = compile_expr(e.operand, kb)
        return lambda env: -f(env)
    if isinstance(e, A.Sum):
        fs = [compile_expr(a, kb) for a in e.args]
        signs = [1.0] + [1.0 if op == "+" else -1.0 for op in e.ops]

        def total(env, fs=fs, signs=signs):
            acc = fs[0](env)
            for f, s in zip(fs[1:], signs[1:]):
                acc = acc + f(env) if s > 0 else acc - f(env)
            return acc

        return total
    if isinstance(e, A.Mul):
        fl, fr = compile_expr(e.left, kb), compile_expr(e.right, kb)
        return lambda env: fl(env) * fr(env)
    if isinstance(e, A.Count):
        return compile_count([compile_expr(a, kb) for a in e.args])
    if isinstance(e, A.Arith):   # Python's floor semantics (numpy's on float64 agree)
        from ._intervals import apply

        fs, op = [compile_expr(a, kb) for a in e.args], e.op
        return lambda env: apply(op, [f(env) for f in fs])
    if isinstance(e, A.Compare):
        ctx = _enum_of(e.left, kb) or _enum_of(e.right, kb)
        fl, fr = compile_expr(e.left, kb, ctx), compile_expr(e.right, kb, ctx)
        op = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
              "==": np.equal, "!=": np.not_equal}[e.op]
        return lambda env: op(fl(env), fr(env))
    if isinstance(e, A.InSet):
        ctx = _enum_of(e.operand, kb)
        f = compile_expr(e.operand, kb)
        consts = [compile_expr(v, kb, ctx)(None) for v in e.values]

        def member(env, f=f, consts=consts):
            x = f(env)
            out = np.equal(x, consts[0])
            for c in consts[1:]:
                out = out | np.equal(x, c)
            return out

        return member
    f = compile_connective(e, lambda a: compile_expr(a, kb))
    if f is not None:
        return f
    raise TypeError(f"cannot evaluate {e!r}")


def compile_count(fs: list[_Fn]) -> _Fn:
    """``count``: how many of the compiled formulas ``fs`` hold, as float64 (exact: a
    whole number of at most ``len(fs)``)."""

    def count(env, fs=fs):
        acc = 0.0
        for f in fs:
            acc = acc + np.asarray(f(env), dtype=np.float64)
        return acc if np.ndim(acc) else float(acc)

    return count


def compile_connective(e, child: Callable[[A.Expr], _Fn]) -> _Fn | None:
    """``not``/``and``/``or``/``->``/``<->`` over children compiled by ``child`` (the
    float and the exact evaluators share it); None for any other node."""
    if isinstance(e, A.Not):
        f = child(e.operand)
        return lambda env: np.logical_not(f(env))
    if isinstance(e, (A.And, A.Or)):
        fs = [child(a) for a in e.args]
        op = np.logical_and if isinstance(e, A.And) else np.logical_or

        def chain(env, fs=fs, op=op):
            acc = fs[0](env)
            for f in fs[1:]:
                acc = op(acc, f(env))
            return acc

        return chain
    if isinstance(e, A.Implies):
        fl, fr = child(e.left), child(e.right)
        return lambda env: np.logical_or(np.logical_not(fl(env)), fr(env))
    if isinstance(e, A.Iff):
        fl, fr = child(e.left), child(e.right)
        return lambda env: np.equal(np.asarray(fl(env), bool), np.asarray(fr(env), bool))
    return None


# --------------------------------------------------------------------------- columns


def first_row(mask: np.ndarray, index: pd.Index) -> tuple[str, int]:
    """``("row LABEL", position)`` of the first row where ``mask`` holds, named by the
    data's own index label (a CSV's rows are numbered from 0)."""
    pos = int(np.flatnonzero(mask)[0])
    label = index[pos]
    label = label.item() if isinstance(label, np.generic) else label
    return f"row {label!r}", pos


def show_value(value) -> str:
    """repr of a cell, numpy scalars shown as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


#: the texts a bool label or target may be written as (any case, spaces around)
BOOL_TEXTS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def missing_values(values: np.ndarray) -> np.ndarray:
    """Where ``values`` (one per row) are missing: NaN, None, ``pd.NA``, ``pd.NaT`` or a
    blank text (an empty CSV cell)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "OUS":
        return np.array([v is None or v is pd.NA or v is pd.NaT
                         or (isinstance(v, (float, np.floating)) and np.isnan(v))
                         or (isinstance(v, str) and not v.strip()) for v in values], bool)
    return np.zeros(len(values), bool)


def align_labels(what: str, labels, index: pd.Index | None):
    """Labels given as a pandas Series put in the row order of the data they label (the
    data's ``index``); anything else is returned as given, to be read by position.

    * the same index: as given;
    * both with row labels of their own (any index but the default ``0..n-1``): by
      label -- the labels' rows in another order are reordered, extra rows left out, and
      a data row without a label is a :class:`~greybox.errors.DataError` naming it
      (pairing by position would give rows each other's labels);
    * either without row labels (arrays, the default index): by position, as
      scikit-learn reads labels.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.Index(["ann", "bob"])
    >>> align_labels("labels of 'y'", pd.Series([0, 1], index=["bob", "ann"]), rows).tolist()
    [1, 0]
    """
    if index is None or not isinstance(labels, pd.Series) or labels.index.equals(index):
        return labels
    if _default_index(index) or _default_index(labels.index):
        return labels
    if not labels.index.is_unique:
        dup = labels.index[labels.index.duplicated()][0]
        raise DataError(f"{what}: the row label {show_value(dup)} appears more than once in "
                        "the labels' index, so they cannot be matched to the data's rows; "
                        "give them with the data's index, or as an array (.to_numpy()) to "
                        "pair them by position")
    where = labels.index.get_indexer(index)
    if (where < 0).any():
        lacking = index[int(np.flatnonzero(where < 0)[0])]
        raise DataError(f"{what}: no label for row {show_value(lacking)} of the data (the "
                        "labels are a pandas Series whose index does not hold the data's "
                        "row labels; they are matched by label, never paired by position "
                        "with rows of another index); give them with the data's index, or "
                        "as an array (.to_numpy()) to pair them by position")
    return labels.iloc[where].set_axis(index)


def _default_index(index: pd.Index) -> bool:
    """Whether ``index`` is pandas' default one, ``0..n-1`` (rows without labels)."""
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def decode_bools(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True/false labels decoded: bools, the numbers 1 and 0, or the texts of
    :data:`BOOL_TEXTS` (``"yes"``, ``"False"``...). Returns ``(decoded, bad)``: 1.0/0.0 as
    float64 (0.0 where ``missing`` or undecodable) and where a value that is not missing
    is none of these. Labels of ``fit`` and the debugger's targets share it.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.array(["yes", "No", " true", "maybe", None], dtype=object)
    >>> decoded, bad = decode_bools(values, missing_values(values))
    >>> decoded.tolist(), bad.tolist()
    ([1.0, 0.0, 1.0, 0.0, 0.0], [False, False, False, True, False])
    """
    if values.dtype.kind in "biuf":   # numbers, at numpy speed
        num = values.astype(np.float64)
        bad = ~missing & ~np.isin(num, (0.0, 1.0))
        return np.where(bad | missing, 0.0, num), bad
    decoded, bad = np.zeros(len(values)), np.zeros(len(values), bool)
    for i in np.flatnonzero(~missing):
        v = values[i]
        if isinstance(v, str):
            found = BOOL_TEXTS.get(v.strip().lower())
        elif isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
            found = bool(v) if v in (0, 1) else None
        else:
            found = None
        if found is None:
            bad[i] = True
        else:
            decoded[i] = float(found)
    return decoded, bad


def _type_text(t) -> str:
    from ._printer import type_to_text

    return type_to_text(t)


#: integers up to this magnitude are exact in float64
_EXACT_INT = 2 ** 53
_EXACT_TEXT = "float64 holds every integer up to ±2**53, only some beyond"


def _short(v: int) -> str:
    """An integer for a message: its digits, or its size when it is huge."""
    if v.bit_length() <= 96:
        return str(v)
    return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"


def _ndim(name, values) -> int:
    """``np.ndim``, a ragged list (rows of different lengths) refused naming the column."""
    try:
        return np.ndim(values)
    except ValueError:
        raise DataError(f"column {name!r} must be one value per row, got a ragged "
                        f"{type(values).__name__} (rows of different lengths)") from None


#: text that reads as a decimal number ("50000", " -1.5e3"): named after the text that does not
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _looks_numeric(text: str) -> bool:
    return _NUMBER_TEXT.match(text) is not None


def _to_numeric(name: str, col, index, *, expected: str = "numbers",
                looks=_looks_numeric) -> np.ndarray:
    """float64 values of a column (NaN where missing); ``expected`` and ``looks`` (text
    that reads as one of the values expected) word the error naming the first value
    that cannot be read."""
    if isinstance(col, pd.Series):
        col = col.to_numpy()
    arr = np.asarray(col)
    if arr.dtype.kind in "US":   # text, as numpy holds a list mixing text and numbers
        arr = arr.astype(object)
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        out = arr.astype(np.float64)
        wrong = [i for i in np.flatnonzero(np.abs(out) >= _EXACT_INT).tolist()
                 if int(out[i]) != int(arr[i])]
        if wrong:
            where, pos = first_row(np.arange(len(arr)) == wrong[0], index)
            raise DataError(f"column {name!r}: {int(arr[pos])} at {where} has no exact "
                            f"float64 value ({_EXACT_TEXT})")
        return out
    if arr.dtype.kind == "f":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O":
        # object columns: numbers (bools as 0/1, as a bool column) with None/pd.NA/NaN for
        # missing values; the first value that is none of these is named, so text is named
        # where it is not a number (a CSV column with "abc" in row 1 holds "50000" in row 0)
        out = np.empty(len(arr), np.float64)
        text = None
        for i, v in enumerate(arr):
            if v is None or v is pd.NA or v is pd.NaT:
                out[i] = np.nan
            elif isinstance(v, (bool, np.bool_)):
                out[i] = float(v)
            elif isinstance(v, str) and looks(v):
                text = i if text is None else text
            elif isinstance(v, (int, np.integer)):
                iv = int(v)
                if abs(iv) > _EXACT_INT and (iv.bit_length() > 1024 or int(float(iv)) != iv):
                    where, _ = first_row(np.arange(len(arr)) == i, index)
                    raise DataError(f"column {name!r}: {_short(iv)} at {where} has no "
                                    f"exact float64 value ({_EXACT_TEXT})")
                out[i] = float(v)
            elif isinstance(v, (float, np.floating)):
                out[i] = float(v)
            else:
                where, _ = first_row(np.arange(len(arr)) == i, index)
                raise DataError(f"column {name!r}: expected {expected}, got {v!r} "
                                f"({type(v).__name__}) at {where}")
        if text is not None:
            where, _ = first_row(np.arange(len(arr)) == text, index)
            raise DataError(f"column {name!r}: expected {expected}, got the text "
                            f"{arr[text]!r} at {where} (the column holds its values as "
                            "text: convert the column first)")
        return out
    raise DataError(f"column {name!r}: expected {expected}, got dtype {arr.dtype}")


def _cells_missing(col, *, blanks: bool = True) -> np.ndarray:
    """Where the cells of a column are missing: NaN, None, ``pd.NA`` or ``pd.NaT`` in any
    dtype (pandas' nullable ``Int64``, ``Float64`` and ``boolean`` too), at pandas' speed;
    with ``blanks``, a blank text (an empty CSV cell) too, which costs a pass over a text
    column (an enum's reader looks for blanks only among the cells it cannot read)."""
    if isinstance(col, pd.Series):
        miss = np.array(col.isna(), dtype=bool)   # a copy: written to by the enum reader
        values = col.to_numpy(dtype=object) if blanks and (
            col.dtype == object or pd.api.types.is_string_dtype(col.dtype)) else None
    else:
        arr = np.asarray(col)
        if arr.dtype.kind in "US":
            arr = arr.astype(object)
        miss = np.asarray(pd.isna(arr), dtype=bool).reshape(-1)
        values = arr if blanks and arr.dtype == object else None
    if values is not None:
        miss = miss | np.array([isinstance(v, str) and not v.strip() for v in values], bool)
    return miss


def _missing_error(var, col, index, miss) -> DataError:
    where, pos = first_row(miss, index)
    cell = col.iloc[pos] if isinstance(col, pd.Series) else np.asarray(col, dtype=object)[pos]
    shown = "NaN" if isinstance(cell, (float, np.floating)) and np.isnan(cell) else \
        show_value(cell)
    from ._printer import name_to_text

    return DataError(f"column {var.name!r}: missing value ({shown}) at {where}; an input "
                     f"that may be missing is declared 'input {name_to_text(var.name)}: "
                     f"optional {_type_text(var.type)}'")


def read_masked(var, col, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """One column read against its variable's type, with its missing cells: ``(values,
    missing)``. A missing cell of an optional input is held as a placeholder of its type
    (read only where the input is not missing); of any other input it is a
    :class:`~greybox.errors.DataError` naming the column and the row's label."""
    if isinstance(var.type, A.TensorType):
        return read_column(var, col, index), np.zeros(0, bool)
    if not isinstance(col, pd.Series):
        _ndim(var.name, col)
    if isinstance(var.type, A.EnumType):
        return _read_enum(var, col, index)
    miss = _cells_missing(col)
    if not miss.any():
        return _read_present(var, col, index), miss
    if not var.optional:
        raise _missing_error(var, col, index, miss)
    filled = np.array(col.to_numpy(dtype=object) if isinstance(col, pd.Series) else col,
                      dtype=object)   # a copy: never write into the caller's data
    filled[miss] = placeholder(var.type)
    if not isinstance(var.type, A.EnumType):
        kinds = {type(v) for v in filled}
        if kinds <= {float, int, np.float64, np.int64}:
            filled = filled.astype(np.float64)
    return _read_present(var, filled, index), miss


def _read_enum(var, col, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """An enum column's codes and missing cells (blank texts sought only among the cells
    that are no label: a column of labels is read at numpy speed)."""
    t = var.type
    if isinstance(col, pd.Series) and isinstance(col.dtype, pd.CategoricalDtype):
        values = col.astype(object).to_numpy()
    else:
        values = np.asarray(col.to_numpy(dtype=object) if isinstance(col, pd.Series) else col,
                            dtype=object)
    miss = _cells_missing(col, blanks=False)
    codes = domain(t).indices(values)   # -1: not a label of the enum
    unread = np.flatnonzero((codes < 0) & ~miss)
    if len(unread):
        miss[unread[_cells_missing(values[unread])]] = True
    if miss.any():
        if not var.optional:
            raise _missing_error(var, col, index, miss)
        codes = np.where(miss, 0, codes)   # the placeholder: the first value
    bad = codes < 0
    if bad.any():
        where, pos = first_row(bad, index)
        raise DataError(f"column {var.name!r}: {show_value(values[pos])} at {where} is not "
                        f"one of {{{listed(t.values)}}}")
    return codes.astype(np.int64), miss


def read_column(var, col, index: pd.Index) -> np.ndarray:
    """Convert and check one column against the variable's declared type (a missing cell
    is refused; see :func:`read_masked` for optional inputs)."""
    if isinstance(var.type, A.TensorType):
        return _read_present(var, col, index)
    values, miss = read_masked(var, col, index)
    if miss.any():
        raise _missing_error(var, col, index, miss)
    return values


def _read_present(var, col, index: pd.Index) -> np.ndarray:
    """A column without missing cells read against the variable's type."""
    name, t = var.name, var.type
    if not isinstance(col, pd.Series):
        _ndim(name, col)
    if isinstance(t, A.EnumType):
        if isinstance(col, pd.Series) and isinstance(col.dtype, pd.CategoricalDtype):
            values = col.astype(object).to_numpy()
        else:
            values = np.asarray(col, dtype=object)
        codes = domain(t).indices(values)   # -1: not a label of the enum
        bad = codes < 0
        if bad.any():
            where, pos = first_row(bad, index)
            raise DataError(f"column {name!r}: {show_value(values[pos])} at {where} is not one of "
                            f"{{{listed(t.values)}}}")
        return codes.astype(np.int64)
    if isinstance(t, A.BoolType):
        if isinstance(col, pd.Series) and col.dtype == bool:
            return col.to_numpy()
        arr = np.asarray(col.to_numpy(dtype=object) if isinstance(col, pd.Series)
                         and not isinstance(col.dtype, np.dtype) else
                         col.to_numpy() if isinstance(col, pd.Series) else col)
        if arr.dtype == bool:
            return arr
        if arr.dtype.kind in "USO":   # text too: "yes"/"no", "true"/"false", as labels are
            arr = arr.astype(object)
            decoded, bad = decode_bools(arr, np.zeros(len(arr), bool))
            if bad.any():
                where, pos = first_row(bad, index)
                raise DataError(f"column {name!r}: expected true/false (bool, 0/1, yes/no or "
                                f"true/false), got {show_value(arr[pos])} "
                                f"({type(arr[pos]).__name__}) at {where}")
            return decoded.astype(bool)
        num = _to_numeric(name, arr, index, expected="true/false (bool or 0/1)",
                          looks=lambda v: v.strip().lower() in BOOL_TEXTS)
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            where, pos = first_row(bad, index)
            raise DataError(f"column {name!r}: expected true/false (bool or 0/1), got "
                            f"{show_value(arr[pos])} at {where}")
        return num.astype(bool)
    if isinstance(t, A.TensorType):
        raise DataError(f"{name!r} is a tensor; crisp evaluation reads only table columns")
    num = _to_numeric(name, col, index)
    inf = np.isinf(num)
    if inf.any():
        where, pos = first_row(inf, index)
        raise DataError(f"column {name!r}: infinite value {num[pos]} at {where}")
    _check_range(name, t, num, index, what="column")
    return num


def _check_range(name: str, t, num: np.ndarray, index, *, what: str) -> None:
    label = f"{what} {name!r}"
    if isinstance(t, A.IntType):
        frac = num != np.floor(num)
        if frac.any():
            where, pos = first_row(frac, index)
            raise DataError(f"{label}: {float(num[pos])!r} at {where} is not a whole number "
                            f"({_type_text(t)})")
        lo, hi = t.lo, t.hi
    elif isinstance(t, A.RealType) and t.lo is not None:
        lo, hi = t.lo, t.hi
    else:
        return
    out = (num < lo) | (num > hi)
    if out.any():
        where, pos = first_row(out, index)
        raise DataError(f"{label}: {num[pos]:g} at {where} is outside {_type_text(t)}")


def _needed_columns(kb: KnowledgeBase) -> list[str]:
    store = memo(kb)
    if "needed" not in store:
        exprs = ([r.body for r in kb.rules.values()]
                 + [c.formula for c in kb.constraints.values()])
        names = set()
        for e in exprs:
            names |= closure(kb, A.variables(e))
        store["needed"] = [n for n in kb.variables
                           if n in names and kb.variables[n].role in ("input", "neural")]
    return store["needed"]


def _as_table(data) -> tuple[dict, pd.Index]:
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            dup = data.columns[data.columns.duplicated()][0]
            raise DataError(f"column {dup!r} appears more than once")
        return {c: data[c] for c in data.columns}, data.index
    if isinstance(data, pd.Series):  # one row
        return {k: [v] for k, v in data.items()}, pd.RangeIndex(1)
    if isinstance(data, Mapping):
        cols = {}
        scalar = all(_ndim(k, v) == 0 for k, v in data.items())
        for k, v in data.items():
            arr = [v] if scalar else v
            if _ndim(k, arr) != 1:
                raise DataError(f"column {k!r} must be one-dimensional, got shape "
                                f"{np.shape(arr)}")
            cols[k] = arr
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"columns have different lengths: {lengths}")
        n = next(iter(lengths.values()), 0)
        return cols, pd.RangeIndex(n)
    raise DataError(f"data must be a pandas DataFrame or a mapping of column -> values, got "
                    f"{type(data).__name__}")


def prepare_columns(kb: KnowledgeBase, data) -> tuple[dict[str, np.ndarray], pd.Index, dict]:
    """Read and check the input and neural columns the rules need.

    Returns numpy arrays (float64 numbers, bool, or int64 enum codes) by name, the row
    index, and the raw columns (for variables read later, e.g. by ``Evaluation.holds``).
    """
    cols, index = _as_table(family_columns(kb, data))
    out = {}
    for name in _needed_columns(kb):
        if name not in cols:
            v = kb.variables[name]
            extra = (f" (predicted by network {v.network!r}; crisp evaluation needs its values)"
                     if v.role == "neural" else "")
            hint = ""
            close = [c for c in cols if isinstance(c, str) and c.lower() == name.lower()]
            if close:
                hint = f"; found {close[0]!r}"
            raise DataError(f"missing column {name!r}{extra}{hint}")
        var = kb.variables[name]
        if var.optional:
            out[name], out[missing_key(name)] = read_masked(var, cols[name], index)
        else:
            out[name] = read_column(var, cols[name], index)
    return out, index, cols


# ----------------------------------------------------------------------- evaluating


class _Env:
    """Variable values for every row; defined variables are computed on first use.

    ``errors`` holds, for a real define whose arithmetic float64 may round, a bound on
    each row's distance to the exact value (see :mod:`._exact`); every other value is
    exact (an int define is settled to its exact integer). ``checked``: whether a define
    leaving its declared type is a DataError (otherwise its rows are marked ``outside``)."""

    __slots__ = ("kb", "values", "errors", "parent", "fresh", "defines", "n", "index", "raw",
                 "checked", "outside")

    def __init__(self, kb, values, defines, n, index, parent=None, fresh=frozenset(), raw=None,
                 checked=True):
        self.kb, self.values, self.defines = kb, values, defines
        self.n, self.index, self.parent, self.fresh = n, index, parent, fresh
        self.raw = raw or {}
        self.errors = {}
        self.checked = checked
        #: unchecked: rows where some define left its declared type (None: none yet)
        self.outside = None

    def __getitem__(self, name):
        if name in self.values:
            return self.values[name]
        if self.parent is not None and name not in self.fresh:
            return self.parent[name]
        if name.endswith("\x00missing") and name[:-8] in self.kb.variables:
            base = name[:-8]   # an optional input's mask, read on demand
            if base not in self.raw:
                raise DataError(f"missing column {base!r}")
            self.values[base], self.values[name] = read_masked(
                self.kb.variables[base], self.raw[base], self.index)
            return self.values[name]
        var = self.kb.variables[name]
        if var.role in ("input", "neural"):  # a column no rule needed, read on demand
            if name not in self.raw:
                raise DataError(f"missing column {name!r}")
            if var.optional:   # its values and its mask, read together
                self[missing_key(name)]
                return self.values[name]
            value = self.values[name] = read_column(var, self.raw[name], self.index)
            return value
        if isinstance(var.type, A.BoolType):
            value = np.broadcast_to(self.defines[name](self), (self.n,)).astype(bool, copy=False)
        elif name in _big_defines(self.kb):
            value = self._settle_big(var)
        else:
            value, err = self.defines[name](self)
            value = np.broadcast_to(value, (self.n,))
            if isinstance(var.type, A.IntType):
                value = self._settle_int(var, value.astype(np.float64, copy=False), err)
            elif isinstance(var.type, A.RealType):
                value = self._settle_real(var, value.astype(np.float64, copy=False), err)
        self.values[name] = value
        return value

    def error(self, name):
        """A bound on the distance of ``name``'s float64 values to the exact ones (0.0
        when they are exact)."""
        if name in self.errors:
            return self.errors[name]
        if name in self.values:
            return 0.0
        if self.parent is not None and name not in self.fresh:
            return self.parent.error(name)
        self[name]
        return self.errors.get(name, 0.0)

    def _settle_int(self, var, value, err):
        """An int define's exact values: rounded where the error bound is below 1/2,
        recomputed with rationals where it is not, checked against the declared range."""
        from ._exact import exact_value

        t = var.type
        rows = np.empty(0, np.int64)
        exact: list = []
        if not (np.ndim(err) == 0 and err == 0):
            err = np.broadcast_to(err, (self.n,))
            value = np.array(value, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                far = ~(err < 0.5)
                near = ~far & (err > 0)
            value[near] = np.rint(value[near])
            rows = np.flatnonzero(far)
            exact = [int(x) for x in exact_value(var.expr, self.kb, self, rows)]
        with np.errstate(invalid="ignore"):
            bad = (value < t.lo) | (value > t.hi)
        if rows.size:
            bad[rows] = [not t.lo <= x <= t.hi for x in exact]
        if bad.any():
            if not self.checked:
                self.outside = bad if self.outside is None else self.outside | bad
            else:
                where, pos = first_row(bad, self.index)
                shown = (exact[int(np.searchsorted(rows, pos))] if pos in set(rows.tolist())
                         else f"{value[pos]:g}")
                raise DataError(f"defined variable {var.name!r}: {shown} at {where} is "
                                f"outside {_type_text(t)}")
        if rows.size:
            value[rows] = [_to_float(x) for x in exact]
        return value

    def _settle_big(self, var):
        """An int define computed with Python ints (it reaches beyond ±2**53): an object
        array of exact values for a big int type, float64 (then exact) for a smaller one,
        checked against the declared range."""
        t = var.type
        value = _big_value(var.expr, self)
        if not isinstance(value, np.ndarray):
            value = np.full(self.n, value, dtype=object)
        bad = np.array([not t.lo <= x <= t.hi for x in value.tolist()], dtype=bool)
        if bad.any():
            if not self.checked:
                self.outside = bad if self.outside is None else self.outside | bad
                value = np.where(bad, t.lo, value)
            else:
                where, pos = first_row(bad, self.index)
                shown = str(value[pos])
                shown = shown if len(shown) <= 24 else f"{float(value[pos]):.6g}"
                raise DataError(f"defined variable {var.name!r}: {shown} at {where} is "
                                f"outside {_type_text(t)}")
        return value if big_int(t) else value.astype(np.float64)

    def _settle_real(self, var, value, err):
        """A real define: its float64 values with their error bound, checked exactly
        against the declared range; values float64 overflowed on are recomputed."""
        from fractions import Fraction

        from ._exact import exact_value

        t = var.type
        if np.ndim(err) == 0 and err == 0:
            rows = np.empty(0, np.int64)
        else:
            err = np.broadcast_to(err, (self.n,))
            value = np.array(value, dtype=np.float64)
            lost = np.flatnonzero(~np.isfinite(value))
            if lost.size:
                for i, x in zip(lost, exact_value(var.expr, self.kb, self, lost)):
                    value[i] = _to_float(x)
            self.errors[var.name] = err
            with np.errstate(invalid="ignore"):
                unsure = ~(np.minimum(np.abs(value - t.lo), np.abs(value - t.hi)) > 2.0 * err) \
                    if t.lo is not None else np.zeros(self.n, bool)
            rows = np.flatnonzero(unsure)
        if t.lo is None:
            return value
        with np.errstate(invalid="ignore"):
            bad = (value < t.lo) | (value > t.hi)
        if rows.size:
            lo, hi = Fraction(t.lo), Fraction(t.hi)
            bad[rows] = [not lo <= x <= hi
                         for x in exact_value(var.expr, self.kb, self, rows)]
        if bad.any():
            if not self.checked:
                self.outside = bad if self.outside is None else self.outside | bad
            else:
                where, pos = first_row(bad, self.index)
                raise DataError(f"defined variable {var.name!r}: {value[pos]:g} at {where} "
                                f"is outside {_type_text(t)}")
        return value


def _big_defines(kb) -> frozenset:
    """The int defines computed with Python ints: of a big int type (beyond ±2**53), or
    reading a big integer (once per knowledge base object)."""
    store = memo(kb)
    found = store.get("big defines")
    if found is None:
        def big(name) -> bool:
            v = kb.variables[name]
            return big_int(v.type) or any(
                (isinstance(n, A.Num) and isinstance(n.value, int) and abs(n.value) > BIG_INT)
                or (isinstance(n, A.Var) and big_int(kb.variables[n.name].type))
                for n in A.walk(v.expr))
        found = store["big defines"] = frozenset(
            name for name, v in kb.variables.items()
            if v.role == "defined" and isinstance(v.type, A.IntType) and big(name))
    return found


def _big_value(e, env):
    """Integer expression ``e`` with Python ints, exactly: a Python int or an object array
    of them (the variables it reads are exact integers: ints, bools, big int defines)."""
    if isinstance(e, A.Num):
        return int(e.value)
    if isinstance(e, A.Var):
        value = env[e.name]
        if isinstance(value, np.ndarray):
            return value if value.dtype == object else \
                np.asarray(value).astype(np.int64).astype(object)
        return int(value)
    if isinstance(e, A.Neg):
        return -_big_value(e.operand, env)
    if isinstance(e, A.Sum):
        acc = _big_value(e.args[0], env)
        for op, a in zip(e.ops, e.args[1:]):
            acc = acc + _big_value(a, env) if op == "+" else acc - _big_value(a, env)
        return acc
    if isinstance(e, A.Mul):
        return _big_value(e.left, env) * _big_value(e.right, env)
    if isinstance(e, A.Arith):   # //, %, min, max, abs: Python's, elementwise
        args = [_big_value(a, env) for a in e.args]
        if e.op in ("//", "%"):
            return args[0] // args[1] if e.op == "//" else args[0] % args[1]
        if e.op == "abs":
            return np.abs(args[0]) if isinstance(args[0], np.ndarray) else abs(args[0])
        pick = np.minimum if e.op == "min" else np.maximum
        acc = args[0]
        for a in args[1:]:
            acc = pick(acc, a) if isinstance(acc, np.ndarray) or isinstance(a, np.ndarray) \
                else (min if e.op == "min" else max)(acc, a)
        return acc
    if isinstance(e, A.Count):
        count = compile_count([compile_expr(a, env.kb) for a in e.args])(env)
        return np.asarray(count).astype(np.int64).astype(object) if np.ndim(count) \
            else int(count)
    raise TypeError(f"not an integer expression: {e!r}")


def _to_float(x) -> float:
    """An exact number as the nearest float64 (infinite beyond its range)."""
    try:
        return float(x)
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


def _bias_number(name, b, n):
    """A bias: one finite number, or one finite number per row (shape (n,))."""
    if isinstance(b, (bool, np.bool_)):
        raise RuleError(f"bias of {name!r} must be a number, got {b!r}")
    try:
        arr = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise RuleError(f"bias of {name!r} must be a number or one number per row, got "
                        f"{type(b).__name__}") from None
    if arr.ndim == 0:
        if not np.isfinite(arr):
            raise RuleError(f"bias of {name!r} must be finite, got {float(arr)!r}")
        return float(arr)
    if arr.shape != (n,):
        raise RuleError(f"bias of {name!r}: expected one number or shape ({n},), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise RuleError(f"bias of {name!r} must be finite, got {float(arr[pos])!r} at row {pos}")
    return arr


def _in_domain(t, value) -> bool:
    if isinstance(t, A.IntType):
        return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
                and t.lo <= value <= t.hi)
    return isinstance(value, str) and value in t.values


def _bias_table(kb, bias, n=None) -> dict:
    """Per decided variable, value -> bias. Sparse: an int or enum variable holds only the
    values the caller names (every other value's bias is 0); a bool, {True: b, False: 0}."""
    out = {}
    bias = dict(bias or {})
    for name, b in bias.items():
        var = kb.variables.get(name)
        if var is None or var.role != "decided":
            raise RuleError(f"bias given for {name!r}, which is not decided by rules "
                            f"(decided: {listed(kb.decided) or 'none'})")
        t = var.type
        if isinstance(t, A.BoolType) or name in kb.additive:
            if isinstance(b, Mapping) or isinstance(b, bool):
                what = "bool" if isinstance(t, A.BoolType) else "additive"
                raise RuleError(f"bias of {what} {name!r} must be one number")
            out[name] = {True: _bias_number(name, b, n), False: 0.0}
        else:
            if not isinstance(b, Mapping):
                raise RuleError(f"bias of {name!r} must map its values to numbers")
            unknown = [k for k in b if not _in_domain(t, k)]
            if unknown:
                raise RuleError(f"bias of {name!r} names {unknown[0]!r}, not a value of "
                                f"{_type_text(t)}")
            out[name] = {int(v) if isinstance(t, A.IntType) else v: _bias_number(name, x, n)
                         for v, x in b.items()}
    return out


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The crisp evaluation of a knowledge base on a table of rows.

    Attributes
    ----------
    kb : KnowledgeBase
    index : pandas.Index
        The rows, as in the data.
    bodies : DataFrame
        Per rule, whether its body holds (bool).
    scores : DataFrame
        Per decided variable, ``bias + sum(weight * [body])``: one column for a bool
        (the score of True), one ``NAME=VALUE`` column per value otherwise.
    preferred : DataFrame
        The decisions the scores alone give (before hard constraints).
    decisions : DataFrame
        The decisions after hard constraints (what a model returns).
    values : DataFrame
        The defined variables.
    violations : DataFrame
        Per constraint (hard and soft), True where the final decisions violate it.
    infeasible : Series
        True where no decision satisfies the hard constraints (``decisions`` then holds the
        preferred values and ``violations`` shows which constraints fail).
    """

    kb: KnowledgeBase
    index: pd.Index
    preferred: pd.DataFrame
    decisions: pd.DataFrame
    values: pd.DataFrame
    infeasible: pd.Series
    _bodies: dict = field(repr=False)
    _scores: dict = field(repr=False)
    _violations: dict = field(repr=False)
    _weights: dict = field(repr=False)
    _env: _Env = field(repr=False)

    # the per-rule tables are built on first use: a caller who wants only the decisions
    # does not pay for them
    @cached_property
    def bodies(self) -> pd.DataFrame:
        return _frame({r: self._bodies[r] for r in self.kb.rules}, self.index, bool)

    @cached_property
    def scores(self) -> pd.DataFrame:
        return _frame(self._scores, self.index, np.float64)

    @cached_property
    def violations(self) -> pd.DataFrame:
        return _frame(self._violations, self.index, bool)

    def holds(self, formula) -> pd.Series:
        """Per row, whether ``formula`` (rule text or AST) holds, given the final decisions
        (where it reads a missing value of an optional input: whether it is known true,
        see the rule language's missing values).

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input age: int 0..120  output ok: bool  rule r: age >= 18 -> ok")
        >>> gr.evaluate(kb, {"age": [10, 30]}).holds("ok <-> age > 20").tolist()
        [True, True]
        """
        expr = definite(self.kb, parse_formula(formula, self.kb))
        value = np.broadcast_to(compile_truth(expr, self.kb)(self._env), (len(self.index),))
        return pd.Series(value.astype(bool), index=self.index)

    def value(self, expression) -> np.ndarray:
        """Per row, the float64 value of an arithmetic ``expression`` (rule text or AST),
        given the final decisions (enum values as their codes).

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input x: real  input y: real  output o: bool  rule r: x > 1 -> o")
        >>> gr.evaluate(kb, {"x": [1.0, 2.0], "y": [3.0, 4.0]}).value("x + 2 * y").tolist()
        [7.0, 10.0]
        """
        from ._parser import parse_fragment

        expr = parse_fragment(expression, "expr", filename="<expression>") \
            if isinstance(expression, str) else expression
        value = compile_expr(expr, self.kb)(self._env)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (len(self.index),))

    @cached_property
    def contributions(self) -> pd.DataFrame:
        """Per rule, its signed push on its head's score: ``weight * [body]``, negative
        for ``not x`` heads. Per decided variable they add up to score minus bias."""
        w = np.array([self._weights[r] for r in self.bodies.columns], dtype=np.float64)
        return pd.DataFrame(self.bodies.to_numpy() * w + 0.0, index=self.index,
                            columns=self.bodies.columns)

    @property
    def changed(self) -> pd.Series:
        """True where hard constraints changed the preferred decision."""
        if self.decisions.shape[1] == 0:
            return pd.Series(False, index=self.index)
        return (self.decisions != self.preferred).any(axis=1) & ~self.infeasible

    def fired(self, row) -> list[str]:
        """Names of the rules whose body holds in row ``row`` (a position)."""
        body = self.bodies.iloc[row]
        return [r for r in body.index if body[r]]

    def to_frame(self) -> pd.DataFrame:
        """One wide table: decisions, scores, bodies, contributions, violations."""
        parts = {
            "decision": self.decisions,
            "preferred": self.preferred,
            "score": self.scores,
            "value": self.values,
            "body": self.bodies,
            "contribution": self.contributions,
            "violated": self.violations,
        }
        frames = [f.add_prefix(f"{k}.") for k, f in parts.items() if f.shape[1]]
        frames.append(self.infeasible.rename("infeasible").to_frame())
        return pd.concat(frames, axis=1)

    def summary(self) -> str:
        n = len(self.index)
        lines = [f"crisp evaluation of {n} row{'s' * (n != 1)}"]
        for name in self.decisions.columns:
            if name in self.kb.additive:   # a number per row: its spread, not its counts
                col = self.decisions[name].astype(np.float64)
                if n:
                    lines.append(f"  {name}: mean {col.mean():.4g}, min {col.min():.4g}, "
                                 f"max {col.max():.4g}")
                continue
            counts = self.decisions[name].value_counts(sort=False)
            shown = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
            lines.append(f"  {name}: {shown}")
        if n:
            lines.append(f"  changed by hard constraints: {int(self.changed.sum())}")
            lines.append(f"  infeasible (no decision satisfies the hard constraints): "
                         f"{int(self.infeasible.sum())}")
            rates = self.bodies.mean(axis=0) if self.bodies.shape[1] else pd.Series(dtype=float)
            if len(rates):
                lines.append("  rules fired: " + ", ".join(
                    f"{r} {100 * p:.0f}%" for r, p in rates.items()))
            soft = [c.name for c in self.kb.constraints.values() if not c.hard]
            for c in soft:
                lines.append(f"  soft constraint {c} violated in "
                             f"{int(self.violations[c].sum())} rows")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return (f"<pre>{html.escape(self.summary())}</pre>"
                + self.to_frame().head(20)._repr_html_())


def evaluate(kb: KnowledgeBase, data, *, bias: Mapping | None = None) -> Evaluation:
    """Evaluate the rules crisply on every row of ``data``.

    Parameters
    ----------
    kb : KnowledgeBase
    data : DataFrame or mapping of column name -> values
        One column per input (and per neural variable the rules read: crisp evaluation
        takes the networks' predictions as data). A mapping of scalars is one row.
    bias : mapping, optional
        Per decided variable: a number for a bool (added to the score of True), or a
        mapping value -> number for an int or enum. Default 0. Each number may also be an
        array with one number per row (a grey-box model's residual network uses this).

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        A missing column, NaN, a wrong dtype or a value outside the declared domain; the
        message names the column and the first offending row.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... input income: real[0, 1000000]
    ... input age: int 0..120
    ... output approve: bool
    ... rule earns weight 2.0: income > 30000 -> approve
    ... rule young: age < 25 -> not approve
    ... constraint minors: age < 18 -> not approve
    ... ''')
    >>> ev = gr.evaluate(kb, {"income": [50000, 50000, 10000], "age": [40, 16, 20]})
    >>> ev.decisions["approve"].tolist(), ev.changed.tolist()
    ([True, False, False], [False, True, False])
    >>> ev.contributions.loc[1].tolist()
    [2.0, -1.0]
    """
    if not isinstance(kb, KnowledgeBase):
        raise TypeError(f"evaluate needs a KnowledgeBase, got {type(kb).__name__}")
    run = _Run(kb, data, bias)
    for comp in run.plan.components:
        run.decide(comp)
    return run.result()


def _compiled_defines(kb: KnowledgeBase) -> dict[str, _Fn]:
    """Each defined variable's compiled expression (once per knowledge base object)."""
    store = memo(kb)
    if "defines" not in store:
        store["defines"] = {
            name: (compile_truth(v.expr, kb) if isinstance(v.type, A.BoolType) else
                   compile_value(v.expr, kb, v.type if isinstance(v.type, A.EnumType) else None))
            for name, v in kb.variables.items() if v.role == "defined"
            and name not in _big_defines(kb)}     # (those: Python ints, see _settle_big)
    return store["defines"]


def _compiled_truth(kb: KnowledgeBase, e) -> _Fn:
    """Formula ``e``'s compiled truth (once per knowledge base object and formula)."""
    compiled = memo(kb).setdefault("truth", {})
    entry = compiled.get(id(e))
    if entry is None or entry[0] is not e:  # the node is kept: its id is not reused
        entry = compiled[id(e)] = (e, compile_truth(e, kb))
    return entry[1]


def crisp_truth(kb: KnowledgeBase, formula, columns: Mapping[str, np.ndarray], n: int, *,
                index: pd.Index | None = None) -> np.ndarray:
    """Per row, whether ``formula`` holds on checked input columns, exactly as
    :func:`evaluate` decides it (rationals where float64 may round).

    ``columns`` are arrays as :func:`read_column` returns them (float64 numbers, bools,
    enum codes), one per input the formula reads (through its defines too). The model's
    smooth semantics read the comparisons of observed inputs from here where float64
    arithmetic could round them, so that a trace agrees with ``predict``.

    Examples
    --------
    >>> import numpy as np
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: real  input y: real  output o: bool  rule r: x + y > 0.3 -> o")
    >>> columns = {"x": np.array([0.1, 0.1]), "y": np.array([0.2, 0.19])}
    >>> gr.crisp_truth(kb, kb.rules["r"].body, columns, 2).tolist()   # 0.1 + 0.2 > 0.3
    [True, False]
    """
    env = _Env(kb, dict(columns), _compiled_defines(kb), n,
               pd.RangeIndex(n) if index is None else index)
    return np.broadcast_to(_compiled_truth(kb, formula)(env), (n,)).astype(bool)


class _Run:
    """One crisp evaluation: the rows' values, the compiled formulas and, per decided
    variable, its partial scores, filled in component by component (dependency order).

    Scores are exact (see ScoreScale). Per (decided variable, value), :attr:`layout`
    holds its bias, the rules whose bodies read no decision of the same component (the
    same for every assignment) and the "dynamic" rest."""

    def __init__(self, kb: KnowledgeBase, data, bias):
        self.kb = kb
        cols, self.index, raw = prepare_columns(kb, data)
        self.n = n = len(self.index)
        self.defines = _compiled_defines(kb)
        self.env = _Env(kb, dict(cols), self.defines, n, self.index, raw=raw)
        self.biases = _bias_table(kb, bias, n)
        self.plan = plan(kb)
        self.bodies: dict[str, np.ndarray] = {}  # rule bodies in the top environment
        self.weights = {r.name: _signed(r, r.head.value) for r in kb.rules.values()}
        self.layout: dict[tuple, tuple] = {}
        self.partial: dict[tuple, object] = {}
        self.scored: dict[str, list] = {}
        self.scales: dict[str, ScoreScale] = {}
        self.preferred: dict[str, np.ndarray] = {}
        self.infeasible = np.zeros(n, bool)
        for c in self.plan.fixed_constraints:
            self.infeasible |= ~self.truth(not_false(kb, c.formula), self.env)

    def truth(self, e, where) -> np.ndarray:
        """Per row, whether formula ``e`` holds in environment ``where``."""
        out = _compiled_truth(self.kb, e)(where)
        if getattr(out, "shape", None) == (self.n,) and out.dtype == bool:
            out = out.view()   # read-only, as a broadcast view is: callers never write
            out.flags.writeable = False
            return out
        return np.broadcast_to(out, (self.n,)).astype(bool, copy=False)

    def body(self, r) -> np.ndarray:
        if r.name not in self.bodies:
            self.bodies[r.name] = self.truth(definite(self.kb, r.body), self.env)
        return self.bodies[r.name]

    def _values(self, comp) -> tuple[dict, list]:
        """The values each variable of ``comp`` is decided among, and the joint
        assignments tried, in tie-breaking order."""
        kb = self.kb
        if comp.enumerated:
            return ({v: domain(kb.variables[v].type).values for v in comp.variables},
                    comp.assignments(kb))
        (v,) = comp.variables  # decided alone: the argmax lies among a few candidate values
        values_of = {v: candidates(kb, v, self.biases.get(v, {}))}
        return values_of, [(x,) for x in values_of[v]]

    def _lay_out(self, comp, values_of: dict) -> None:
        """Fill :attr:`layout` and :attr:`scored` for ``comp``'s variables."""
        by_head: dict[tuple, list] = {}
        for r in comp.rules:
            by_head.setdefault((r.head.name, _pushed(r.head)), []).append(r)
        for v in comp.variables:
            self.scored[v] = [x for x in values_of[v] if not (isinstance(x, bool) and not x)]
            for x in self.scored[v]:
                rules = by_head.get((v, x), [])
                reads = [comp.reads_itself(r) for r in rules]
                self.layout[v, x] = (self.biases.get(v, {}).get(x),
                                     [r for r, d in zip(rules, reads) if not d],
                                     [r for r, d in zip(rules, reads) if d])

    def decide(self, comp) -> None:
        """Decide component ``comp`` on every row: its variables' values join the
        environment, their preferred values (hard constraints ignored) are kept."""
        kb = self.kb
        if comp.variables[0] in kb.additive:   # decided alone: nothing reads or ties it
            self._add(comp)
            return
        values_of, assignments = self._values(comp)
        self._lay_out(comp, values_of)
        terms = ([b for v in comp.variables for b in self.biases.get(v, {}).values()]
                 + [self.weights[r.name] for r in comp.rules])
        scale = ScoreScale(terms)
        code_of = {v: dict(zip(values_of[v], _codes(kb, v, values_of[v]).tolist()))
                   for v in comp.variables}
        common = dict(comp=comp, assignments=assignments, code_of=code_of, layout=self.layout,
                      weights=self.weights, truth=self.truth, body=self.body, env=self.env,
                      defines=self.defines)
        choice, choice_free, have, unsure, part = _argmax(scale=scale, **common)
        if unsure is not None and unsure.any():  # float scores too close: redo exactly
            rows = np.flatnonzero(unsure)
            exact = _argmax(scale=ScoreScale(terms, exact=True), rows=rows, **common)
            choice[rows], choice_free[rows], have[rows] = exact[:3]
        self.partial.update(part)
        for v in comp.variables:
            self.scales[v] = scale
        if comp.constraints:
            none = ~have
            self.infeasible |= none
            choice = np.where(none, choice_free, choice)
        else:
            choice = choice_free
        for j, v in enumerate(comp.variables):
            codes = _codes(kb, v, [a[j] for a in assignments])
            self.env.values[v] = codes[choice]
            self.preferred[v] = codes[choice_free]

    def _add(self, comp) -> None:
        """An additive variable: its score, exactly, then its value (see
        :func:`~greybox.rules._decisions.additive_value`)."""
        (v,) = comp.variables
        b = self.biases.get(v, {}).get(True)
        scale = ScoreScale(([] if b is None else [b]) + [self.weights[r.name]
                                                          for r in comp.rules], exact=True)
        total = scale.fresh(0 if b is None else scale.of(b), self.n)
        for r in comp.rules:
            scale.add_where(total, scale.of(self.weights[r.name]), self.body(r))
        self.layout[v, True] = (b, list(comp.rules), [])
        self.partial[v, True] = total
        self.scored[v] = [True]
        self.scales[v] = scale
        value = additive_value(kb_type(self.kb, v), scale.to_float(total, self.n))
        self.env.values[v] = value
        self.preferred[v] = value

    def scores(self) -> dict:
        """Every decided variable's final scores (bool: of True; else one per value
        shown), with every decision known."""
        for r in self.kb.rules.values():
            self.body(r)
        n, scores = self.n, {}
        for name in self.kb.decided:
            t = self.kb.variables[name].type
            scale = self.scales[name]
            additive = name in self.kb.additive
            if isinstance(t, A.BoolType) or additive:
                shown = [True]
            elif domain(t).size <= MAX_ASSIGNMENTS:
                shown = domain(t).values
            else:  # every value left out scores 0
                shown = self.scored[name]
            for value in shown:
                label = name if isinstance(t, A.BoolType) or additive else f"{name}={value}"
                if (name, value) not in self.partial:
                    scores[label] = np.broadcast_to(0.0, (n,))
                    continue
                s = self.partial[name, value]
                for r in self.layout[name, value][2]:
                    s = _plus(scale, s, self.weights[r.name], self.bodies[r.name], n)
                scores[label] = scale.to_float(s, n)
        return scores

    def result(self) -> Evaluation:
        kb, index, env = self.kb, self.index, self.env
        scores = self.scores()
        violations = {c.name: ~self.truth(not_false(kb, c.formula), env)
                      for c in kb.constraints.values()}

        def frame(names, source):
            return pd.DataFrame({v: _decoded(kb, v, source[v], index) for v in names},
                                index=index)

        return Evaluation(
            kb=kb,
            index=index,
            preferred=frame(kb.decided, self.preferred),
            decisions=frame(kb.decided, env),
            values=frame(kb.defined, env),
            infeasible=pd.Series(self.infeasible, index=index, name="infeasible"),
            _bodies=self.bodies,
            _scores=scores,
            _violations=violations,
            _weights=self.weights,
            _env=env,
        )


def _argmax(*, comp, assignments, code_of, layout, weights, truth, body, env, defines, scale,
            rows=None):
    """A component's decision per row: the index of the best feasible assignment, of the
    best one ignoring hard constraints, whether any is feasible, the rows where float
    scores were too close to compare (None when exact), and the scores (without the
    dynamic rules) per (variable, value). ``rows``: only these rows."""
    kb, n = env.kb, env.n
    m = n if rows is None else len(rows)

    def sel(a):
        return a if rows is None or np.ndim(a) == 0 else np.asarray(a)[rows]

    partial = {}
    for v in comp.variables:
        for x in code_of[v]:
            if (v, x) not in layout:
                continue
            b, static, _ = layout[v, x]
            total = 0 if b is None else scale.of(sel(b))
            owned = False  # total is an array of ours, to add to in place
            for r in static:
                if not owned:
                    total, owned = scale.fresh(total, m), True
                scale.add_where(total, scale.of(weights[r.name]), sel(body(r)))
            partial[v, x] = total
    best_free = best = scale.full(0, m)
    have = np.zeros(m, bool)
    choice = np.zeros(m, np.int64)
    choice_free = np.zeros(m, np.int64)
    unsure = None if scale.mode != "float" else np.zeros(m, bool)
    for k, a in enumerate(assignments):
        sub = _Env(kb, {v: code_of[v][x] for v, x in zip(comp.variables, a)}, defines, n,
                   env.index, parent=env, fresh=comp.tainted)
        objective = 0
        for v, x in zip(comp.variables, a):
            if (v, x) not in partial:
                continue
            objective = objective + partial[v, x]
            for r in layout[v, x][2]:
                objective = _plus(scale, objective, weights[r.name],
                                  sel(truth(definite(kb, r.body), sub)), m)
        objective = scale.full(objective, m)
        if k == 0:
            best_free = objective
        else:
            if unsure is not None:
                unsure |= scale.close(objective, best_free)
            better_free = objective > best_free
            best_free = np.where(better_free, objective, best_free)
            choice_free[better_free] = k
        if comp.constraints:
            feasible = np.ones(m, bool)
            for c in comp.constraints:
                feasible &= sel(truth(not_false(kb, c.formula), sub))
            if unsure is not None:
                unsure |= feasible & have & scale.close(objective, best)
            better = feasible & (~have | (objective > best))
            best = np.where(better, objective, best)
            have |= feasible
            choice[better] = k
    return choice, choice_free, have, unsure, partial


def _plus(scale: ScoreScale, total, weight: float, body: np.ndarray, n: int) -> np.ndarray:
    """``total + weight * [body]`` as a new array of grains (``total`` is left alone)."""
    out = scale.fresh(total, n)
    scale.add_where(out, scale.of(weight), body)
    return out


def kb_type(kb, name: str):
    return kb.variables[name].type


def _frame(columns: dict, index, dtype) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(index=index)
    return pd.DataFrame({k: np.asarray(v, dtype=dtype) for k, v in columns.items()},
                        index=index)


def _signed(rule: A.Rule, value) -> float:
    return -rule.weight if rule.head.value is False else rule.weight


def _pushed(head: A.Head):
    """The value whose score a rule's head pushes (True for ``x`` and ``not x``)."""
    if isinstance(head.value, bool):
        return True
    return head.value.value if isinstance(head.value, A.Num) else head.value.name


def _codes(kb, name: str, values) -> np.ndarray:
    """Values of a decided variable as their codes (see :class:`~greybox.rules.ast.Domain`)."""
    return domain(kb.variables[name].type).codes(values)


def _decoded(kb, name: str, arr, index) -> pd.Series:
    return domain(kb.variables[name].type).series(arr, index=index, name=name)
