"""Turning user data (DataFrames, mappings of arrays and tensors) into checked tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, listed
from greybox.rules import ast as A
from greybox.rules.engine import (
    MISSING,
    align_labels,
    closure,
    crisp_truth,
    decode_bools,
    family_columns,
    kb_cached,
    missing_key,
    missing_values,
    placeholder,
)
from greybox.rules.engine import first_row as _first
from greybox.rules.engine import read_column as _column
from greybox.rules.engine import read_masked as _masked
from greybox.rules.engine import show_value as _show

from ._frame import FrameColumns, plain_column, plain_labels

# kb_cached (greybox.rules' one per-knowledge-base cache) is named here for its importers
__all__ = ["Batch", "kb_cached", "to_batch", "to_targets", "Targets"]

class Batch:
    """Checked inputs of ``n`` rows: a tensor per input variable (batch first), the row
    index, and the tabular columns as numpy (for crisp evaluation).

    A relational model has an input per grounded member (``friends(anna, bob)``): the
    values of many members are read at once as one tensor (:meth:`stacked`, computed once
    per batch), and :meth:`take` indexes those stacks, not every member (members are taken
    when read).

    Real inputs are float64 tensors, as ``predict`` reads them (the smooth semantics round
    only what they compute from them: a comparison's margin, a truth degree). A ``tensor``
    input keeps a floating-point dtype; given as integers it is int64 (token ids for an
    ``nn.Embedding``, exact beyond 2**24), as booleans float32."""

    __slots__ = ("values", "n", "_index", "_positions", "columns", "overrides", "_stacked",
                 "_taken_from", "_truths", "_float32")

    def __init__(self, values: Mapping[str, torch.Tensor], n: int, index: pd.Index,
                 columns: Mapping[str, np.ndarray], positions: torch.Tensor | None = None):
        self.values, self.n, self.columns = values, n, columns
        #: the rows' positions in ``_index`` (a long tensor), read on first use
        self._index, self._positions = index, positions
        #: network outputs to use instead of running the networks (constraint repair)
        self.overrides: dict[str, torch.Tensor] = {}
        self._stacked: dict[tuple[str, ...], torch.Tensor] = {}
        #: (the batch, the rows) this one was taken from: its stacks are taken from there
        self._taken_from: tuple[Batch, torch.Tensor] | None = None
        #: crisp truths of formulas by node identity: ``(node, 0/1 float32 tensor)``
        self._truths: dict[int, tuple] = {}
        self._float32: dict[str, torch.Tensor] = {}

    @property
    def index(self) -> pd.Index:
        """The rows' labels (as in the data)."""
        if self._positions is not None:
            self._index = self._index[self._positions.cpu().numpy()]
            self._positions = None
        return self._index

    def stacked(self, names: tuple[str, ...]) -> torch.Tensor:
        """The values of the inputs ``names`` stacked after the rows, shape (n, len(names),
        ...): computed once per batch (and carried by :meth:`take`)."""
        found = self._stacked.get(names)
        if found is None:
            if self._taken_from is not None:
                batch, rows = self._taken_from
                whole = batch.stacked(names)
                found = whole[rows if rows.device == whole.device else rows.to(whole.device)]
            else:
                found = torch.stack([self.values[k] for k in names], 1)
            self._stacked[names] = found
        return found

    def float32(self, name: str) -> torch.Tensor:
        """Input ``name`` rounded to float32 (a real input is held in float64): computed
        once per batch (and carried by :meth:`take`)."""
        found = self._float32.get(name)
        if found is None:
            if self._taken_from is not None:
                batch, rows = self._taken_from
                whole = batch.float32(name)
                found = whole[rows if rows.device == whole.device else rows.to(whole.device)]
            else:
                found = self.values[name].float()
            self._float32[name] = found
        return found

    def crisp_truth(self, kb, e, device: torch.device) -> torch.Tensor | None:
        """Whether formula ``e`` of ``kb`` holds on each row, as ``predict`` decides it
        (:func:`greybox.rules.engine.crisp_truth` on the checked columns: exact where float64
        arithmetic may round), as 0/1 float32 on ``device``; computed once per batch (and
        carried by :meth:`take`). None where the batch does not hold the columns of the
        inputs it reads (a batch made of tensors, as attributions build)."""
        found = self._truths.get(id(e))
        if found is not None and found[0] is e:
            return found[1]
        if self._taken_from is not None:
            batch, rows = self._taken_from
            whole = batch.crisp_truth(kb, e, device)
            if whole is None:
                return None
            out = whole[rows if rows.device == whole.device else rows.to(whole.device)]
        else:
            names = [n for n in closure(kb, A.variables(e)) if kb.variables[n].role == "input"]
            if not all(n in self.columns for n in names):
                return None
            truth = crisp_truth(kb, e, {n: self.columns[n] for n in names}, self.n,
                                index=self.index)
            out = torch.as_tensor(truth, device=device).to(torch.float32)
        self._truths[id(e)] = (e, out)
        return out

    def take(self, rows: torch.Tensor) -> Batch:
        """The rows at positions ``rows`` (a long tensor)."""
        cpu = rows.cpu().numpy() if self.columns else None
        positions = rows if self._positions is None else \
            self._positions[rows.to(self._positions.device)]
        taken = Batch(_Rows(self.values, rows), rows.shape[0], self._index,
                      _Rows(self.columns, cpu), positions)
        taken._taken_from = (self, rows)
        # the rows' overridden network outputs go with them (predict takes its rows in
        # chunks; a counterfactual's batch holds its neural concepts by overrides)
        taken.overrides = {k: v[rows if rows.device == v.device else rows.to(v.device)]
                           for k, v in self.overrides.items()}
        return taken

    def own(self) -> Batch:
        """This batch with its own copy of every value and column: what is kept beyond
        the call that read the data (an explanation), so that editing the caller's frame
        or arrays afterwards cannot change what it explains (a float column is read as a
        view of the caller's memory)."""
        owned = Batch({k: v.clone() for k, v in self.values.items()}, self.n, self._index,
                      {k: np.array(v, copy=True) for k, v in self.columns.items()},
                      self._positions)
        owned.overrides = {k: v.clone() for k, v in self.overrides.items()}
        return owned

    @classmethod
    def from_codes(cls, kb, columns: Mapping[str, np.ndarray], n: int, *,
                   device: torch.device | str = "cpu", index: pd.Index | None = None) -> Batch:
        """A batch of ``n`` rows of table inputs given as codes (``Domain``'s convention;
        an optional input's missing cells as a bool column ``missing_key(name)``): what
        :func:`to_batch` reads from the values they stand for. The codes are trusted.

        Examples
        --------
        >>> import numpy as np, greybox as gb
        >>> model = gb.GreyBox("input x: int 0..9  input k: {a, b}  output y: bool  "
        ...                    "rule r: x > 3 and k == b -> y", semantics="product")
        >>> batch = gb.Batch.from_codes(model.kb, {"x": np.array([5, 5]),
        ...                                        "k": np.array([0, 1])}, 2)
        >>> model.predict(batch)["y"].tolist()
        [False, True]
        """
        values, cols = {}, {}
        for name, col in columns.items():
            var = kb.variables.get(name)
            if var is None:   # an optional input's missing cells
                cols[name] = np.asarray(col, dtype=bool)
                values[name] = torch.as_tensor(cols[name].astype(np.float32), device=device)
                continue
            t = var.type
            cols[name] = np.asarray(col, dtype=np.int64 if isinstance(t, A.EnumType) else
                                    bool if isinstance(t, A.BoolType) else np.float64)
            values[name] = torch.as_tensor(np.array(cols[name], dtype=_dtype(t)), device=device)
        return cls(values, n, pd.RangeIndex(n) if index is None else index, cols)

    def variants(self, kb, row: int, changes: list[Mapping]) -> Batch:
        """``len(changes)`` copies of row ``row``, each with the table inputs named in its
        mapping set to those codes (``MISSING``: a missing value; an int's code rounded):
        the rows a formal explanation replays, as codes. :attr:`overrides` stay behind.

        Examples
        --------
        >>> import greybox as gb
        >>> model = gb.GreyBox("input x: int 0..9  input k: {a, b}  output y: bool  "
        ...                    "rule r: x > 3 and k == b -> y", semantics="product")
        >>> batch = model.batch({"x": [1], "k": ["a"]})
        >>> rows = batch.variants(model.kb, 0, [{}, {"x": 5.2, "k": 1}])
        >>> rows.columns["x"].tolist(), rows.columns["k"].tolist()
        ([1.0, 5.0], [0, 1])
        """
        base = self.take(torch.full((len(changes),), int(row), dtype=torch.long))
        values = {name: base.values[name] for name in self.values}
        columns = {name: np.array(base.columns[name]) for name in self.columns}
        for name in {n for c in changes for n in c}:
            t = kb.variables[name].type
            col, d = columns[name], A.domain(t)
            miss = columns.get(missing_key(name))
            for i, c in enumerate(changes):
                if name not in c:
                    continue
                if c[name] is MISSING:
                    miss[i], col[i] = True, d.code(placeholder(t))
                    continue
                col[i] = d.code(d.decode(c[name]))
                if miss is not None:
                    miss[i] = False
            device = values[name].device
            values[name] = torch.as_tensor(np.array(col, dtype=_dtype(t)), device=device)
            if miss is not None:
                values[missing_key(name)] = torch.as_tensor(miss.astype(np.float32),
                                                            device=device)
        return Batch(values, len(changes), base.index, columns)

class _Rows(Mapping):
    """Some rows of each value of a mapping, each taken when first read."""

    __slots__ = ("_source", "_rows", "_done")

    def __init__(self, source: Mapping, rows):
        self._source, self._rows, self._done = source, rows, {}

    def __getitem__(self, key):
        found = self._done.get(key)
        if found is None:
            v, rows = self._source[key], self._rows
            if isinstance(rows, torch.Tensor) and rows.device != v.device:
                rows = self._rows = rows.to(v.device)
            found = self._done[key] = v[rows]
        return found

    def __iter__(self):
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, key) -> bool:
        return key in self._source


