"""The debugger's correct answers: targets decoded like the output's type (a missing or
undecodable one is refused naming its row), the training rows for TracIn, the tolerance
of a number output, and row labels that name one row each."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, ModelError
from greybox.rules import ast as A
from greybox.rules.engine import align_labels, decode_bools, family_columns, missing_values

from ._show import _cell


def _check_tol(tol) -> float:
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        tol = float("nan")
    if not (np.isfinite(tol) and tol >= 0):
        raise ModelError(f"tol must be a number >= 0, got {tol!r}")
    return tol


def _tolerance(dbg, var, tol) -> float:
    """The tolerance of a number output (see ``tol``); 0 for a class."""
    if not dbg.numeric:
        if tol is not None:
            raise ModelError(f"tol is for outputs that are numbers; {dbg.output!r} is "
                             "compared exactly")
        return 0.0
    if tol is not None:
        return _check_tol(tol)
    if isinstance(var.type, A.IntType):
        return 0.0
    y = np.asarray(dbg.target, dtype=np.float64)
    return float(0.1 * y.std()) if len(y) > 1 else 0.0


def _training_set(model, var, train) -> tuple:
    """``(batch, targets)`` of ``train=(data, targets)``: the rows labelled for ``var``
    and their labels decoded like the debugger's targets."""
    if not isinstance(train, (tuple, list)) or len(train) != 2:
        raise DataError(f"train= is (data, targets), the training rows and their labels; "
                        f"got {type(train).__name__}")
    data, targets = train
    batch = model.batch(data)
    if isinstance(targets, Mapping):
        columns = family_columns(model.kb, dict(targets))   # a family under its name
        if var.name not in columns:
            shown = ", ".join(map(repr, list(targets)[:5]))
            raise DataError(f"train= labels name no {var.name!r} (they name {shown})")
        targets = columns[var.name]
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = align_labels("train= labels", targets, batch.index)   # by row label
    y = targets.astype(object).to_numpy() if isinstance(targets, (pd.Series, pd.Index)) \
        else np.asarray(targets)
    if y.shape != (batch.n,):
        raise DataError(f"train= labels of {var.name!r} must have one value per training "
                        f"row: expected shape ({batch.n},), got {y.shape}")
    labelled = np.flatnonzero(~missing_values(y))
    if not len(labelled):
        raise DataError(f"train= has no label of {var.name!r}: no training row to blame")
    batch = batch.take(torch.as_tensor(labelled))
    return batch, _decode_targets(var, y[labelled], batch.index)


def _unique_labels(index: pd.Index) -> None:
    """A DataError naming the labels that more than one row of the data carries: the
    debugger names rows by their labels (failures, blame, what-if)."""
    if index.is_unique:
        return
    dup = index[index.duplicated()].unique()
    shown = ", ".join(_cell(v) for v in dup[:5]) + (f", ... ({len(dup)} in all)"
                                                    if len(dup) > 5 else "")
    raise DataError(f"the data's index labels {shown} name more than one row: the debugger "
                    "names rows by their labels; give each row its own (e.g. "
                    "data.reset_index(drop=True))")


def _as_int(value):
    """An integral number (or its string) as an int; None when it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if np.isfinite(value) and float(value).is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if np.isfinite(number) and number.is_integer() else None
    return None


def _as_real(value):
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if np.isfinite(number) else None


def _decode_targets(var, targets, index: pd.Index) -> np.ndarray:
    """The debugger's targets decoded like ``var``'s type (see :class:`Debugger`): bool,
    int64 or float64 arrays, or the value names of an enum; a missing or undecodable
    target is a DataError naming its row by the data's index label."""
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = align_labels("targets", targets, index)   # a Series: by the data's row labels
    if isinstance(targets, (pd.Series, pd.Index)):   # nullable and categorical as objects
        y = targets.to_numpy() if isinstance(targets.dtype, np.dtype) else \
            targets.astype(object).to_numpy()
    else:
        y = np.asarray(targets)
    n = len(index)
    if y.shape != (n,):
        raise DataError(f"targets must have one value per row: expected shape ({n},), got "
                        f"{y.shape}")
    t = var.type
    name = var.name
    missing = missing_values(y)
    if isinstance(t, A.BoolType):   # the decoder of fit's labels
        decoded, bad = decode_bools(y, missing)
        _refuse(name, y, index, np.flatnonzero(missing), np.flatnonzero(bad),
                "true/false (True/False, 1/0, yes/no)")
        return decoded.astype(bool)
    if isinstance(t, A.IntType):
        def decode(v):
            number = _as_int(v)
            return number if number is not None and t.lo <= number <= t.hi else None

        expected, dtype = f"an integer in {t.lo}..{t.hi}", np.int64
    elif isinstance(t, A.EnumType):
        names = set(t.values)

        def decode(v):
            name = v.strip() if isinstance(v, str) else None
            return name if name in names else None

        expected, dtype = f"one of {{{', '.join(t.values)}}}", object
    else:
        expected, decode, dtype = "a finite number", _as_real, np.float64
    if y.dtype.kind in "iuf" and dtype is not object:   # numbers, checked at numpy speed
        num = y.astype(np.float64)
        if isinstance(t, A.IntType):
            ok = np.isfinite(num) & (num == np.floor(num)) & (num >= t.lo) & (num <= t.hi)
        else:
            ok = np.isfinite(num)
        _refuse(name, y, index, np.flatnonzero(missing), np.flatnonzero(~ok & ~missing),
                expected)
        return (y if y.dtype.kind in "iu" else num).astype(dtype)
    out, bad = [], []
    for pos, v in enumerate(y):
        decoded = None if missing[pos] else decode(v)
        if decoded is None and not missing[pos]:
            bad.append(pos)
        out.append(decoded)
    _refuse(name, y, index, np.flatnonzero(missing), bad, expected)
    return np.array(out, dtype=dtype)


def _refuse(name: str, y, index: pd.Index, missing, bad, expected: str) -> None:
    """Raise for the first missing target, else for the first undecodable one."""
    if len(missing):
        more = f" (and {len(missing) - 1} more row(s))" if len(missing) > 1 else ""
        raise DataError(f"target of {name!r} is missing at row {_cell(index[missing[0]])}{more}: "
                        "the debugger needs the correct answer of every row; drop or fill in "
                        "the unlabelled rows first")
    if len(bad):
        more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
        raise DataError(f"target of {name!r}: {_cell(y[bad[0]])} at row "
                        f"{_cell(index[bad[0]])}{more} is not {expected}")
