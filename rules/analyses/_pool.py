"""A pool of points that answers most of check's satisfiability questions without Z3.

The per-rule and pairwise analyses ask, for hundreds of rules and tens of thousands of
pairs, whether some point of the space satisfies a conjunction of rule bodies (and
their negations). One point where the conjunction holds answers "yes" with a witness, so
the pool keeps points that satisfy the declared types and the hard constraints -- random
ones, ones at the constants the formulas compare with, and every model Z3 returns --
with each rule body's exact truth at each point (:mod:`greybox.rules._exact`). Z3 is
asked only what no point answers: typically the "no" questions (a rule that never
fires, a body that implies another), which is what check reports.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import z3

from .. import _ast as A
from .._exact import compile_truth, compile_value
from .._missing import definite, missing_key, not_false
from .._z3 import real_value

__all__ = ["Pool"]

#: points drawn at random (before the hard constraints filter them)
SAMPLES = 512
#: models from Z3 are added to the pool in batches of this many
BATCH = 32


def _constants(kb) -> dict[str, set]:
    """Per variable, the numbers formulas compare it with directly."""
    out: dict[str, set] = {}
    exprs = [r.body for r in kb.rules.values()] + [c.formula for c in kb.constraints.values()]
    for e in exprs:
        for node in A.walk(e):
            if isinstance(node, A.Compare):
                for var, num in ((node.left, node.right), (node.right, node.left)):
                    if isinstance(var, A.Var) and isinstance(num, A.Num):
                        out.setdefault(var.name, set()).add(num.value)
    return out


def _draw(t, consts, rng, k: int) -> np.ndarray:
    """``k`` values of type ``t`` as codes: uniform ones and ones at the constants."""
    if isinstance(t, A.BoolType):
        return rng.random(k) < 0.5
    if isinstance(t, A.EnumType):
        return rng.integers(0, len(t.values), k).astype(np.int64)
    if isinstance(t, A.IntType):
        base = rng.integers(t.lo, t.hi, k, endpoint=True).astype(np.float64)
        near = [c + d for c in consts for d in (-1, 0, 1)
                if isinstance(c, int) and t.lo <= c + d <= t.hi]
        near += [t.lo, t.hi]
    else:
        if t.lo is not None:
            lo, hi = float(t.lo), float(t.hi)
        else:
            spread = max([1.0] + [2.0 * abs(float(c)) for c in consts])
            lo, hi = -spread, spread
        base = rng.uniform(lo, hi, k)
        near = [lo, hi]
        for c in consts:
            c = float(c)
            near += [x for x in (c, math.nextafter(c, -math.inf), math.nextafter(c, math.inf))
                     if lo <= x <= hi]
    if near:
        pick = rng.random(k) < 0.4
        base[pick] = rng.choice(np.asarray(near, dtype=np.float64), int(pick.sum()))
    return base


class Pool:
    """Points within the declared types (and the hard constraints, when ``constraints``)
    with each rule body's truth at them."""

    def __init__(self, ctx, *, constraints: bool, seed: int = 0):
        kb = ctx.kb
        self.ctx, self.kb = ctx, kb
        #: optional inputs, whose masks are drawn too (under their missing_key)
        self.optional = [n for n in ctx.enc.free_names() if kb.variables[n].optional]
        self.names = ctx.enc.free_names() + [missing_key(n) for n in self.optional]
        self.hard = ([not_false(kb, c.formula) for c in kb.constraints.values() if c.hard]
                     if constraints else [])
        self._bodies = {r.name: compile_truth(definite(kb, r.body), kb)
                        for r in kb.rules.values()}
        self._hard = [compile_truth(f, kb) for f in self.hard]
        self._defines = {
            n: (compile_truth(v.expr, kb) if isinstance(v.type, A.BoolType) else
                compile_value(v.expr, kb, v.type if isinstance(v.type, A.EnumType) else None))
            for n, v in kb.variables.items() if v.role == "defined"}
        self.values = {n: np.empty(0, dtype=self._dtype(n)) for n in self.names}
        self.truth = {r: np.empty(0, dtype=bool) for r in self._bodies}
        self._pending: list[dict] = []
        self._frame: pd.DataFrame | None = None
        rng = np.random.default_rng(seed)
        consts = _constants(kb)
        drawn = {n: _draw(kb.variables[n].type, consts.get(n, ()), rng, SAMPLES)
                 for n in self.names if n in kb.variables}
        drawn.update({missing_key(n): rng.random(SAMPLES) < 0.25 for n in self.optional})
        self._add(drawn, SAMPLES)

    def _dtype(self, name):
        if name not in self.kb.variables:   # an optional input's mask
            return bool
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return bool
        return np.int64 if isinstance(t, A.EnumType) else np.float64

    def __len__(self) -> int:
        return len(next(iter(self.truth.values()), ()))

    def _add(self, values: dict, k: int) -> None:
        """Evaluate the points (codes per name), keep those within the hard constraints."""
        from .._evaluate import _Env

        if k == 0:
            return
        env = _Env(self.kb, dict(values), self._defines, k, pd.RangeIndex(k), checked=False)
        keep = np.ones(k, bool)
        try:
            for f in self._hard:
                keep &= np.broadcast_to(f(env), (k,))
            truth = {r: np.broadcast_to(f(env), (k,)) for r, f in self._bodies.items()}
        except (ArithmeticError, ValueError):  # pragma: no cover - a point Z3 settles
            return
        if env.outside is not None:  # a define outside its type: arithmetic there is
            keep &= ~env.outside     # not proved exact; leave those points to Z3
        for n in self.names:
            self.values[n] = np.concatenate([self.values[n], np.asarray(values[n])[keep]])
        for r, t in truth.items():
            self.truth[r] = np.concatenate([self.truth[r], t[keep]])
        self._frame = None

    def add_model(self, model: z3.ModelRef) -> None:
        """Remember a Z3 model as a point (evaluated with the next batch)."""
        point = {}
        enc = self.ctx.enc
        for n in self.optional:
            point[missing_key(n)] = z3.is_true(
                model.eval(enc.missing(n), model_completion=True))
        for n in self.names:
            if n not in self.kb.variables:
                continue
            t = self.kb.variables[n].type
            v = model.eval(enc.const(n), model_completion=True)
            if isinstance(t, A.BoolType):
                point[n] = z3.is_true(v)
            elif isinstance(t, A.EnumType):
                point[n] = v.as_long()
            elif isinstance(t, A.IntType):
                point[n] = float(v.as_long())
            else:
                point[n] = real_value(v)
        self._pending.append(point)
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            values = {n: np.array([p[n] for p in pending], dtype=self._dtype(n))
                      for n in self.names}
            self._add(values, len(pending))

    def body(self, rule: str) -> np.ndarray:
        """Where the rule's body holds, per point."""
        return self.truth[rule]

    def witness(self, i: int) -> pd.DataFrame:
        """Point ``i`` as a one-row frame of the input and neural values."""
        if self._frame is None:
            cols = {}
            for n in self.ctx.enc.free_names(("input", "neural")):
                t = self.kb.variables[n].type
                v = self.values[n]
                if isinstance(t, A.EnumType):
                    cols[n] = pd.Categorical.from_codes(v, categories=list(t.values))
                elif isinstance(t, A.IntType):
                    cols[n] = v.astype(np.int64)
                else:
                    cols[n] = v
                if n in self.optional:   # missing there: shown as missing
                    cols[n] = pd.Series(cols[n], dtype=object).where(
                        ~self.values[missing_key(n)], None)
            self._frame = pd.DataFrame(cols)
        return self._frame.iloc[[i]].reset_index(drop=True)