def _length(name, value) -> int:
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            raise DataError(f"input {name!r}: expected one value per row, got a scalar tensor")
        return value.shape[0]
    if _single(value):
        raise DataError(f"input {name!r}: expected one value per row, got the single value "
                        f"{value!r} (a mapping of single values is one row only when every "
                        "input is a single value)")
    return len(value)


def _single(value) -> bool:
    """Whether ``value`` is one value (not one per row); a ragged list is not."""
    try:
        return np.ndim(value) == 0
    except ValueError:   # numpy cannot size a ragged list: rows, read (and refused) later
        return False


def _as_items(data) -> tuple[dict, pd.Index | None]:
    if isinstance(data, Batch):
        return data, None
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            dup = data.columns[data.columns.duplicated()][0]
            raise DataError(f"column {dup!r} appears more than once")
        return FrameColumns(data), data.index
    if isinstance(data, Mapping):
        if data and all(_single(v) for v in data.values()):
            return {k: [v] for k, v in data.items()}, None   # a mapping of scalars: one row
        return dict(data), None
    raise DataError(f"data must be a pandas DataFrame or a mapping of input name -> values, "
                    f"got {type(data).__name__}")


def to_batch(kb, data, device: torch.device, *, needed=None) -> Batch:
    """Read every input variable of ``kb`` from ``data`` onto ``device``.

    Tabular inputs go through the same checks as crisp evaluation (types, domains, NaN:
    errors name the column and the first bad row); tensor inputs must agree on the number
    of rows and, when declared with a shape, on the shape of one example.
    """
    items, index = _as_items(data)
    if isinstance(items, Batch):
        return items
    items = family_columns(kb, items)  # a whole family under its name: its members
    frame = isinstance(items, FrameColumns)   # a DataFrame's columns, all of its length
    names = kb_cached(kb, "inputs", lambda kb: tuple(kb.inputs)) if needed is None \
        else list(needed)
    lengths = {}
    for name in names:
        if name not in items:
            close = [c for c in items if isinstance(c, str) and c.lower() == name.lower()]
            hint = f"; found {close[0]!r}" if close else ""
            raise DataError(f"missing input {name!r}{hint} (inputs: {listed(kb.inputs)})")
        lengths[name] = len(data) if frame else _length(name, items[name])
    if len(set(lengths.values())) > 1:
        raise DataError(f"inputs have different numbers of rows: {lengths}")
    n = next(iter(lengths.values()), 0) if lengths else (len(index) if index is not None else 0)
    if index is None:
        index = pd.RangeIndex(n)
    values, columns = {}, {}
    for name in names:
        var = kb.variables[name]
        if isinstance(var.type, A.TensorType):
            values[name] = _tensor_input(name, var.type, items[name], device, index)
            continue
        if frame and not var.optional and isinstance(var.type, A.EnumType):
            codes = plain_labels(var.type, items.labels(name))
            if codes is not None:   # every cell one of the labels
                columns[name] = codes
                values[name] = torch.from_numpy(codes.copy()).to(device)
                continue
        col = items.table(name) if frame else items[name]
        if isinstance(col, torch.Tensor):
            col = col.detach().cpu().numpy()
        if var.optional:   # its values (a placeholder where missing) and its mask
            arr, miss = _masked(var, col, index)
            key = missing_key(name)
            columns[key] = miss
            values[key] = torch.as_tensor(miss.astype(np.float32), device=device)
        else:
            arr = plain_column(var, col)
            if arr is None:
                arr = _column(var, col, index)
        columns[name] = arr
        # a copy: the checked column may be a view of the caller's data
        values[name] = torch.from_numpy(np.array(arr, dtype=_dtype(var.type))).to(device)
    return Batch(values, n, index, columns)


