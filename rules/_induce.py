"""Search for conjunctions of conditions over a table's columns (rule bodies learned from data).

The core of rule induction (:func:`greybox.rules.induce`) and of the debugger's rule
proposals: given a per-row *gain* -- the signed value of a rule body being true on that
row -- find the conjunctions of simple conditions whose sum of gain over the rows where
they hold is largest.

Conditions, one column each:

* numeric column: ``col <= t`` and ``col > t``, ``t`` between two neighbouring distinct
  values of the rows considered (the shortest decimal in that gap, nearest its middle);
* bool column: ``col`` and ``not col``;
* categorical / object / string column: ``col == v`` and ``col != v``.

The search is a beam search over the number of conditions (Clark & Niblett's CN2 style):
level 1 scores every condition on every column; level ``k + 1`` extends each of the
``beam`` (default 10) conjunctions kept at level ``k`` by the best condition of every
(column, operator) on the rows where it holds. Half the beam is the best by score, half
the best by *separation* (the share of the positive gain kept minus the share of the
negative gain kept), since a condition that separates well often pays only with a
further condition (``x > 7`` keeps all the good rows and half the bad ones; ``x > 7 and
z < 0.5`` keeps only the good ones). A numeric column is scored in one pass over its
rows in sorted order (prefix sums of the gain, so ``O(n)`` per column per conjunction once
the column is sorted, ``O(n log n)`` once). No conjunction repeats a condition on the same
column and operator, a condition must hold on at least ``min_support`` rows of its
parent and leave out at least as many (no trimming of a few extreme rows), and conditions
the others make redundant on the data are dropped from the result.

This module imports neither torch nor the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from greybox.errors import DataError

from . import _ast as A
from ._thresholds import shorter_decimals, significant_digits, threshold_between

__all__ = ["Condition", "Conjunction", "search_conjunctions", "threshold_between"]

#: conjunctions kept at each level of the beam search
DEFAULT_BEAM = 10


class Condition(NamedTuple):
    """One condition of a conjunction: ``column operator value``.

    ``operator`` is ``"<="`` or ``">"`` (numeric threshold), ``"=="`` or ``"!="`` (a
    category; for a bool column ``("c", "==", True)`` is ``c`` and ``("c", "==", False)``
    is ``not c``).
    """

    column: str
    operator: str
    value: object

    def formula(self) -> A.Expr:
        """The condition as a rule-language formula."""
        if isinstance(self.value, (bool, np.bool_)):
            var = A.Var(self.column)
            return var if bool(self.value) == (self.operator == "==") else A.Not(var)
        if self.operator in ("<=", ">"):
            return A.Compare(self.operator, A.Var(self.column), A.Num(self.value))
        return A.Compare(self.operator, A.Var(self.column), A.Sym(str(self.value)))


@dataclass(frozen=True)
class Conjunction:
    """A conjunction of conditions found by :func:`search_conjunctions`.

    Attributes
    ----------
    conditions : tuple of Condition
        ``(column, operator, value)`` each.
    formula : greybox.rules.ast.Expr
        The conjunction as a rule body (prints through the rule printer:
        ``str(c.formula)``).
    mask : numpy.ndarray
        Where the conjunction holds, one bool per row of the frame searched.
    support : int
        How many rows it holds on.
    score : float
        The sum of the gain over those rows.
    """

    conditions: tuple[Condition, ...]
    formula: A.Expr = field(repr=False)
    mask: np.ndarray = field(repr=False, compare=False)
    support: int
    score: float

    def __str__(self) -> str:
        return f"{self.formula}  (support {self.support}, score {self.score:.6g})"


# -------------------------------------------------------------------- columns


class _Gap(NamedTuple):
    """A numeric condition before its threshold is placed: between ``a`` and ``b``."""

    column: str
    operator: str
    a: float
    b: float

    def condition(self) -> Condition:
        return Condition(self.column, self.operator, threshold_between(self.a, self.b))


def _condition(c) -> Condition:
    return c.condition() if isinstance(c, _Gap) else c


class _Column:
    """What the search needs of one column, computed once."""

    def __init__(self, name: str, series: pd.Series):
        self.name = name
        values = series.to_numpy()
        if isinstance(series.dtype, pd.CategoricalDtype):
            self.kind = "cat"
        elif pd.api.types.is_bool_dtype(series.dtype):
            self.kind = "bool"
        elif pd.api.types.is_numeric_dtype(series.dtype):
            self.kind = "num"
        else:
            self.kind = "cat"
        if self.kind == "num":
            values = values.astype(np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                row = series.index[int(np.argmax(bad))]
                raise DataError(f"column {name!r}: {float(values[bad][0])!r} at row {row!r}; "
                                "expected finite numbers (fill or drop missing values first)")
            self.values = values
            self.order = np.argsort(values, kind="stable")
            self.sorted = values[self.order]
        elif self.kind == "bool":
            self.values = values.astype(bool)
        else:
            if pd.isna(series).any():
                row = series.index[int(np.argmax(pd.isna(series).to_numpy()))]
                raise DataError(f"column {name!r}: missing value at row {row!r}; expected "
                                "one of its categories (fill or drop missing values first)")
            codes, cats = pd.factorize(series, sort=True)
            self.codes = codes
            self.categories = list(cats)

    def holds(self, cond: Condition) -> np.ndarray:
        if self.kind == "num":
            return self.values <= cond.value if cond.operator == "<=" else self.values > cond.value
        if self.kind == "bool":
            return self.values == bool(cond.value)
        code = self.categories.index(cond.value)
        return self.codes == code if cond.operator == "==" else self.codes != code

    def best(self, gm: np.ndarray, mask: np.ndarray, used: set, min_support: int,
             parent_support: int):
        """The best conditions per operator on the rows of ``mask`` (gain ``gm``, zero off
        the mask): ``[(score, support, condition, separation)]``. ``separation`` is the
        share of the parent's positive gain a condition keeps minus the share of its
        negative gain (1: keeps all the good, drops all the bad); a numeric column offers
        the threshold of best score and the threshold of best separation, since the one
        that separates well often scores well only with a further condition."""
        pos_all = float(gm[gm > 0].sum())
        neg_all = float(-gm[gm < 0].sum())
        if self.kind == "num":
            return self._best_thresholds(gm, mask, used, min_support, pos_all, neg_all)

        def sep(pos, neg):
            return (pos / pos_all if pos_all > 0 else 0.0) - (neg / neg_all if neg_all > 0
                                                              else 0.0)

        if self.kind == "bool":
            return self._best_flags(gm, mask, used, min_support, parent_support, sep)
        return self._best_values(gm, mask, used, min_support, parent_support, sep)

    def _best_thresholds(self, gm, mask, used, min_support, pos_all, neg_all) -> list:
        """:meth:`best` of a numeric column: in one pass over its sorted rows."""
        out = []
        inside = mask[self.order]
        sv = self.sorted[inside]
        if sv.size < 2:
            return out
        g = gm[self.order][inside]
        cs = np.cumsum(g)
        cp = np.cumsum(np.maximum(g, 0.0))
        total, ptotal = cs[-1], cp[-1]
        ends = np.flatnonzero(sv[1:] != sv[:-1])  # last index of each distinct value
        if ends.size == 0:
            return out
        sup_le = ends + 1
        sup_gt = sv.size - sup_le
        pos_le = cp[ends]
        neg_le = pos_le - cs[ends]
        for op, score, sup, pos, neg in (
                ("<=", cs[ends], sup_le, pos_le, neg_le),
                (">", total - cs[ends], sup_gt, ptotal - pos_le,
                 (ptotal - total) - neg_le)):
            if (self.name, op) in used:
                continue
            ok = (sup >= min_support) & (sv.size - sup >= min_support)
            if not ok.any():
                continue
            separation = (pos / max(pos_all, 1e-300) * (pos_all > 0)
                          - neg / max(neg_all, 1e-300) * (neg_all > 0))
            picked = set()
            for crit in (score, separation):
                s = np.where(ok, crit, -np.inf)
                # among equal best values the middle one (a threshold away from data)
                ties = np.flatnonzero(s == s.max())
                k = int(ties[len(ties) // 2])
                if k in picked:
                    continue
                picked.add(k)
                # the threshold itself is placed only if the condition is chosen
                gap = _Gap(self.name, op, float(sv[ends[k]]), float(sv[ends[k] + 1]))
                out.append((float(score[k]), int(sup[k]), gap, float(separation[k])))
        return out

    def _best_flags(self, gm, mask, used, min_support, parent_support, sep) -> list:
        """:meth:`best` of a bool column."""
        out = []
        if (self.name, "bool") in used:
            return out
        v = self.values
        for value, rows in ((True, v & mask), (False, ~v & mask)):
            sup = int(rows.sum())
            if min_support <= sup <= parent_support - min_support:
                g = gm[rows]
                out.append((float(g.sum()), sup, Condition(self.name, "==", value),
                            sep(float(g[g > 0].sum()), float(-g[g < 0].sum()))))
        return out

    def _best_values(self, gm, mask, used, min_support, parent_support, sep) -> list:
        """:meth:`best` of a categorical column: ``== v`` and ``!= v`` for every value."""
        out = []
        if (self.name, "==") in used:
            return out
        k = len(self.categories)
        codes = self.codes[mask]
        gmm = gm[mask]
        score = np.bincount(codes, weights=gmm, minlength=k)
        pos = np.bincount(codes, weights=np.maximum(gmm, 0.0), minlength=k)
        sup = np.bincount(codes, minlength=k)
        total, ptotal, n = score.sum(), pos.sum(), int(mask.sum())
        neg = pos - score
        for op, s, p, q, su in (("==", score, pos, neg, sup),
                                ("!=", total - score, ptotal - pos, (ptotal - total) - neg,
                                 n - sup)):
            if op == "==" and (self.name, "!=") in used:
                continue  # `c != a and c == b` is `c == b`
            ok = (su >= min_support) & (su <= parent_support - min_support)
            for i in np.flatnonzero(ok):
                v = self.categories[i]
                if op == "!=" and (self.name, "!=", v) in used:
                    continue
                out.append((float(s[i]), int(su[i]), Condition(self.name, op, v),
                            sep(float(p[i]), float(q[i]))))
        return out


_OP_ORDER = {">": 0, "<=": 1, "==": 2, "!=": 3}


def _ordered(conditions, order: dict) -> tuple:
    """Conditions in column order (a column's ``>`` before its ``<=``: ``x > 1 and
    x <= 4`` reads as an interval)."""
    return tuple(sorted(conditions, key=lambda c: (order[c.column], _OP_ORDER[c.operator])))


def _formula(conditions, order: dict | None = None) -> A.Expr:
    """The conjunction as a formula (conditions in column order when ``order`` is given)."""
    if order is not None:
        conditions = _ordered(conditions, order)
    atoms = tuple(c.formula() for c in conditions)
    return atoms[0] if len(atoms) == 1 else A.And(atoms)


def _used(conditions) -> set:
    used: set = set()
    for c in conditions:
        if isinstance(c.value, (bool, np.bool_)):
            used.add((c.column, "bool"))
        else:
            used.add((c.column, c.operator))
            if c.operator == "!=":  # a category excluded (`c != a and c != b` is allowed)
                used.add((c.column, "!=", c.value))
    return used


def _prune(conditions, columns, mask) -> tuple:
    """Drop conditions the others make redundant on the data (same rows without them)."""
    conds = list(conditions)
    changed = True
    while changed and len(conds) > 1:
        changed = False
        for i in range(len(conds)):
            rest = conds[:i] + conds[i + 1:]
            m = np.ones_like(mask)
            for c in rest:
                m &= columns[c.column].holds(c)
            if np.array_equal(m, mask):
                conds = rest
                changed = True
                break
    return tuple(conds)


def _refine(conds: tuple, cols, gain, min_support, mask, score):
    """Move each numeric threshold to its best place given the other conditions
    (coordinate ascent; a threshold chosen early by the beam is often too tight)."""
    improved = True
    rounds = 0
    while improved and rounds < 5:
        improved = False
        rounds += 1
        for i, c in enumerate(conds):
            col = cols[c.column]
            if col.kind != "num":
                continue
            others = np.ones_like(mask)
            for j, d in enumerate(conds):
                if j != i:
                    others &= cols[d.column].holds(d)
            gm = np.where(others, gain, 0.0)
            used = {(c.column, "<=" if c.operator == ">" else ">")}  # this operator only
            for new_score, _sup, cond, _sep in col.best(gm, others, used, min_support,
                                                        int(others.sum()) + 1):
                if new_score > score + 1e-12 * max(1.0, abs(score)):
                    cond = _condition(cond)
                    conds = (*conds[:i], cond, *conds[i + 1:])
                    mask = others & col.holds(cond)
                    score = float(gain[mask].sum())
                    improved = True
    return conds, mask, score


def shorter_thresholds(conj: Conjunction, frame: pd.DataFrame, grad, hess, *, l2: float,
                       min_support: int, digit_cost: float,
                       columns: dict | None = None) -> Conjunction:
    """``conj`` with its numeric thresholds written shorter wherever that costs less than
    ``digit_cost`` of loss per significant digit saved (a minimum description length:
    ``log(10)`` nats is what one decimal digit costs to state).

    The loss a rule with this body buys is its Newton step's, ``G^2 / (2 (H + l2))``
    (``G``, ``H``: the sums of ``grad`` and ``hess`` over the rows where the body holds,
    ``G > 0``); a threshold moves to a decimal of fewer digits when ``G^2 / (2 (H + l2))``
    less ``digit_cost`` per digit of every threshold is higher there, one condition at a
    time, the others held. A threshold never costs more than ``log10(k)`` digits, ``k`` the
    column's distinct values: it can also be stated as the gap of the data it lies in (so
    on a small table, whose columns have few values, a digit saved buys less). ``x >
    0.805``, placed there by two wrong labels just above 0.8, becomes ``x > 0.8``; a
    threshold the rows really call for stays. Every condition
    still holds on and leaves out ``min_support`` rows of the rows the others keep.
    ``columns``: a cache of the columns seen so far (name to column).
    """
    cols = {} if columns is None else columns
    grad = np.asarray(grad, dtype=np.float64)
    hess = np.asarray(hess, dtype=np.float64)
    conds = tuple(conj.conditions)
    for c in conds:
        if c.column not in cols:
            cols[c.column] = _Column(c.column, frame[c.column])

    # a threshold can also be stated by the gap of the data it lies in: at most
    # log10(distinct values) digits' worth
    cap = {c.column: math.log10(max(2, int(np.count_nonzero(np.diff(cols[c.column].sorted)))
                                    + 1))
           for c in conds if cols[c.column].kind == "num"}

    def price(conditions):
        return digit_cost * sum(min(significant_digits(d.value), cap[d.column])
                                for d in conditions if d.column in cap)

    def value(conditions, m):  # the Newton step's loss decrease, less the digits' price
        g = float(grad[m].sum())
        v = g * g / (2 * (float(hess[m].sum()) + l2)) if g > 0 else 0.0
        return v - price(conditions)

    mask = conj.mask
    best = value(conds, mask)
    for _round in range(5):
        improved = False
        for i, c in enumerate(conds):
            col = cols[c.column]
            if col.kind != "num" or significant_digits(c.value) <= 1:
                continue
            others = np.ones(len(frame), dtype=bool)
            for j, d in enumerate(conds):
                if j != i:
                    others &= cols[d.column].holds(d)
            cond = _shorter_condition(c, col, others, grad, hess, l2=l2,
                                      min_support=min_support,
                                      digit_cost=digit_cost, cap=cap[c.column])
            if cond is None:
                continue
            candidate = (*conds[:i], cond, *conds[i + 1:])
            new_mask = others & col.holds(cond)
            new_value = value(candidate, new_mask)
            if new_value > best + 1e-9 * max(1.0, abs(best)):
                conds, mask, best, improved = candidate, new_mask, new_value, True
        if not improved:
            break
    if conds == tuple(conj.conditions):
        return conj
    order = {name: i for i, name in enumerate(frame.columns)}
    conds = _ordered(_prune(conds, cols, mask), order)
    return Conjunction(conds, _formula(conds, order), mask, int(mask.sum()),
                       float(grad[mask].sum()))


def _shorter_condition(c: Condition, col: _Column, others: np.ndarray, grad, hess, *,
                       l2: float, min_support: int, digit_cost: float,
                       cap: float) -> Condition | None:
    """Condition ``c`` at the shorter threshold worth most on the rows ``others`` (the
    other conditions') keep: its Newton step's loss decrease less ``digit_cost`` per digit
    (at most ``cap`` digits); None when no shorter decimal keeps ``min_support`` rows on
    both sides."""
    sv = col.sorted[others[col.order]]
    grid, digits = shorter_decimals(float(sv[0]), float(sv[-1]), c.value)
    if not grid.size:
        return None
    cg = np.concatenate([[0.0], np.cumsum(grad[col.order][others[col.order]])])
    ch = np.concatenate([[0.0], np.cumsum(hess[col.order][others[col.order]])])
    le = np.searchsorted(sv, grid, side="right")  # rows with x <= t
    g, h, size = cg[le], ch[le], le
    if c.operator == ">":
        g, h, size = cg[-1] - g, ch[-1] - h, sv.size - le
    ok = (size >= min_support) & (sv.size - size >= min_support) & (g > 0)
    if not ok.any():
        return None
    gain = (np.where(ok, g * g / (2 * (h + l2)), -np.inf)
            - digit_cost * np.minimum(digits, cap))
    k = int(np.argmax(gain))  # the first of equal: the fewest digits
    t = float(grid[k])
    return Condition(c.column, c.operator, int(t) if t.is_integer() and abs(t) < 2 ** 53 else t)


def _alternate(a: list, b: list):
    """The items of ``a`` and ``b`` taken in turn (each item once)."""
    taken: set[int] = set()
    for x, y in zip(a, b):
        for item in (x, y):
            if id(item) not in taken:
                taken.add(id(item))
                yield item


def search_conjunctions(frame: pd.DataFrame, gain, *, max_conditions: int = 3, top: int = 5,
                        min_support: int | None = None, columns=None,
                        beam: int = DEFAULT_BEAM) -> list[Conjunction]:
    """The conjunctions of conditions with the highest sum of ``gain`` where they hold.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per example; numeric, bool and categorical (or object/string) columns.
    gain : array-like of float, shape (len(frame),)
        ``gain[i]``: what a rule body being true on row ``i`` is worth (signed).
    max_conditions : int, default 3
        At most this many conditions in a conjunction.
    top : int, default 5
        How many conjunctions to return.
    min_support : int, optional
        Fewest rows a conjunction must hold on (default: 1% of the rows, at least 1).
    columns : sequence of str, optional
        The columns conditions may use (default: all of ``frame``'s).
    beam : int, default 10
        Conjunctions kept at each level of the beam search.

    Returns
    -------
    list of Conjunction
        At most ``top``, best score first, each with a positive score and a distinct set of
        rows; empty when no conjunction has a positive sum of gain.

    Raises
    ------
    DataError
        A gain of the wrong length or not finite, a column that is not in ``frame``, a
        column name that is not a string, a missing value in a column.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from greybox.rules.engine import search_conjunctions
    >>> df = pd.DataFrame({"age": [15, 22, 35, 47, 52, 61], "smoker": [0, 1, 1, 0, 1, 1]})
    >>> df["smoker"] = df["smoker"].astype(bool)
    >>> gain = np.array([-1, -1, -1, -1, 1, 1])  # worth firing on the last two rows only
    >>> best = search_conjunctions(df, gain, top=3)
    >>> [(str(c.formula), c.support, c.score) for c in best]
    [('age > 50', 2, 2.0), ('age > 50 and age <= 60', 1, 1.0)]
    >>> gain = np.array([-1, 2, 2, -1, 2, -1])  # the smokers, but not the oldest
    >>> [str(c.formula) for c in search_conjunctions(df, gain, top=1)]
    ['age <= 60 and smoker']
    """
    gain, names = _search_arguments(frame, gain, max_conditions=max_conditions, top=top,
                                    beam=beam, columns=columns)
    n = len(frame)
    if min_support is None:
        min_support = max(1, n // 100)
    min_support = max(1, int(min_support))
    cols = {name: _Column(name, frame[name]) for name in names}
    order = {name: i for i, name in enumerate(names)}

    results: dict[bytes, Conjunction] = {}
    parents = [((), np.ones(n, dtype=bool))]
    for _level in range(max_conditions):
        parents = _next_level(parents, cols, gain, min_support, beam, order, results)
        if not parents:
            break
    refined: dict[bytes, Conjunction] = {}
    for c in sorted(results.values(), key=lambda c: (-c.score, len(c.conditions))):
        conds, mask, score = _refine(c.conditions, cols, gain, min_support, c.mask, c.score)
        if conds != c.conditions:
            conds = _ordered(_prune(conds, cols, mask), order)
            c = Conjunction(conds, _formula(conds, order), mask, int(mask.sum()), score)
        refined.setdefault(c.mask.tobytes(), c)
    ranked = sorted(refined.values(), key=lambda c: (-c.score, len(c.conditions), -c.support))
    return ranked[:top]


def _search_arguments(frame, gain, *, max_conditions: int, top: int, beam: int,
                      columns) -> tuple[np.ndarray, list]:
    """:func:`search_conjunctions`' ``gain`` as an array and the names of its columns,
    checked."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    n = len(frame)
    gain = np.asarray(gain, dtype=np.float64)
    if gain.shape != (n,):
        raise DataError(f"gain has shape {gain.shape}; expected ({n},), one value per row "
                        "of the frame")
    if not np.isfinite(gain).all():
        raise DataError(f"gain at row {int(np.argmax(~np.isfinite(gain)))} is "
                        f"{float(gain[~np.isfinite(gain)][0])!r}; expected finite numbers")
    if max_conditions < 1 or top < 1 or beam < 1:
        raise DataError(f"max_conditions, top and beam must be >= 1, got {max_conditions}, "
                         f"{top}, {beam}")
    names = list(frame.columns) if columns is None else list(columns)
    for name in names:
        if not isinstance(name, str):
            raise DataError(f"column {name!r}: names must be strings to become variables")
        if name not in frame.columns:
            raise DataError(f"column {name!r} is not in the frame (columns: "
                            f"{', '.join(map(str, frame.columns))})")
    return gain, names


def _next_level(parents: list, cols: dict, gain, min_support: int, beam: int, order: dict,
                results: dict) -> list:
    """One level of the beam search: the ``beam`` extensions of ``parents`` by one
    condition, half by score and half by separation; those with a positive score are
    added to ``results`` (by the rows they hold on)."""
    candidates = []
    for p, (conds, mask) in enumerate(parents):
        gm = np.where(mask, gain, 0.0)
        used = _used(conds)
        sup = int(mask.sum())
        for col in cols.values():
            for score, support, cond, separation in col.best(gm, mask, used, min_support,
                                                             sup):
                if support < sup:
                    candidates.append((score, separation, -support, p, cond))
    # half the beam by score, half by separation (what a further condition may make
    # pay), alternately
    by_score = sorted(candidates, key=lambda c: (-c[0], c[2]))
    by_sep = sorted(candidates, key=lambda c: (-c[1], -c[0], c[2]))
    nxt = []
    seen: set[bytes] = set()
    for score, _sep, _neg, p, cond in _alternate(by_score, by_sep):
        if len(nxt) >= beam:
            break
        conds, mask = parents[p]
        cond = _condition(cond)
        new = mask & cols[cond.column].holds(cond)
        key = new.tobytes()
        if key in results or key in seen:
            continue
        seen.add(key)
        full = (*conds, cond)
        nxt.append((full, new))
        if score > 0:
            kept = _ordered(_prune(full, cols, new), order)
            results[key] = Conjunction(kept, _formula(kept, order), new, int(new.sum()),
                                       float(score))
    return nxt
