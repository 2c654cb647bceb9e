"""The current decision of every row taken apart (step 1 of :mod:`._suggest`'s search):
each rule's body and each value's score per row, so that the decision under any weight
or number of a rule concluding the output is known without re-running the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from greybox.errors import GreyboxError
from greybox.rules import ast as A
from greybox.rules.engine import plan

from ._edits import Disable, SetThreshold, SetWeight, _numbers
from ._show import _py
from ._sweep import _best_interval, _compare_of, _force, _holds, _integral, _mirror, _Sweep


@dataclass
class _Cand:
    edits: tuple
    kind: str
    gain: int            # estimated: (aimed fixes - broken) * (2n + 1) + (all fixes - broken)
    decision: np.ndarray | None = None   # estimated decisions (codes) after the edits
    state: dict | None = None            # the rule's new state (direct rules), for pairs
    sweep: _Sweep | None = None          # a one-number edit's sweep (for ``keep``)


class _Scene:
    """The current decision of every row, taken apart (step 1 of the module docstring)."""

    def __init__(self, dbg, target: np.ndarray):
        from greybox.semantics.crisp import crisp_scores, evaluate_with

        model = dbg.model.eval()
        self.dbg = dbg
        self.kb = kb = model.to_kb()
        self.output = out = dbg.output
        batch = dbg.batch
        with torch.no_grad():
            ev, logits = model.decision.evaluate(batch)
            self.bias = model.bias_table(batch)
        self.ev = ev
        self._evaluate = lambda k: evaluate_with(model, k, batch, logits, bias=self.bias)
        var = kb.variables[out]
        self.values = list(A.domain_values(var.type))
        self.n = n = batch.n
        self.correct = dbg._now["correct"].to_numpy()
        self.target = target
        # the codes of the targets among the values
        pos = {v: i for i, v in enumerate(self.values)}
        self.truth = np.array([pos.get(_py(t), -2) for t in dbg.target], dtype=np.int64)
        # gain of each row if its decision is right / wrong (aimed fixes first, then all)
        big = 2 * n + 1   # |all fixes - broken| <= n: the aimed count is round(gain / big)
        self.gain_right = np.where(self.correct, 0, np.where(target, big + 1, 1)).astype(np.int64)
        self.gain_wrong = np.where(self.correct, -big - 1, 0).astype(np.int64)
        with torch.no_grad():
            self.S = crisp_scores(model, batch, ev, logits, out)
        self.comp = next(c for c in plan(kb).components if out in c.variables)
        self._sides: dict = {}
        self.direct = {}
        for r in kb.rules.values():
            if r.head.name != out or self.comp.reads_itself(r):
                continue
            head = r.head.value
            col = 1 if isinstance(head, bool) else self.values.index(
                head.value if isinstance(head, A.Num) else head.name)
            sign = -1.0 if head is False else 1.0
            body = ev.bodies[r.name].to_numpy()
            self.direct[r.name] = {"rule": r, "col": col, "sign": sign, "weight": r.weight,
                                   "body": body}

    # -- decisions
    def gain(self, d: np.ndarray) -> int:
        right = d == self.truth
        return int(np.where(right, self.gain_right, self.gain_wrong).sum())

    def row_gain(self, d: np.ndarray) -> np.ndarray:
        return np.where(d == self.truth, self.gain_right, self.gain_wrong)

    def without(self, S, name):
        """(score of the rule's value without the rule, best other score, its value)."""
        st = self.direct[name]
        col = st["col"]
        x = S[:, col] - st["sign"] * st["weight"] * st["body"]
        if S.shape[1] == 2:   # a bool: the other value
            best = S[:, 1 - col]
            return x, best, np.where(np.isfinite(best), 1 - col, -1)
        others = S.copy()
        others[:, col] = -np.inf
        arg = np.argmax(others, axis=1)
        best = others[np.arange(self.n), arg]
        arg = np.where(np.isfinite(best), arg, -1)
        return x, best, arg

    def pick(self, x, best, arg, col):
        """The decision when the rule's value scores ``x``."""
        wins = (x > best) | ((x == best) & (col < arg))
        d = np.where(np.isfinite(x) & (wins | (arg < 0)), col, arg)
        return d

    def decisions(self, S):
        best = S.max(axis=1)
        d = np.argmax(S, axis=1)
        return np.where(np.isfinite(best), d, -1)

    # -- sweeps over one rule's weight / one of its numbers (exact)
    def sweep_weight(self, S, name):
        st = self.direct[name]
        x, best, arg = self.without(S, name)
        col, sign = st["col"], st["sign"]
        fires = st["body"].astype(bool)
        feasible = np.isfinite(x)     # the rule's value allowed by the hard constraints
        alone = arg < 0               # ... and the only one allowed
        # a firing row's decision: the rule's value above the breakpoint (below it for a
        # "not" head), the best other value on the other side
        up = np.where(alone, col, arg) if sign < 0 else np.full(self.n, col)
        down = np.full(self.n, col) if sign < 0 else np.where(alone, col, arg)
        lo_d = np.where(feasible, down, arg)
        hi_d = np.where(feasible, up, arg)
        with np.errstate(invalid="ignore"):
            point = sign * (best - x)
        moving = fires & feasible & ~alone & (lo_d != hi_d)
        still = self.pick(x + sign * st["weight"] * fires, best, arg, col)
        still = np.where(feasible, still, arg)
        gain = self.row_gain(still)
        found = _best_interval(point[moving], self.row_gain(lo_d)[moving],
                               self.row_gain(hi_d)[moving], gain[~moving].sum(),
                               st["weight"], closed=None, flip=True,
                               now_gain=gain[moving].sum())
        if found is None:
            return None
        w, total, sweep = found
        if w == 0:
            return None   # switching the rule off: Disable says it
        d = self.pick(x + sign * w * fires, best, arg, col)
        d = np.where(feasible, d, arg)
        return SetWeight(name, w), total, d, {"weight": w}, sweep

    def sides(self, rule, index):
        """(the other side's value per row, "other OP t", the body with the comparison
        forced true, forced false, the number) of a rule's ``index``-th number; None
        when it is not a side of an order comparison. Cached per rule body."""
        key = (id(rule.body), index)
        if key in self._sides:
            return self._sides[key][1]
        num = _numbers(rule.body)[index]
        found = _compare_of(rule.body, num)
        out = None
        if found is not None and any(self.ev.kb.variables[n].optional
                                     for n in A.variables(found[0])
                                     if n in self.ev.kb.variables):
            found = None   # unknown where a value is missing: no sweep over its rows
        if found is not None:
            compare, on_left = found
            other = compare.right if on_left else compare.left
            op = _mirror(compare.op) if on_left else compare.op   # as "other OP t"
            ev = self.ev
            try:
                e = np.asarray(ev.value(other), dtype=np.float64)
            except (GreyboxError, KeyError, TypeError):
                e = None
            if e is not None:
                out = (e, op, ev.holds(_force(rule.body, compare, True)).to_numpy(),
                       ev.holds(_force(rule.body, compare, False)).to_numpy(), num, other)
        self._sides[key] = (rule.body, out)   # the body is kept: its id is not reused
        return out

    def sweep_number(self, S, name, index):
        st = self.direct[name]
        found = self.sides(st["rule"], index)
        if found is None:
            return None
        e, op, body_t, body_f, num, other = found
        x, best, arg = self.without(S, name)
        sw = st["sign"] * st["weight"]
        d_on = self.pick(x + sw, best, arg, col := st["col"])
        d_off = self.pick(x, best, arg, col)
        d_t = np.where(body_t, d_on, d_off)
        d_f = np.where(body_f, d_on, d_off)
        # "e > t" and "e >= t" hold below the breakpoint t = e; "e < t", "e <= t" above it
        low_true = op in (">", ">=")
        lo_d, hi_d = (d_t, d_f) if low_true else (d_f, d_t)
        moving = (lo_d != hi_d) & np.isfinite(e)
        current = float(num.value)
        cur_d = np.where(_holds(e, op, current), d_t, d_f)
        # which end of an interval between breakpoints keeps the same rows: "e >= t" and
        # "e < t" the upper one, "e > t" and "e <= t" the lower one
        closed = "hi" if op in (">=", "<") else "lo" if op in (">", "<=") else None
        gain = self.row_gain(cur_d)
        found = _best_interval(e[moving], self.row_gain(lo_d)[moving],
                               self.row_gain(hi_d)[moving], gain[~moving].sum(), current,
                               closed=closed, integral=_integral(self.kb, other),
                               now_gain=gain[moving].sum())
        if found is None:
            return None
        t, total, sweep = found
        d = np.where(_holds(e, op, t), d_t, d_f)
        return SetThreshold(name, index, t), total, d, {"number": (index, t)}, sweep

    def sweep_bias(self, S, col):
        """The best shift of the score of value ``col`` on every row (a bias change),
        as the weight of a rule that always fires."""
        key = "\0bias"
        self.direct[key] = {"rule": None, "col": col, "sign": 1.0, "weight": 0.0,
                            "body": np.ones(self.n)}
        try:
            return self.sweep_weight(S, key)
        finally:
            del self.direct[key]

    def disable(self, S, name):
        x, best, arg = self.without(S, name)
        d = self.pick(x, best, arg, self.direct[name]["col"])
        return Disable(name), self.gain(d), d, {"weight": 0.0}

    def apply(self, S, name, edit, d):
        """The score table and the rule's state after ``edit`` of direct rule ``name``."""
        st = dict(self.direct[name])
        rule = st["rule"]
        if isinstance(edit, SetWeight):
            st["weight"] = edit.weight
        elif isinstance(edit, Disable):
            st["weight"] = 0.0
        elif isinstance(edit, SetThreshold):
            target = _numbers(rule.body)[edit.index]
            value = A.Num(float(edit.value), target.learnable, span=target.span)
            body = A.rewrite(rule.body, lambda node: value if node is target else None)
            rule = st["rule"] = _replace_body(rule, body)
            st["body"] = self.ev.holds(body).to_numpy()
        old = self.direct[name]
        S2 = S.copy()
        col = st["col"]
        S2[:, col] = S[:, col] - old["sign"] * old["weight"] * old["body"] \
            + st["sign"] * st["weight"] * st["body"]
        return S2, st

    # -- by evaluation (rules elsewhere, constraints)
    def evaluate(self, edits) -> np.ndarray | None:
        dbg = self.dbg
        try:
            kb = dbg._edited_kb(dbg._edits + list(edits))
            ev = self._evaluate(kb)
        except GreyboxError:
            return None
        dec = ev.decisions[self.output]
        pos = {v: i for i, v in enumerate(self.values)}
        d = np.array([pos[_py(v)] for v in dec], dtype=np.int64)
        return np.where(ev.infeasible.to_numpy(), -1, d)


def _replace_body(rule, body):
    import dataclasses

    return dataclasses.replace(rule, body=body)