def _dtype(t) -> type:
    """How a table input is held: enums as codes; reals in float64, as ``predict`` reads
    them; integers beyond float32's exact ones (2**24) in float64; bools and other
    integers in float32 (exact)."""
    if isinstance(t, A.EnumType):
        return np.int64
    if isinstance(t, A.RealType) or (isinstance(t, A.IntType) and
                                     max(abs(t.lo), abs(t.hi)) > 2 ** 24):
        return np.float64
    return np.float32


def _too_large(values) -> int | None:
    """Position of the first value (or row of values) too large for a float64."""
    for i, v in enumerate(values):
        try:
            np.asarray(v, dtype=np.float64)
        except OverflowError:
            return i
        except (TypeError, ValueError):
            continue
    return None


def _shown(value) -> str:
    """A cell for a message; a huge integer by its size rather than its digits."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = int(value)
        if v.bit_length() > 96:
            return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"
    return _show(value)


def _overflow(name, col, index: pd.Index) -> DataError:
    pos = _too_large(col)
    where = "a row" if pos is None else _first(np.arange(len(col)) == pos, index)[0]
    return DataError(f"input {name!r}: a number at {where} is too large for a float (beyond "
                     "±1.8e308)")


def _tensor_input(name, t: A.TensorType, col, device, index: pd.Index) -> torch.Tensor:
    if isinstance(col, pd.Series):
        col = np.stack([np.asarray(v) for v in col]) if len(col) else np.zeros((0,))
    if not isinstance(col, torch.Tensor) and np.asarray(col).dtype == object:
        try:  # Python numbers, which torch does not take in an object array
            col = torch.as_tensor(np.asarray(col, dtype=np.float64),
                                  dtype=torch.get_default_dtype())
        except (TypeError, ValueError):
            pass  # reported by torch below
        except OverflowError:
            raise _overflow(name, col, index) from None
    try:
        x = torch.as_tensor(col)
    except OverflowError:
        raise _overflow(name, col, index) from None
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"input {name!r}: cannot make a tensor of {type(col).__name__}: {err}") \
            from None
    if x.is_complex():
        raise DataError(f"input {name!r}: a complex tensor ({x.dtype}); tensor inputs are "
                        "real numbers, integers or booleans")
    if x.dtype == torch.bool:
        x = x.to(torch.float32)
    elif not torch.is_floating_point(x):
        x = x.to(torch.int64)   # token ids for an nn.Embedding, exact beyond 2**24
    if t.shape is not None and tuple(x.shape[1:]) != tuple(t.shape):
        raise DataError(f"input {name!r}: each row must have shape {list(t.shape)}, got "
                        f"{list(x.shape[1:])} (tensor of shape {list(x.shape)})")
    _check_finite(name, x, index)
    return x.to(device)


def _check_finite(name: str, x: torch.Tensor, index: pd.Index) -> None:
    """A DataError naming the first row (by its label) and entry holding a NaN or an
    infinity: a network would turn it into a decision (NaN logits argmax to 0)."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = (~finite).reshape(x.shape[0], -1)   # one row of entries per data row
    row = int(bad.any(1).nonzero()[0, 0])
    col = int(bad[row].nonzero()[0, 0])
    value = float(x[row].reshape(-1)[col])
    where, _ = _first(np.arange(x.shape[0]) == row, index)
    entry = "" if x.dim() == 1 else \
        f", entry [{', '.join(str(int(i)) for i in np.unravel_index(col, x.shape[1:]))}]"
    what = "a missing value (NaN)" if value != value else f"an infinite value ({value})"
    raise DataError(f"input {name!r}: {what} at {where}{entry}; tensor inputs must be finite")


