"""The most probable values under hard constraints as a 0/1 linear programme (HiGHS).

:func:`by_milp` is the repair's route between max-product elimination (exact, every row at
once, but only while its tables stay small) and Z3 ``Optimize`` (anything, but slow on
large combinatorial problems: a 9x9 sudoku times out). It applies when every neural
variable the hard constraints read is finite and every constraint is made of pieces that a
linear programme over one-hot binaries ``b[v, k]`` ("variable ``v`` takes its ``k``-th
value") states exactly:

* conjunctions (``and``; ``forall`` is grounded into one);
* ``x != y`` of two finite neural variables (what ``all_different`` grounds to): per value,
  ``b[x, k] + b[y, k] <= 1``; a conjunction of such pairs that covers every pair of a set
  of variables becomes one ``sum b[v, k] <= 1`` per value over the set;
* comparisons ``< <= > >= == !=`` of integer-linear expressions (integer coefficients) of
  finite neural variables (an int is ``sum_k value_k b[v, k]``; an enum its index; a bool
  ``b[v, 1]``), inputs (the row's values: constants) and numbers; ``!=`` of expressions
  with one extra binary;
* ``x in {...}`` of a finite neural variable, a bool neural variable as a literal, ``not``
  of a literal or of a comparison, ``define``\\ s substituted by their expressions;
* ``->``, ``or``, ``not`` whose parts read no neural variable (the row's inputs decide
  them: ``given[c] > 0 -> digit[c] == given[c]``).

Anything else (``or`` of neural formulas, ``count``, reals, optional inputs, ...) returns
None: the caller asks Z3. The objective is the networks' log-probabilities, as the other
routes use them (each value's cost ``log p(most probable) - log p(value)``, in float64);
HiGHS solves it to optimality (relative gap 0; its absolute gap and feasibility tolerances
are 1e-6). Ties: where several assignments are equally probable the one HiGHS returns is
kept -- deterministic (same inputs, same answer), not necessarily the elimination's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from greybox.errors import SolverError
from greybox.rules import ast as A

__all__ = ["by_milp", "log_probs"]

_NOT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


class _Unsupported(Exception):
    """A piece of a constraint the linear programme cannot state exactly."""


def log_probs(out: torch.Tensor) -> torch.Tensor:
    """Networks' outputs (rows,) for a bool (a logit) or (rows, values) as float64
    log-probabilities of the values in domain order, (rows, values)."""
    out = out.detach().double()
    if out.dim() == 1:
        return torch.stack([F.logsigmoid(-out), F.logsigmoid(out)], 1)
    return torch.log_softmax(out, dim=1)


def by_milp(model, kb, cons, reads, batch, logits, rows, timeout: float
            ) -> dict[int, dict[str, int]] | None:
    """:func:`greybox._repair.repair` for finite neural variables by a 0/1 linear programme
    per row: ``{row: {name: value index}}`` (infeasible rows left out); None when some
    constraint is not linear over the values' indicators (see the module docstring).

    Raises
    ------
    SolverError
        HiGHS did not prove an optimum (or infeasibility) within ``timeout`` seconds.
    """
    from greybox.rules.engine import not_false

    neural = [n for n in kb.neural if n in reads]
    inputs = [n for n in reads if kb.variables[n].role == "input"]
    if any(kb.variables[n].role not in ("neural", "input", "defined") for n in reads) \
            or any(not A.is_finite_type(kb.variables[n].type) for n in neural) \
            or any(kb.variables[n].optional for n in inputs):
        return None
    formulas = [not_false(kb, c.formula) for c in cons]
    costs = {}
    for n in neural:
        lp = log_probs(logits[n][torch.as_tensor(rows, device=logits[n].device)]).cpu().numpy()
        costs[n] = lp.max(axis=1, keepdims=True) - lp   # the most probable value costs 0
    shared = None
    out = {}
    for i, r in enumerate(rows):
        if shared is None or inputs:
            try:
                prog = _Program(kb, neural, {n: batch.columns[n][r] for n in inputs})
                for f in formulas:
                    prog.require(f)
            except _Unsupported:
                return None
            shared = prog
        values = shared.solve(np.concatenate([costs[n][i] for n in neural]), r, timeout)
        if values is not None:
            out[int(r)] = values
    return out


class _Program:
    """One row's 0/1 linear programme: the one-hot binaries of the neural variables, extra
    binaries, and the rows ``lo <= sum coef * x <= hi``."""

    def __init__(self, kb, neural: list[str], inputs: dict):
        self.kb, self.neural, self.inputs = kb, neural, inputs
        self.offset, self.size = {}, 0
        for n in neural:
            self.offset[n] = self.size
            self.size += A.domain(kb.variables[n].type).size
        self.rows: list[tuple[dict, float, float]] = [
            ({self.offset[n] + k: 1.0 for k in range(A.domain(kb.variables[n].type).size)},
             1.0, 1.0) for n in neural]
        self.feasible = True
        self._matrix = None

    # ------------------------------------------------------------------ constants
    def _var(self, e):
        """The declaration behind a :class:`Var`, through defines; None otherwise."""
        return self.kb.variables[e.name] if isinstance(e, A.Var) else None

    def _enum_type(self, e):
        """The enum type an expression is read in (a variable's, through defines)."""
        v = self._var(e)
        return v.type if v is not None and isinstance(v.type, A.EnumType) else None

    def _labels(self, left, right) -> tuple:
        """``left`` and ``right`` with an enum label (``hi``) replaced by its index in the
        type of the other side: the same label has a different index in each enum type
        that lists it. A label whose type is not known here is left to the Z3 route."""
        def index(e, other):
            if not isinstance(e, A.Sym):
                return e
            t = self._enum_type(other)
            if t is None or e.name not in t.values:
                raise _Unsupported("enum value")
            return A.Num(t.values.index(e.name))
        return index(left, right), index(right, left)

    def reads_neural(self, e) -> bool:
        from greybox.rules.engine import closure

        return any(self.kb.variables[n].role == "neural"
                   for n in closure(self.kb, A.variables(e)))

    def truth(self, e) -> bool:
        """A formula that reads no neural variable: its value in the row."""
        if isinstance(e, A.BoolConst):
            return bool(e.value)
        if isinstance(e, A.Not):
            return not self.truth(e.operand)
        if isinstance(e, A.And):
            return all(self.truth(a) for a in e.args)
        if isinstance(e, A.Or):
            return any(self.truth(a) for a in e.args)
        if isinstance(e, A.Implies):
            return not self.truth(e.left) or self.truth(e.right)
        if isinstance(e, A.Iff):
            return self.truth(e.left) == self.truth(e.right)
        v = self._var(e)
        if v is not None and v.role == "defined":
            return self.truth(v.expr)
        if v is not None and isinstance(v.type, A.BoolType):
            return bool(self.inputs[v.name])
        if isinstance(e, A.Compare):
            left, right = self._labels(e.left, e.right)
            terms, const = self.linear(A.Sum((left, right), ("-",)))
            return {"<": const < 0, "<=": const <= 0, ">": const > 0, ">=": const >= 0,
                    "==": const == 0, "!=": const != 0}[e.op]
        if isinstance(e, A.InSet):
            _, x = self.linear(e.operand)
            return any(x == self.linear(self._labels(e.operand, w)[1])[1] for w in e.values)
        raise _Unsupported(type(e).__name__)

    # ----------------------------------------------------------------- expressions
    def _code_terms(self, v, scale: float) -> dict:
        d = A.domain(v.type)
        return {self.offset[v.name] + k: scale * float(d.code_at(k)) for k in range(d.size)}

    def linear(self, e) -> tuple[dict, float]:
        """An integer-linear expression as ``({column: coefficient}, constant)``."""
        if isinstance(e, A.Num):
            return {}, float(e.value)
        if isinstance(e, A.BoolConst):
            return {}, float(e.value)
        if isinstance(e, A.Sym):   # a label's index depends on the type it is read in:
            raise _Unsupported("enum value")   # see _labels, which the comparisons call
        if isinstance(e, A.Neg):
            terms, c = self.linear(e.operand)
            return {k: -w for k, w in terms.items()}, -c
        if isinstance(e, A.Sum):
            terms, c = self.linear(e.args[0])
            for op, a in zip(e.ops, e.args[1:]):
                more, d = self.linear(a)
                s = 1.0 if op == "+" else -1.0
                for k, w in more.items():
                    terms[k] = terms.get(k, 0.0) + s * w
                c += s * d
            return terms, c
        if isinstance(e, A.Mul):
            (lt, lc), (rt, rc) = self.linear(e.left), self.linear(e.right)
            if lt and rt:
                raise _Unsupported("product")
            terms, c, k = (rt, rc, lc) if not lt else (lt, lc, rc)
            return {j: k * w for j, w in terms.items()}, k * c
        v = self._var(e)
        if v is None:
            raise _Unsupported(type(e).__name__)
        if v.role == "defined":
            return self.linear(v.expr)
        if v.role == "input":
            return {}, float(self.inputs[v.name])
        return self._code_terms(v, 1.0), 0.0

    # -------------------------------------------------------------------- formulas
    def require(self, e) -> None:
        """Add rows that hold exactly where formula ``e`` is true."""
        if not self.reads_neural(e):
            if not self.truth(e):
                self.feasible = False
            return
        if isinstance(e, A.And):
            self._all_different([a for a in e.args if self._pair(a)])
            for a in e.args:
                if not self._pair(a):
                    self.require(a)
            return
        if isinstance(e, A.Implies):
            if self.reads_neural(e.left):
                raise _Unsupported("->")
            if self.truth(e.left):
                self.require(e.right)
            return
        if isinstance(e, A.Or):
            live = [a for a in e.args if self.reads_neural(a)]
            if len(live) > 1:
                raise _Unsupported("or")
            if not any(self.truth(a) for a in e.args if a not in live):
                self.require(live[0])
            return
        v = self._var(e)
        if v is not None and v.role == "defined":
            return self.require(v.expr)
        if v is not None and v.role == "neural" and isinstance(v.type, A.BoolType):
            self.rows.append(({self.offset[v.name] + 1: 1.0}, 1.0, 1.0))
            return
        if isinstance(e, A.Not):
            return self._negation(e.operand)
        if isinstance(e, A.Compare):
            return self._compare(e.op, e.left, e.right)
        if isinstance(e, A.InSet):
            return self._in_set(e)
        raise _Unsupported(type(e).__name__)

    def _negation(self, e) -> None:
        v = self._var(e)
        if v is not None and v.role == "defined":
            return self._negation(v.expr)
        if v is not None and v.role == "neural" and isinstance(v.type, A.BoolType):
            self.rows.append(({self.offset[v.name]: 1.0}, 1.0, 1.0))
            return
        if isinstance(e, A.Compare):
            return self._compare(_NOT[e.op], e.left, e.right)
        if isinstance(e, A.Not):
            return self.require(e.operand)
        raise _Unsupported("not")

    def _compare(self, op: str, left, right) -> None:
        left, right = self._labels(left, right)
        terms, c = self.linear(A.Sum((left, right), ("-",)))
        terms = {k: w for k, w in terms.items() if w != 0}
        if any(not float(w).is_integer() for w in terms.values()):
            raise _Unsupported("fractional coefficient")
        # sum(terms) + c  OP  0, with an integer sum: the bound on it, rounded
        if op in ("<", "<="):
            hi = math.floor(-c) if op == "<=" else math.ceil(-c) - 1
            self.rows.append((terms, -np.inf, float(hi)))
        elif op in (">", ">="):
            lo = math.ceil(-c) if op == ">=" else math.floor(-c) + 1
            self.rows.append((terms, float(lo), np.inf))
        elif op == "==":
            if float(-c).is_integer():
                self.rows.append((terms, -c, -c))
            else:
                self.feasible = False
        elif float(-c).is_integer():           # != : one side or the other, by a binary
            lo = sum(min(w, 0.0) for w in terms.values()) + c
            hi = sum(max(w, 0.0) for w in terms.values()) + c
            z = self._binary()
            # z = 0: sum + c <= -1; z = 1: sum + c >= 1
            self.rows.append(({**terms, z: -(hi + 1)}, -np.inf, -1.0 - c))
            self.rows.append(({**terms, z: lo - 1}, lo - c, np.inf))

    def _binary(self) -> int:
        self.size += 1
        return self.size - 1

    def _in_set(self, e) -> None:
        v = self._var(e.operand)
        if v is None or v.role != "neural":
            raise _Unsupported("in")
        d = A.domain(v.type)
        allowed = {self.linear(self._labels(e.operand, w)[1])[1] for w in e.values}
        keep = [k for k in range(d.size) if float(d.code_at(k)) in allowed]
        self.rows.append(({self.offset[v.name] + k: 1.0 for k in keep}, 1.0, 1.0))

    def _pair(self, e) -> bool:
        """``x != y`` of two distinct finite neural variables."""
        if not (isinstance(e, A.Compare) and e.op == "!="):
            return False
        a, b = self._var(e.left), self._var(e.right)
        return a is not None and b is not None and a.role == b.role == "neural" \
            and a.name != b.name

    def _all_different(self, pairs: list) -> None:
        """``x != y`` pairs: per value, at most one variable of each clique takes it
        (cliques found greedily; a grounded ``all_different`` is one)."""
        edges = {frozenset((p.left.name, p.right.name)) for p in pairs}
        near: dict[str, set] = {}
        for e in edges:
            x, y = tuple(e)
            near.setdefault(x, set()).add(y)
            near.setdefault(y, set()).add(x)
        left = set(edges)
        for e in sorted(edges, key=sorted):
            if e not in left:
                continue
            group = sorted(e)
            for w in sorted(set.intersection(*(near[u] for u in group)) - set(group)):
                if all(w in near[u] for u in group):
                    group.append(w)
            left -= {frozenset((u, w)) for u in group for w in group if u != w}
            self._at_most_once(group)

    def _at_most_once(self, group: list[str]) -> None:
        per_value: dict[float, dict] = {}
        for n in group:
            d = A.domain(self.kb.variables[n].type)
            for k in range(d.size):
                per_value.setdefault(float(d.code_at(k)), {})[self.offset[n] + k] = 1.0
        self.rows.extend((terms, -np.inf, 1.0) for terms in per_value.values()
                         if len(terms) > 1)

    # --------------------------------------------------------------------- solving
    def solve(self, cost: np.ndarray, r, timeout: float) -> dict[str, int] | None:
        """The value indices of least total cost, None when the row is infeasible."""
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_matrix

        if not self.feasible:
            return None
        c = np.zeros(self.size)
        c[:len(cost)] = cost
        if self._matrix is None:     # built once, kept for the rows that share the programme
            ri, ci, vals = [], [], []
            for i, (terms, _, _) in enumerate(self.rows):
                ri += [i] * len(terms)
                ci += list(terms)
                vals += list(terms.values())
            a = csr_matrix((vals, (ri, ci)), shape=(len(self.rows), self.size))
            self._matrix = LinearConstraint(a, np.array([lo for _, lo, _ in self.rows]),
                                            np.array([hi for _, _, hi in self.rows]))
        res = milp(c, integrality=np.ones(self.size), bounds=Bounds(0, 1),   # quiet: disp off
                   constraints=self._matrix,
                   options={"time_limit": float(timeout), "mip_rel_gap": 0.0})
        if res.status == 2:
            return None
        if res.status != 0 or res.x is None:
            raise SolverError(
                f"HiGHS found no most probable values satisfying the hard constraints for "
                f"row {r} within {timeout:g} s ({res.message}); the row is not known to be "
                "infeasible")
        out = {}
        for n in self.neural:
            size = A.domain(self.kb.variables[n].type).size
            out[n] = int(np.argmax(res.x[self.offset[n]:self.offset[n] + size]))
        return out

