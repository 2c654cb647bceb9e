"""Thresholds that read well: the shortest decimal in a gap of the data, and the decimals
written with fewer significant digits than a threshold (rule induction's conditions,
:mod:`greybox.rules._induce`)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np

__all__ = ["shorter_decimals", "significant_digits", "threshold_between"]


def threshold_between(a, b) -> int | float:
    """The shortest decimal ``t`` with ``a <= t < b`` (as float64 numbers): a threshold
    that separates two neighbouring data values (``x <= t`` holds at ``a``, not at ``b``)
    and reads well (an ``int`` when it is a whole number). Among decimals of the same
    length one strictly inside the gap wins (a margin on both sides), the one nearest the
    middle; ``a`` itself when it is as short (``0.5`` between 0.5 and 0.51, ``7`` between 7
    and 8).

    Examples
    --------
    >>> from greybox.rules._thresholds import threshold_between
    >>> threshold_between(1.23, 1.87), threshold_between(3, 7), threshold_between(12.0, 13.5)
    (1.6, 5, 13)
    >>> threshold_between(0.5, 0.51), threshold_between(7, 8), threshold_between(0, 100)
    (0.5, 7, 50)
    >>> threshold_between(0.1, 0.10000000000000002)
    0.1
    """
    a, b = float(a), float(b)
    if not a < b:
        raise ValueError(f"threshold_between needs a < b, got {a!r} and {b!r}")
    fa, fb = Fraction(a), Fraction(b)
    mid = (fa + fb) / 2
    # a as a person reads it (its shortest repr): `x <= 0.5` at a = 0.5 reads best
    da = Fraction(repr(a))
    e = math.floor(math.log10(b - a)) + 1 if math.isfinite(b - a) else 309
    for exp in range(e, e - 40, -1):
        step = Fraction(10) ** exp
        lo = math.floor(fa / step) + 1  # strictly inside the gap: a margin on both sides
        hi = math.ceil(fb / step) - 1
        if lo <= hi:
            n = min(max(round(mid / step), lo), hi)
            for cand in sorted({n, lo, hi}, key=lambda k: abs(k * step - mid)):
                t = cand * step
                value: int | float = (int(t) if t.denominator == 1 and abs(t) < 2 ** 53
                                      else float(t))
                if a < value < b:
                    return value
        if (da / step).denominator == 1 and (da != 0 or exp <= 0):  # 0 reads as units
            return int(a) if a.is_integer() and abs(a) < 2 ** 53 else a
    return a  # the gap holds no float but a itself


def significant_digits(t) -> int:
    """How many significant digits the decimal ``t`` is written with.

    Examples
    --------
    >>> from greybox.rules._thresholds import significant_digits
    >>> [significant_digits(t) for t in (0.8, 0.802, 700, 710, 0, -25.16)]
    [1, 3, 1, 2, 1, 4]
    """
    d = Decimal(repr(float(t)) if isinstance(t, float) else str(t))
    return len(d.normalize().as_tuple().digits) if d != 0 else 1


def shorter_decimals(lo: float, hi: float, t) -> tuple[np.ndarray, np.ndarray]:
    """The decimals in ``[lo, hi]`` written with fewer significant digits than ``t``:
    ``(values, digits)``, coarsest first (at most 10,000 per power of ten)."""
    want = significant_digits(t)
    if want <= 1:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    top = math.floor(math.log10(max(abs(lo), abs(hi), 1e-300)))
    finest = Decimal(repr(float(t)) if isinstance(t, float) else str(t)).normalize() \
        .as_tuple().exponent
    values, digits = [], []
    for e in range(top, int(finest), -1):  # coarser than t's last digit
        if abs(e) > 300:  # beyond float64's powers of ten: no shorter decimal to offer
            break
        p = 10.0 ** abs(e)
        a, b = (math.ceil(lo / p), math.floor(hi / p)) if e >= 0 else \
            (math.ceil(lo * p), math.floor(hi * p))
        if b - a > 10_000 or abs(a) >= 2 ** 53 or abs(b) >= 2 ** 53:
            break
        m = np.arange(a, b + 1, dtype=np.int64)
        if e < top:
            m = m[m % 10 != 0]  # the others came at a coarser power of ten
        d = np.array([len(str(abs(int(v))).rstrip("0")) or 1 for v in m], dtype=np.int64)
        keep = d < want
        values.append(m[keep] * p if e >= 0 else m[keep] / p)
        digits.append(d[keep])
    if not values:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(values), np.concatenate(digits)