@dataclass
class Targets:
    """Labels per supervised variable: ``values`` (long value indices, or float for bool
    and real variables) and ``mask`` (False where the label is missing). ``stacks``: the
    labels of the bool members of one family (``smokes(anna)``, ``smokes(bob)``...) also
    as one tensor, ``(names, values (n, M), mask (n, M))``, for the loss to take at once;
    :meth:`take` indexes those, and each member only when read."""

    values: Mapping[str, torch.Tensor]
    mask: Mapping[str, torch.Tensor]
    stacks: tuple[tuple[tuple[str, ...], torch.Tensor, torch.Tensor], ...] = ()
    #: the variables labelled on every row (known when the labels are read, kept by
    #: ``take``: the loss then needs no look at the mask)
    complete: frozenset = frozenset()

    def take(self, rows: torch.Tensor) -> Targets:
        return Targets(_Rows(self.values, rows), _Rows(self.mask, rows),
                       tuple((names, v[rows.to(v.device)], m[rows.to(m.device)])
                             for names, v, m in self.stacks), self.complete)

    def to(self, device) -> Targets:
        return Targets({k: v.to(device) for k, v in self.values.items()},
                       {k: v.to(device) for k, v in self.mask.items()},
                       tuple((names, v.to(device), m.to(device))
                             for names, v, m in self.stacks), self.complete)


