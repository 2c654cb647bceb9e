"""Labels of big integers: values beyond ±2**53, read and kept exactly.

An ``int`` variable whose range reaches beyond ±2**53 (``define total: int 0..2*10**100 - 2
= na + nb``: the sum of two 100-digit numbers) cannot be labelled through float64 (it
rounds beyond 2**53) nor int64 (it overflows beyond 2**63). Its labels are read here as
Python ints, from ints, numpy integer or object arrays, or strings of digits, and kept as
:class:`BigLabels`; the carry model (:class:`greybox._linear.CarryPlan`) takes their
digits, computed exactly outside torch.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from greybox.errors import DataError
from greybox.rules import ast as A
from greybox.rules.engine import first_row, show_value

__all__ = ["BigLabels", "big_labels"]

_CPU = torch.device("cpu")
#: an integer written out: optional sign, decimal digits (spaces around allowed)
_DIGITS = re.compile(r"\s*[+-]?\d+\s*")


class BigLabels:
    """One label per row of a big int variable: value indices (``value - lo``) as Python
    ints in a numpy object array, indexed by rows as a label tensor is (``labels[rows]``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from greybox._bigint import BigLabels
    >>> y = BigLabels(np.array([10 ** 30 + 7, 42], dtype=object))
    >>> y[torch.tensor([1])].indices.tolist(), len(y)
    ([42], 2)
    >>> digits, top = y.digits(0, base=10, npos=2)
    >>> digits.tolist(), top                  # lowest digit first; what is left above
    ([[7, 2], [0, 4]], [10000000000000000000000000000, 0])
    """

    __slots__ = ("indices",)

    #: where the labels live: on the host, as Python ints (``.to`` keeps them there)
    device = _CPU

    def __init__(self, indices: np.ndarray):
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.indices),)

    def dim(self) -> int:
        return 1

    def __getitem__(self, rows) -> BigLabels:
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        return BigLabels(self.indices[rows])

    def to(self, device) -> BigLabels:
        return self

    def cpu(self) -> BigLabels:
        return self

    def tolist(self) -> list[int]:
        return self.indices.tolist()

    def __repr__(self) -> str:
        return f"BigLabels({len(self)} rows)"

    def shifted(self, offset: int) -> BigLabels:
        """The labels plus ``offset`` (value indices -> values: ``offset = lo``)."""
        return BigLabels(self.indices + offset) if offset else self

    def digits(self, offset: int, *, base: int, npos: int, cap: int | None = None,
               device=_CPU) -> tuple[torch.Tensor, torch.Tensor | list]:
        """The digits of ``label - offset`` in ``base``, lowest first, (npos, n) long, and
        what is left above them (floor division: a negative number has digits in
        ``0..base-1`` and a negative rest), each computed exactly with Python ints.
        ``cap``: the rest clamped to ``-1 .. cap`` and returned as a long tensor (the
        carry's index; beyond its values on either side), else a list of Python ints."""
        rest = [int(v) - offset for v in self.indices]
        out = np.zeros((npos, len(rest)), dtype=np.int64)
        if base == 10 and all(v >= 0 for v in rest):
            for j, v in enumerate(rest):         # decimal text: one C call per number
                text = str(v)[::-1][:npos]
                out[:len(text), j] = np.frombuffer(text.encode(), np.uint8) - 48
            place = 10 ** npos
            rest = [v // place for v in rest]
        else:
            for p in range(npos):
                for j, v in enumerate(rest):
                    rest[j], out[p, j] = divmod(v, base)
        digits = torch.from_numpy(out).to(device)
        if cap is None:
            return digits, rest
        top = torch.tensor([min(max(v, -1), cap) for v in rest], dtype=torch.long)
        return digits, top.to(device)


def big_labels(name: str, t: A.IntType, arr: np.ndarray, miss: np.ndarray, rows
               ) -> BigLabels:
    """Labels of the big int variable ``name`` (type ``t``) read exactly: Python or numpy
    ints, integral floats up to 2**53 (beyond, a float is not the integer meant), or text
    of decimal digits; value indices (``value - lo``), 0 where ``miss``. A value that is
    not an integer, or is outside ``t``, is a DataError naming the row."""
    out = np.zeros(len(arr), dtype=object)
    for pos in np.flatnonzero(~miss).tolist():
        value = _exact_int(arr[pos])
        if value is None or not t.lo <= value <= t.hi:
            where, _ = first_row(np.arange(len(arr)) == pos, rows)
            shown = show_value(arr[pos])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            if value is None:
                raise DataError(f"labels of {name!r}: {shown} at {where} is not an integer "
                                "(labels of an int beyond ±2**53 are read exactly: give "
                                "Python ints, an object or integer array, or text of "
                                "digits; a float beyond 2**53 is refused, as it rounds)")
            raise DataError(f"labels of {name!r}: {shown} at {where} is not in int "
                            f"{t.lo}..{t.hi}")
        out[pos] = value - t.lo
    return BigLabels(out)


def _exact_int(x) -> int | None:
    """``x`` as the exact Python int it denotes, or None where it is not an integer (or
    is a float beyond 2**53, which holds only some integers there)."""
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return int(x) if float(x).is_integer() and abs(x) <= A.BIG_INT else None
    if isinstance(x, str):
        return int(x) if _DIGITS.fullmatch(x) else None
    if hasattr(x, "as_integer_ratio") and not isinstance(x, float):   # Decimal, Fraction
        try:
            p, q = x.as_integer_ratio()
        except (ValueError, OverflowError):
            return None
        return int(p) if q == 1 else None
    return None
