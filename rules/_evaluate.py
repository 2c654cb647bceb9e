"""Crisp (plain boolean) evaluation of a knowledge base on a table, vectorised with numpy."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from greybox.errors import DataError, RuleError

from . import _ast as A
from ._decisions import closure, plan
from ._kb import KnowledgeBase, parse_formula

__all__ = ["Evaluation", "evaluate", "prepare_columns"]

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
    if isinstance(e, A.Sym):
        code = enum.values.index(e.name)
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
    if isinstance(e, A.Not):
        f = compile_expr(e.operand, kb)
        return lambda env: np.logical_not(f(env))
    if isinstance(e, (A.And, A.Or)):
        fs = [compile_expr(a, kb) for a in e.args]
        op = np.logical_and if isinstance(e, A.And) else np.logical_or

        def chain(env, fs=fs, op=op):
            acc = fs[0](env)
            for f in fs[1:]:
                acc = op(acc, f(env))
            return acc

        return chain
    if isinstance(e, A.Implies):
        fl, fr = compile_expr(e.left, kb), compile_expr(e.right, kb)
        return lambda env: np.logical_or(np.logical_not(fl(env)), fr(env))
    if isinstance(e, A.Iff):
        fl, fr = compile_expr(e.left, kb), compile_expr(e.right, kb)
        return lambda env: np.equal(np.asarray(fl(env), bool), np.asarray(fr(env), bool))
    raise TypeError(f"cannot evaluate {e!r}")


# --------------------------------------------------------------------------- columns


def _first(mask: np.ndarray, index: pd.Index) -> str:
    pos = int(np.flatnonzero(mask)[0])
    label = index[pos]
    where = f"row {pos}" if label == pos else f"row {pos} (index {label!r})"
    return where, pos


def _show(value) -> str:
    """repr of a cell, numpy scalars shown as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _type_text(t) -> str:
    from ._printer import type_to_text

    return type_to_text(t)


def _to_numeric(name: str, col, index) -> np.ndarray:
    if isinstance(col, pd.Series):
        col = col.to_numpy()
    arr = np.asarray(col)
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64, copy=False)
    if arr.dtype.kind == "O":
        # object columns: numbers with None/pd.NA for missing values
        out = np.empty(len(arr), np.float64)
        for i, v in enumerate(arr):
            if v is None or v is pd.NA:
                out[i] = np.nan
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out[i] = float(v)
            else:
                where, _ = _first(np.arange(len(arr)) == i, index)
                raise DataError(f"column {name!r}: expected numbers, got {v!r} "
                                f"({type(v).__name__}) at {where}")
        return out
    raise DataError(f"column {name!r}: expected numbers, got dtype {arr.dtype}")


def _column(var, col, index: pd.Index) -> np.ndarray:
    """Convert and check one column against the variable's declared type."""
    name, t = var.name, var.type
    if isinstance(t, A.EnumType):
        if isinstance(col, pd.Series) and isinstance(col.dtype, pd.CategoricalDtype):
            values = col.astype(object).to_numpy()
        else:
            values = np.asarray(col, dtype=object)
        codes = pd.Index(list(t.values), dtype=object).get_indexer(values)
        bad = codes < 0
        if bad.any():
            where, pos = _first(bad, index)
            raise DataError(f"column {name!r}: {_show(values[pos])} at {where} is not one of "
                            f"{{{', '.join(t.values)}}}")
        return codes.astype(np.int64)
    if isinstance(t, A.BoolType):
        if isinstance(col, pd.Series) and col.dtype == bool:
            return col.to_numpy()
        arr = np.asarray(col.to_numpy() if isinstance(col, pd.Series) else col)
        if arr.dtype == bool:
            return arr
        num = _to_numeric(name, arr, index)
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            where, pos = _first(bad, index)
            raise DataError(f"column {name!r}: expected true/false (bool or 0/1), got "
                            f"{_show(arr[pos])} at {where}")
        return num.astype(bool)
    if isinstance(t, A.TensorType):
        raise DataError(f"{name!r} is a tensor; crisp evaluation reads only table columns")
    num = _to_numeric(name, col, index)
    nan = np.isnan(num)
    if nan.any():
        where, _ = _first(nan, index)
        raise DataError(f"column {name!r}: missing value (NaN) at {where}")
    inf = np.isinf(num)
    if inf.any():
        where, pos = _first(inf, index)
        raise DataError(f"column {name!r}: infinite value {num[pos]} at {where}")
    _check_range(name, t, num, index, what="column")
    return num


def _check_range(name: str, t, num: np.ndarray, index, *, what: str) -> None:
    label = f"{what} {name!r}"
    if isinstance(t, A.IntType):
        frac = num != np.floor(num)
        if frac.any():
            where, pos = _first(frac, index)
            raise DataError(f"{label}: {float(num[pos])!r} at {where} is not a whole number "
                            f"({_type_text(t)})")
        lo, hi = t.lo, t.hi
    elif isinstance(t, A.RealType) and t.lo is not None:
        lo, hi = t.lo, t.hi
    else:
        return
    out = (num < lo) | (num > hi)
    if out.any():
        where, pos = _first(out, index)
        raise DataError(f"{label}: {num[pos]:g} at {where} is outside {_type_text(t)}")