def _missing(arr: np.ndarray) -> np.ndarray:
    return missing_values(arr)   # NaN, None, NA, a blank text: as the debugger's targets


def to_targets(kb, targets, n: int, *, index: pd.Index | None = None,
               default: str | None = None) -> Targets:
    """Labels for any variable: outputs, defined or neural variables (missing labels, NaN
    or None, are masked out). A bare array or Series labels ``default``."""
    items = _label_items(kb, targets, default)
    rows = index if index is not None else targets.index if isinstance(
        targets, (pd.DataFrame, pd.Series)) and len(targets.index) == n else pd.RangeIndex(n)
    values, masks = {}, {}
    for name, col in items.items():
        var = _supervised(kb, name)
        arr = _label_array(name, align_labels(f"labels of {name!r}", col, index), n)
        miss = _missing(arr)
        if isinstance(var.type, A.EnumType):
            values[name] = _enum_labels(name, var.type, arr, miss, rows)
        else:
            values[name] = _number_labels(name, var.type, arr, miss, rows,
                                          additive=name in kb.additive)
        masks[name] = torch.as_tensor(~miss)
    return Targets(values, masks, _label_stacks(kb, values, masks),
                   frozenset(n for n, m in masks.items() if bool(m.all())))


#: fewest labelled members of a family worth a stack
MIN_LABEL_STACK = 4


def _label_stacks(kb, values: dict, masks: dict) -> tuple:
    """The labels of each family's bool members (not inputs), stacked."""
    found = []
    for family in kb.families.values():
        if family.kind not in ("neural", "define", "output"):
            continue
        names = tuple(m for m in family.members.values() if m in values)
        if len(names) < MIN_LABEL_STACK or not isinstance(kb.variables[names[0]].type,
                                                          A.BoolType):
            continue
        found.append((names, torch.stack([values[m] for m in names], 1),
                      torch.stack([masks[m] for m in names], 1)))
    return tuple(found)


def _label_items(kb, targets, default: str | None) -> dict:
    """Labels by variable name (a whole family's under its name split into members)."""
    if isinstance(targets, pd.DataFrame):
        items = {c: targets[c] for c in targets.columns}
    elif isinstance(targets, Mapping):
        items = dict(targets)
    else:
        if default is None:
            raise DataError("targets must be a mapping of variable name -> labels when the "
                            f"model has several outputs ({listed(kb.outputs)})")
        items = {default: targets}
    return dict(family_columns(kb, items))


