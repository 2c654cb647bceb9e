"""One :class:`Domain` per type: a type's values and the one way each is written down.

A value of a non-tensor type has two encodings, each defined here and nowhere else:

- its **index**: its place in the domain order (False before True; ``lo`` first for an
  int; declaration order for an enum), ``0 .. size - 1``. Networks' outputs, one-hot
  vectors, distributions, the model's label tensors and tie-breaking ranks use it.
- its **code**: the number arithmetic, comparisons and solvers see. A bool's code is the
  bool itself, an int's its value, an enum's its index, a real's the real. Crisp
  evaluation, Z3, the MILP and the formal explanations' facts use it; a grey-box model's
  decision function hands its rows to the rules engine as codes
  (:func:`~greybox.rules.engine.evaluate_codes`), labels only where data comes in and
  predictions go out.

The two meet only for enums (code == index); an int's index is ``code - lo``. Every
conversion between a value, its index and its code goes through a :class:`Domain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from . import _ast as A

__all__ = ["BIG_INT", "Domain", "big_int", "domain"]

#: integers beyond this magnitude are *big*: float64 does not hold them all, so a big int
#: variable's values are exact Python ints (numpy object arrays), never float64 or int64
BIG_INT = 2 ** 53


def big_int(t) -> bool:
    """Whether ``t`` is an int type reaching beyond ±2**53 (:data:`BIG_INT`): its values
    are held as Python ints (object arrays), exactly.

    >>> from greybox.rules import ast
    >>> big_int(ast.IntType(0, 10 ** 30)), big_int(ast.IntType(0, 2 ** 53))
    (True, False)
    """
    return isinstance(t, A.IntType) and max(abs(t.lo), abs(t.hi)) > BIG_INT


@lru_cache(maxsize=1024)
def domain(t) -> Domain:
    """The :class:`Domain` of type ``t`` (bool, int, enum or real; not tensor)."""
    return Domain(t)


class Domain:
    """The values of a bool, int, enum or real type, their indices and their codes.

    Examples
    --------
    >>> from greybox.rules import ast
    >>> d = ast.domain(ast.IntType(3, 5))
    >>> d.size, list(d.values), d.index(4), d.value(2)
    (3, [3, 4, 5], 1, 5)
    >>> d.code(4), d.decode(4), int(d.index_of(np.array([5]))[0])
    (4, 4, 2)
    >>> c = ast.domain(ast.EnumType(("lo", "mid", "hi")))
    >>> c.code("hi"), c.decode(1), list(c.series(np.array([2, 0])))
    (2, 'mid', ['hi', 'lo'])
    """

    __slots__ = ("type", "finite", "_lo", "_place", "big")

    def __init__(self, t):
        if isinstance(t, A.TensorType) or not isinstance(t, (A.BoolType, A.IntType,
                                                              A.EnumType, A.RealType)):
            raise TypeError(f"{t!r} has no domain of values")
        self.type = t
        self.finite = not isinstance(t, A.RealType)
        self._lo = t.lo if isinstance(t, A.IntType) else 0
        self._place = ({v: i for i, v in enumerate(t.values)}
                       if isinstance(t, A.EnumType) else None)
        #: an int type beyond ±2**53: indices and codes are Python ints (object arrays)
        self.big = big_int(t)

    def __repr__(self) -> str:
        return f"Domain({self.type!r})"

    # ------------------------------------------------------------------ the values
    @property
    def size(self) -> int:
        """The number of values (finite types only)."""
        t = self._finite()
        return 2 if isinstance(t, A.BoolType) else t.size

    @property
    def values(self) -> Sequence:
        """The values in domain order (a ``range`` for an int: a billion values cost
        nothing)."""
        return A.domain_values(self._finite())

    @property
    def offset(self) -> int:
        """``code - index``, the same for every value of a finite type (an int's lower
        bound; 0 for a bool or an enum): ``indices + offset`` are codes, also on tensors."""
        self._finite()
        return self._lo

    def _finite(self):
        if not self.finite:
            raise TypeError(f"{self.type!r} is not a finite type")
        return self.type

    # ---------------------------------------------------------------------- indices
    def index(self, value) -> int:
        """The place of ``value`` in the domain order (its tie-breaking rank)."""
        t = self._finite()
        if isinstance(t, A.BoolType):
            return int(bool(value))
        if isinstance(t, A.IntType):
            return int(value) - t.lo
        return self._place[value]

    def value(self, index: int):
        """The value at place ``index`` of the domain order."""
        t = self._finite()
        if isinstance(t, A.BoolType):
            return bool(index)
        if isinstance(t, A.IntType):
            return t.lo + int(index)
        return t.values[int(index)]

    def indices(self, values) -> np.ndarray:
        """Values (a column, a list; enums as labels) as their indices (int64; -1 for
        what is not one of an enum's labels)."""
        t = self._finite()
        if isinstance(t, A.EnumType):
            labels = values.astype(object) if isinstance(values, pd.Series) else values
            labels = np.asarray(labels, dtype=object)
            if labels.size <= 64:   # a few rows: a dict look-up each, no index built
                try:
                    return np.fromiter((self._place.get(v, -1) for v in labels.ravel()),
                                       np.int64, labels.size).reshape(labels.shape)
                except TypeError:   # an unhashable cell: pandas says it is no label
                    pass
            return pd.Index(list(t.values), dtype=object).get_indexer(labels).astype(np.int64)
        arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
        if self.big:
            return _exact_ints(arr) - self._lo
        return arr.astype(np.int64) - self._lo

    def from_indices(self, indices, *, index=None, name=None) -> pd.Series:
        """Indices as the values they stand for (a Series: enums categorical over the
        labels, ints int64, bools bool; a real's "indices" are its values)."""
        arr = np.asarray(indices)
        if self.big:
            arr = _exact_ints(arr) + self._lo
        elif isinstance(self.type, A.IntType):
            arr = arr.astype(np.int64) + self._lo
        return self.series(arr, index=index, name=name)

    # ------------------------------------------------------------------------ codes
    def code(self, value):
        """The code of ``value``: a bool, an int's value, an enum's index, a real."""
        t = self.type
        if isinstance(t, A.BoolType):
            return bool(value)
        if isinstance(t, A.EnumType):
            return self._place[value]
        if isinstance(t, A.IntType):
            return int(value)
        return float(value)

    def codes(self, values) -> np.ndarray:
        """Values as codes, vectorised (bool; int as float64, exact to 2**53; enum int64;
        real float64): the arrays crisp evaluation computes on."""
        t = self.type
        if isinstance(t, A.EnumType):
            return np.array([self._place[x] for x in values], dtype=np.int64)
        if isinstance(t, A.BoolType):
            return np.array(values, dtype=bool)
        if self.big:
            return _exact_ints(values)
        return np.array(values, dtype=np.float64)

    def decode(self, code):
        """The value a code stands for (a scalar: an int's code rounded to the nearest
        whole number, as a solver's answer may carry a tolerance)."""
        t = self.type
        if isinstance(t, A.BoolType):
            return bool(round(float(code))) if not isinstance(code, (bool, np.bool_)) \
                else bool(code)
        if isinstance(t, A.RealType):
            return float(code)
        whole = int(code) if isinstance(code, (int, np.integer)) else int(round(float(code)))
        return t.values[whole] if isinstance(t, A.EnumType) else whole

    def series(self, codes, *, index=None, name=None) -> pd.Series:
        """Codes as a Series of values: enums categorical over the labels, ints int64
        (big ints: Python ints, object dtype), bools bool, reals float64."""
        arr = np.asarray(codes)
        t = self.type
        if self.big:
            return pd.Series(_exact_ints(arr), index=index, name=name, dtype=object)
        if isinstance(t, A.EnumType):
            return pd.Series(pd.Categorical.from_codes(arr.astype(np.int64),
                                                       categories=list(t.values)),
                             index=index, name=name)
        dtype = np.int64 if isinstance(t, A.IntType) else \
            bool if isinstance(t, A.BoolType) else np.float64
        return pd.Series(arr.astype(dtype), index=index, name=name)

    def code_at(self, index: int):
        """The code of the value at place ``index`` of the domain order."""
        return self.code(self.value(index))

    def index_of(self, code):
        """The index of a code (scalar or array): ``code - lo`` for an int, the enum's
        code itself, 0/1 for a bool."""
        self._finite()
        if np.ndim(code) == 0:
            return int(code) - self._lo
        if self.big:
            return _exact_ints(code) - self._lo
        return np.asarray(code).astype(np.int64) - self._lo

    # --------------------------------------------------------------------------- Z3
    def z3_const(self, name: str):
        """A Z3 constant of this domain's sort: Bool for a bool, Int for an int or an
        enum (its code), Real for a real."""
        import z3

        if isinstance(self.type, A.BoolType):
            return z3.Bool(name)
        return z3.Real(name) if isinstance(self.type, A.RealType) else z3.Int(name)

    def z3_value(self, value):
        """The Z3 constant of a value's code."""
        return self.z3_code(self.code(value))

    def z3_code(self, code):
        """The Z3 constant of a code."""
        import z3

        if isinstance(self.type, A.BoolType):
            return z3.BoolVal(bool(code))
        if isinstance(self.type, A.RealType):
            from fractions import Fraction

            return z3.RealVal(Fraction(float(code)))
        return z3.IntVal(int(code))

    def z3_index(self, x):
        """The index of the value a Z3 term ``x`` (of this domain's sort) holds."""
        import z3

        if isinstance(self._finite(), A.BoolType):
            return z3.If(x, z3.IntVal(1), z3.IntVal(0))
        return x - self._lo if self._lo else x

    def z3_decode(self, value):
        """The value a Z3 numeral of this domain's sort stands for."""
        import z3

        if isinstance(self.type, A.BoolType):
            return z3.is_true(value)
        if isinstance(self.type, A.RealType):
            if z3.is_rational_value(value):
                return float(value.as_fraction())
            return float(value.approx(20).as_fraction())
        return self.decode(value.as_long())


def _exact_ints(values) -> np.ndarray:
    """Whole numbers as an object array of Python ints (exact at any size): ints and
    integer arrays as they are, integral floats (exact below 2**53) converted."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.dtype != object:
        return (arr.astype(np.int64) if arr.dtype.kind == "f" else arr).astype(object)
    return np.array([int(x) for x in arr.ravel()], dtype=object).reshape(arr.shape)
