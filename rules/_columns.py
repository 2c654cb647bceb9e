"""Reading a table's columns as codes: every column checked against its variable's type
(domains, missing cells, exact integers); the messages name the column and the row."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from greybox.errors import DataError, listed

from . import _ast as A
from ._decisions import closure, memo
from ._domain import domain
from ._ground import family_columns
from ._kb import KnowledgeBase
from ._missing import missing_key, placeholder

__all__ = ["BOOL_TEXTS", "align_labels", "decode_bools", "first_row", "missing_values",
           "prepare_columns", "read_column", "read_masked", "show_value"]


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
    if isinstance(col, np.ndarray) and col.dtype.kind in "fiub":   # numbers: numpy's speed
        return np.isnan(col).reshape(-1) if col.dtype.kind == "f" else np.zeros(col.size, bool)
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
    if isinstance(col, pd.Series) and isinstance(col.dtype, np.dtype) \
            and col.dtype.kind in "fiub":
        col = col.to_numpy()   # plain numbers, read at numpy's speed (``index`` names rows)
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


class _FrameColumns(Mapping):
    """A DataFrame's columns by name, each taken out on first use: a column of plain
    numbers as the frame's own values (a read-only array: its readers turn such a Series
    into that array first), any other as its Series."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.made = frame, {}
        self.at = {c: i for i, c in enumerate(frame.columns)}

    def __getitem__(self, name):
        found = self.made.get(name)
        if found is None:
            get = getattr(self.frame, "_get_column_array", None)   # pandas': no Series made
            found = None if get is None else get(self.at[name])
            if isinstance(found, np.ndarray) and found.dtype.kind in "fiub" \
                    and found.ndim == 1:
                found = found.view()
                found.flags.writeable = False
            else:
                found = self.frame[name]
            self.made[name] = found
        return found

    def __iter__(self):
        return iter(self.at)

    def __len__(self) -> int:
        return len(self.at)


def _as_table(data) -> tuple[Mapping, pd.Index]:
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            dup = data.columns[data.columns.duplicated()][0]
            raise DataError(f"column {dup!r} appears more than once")
        return _FrameColumns(data), data.index
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
