"""A DataFrame's columns as :func:`greybox._batch.to_batch` reads them: by name, each
taken when first read, and -- where every cell is plainly valid -- plain numbers and
enum labels read at once, without a Series (a Series and the engine's per-column checks
are most of ``predict``'s cost on a small frame). Anything else is left to the engine's
reader (:func:`greybox.rules.engine.read_column`), which names what is wrong."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from greybox.rules import ast as A

__all__ = ["FrameColumns", "plain_column", "plain_labels"]


class FrameColumns(Mapping):
    """A DataFrame's columns by name, each taken when first read: a frame of many columns
    of which the model reads a few pays for those few. :meth:`table` gives a column of
    plain numbers as its numpy values, without a Series (pandas' ``frame[name]`` is most
    of the cost of reading a small frame)."""

    __slots__ = ("_frame", "_taken")

    def __init__(self, frame: pd.DataFrame):
        self._frame, self._taken = frame, {}

    def __getitem__(self, key):
        if key not in self._taken:
            self._taken[key] = self._frame[key]
        return self._taken[key]

    def table(self, key):
        """Column ``key`` as crisp evaluation reads it: the values of a column of plain
        numpy numbers (bool, int, float; what :func:`read_column` turns such a Series
        into, read-only as pandas' copy-on-write hands it), else the Series."""
        if key in self._taken:
            return self._taken[key]
        frame = self._frame
        try:
            arr = frame._get_column_array(frame.columns.get_loc(key))
        except Exception:   # pandas without it (its internals): the Series
            return self[key]
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "biuf":
            return self[key]
        arr = arr.view()
        arr.flags.writeable = False   # a view of the caller's frame
        return arr

    def labels(self, key) -> np.ndarray | None:
        """The cells of text column ``key`` (object or string dtype, not categorical) as
        an object array, without a Series; None for any other column."""
        frame = self._frame
        try:
            arr = frame._get_column_array(frame.columns.get_loc(key))
        except Exception:   # pandas without it (its internals)
            return None
        if isinstance(arr, np.ndarray):
            return arr if arr.dtype == object and arr.ndim == 1 else None
        if not isinstance(getattr(arr, "dtype", None), pd.StringDtype):
            return None
        return np.asarray(arr, dtype=object)

    def __iter__(self):
        return iter(self._frame.columns)

    def __len__(self) -> int:
        return len(self._frame.columns)

    def __contains__(self, key) -> bool:
        return key in self._frame.columns


def plain_labels(t: A.EnumType, cells: np.ndarray | None) -> np.ndarray | None:
    """What :func:`~greybox.rules.engine.read_column` returns for a text column of an
    enum input whose every cell is one of its labels -- their codes (int64) -- without
    its search for missing cells; None where the engine is to read it."""
    if cells is None:
        return None
    codes = A.domain(t).indices(cells)
    return codes if (codes >= 0).all() else None


def plain_column(var, col) -> np.ndarray | None:
    """What :func:`~greybox.rules.engine.read_column` returns for a float64 column of a
    real or int input -- the column itself -- where every cell is a number within the
    type, checked at once (the engine's per-column checks cost ~15 µs a column); None
    where the engine is to read it (and name what is wrong)."""
    t = var.type
    if not isinstance(col, np.ndarray) or col.dtype != np.float64 or col.ndim != 1 \
            or not isinstance(t, (A.RealType, A.IntType)) or not np.isfinite(col).all():
        return None
    if isinstance(t, A.IntType):
        if (col != np.floor(col)).any():
            return None
    elif t.lo is None:
        return col
    return None if ((col < t.lo) | (col > t.hi)).any() else col