def _needed_columns(kb: KnowledgeBase) -> list[str]:
    exprs = [r.body for r in kb.rules.values()] + [c.formula for c in kb.constraints.values()]
    names = set()
    for e in exprs:
        names |= closure(kb, A.variables(e))
    return [n for n in kb.variables if n in names and kb.variables[n].role in ("input", "neural")]


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
        scalar = all(np.ndim(v) == 0 for v in data.values())
        for k, v in data.items():
            arr = [v] if scalar else v
            if np.ndim(arr) != 1:
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
    cols, index = _as_table(data)
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
        out[name] = _column(kb.variables[name], cols[name], index)
    return out, index, cols


# ----------------------------------------------------------------------- evaluating


class _Env:
    """Variable values for every row; defined variables are computed on first use."""

    __slots__ = ("kb", "values", "parent", "fresh", "defines", "n", "index", "raw")

    def __init__(self, kb, values, defines, n, index, parent=None, fresh=frozenset(), raw=None):
        self.kb, self.values, self.defines = kb, values, defines
        self.n, self.index, self.parent, self.fresh = n, index, parent, fresh
        self.raw = raw or {}

    def __getitem__(self, name):
        if name in self.values:
            return self.values[name]
        if self.parent is not None and name not in self.fresh:
            return self.parent[name]
        var = self.kb.variables[name]
        if var.role in ("input", "neural"):  # a column no rule needed, read on demand
            if name not in self.raw:
                raise DataError(f"missing column {name!r}")
            value = self.values[name] = _column(var, self.raw[name], self.index)
            return value
        value = np.broadcast_to(self.defines[name](self), (self.n,))
        if isinstance(var.type, A.BoolType):
            value = value.astype(bool, copy=False)
        elif isinstance(var.type, (A.IntType, A.RealType)):
            value = value.astype(np.float64, copy=False)
            _check_range(name, var.type, value, self.index, what="defined variable")
        self.values[name] = value
        return value


def _bias_number(name, b, n):
    """A bias: one number, or one number per row (shape (n,))."""
    if isinstance(b, (bool, np.bool_)):
        raise RuleError(f"bias of {name!r} must be a number, got {b!r}")
    try:
        arr = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        raise RuleError(f"bias of {name!r} must be a number or one number per row, got "
                        f"{type(b).__name__}") from None
    if arr.ndim == 0:
        return float(arr)
    if arr.shape != (n,):
        raise RuleError(f"bias of {name!r}: expected one number or shape ({n},), got {arr.shape}")
    return arr