def _supervised(kb, name: str):
    """The variable labels name, which must be one a model can be taught."""
    var = kb.variables.get(name)
    if var is None:
        raise DataError(f"targets name {name!r}, which is not a variable "
                        f"(outputs: {listed(kb.outputs)})")
    if isinstance(var.type, A.TensorType) or var.role == "input":
        raise DataError(f"targets name {name!r}, an input: only neural, defined and "
                        "decided variables can be supervised")
    return var


def _label_array(name: str, col, n: int) -> np.ndarray:
    if isinstance(col, torch.Tensor):
        col = col.detach().cpu().numpy()
    if isinstance(col, pd.Series):
        col = (col.astype(object).to_numpy() if isinstance(col.dtype, pd.CategoricalDtype)
               else col.to_numpy())
    arr = np.asarray(col)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"labels of {name!r} must be one per row: expected shape ({n},), "
                        f"got {arr.shape}")
    return arr


def _enum_labels(name: str, t: A.EnumType, arr, miss, rows) -> torch.Tensor:
    codes = pd.Index(list(t.values), dtype=object).get_indexer(arr.astype(object))
    bad = (codes < 0) & ~miss
    if bad.any():
        where, pos = _first(bad, rows)
        raise DataError(f"labels of {name!r}: {_show(arr[pos])} at {where} is not one of "
                        f"{{{listed(t.values)}}}")
    return torch.as_tensor(np.where(miss, 0, codes), dtype=torch.long)


def _number_labels(name: str, t, arr, miss, rows, *, additive: bool = False) -> torch.Tensor:
    """Bool, int (as value indices; an additive int's as values) or real labels, checked
    against the type."""
    if isinstance(t, A.BoolType):   # bools, 1/0, "yes"/"no"...: the debugger's decoder
        num, bad = decode_bools(arr, miss)
        if bad.any():
            where, pos = _first(bad, rows)
            raise DataError(f"labels of {name!r}: expected true/false, got "
                            f"{_shown(arr[pos])} at {where} (True/False, 1/0 or yes/no)")
        return torch.as_tensor(num, dtype=torch.float32)
    if A.big_int(t):   # beyond ±2**53: Python ints, never through float64 or int64
        from ._bigint import big_labels

        return big_labels(name, t, arr, miss, rows)
    num = np.zeros(len(arr), np.float64)
    ok = ~miss
    try:
        num[ok] = arr[ok].astype(np.float64)
    except OverflowError:
        pos = int(np.flatnonzero(ok)[_too_large(arr[ok]) or 0])
        where, _ = _first(np.arange(len(arr)) == pos, rows)
        raise DataError(f"labels of {name!r}: {_shown(arr[pos])} at {where} is too "
                        "large for a float (beyond ±1.8e308)") from None
    except (TypeError, ValueError):
        raise DataError(f"labels of {name!r} must be numbers or booleans, got dtype "
                        f"{arr.dtype}") from None
    if isinstance(t, A.IntType):
        bad = ok & ((num != np.floor(num)) | (num < t.lo) | (num > t.hi))
        if bad.any():
            where, pos = _first(bad, rows)
            raise DataError(f"labels of {name!r}: {_show(arr[pos])} at {where} is not in "
                            f"int {t.lo}..{t.hi}")
        if additive:   # a number the rules add up: its value, for the regression loss
            return torch.as_tensor(np.where(ok, num, 0.0), dtype=torch.float32)
        return torch.as_tensor(np.where(ok, num - A.domain(t).offset, 0),
                               dtype=torch.long)   # codes -> indices
    bad = ok & ~np.isfinite(num)
    if bad.any():
        where, _ = _first(bad, rows)
        raise DataError(f"labels of {name!r}: infinite value at {where}")
    big = ok & (np.abs(num) > np.finfo(np.float32).max)
    if big.any():
        where, pos = _first(big, rows)
        raise DataError(f"labels of {name!r}: {_show(arr[pos])} at {where} is "
                        "beyond float32 (±3.4e38), in which the model trains")
    return torch.as_tensor(num, dtype=torch.float32)
