"""The environment a crisp evaluation computes in: the rows' codes, and the defined
variables computed on first use (exactly: an int define settled to its integer, a real
define with a bound on its float64 error)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from greybox.errors import DataError

from . import _ast as A
from ._columns import _type_text, first_row, read_column, read_masked
from ._compile import compile_conjunctions, compile_count, compile_expr
from ._decisions import kb_cached, memo
from ._domain import BIG_INT, big_int
from ._exact import _all_exact, compile_truth, compile_value, exact_value
from ._kb import KnowledgeBase
from ._missing import definite, missing_key

__all__ = ["_Env"]

_Fn = Callable[["_Env"], object]


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
            if name not in self.defines:   # a recursive define or one of its layers
                return self._recursive(name)
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

    def _recursive(self, name):
        """A recursive define: its component computed by fixpoint iteration from false,
        stopped early when nothing changes (at most as many steps as the component has
        atoms: the unrolling's answer, without compiling its layers). A hidden layer read
        directly is computed from its own expression."""
        rec = self.kb.recursion
        if name in rec.layers:
            value = _compiled_truth(self.kb, self.kb.variables[name].expr)(self)
            value = self.values[name] = np.broadcast_to(value, (self.n,)).astype(bool)
            return value
        comp, bodies = _recursive_bodies(self.kb)[name]
        current = {p: np.zeros(self.n, bool) for p in comp}
        for _ in comp:
            self.values.update(current)
            new = {p: np.broadcast_to(bodies[p](self), (self.n,)).astype(bool) for p in comp}
            if all(np.array_equal(new[p], current[p]) for p in comp):
                break
            current = new
        self.values.update(current)
        return current[name]

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


def _compiled_defines(kb: KnowledgeBase) -> dict[str, _Fn]:
    """Each defined variable's compiled expression (once per knowledge base object)."""
    store = memo(kb)
    if "defines" not in store:
        rec = kb.recursion
        recursive = frozenset() if rec is None else rec.layers | rec.original.keys()
        store["defines"] = {
            name: (compile_truth(v.expr, kb) if isinstance(v.type, A.BoolType) else
                   compile_value(v.expr, kb, v.type if isinstance(v.type, A.EnumType) else None))
            for name, v in kb.variables.items() if v.role == "defined"
            and name not in _big_defines(kb)      # (those: Python ints, see _settle_big)
            and name not in recursive}            # (those: by fixpoint, see _recursive)
    return store["defines"]


def _recursive_bodies(kb: KnowledgeBase) -> dict[str, tuple]:
    """Each recursive define's component and its members' own (recursive) expressions,
    compiled (once per knowledge base object)."""
    store = memo(kb)
    if "recursive" not in store:
        rec = kb.recursion
        found = store["recursive"] = {}
        for comp in rec.components:
            bodies = {p: compile_truth(rec.original[p], kb) for p in comp}
            found.update((p, (comp, bodies)) for p in comp)
    return store["recursive"]


def _compiled_truth(kb: KnowledgeBase, e) -> _Fn:
    """Formula ``e``'s compiled truth (once per knowledge base object and formula)."""
    compiled = memo(kb).setdefault("truth", {})
    entry = compiled.get(id(e))
    if entry is None or entry[0] is not e:  # the node is kept: its id is not reused
        entry = compiled[id(e)] = (e, compile_truth(e, kb))
    return entry[1]


def _compiled_bodies(kb: KnowledgeBase) -> tuple[dict[str, int], _Fn | None]:
    """The rule bodies (known true, :func:`definite`) that are conjunctions of comparisons
    with constants, exact in float64, compiled together (:func:`compile_conjunctions`):
    rule name -> row of the function's result, and the function (once per knowledge base
    object)."""
    def make(kb):
        rules = list(kb.rules.values())
        formulas = [definite(kb, r.body) for r in rules]
        positions, together = compile_conjunctions(
            [e if _all_exact(e, kb) else None for e in formulas], kb)
        return {rules[p].name: k for k, p in enumerate(positions)}, together

    return kb_cached(kb, "rule bodies together", make)