def _bias_table(kb, bias, n=None) -> dict:
    out = {}
    bias = dict(bias or {})
    for name, b in bias.items():
        var = kb.variables.get(name)
        if var is None or var.role != "decided":
            raise RuleError(f"bias given for {name!r}, which is not decided by rules "
                            f"(decided: {', '.join(kb.decided) or 'none'})")
        values = A.domain_values(var.type)
        if isinstance(var.type, A.BoolType):
            if isinstance(b, Mapping) or isinstance(b, bool):
                raise RuleError(f"bias of bool {name!r} must be one number")
            out[name] = {True: _bias_number(name, b, n), False: 0.0}
        else:
            if not isinstance(b, Mapping):
                raise RuleError(f"bias of {name!r} must map its values to numbers")
            unknown = [k for k in b if k not in values]
            if unknown:
                raise RuleError(f"bias of {name!r} names {unknown[0]!r}, not one of {values}")
            out[name] = {v: _bias_number(name, b.get(v, 0.0), n) for v in values}
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
        """Per row, whether ``formula`` (rule text or AST) holds, given the final decisions.

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input age: int 0..120  output ok: bool  rule r: age >= 18 -> ok")
        >>> gr.evaluate(kb, {"age": [10, 30]}).holds("ok <-> age > 20").tolist()
        [True, True]
        """
        expr = parse_formula(formula, self.kb)
        value = np.broadcast_to(compile_expr(expr, self.kb)(self._env), (len(self.index),))
        return pd.Series(value.astype(bool), index=self.index)

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
    cols, index, raw = prepare_columns(kb, data)
    n = len(index)
    defines = {name: compile_expr(v.expr, kb, v.type if isinstance(v.type, A.EnumType) else None)
               for name, v in kb.variables.items() if v.role == "defined"}
    env = _Env(kb, dict(cols), defines, n, index, raw=raw)
    biases = _bias_table(kb, bias, n)
    dp = plan(kb)

    compiled: dict[int, _Fn] = {}

    def truth(e, where):
        f = compiled.get(id(e))
        if f is None:
            f = compiled[id(e)] = compile_expr(e, kb)
        return np.broadcast_to(f(where), (n,)).astype(bool, copy=False)

    infeasible = np.zeros(n, bool)
    for c in dp.fixed_constraints:
        infeasible |= ~truth(c.formula, env)

    bodies: dict[str, np.ndarray] = {}  # rule bodies in the top environment

    def body(r):
        if r.name not in bodies:
            bodies[r.name] = truth(r.body, env)
        return bodies[r.name]

    weights = {r.name: _signed(r, r.head.value) for r in kb.rules.values()}
    # per (decided variable, value): bias plus the rules whose bodies read no decision of
    # the same component (those are the same for every assignment)
    partial: dict[tuple, object] = {}
    dynamic: dict[tuple, list] = {}
    preferred: dict[str, np.ndarray] = {}
    for comp in dp.components:
        comp_vars = set(comp.variables)
        for v in comp.variables:
            for x in A.domain_values(kb.variables[v].type):
                if isinstance(x, bool) and not x:
                    continue  # a bool's False scores 0: its rules push the score of True
                total = biases.get(v, {}).get(x, 0.0)
                dynamic[v, x] = []
                for r in kb.rules_for(v):
                    if not _head_matches(r.head, x):
                        continue
                    if closure(kb, A.variables(r.body)) & comp_vars:
                        dynamic[v, x].append(r)
                    else:
                        total = total + weights[r.name] * body(r)
                partial[v, x] = total
        assignments = comp.assignments(kb)
        best = np.full(n, -np.inf)
        best_free = np.full(n, -np.inf)
        choice = np.zeros(n, np.int64)
        choice_free = np.zeros(n, np.int64)
        for k, a in enumerate(assignments):
            sub = _Env(kb, {v: _code(kb, v, x) for v, x in zip(comp.variables, a)}, defines, n,
                       index, parent=env, fresh=comp.tainted)
            objective = 0.0
            for v, x in zip(comp.variables, a):
                if (v, x) not in partial:
                    continue
                objective = objective + partial[v, x]
                for r in dynamic[v, x]:
                    objective = objective + weights[r.name] * truth(r.body, sub)
            objective = np.broadcast_to(objective, (n,))
            better_free = objective > best_free
            best_free = np.where(better_free, objective, best_free)
            choice_free[better_free] = k
            if comp.constraints:
                feasible = np.ones(n, bool)
                for c in comp.constraints:
                    feasible &= truth(c.formula, sub)
                better = feasible & (objective > best)
                best = np.where(better, objective, best)
                choice[better] = k
        if comp.constraints:
            none = np.isneginf(best)
            infeasible |= none
            choice = np.where(none, choice_free, choice)
        else:
            choice = choice_free
        for j, v in enumerate(comp.variables):
            codes = np.array([_code(kb, v, a[j]) for a in assignments])
            env.values[v] = codes[choice]
            preferred[v] = codes[choice_free]

    # the final picture, with every decision known
    for r in kb.rules.values():
        body(r)
    scores = {}
    for name in kb.decided:
        var = kb.variables[name]
        for value in A.domain_values(var.type):
            if (name, value) not in partial:
                continue
            s = partial[name, value]
            for r in dynamic[name, value]:
                s = s + weights[r.name] * bodies[r.name]
            label = name if isinstance(var.type, A.BoolType) else f"{name}={value}"
            scores[label] = np.broadcast_to(s, (n,))
    violations = {c.name: ~truth(c.formula, env) for c in kb.constraints.values()}
    decided = kb.decided
    return Evaluation(
        kb=kb,
        index=index,
        preferred=pd.DataFrame({v: _decoded(kb, v, preferred[v], index) for v in decided},
                               index=index),
        decisions=pd.DataFrame({v: _decoded(kb, v, env[v], index) for v in decided},
                               index=index),
        values=pd.DataFrame({v: _decoded(kb, v, env[v], index) for v in kb.defined}, index=index),
        infeasible=pd.Series(infeasible, index=index, name="infeasible"),
        _bodies=bodies,
        _scores=scores,
        _violations=violations,
        _weights=weights,
        _env=env,
    )


def _frame(columns: dict, index, dtype) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(index=index)
    return pd.DataFrame({k: np.asarray(v, dtype=dtype) for k, v in columns.items()},
                        index=index)


def _head_matches(head: A.Head, value) -> bool:
    if isinstance(head.value, bool):
        return value is True  # a bool head pushes the score of True (negatively for "not")
    target = head.value.value if isinstance(head.value, A.Num) else head.value.name
    return value == target


def _signed(rule: A.Rule, value) -> float:
    return -rule.weight if rule.head.value is False else rule.weight


def _code(kb, name: str, value):
    t = kb.variables[name].type
    if isinstance(t, A.EnumType):
        return t.values.index(value)
    if isinstance(t, A.IntType):
        return float(value)
    return value


def _decoded(kb, name: str, arr, index) -> pd.Series:
    t = kb.variables[name].type
    arr = np.asarray(arr)
    if isinstance(t, A.EnumType):
        return pd.Series(pd.Categorical.from_codes(arr.astype(np.int64), categories=list(t.values)),
                         index=index, name=name)
    if isinstance(t, A.IntType):
        return pd.Series(arr.astype(np.int64), index=index, name=name)
    if isinstance(t, A.BoolType):
        return pd.Series(arr.astype(bool), index=index, name=name)
    return pd.Series(arr.astype(np.float64), index=index, name=name)
