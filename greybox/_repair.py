"""Hard constraints over network outputs: the most probable values that satisfy them.

When the networks' most probable values violate a hard constraint over non-decided
variables (``constraint rows: all_different(...)`` over neural digits, ``constraint risk >=
0`` over a real output), :func:`repair` replaces them, row by row, with the values that
satisfy every such constraint and are closest to what the networks said:

* finite neural variables (bool, int, enum) take their **most probable joint assignment**
  (MAP): the values maximising the sum of the networks' log-probabilities subject to the
  hard constraints. The networks' outputs are independent given the inputs, so this is
  the most probable world consistent with the constraints -- exactly, never an
  approximation;
* real-valued outputs have no probability: they move as little as possible (least total
  absolute deviation), and that distance is added to the finite variables' ``-log p``.

Three exact solvers compute it. When every neural variable the constraints read is
finite, the constraints are compiled into 0/1 factors (the probabilistic semantics' own,
with crisp comparisons) and max-sum variable elimination over the networks'
log-probabilities (in float64) decides every row of the batch at once -- when the largest
table of the elimination stays within :data:`MAX_TABLE` entries per row (4**10 for a 4x4
sudoku). Otherwise, when every constraint is linear over the values' one-hot indicators
(conjunctions, ``all_different``, integer-linear comparisons, ``in``, bool literals; see
:mod:`greybox._repair_milp`), HiGHS solves each row's 0/1 linear programme (a 9x9 sudoku in
a fraction of a second). Otherwise Z3 ``Optimize`` solves each row: weighted MaxSAT with its
exact ``wmax`` engine when every neural variable involved is finite, one arithmetic
objective otherwise; a value's cost is its log-probability below its variable's most
probable value, as a rational to 1e-9. If HiGHS or Z3 proves no optimum within ``timeout``
seconds, :class:`~greybox.errors.SolverError` says so: a row is reported infeasible only
when no values satisfy the constraints. Where the most probable values are unique the
three routes agree; among equally probable ones each picks its own (deterministically).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
import z3

from greybox._repair_milp import by_milp, log_probs
from greybox.errors import ModelError, SolverError
from greybox.rules import Z3Encoding
from greybox.rules import ast as A
from greybox.rules.engine import (
    closure,
    missing_key,
    not_false,
    plan,
    real_value,
    z3_milliseconds,
    z3_serialised,
)

__all__ = ["MAX_TABLE", "overrides", "repairable", "repair"]

#: Largest table (entries per row) that max-product elimination may build; larger
#: problems go to Z3, which is exact too but solves one row at a time.
MAX_TABLE = 1 << 22

#: The 0/1 linear programme route (a module attribute: tests switch it off).
_by_milp = by_milp

#: Entries (rows x table, float64) one elimination call may hold at once (256 MB).
_CHUNK_ENTRIES = 1 << 25


def repairable(kb) -> bool:
    """True when some hard constraint over non-decided variables reads a real-valued
    neural variable."""
    for c in plan(kb).fixed_constraints:
        for n in closure(kb, A.variables(c.formula)):
            v = kb.variables[n]
            if v.role == "neural" and isinstance(v.type, A.RealType):
                return True
    return False


def _const(value, t):
    if isinstance(t, A.BoolType):
        return z3.BoolVal(bool(value))
    if isinstance(t, (A.IntType, A.EnumType)):
        return z3.IntVal(int(value))
    return z3.RealVal(Fraction(float(value)))


def repair(model, batch, logits: dict[str, torch.Tensor], rows, *, timeout: float = 5.0
           ) -> dict[int, dict[str, float | int]]:
    """For each row position in ``rows``: the neural values (real values; value indices of
    finite variables) that satisfy the hard constraints over non-decided variables and
    are the most probable (finite variables) and closest (real ones) given the networks'
    outputs ``logits``. Rows where no values satisfy them are left out.

    Raises
    ------
    SolverError
        HiGHS or Z3 found neither the optimum nor a proof that none exists within
        ``timeout`` seconds for a row.
    """
    rows = [int(r) for r in rows]
    if not rows:
        return {}
    kb = model.to_kb()
    cons = list(plan(kb).fixed_constraints)
    reads = set()
    for c in cons:
        reads |= closure(kb, A.variables(c.formula))
    neural = [n for n in kb.neural if n in reads]
    if neural and all(A.is_finite_type(kb.variables[n].type) for n in neural):
        found = most_probable(model, batch, logits, rows, neural)
        if found is None:
            found = _by_milp(model, kb, cons, reads, batch, logits, rows, timeout)
        if found is not None:
            return found
    return _by_z3(model, kb, cons, reads, batch, logits, rows, timeout)


def most_probable(model, batch, logits: dict[str, torch.Tensor], rows: list[int],
                  names: list[str]) -> dict[int, dict[str, int]] | None:
    """The most probable joint values of the finite neural variables ``names`` under the
    hard constraints over non-decided variables: ``{row: {name: value index}}`` (rows
    without a satisfying assignment left out), by max-sum variable elimination over the
    networks' log-probabilities and the constraints' 0/1 factors (compiled by the
    probabilistic semantics, comparisons crisp). Log-space, in float64: no probability
    underflows, however confident the networks. None when the constraints cannot be
    compiled into factors or the elimination would build a table of more than
    :data:`MAX_TABLE` entries per row (the caller then asks Z3)."""
    from ._factors import elimination_order, largest_table
    from .semantics._base import Env
    from .semantics.probabilistic import ProbContext

    kb = model.kb
    pick = torch.as_tensor(rows, dtype=torch.long)
    sub = batch.take(pick)
    ctx = ProbContext(model, sub)
    found: list = []          # the factors the constraints (and their defines) add
    add = ctx.add_factor

    def record(factor, *, conditional=True):
        found.append(factor)
        add(factor, conditional=conditional)

    ctx.add_factor = record
    root = Env(ctx)
    for name in kb.inputs:
        if not isinstance(kb.variables[name].type, A.TensorType):
            root[name] = ctx.observe(name, sub.values[name])
    for name, out in logits.items():
        root[name] = ctx.neural(name, out.detach()[pick.to(out.device)])
    ok = torch.ones(len(rows), dtype=torch.bool, device=ctx.device)
    ctx.hard = True
    try:
        for c in plan(kb).fixed_constraints:
            for f in ctx.parts_of(ctx.field(not_false(kb, c.formula), root)):
                if f.scope:
                    ctx.add_factor((f.scope, f.t), conditional=False)
                else:
                    ok = ok & (f.t.expand(len(rows)) > 0)
    except ModelError:
        return None     # a formula exact inference cannot hold (a digit-by-digit sum)
    finally:
        ctx.hard = False
    factors = [(s, torch.log(t.double().clamp_min(0.0))) for s, t in ctx.unfolded(found)]
    for name in names:
        factors.append(((name,), log_probs(logits[name][pick.to(logits[name].device)])))
    scopes = tuple(s for s, _ in factors)
    order = elimination_order(scopes, ())
    largest = largest_table(scopes, ctx.sizes, order)
    if largest > MAX_TABLE:
        return None
    chunk = max(1, _CHUNK_ENTRIES // max(largest, 1))
    out: dict[int, dict[str, int]] = {}
    for start in range(0, len(rows), chunk):
        part = slice(start, min(len(rows), start + chunk))
        local = [(s, t if t.shape[0] == 1 else t[part]) for s, t in factors]
        with torch.no_grad():
            values, best = _max_sum(local, order, ctx.sizes, part.stop - part.start)
        feasible = (torch.isfinite(best) & ok[part]).cpu().numpy()
        codes = {n: values[n].cpu().numpy() for n in names}
        for i, r in enumerate(rows[part]):
            if feasible[i]:
                out[r] = {n: int(codes[n][i]) for n in names}
    return out


def _aligned(t: torch.Tensor, scope: tuple, to: tuple, sizes: dict) -> torch.Tensor:
    """Log-factor ``t`` over ``scope`` (batch first) viewed over ``to``, broadcastable."""
    present = [v for v in to if v in scope]
    t = t.permute(0, *[1 + scope.index(v) for v in present])
    return t.reshape([t.shape[0]] + [sizes[v] if v in scope else 1 for v in to])


def _max_sum(factors, order, sizes: dict, n: int):
    """Max-sum elimination of log-factors in ``order``, then back-tracking: the value
    index of every variable (n,), and the best total log-weight per row (``-inf`` where
    every assignment is forbidden)."""
    pool = list(factors)
    trail = []
    for v in order:
        with_v = [f for f in pool if v in f[0]]
        pool = [f for f in pool if v not in f[0]]
        full = tuple(dict.fromkeys(u for s, _ in with_v for u in s))
        total = None      # smallest first: a full-size table is built as late as possible
        for s, t in sorted(with_v, key=lambda f: f[1].numel()):
            x = _aligned(t, s, full, sizes)
            total = x if total is None else total + x
        best, arg = total.max(dim=1 + full.index(v))
        scope = tuple(u for u in full if u != v)
        trail.append((v, scope, arg))
        pool.append((scope, best))
    score = torch.zeros(n, dtype=torch.float64, device=factors[0][1].device)
    for _, t in pool:          # nothing left in their scopes: one number per row
        score = score + t.reshape(-1)
    rows = torch.arange(n, device=score.device)
    values: dict[str, torch.Tensor] = {}
    for v, scope, arg in reversed(trail):
        arg = arg.expand(n, *arg.shape[1:])
        values[v] = arg[(rows, *[values[u] for u in scope])]
    return values, score


@z3_serialised
def _by_z3(model, kb, cons, reads, batch, logits, rows, timeout):
    """:func:`repair` row by row with Z3 ``Optimize``."""
    enc = Z3Encoding(kb)
    names = [n for n in kb.variables if n in reads and kb.variables[n].role != "defined"]
    formulas = [enc.expr(not_false(kb, c.formula)) for c in cons]
    reals = any(kb.variables[n].role == "neural" and isinstance(kb.variables[n].type, A.RealType)
                for n in names)
    out = {}
    for r in rows:
        opt = z3.Optimize()
        opt.set("timeout", z3_milliseconds(timeout))
        opt.add(*formulas)
        cost, soft = _row_costs(opt, enc, kb, names, batch, logits, r)
        m = _solve(opt, cost, soft, reals, r, timeout)
        if m is not None:
            out[int(r)] = {n: _read(m, enc, kb.variables[n]) for n in names
                           if kb.variables[n].role == "neural"}
    return out


def _row_costs(opt, enc, kb, names, batch, logits, r) -> tuple[list, list]:
    """Row ``r``'s inputs fixed in ``opt``; the costs of the real outputs' distances and
    the finite values' soft costs ``(is_value, log p(best) - log p(value))``."""
    cost, soft = [], []
    for n in names:
        var = kb.variables[n]
        x = enc.const(n)
        if var.role == "input":
            opt.add(x == _const(batch.columns[n][r], var.type))
            if var.optional:   # missing or not, as in the row
                gap = bool(batch.columns[missing_key(n)][r])
                opt.add(enc.missing(n) if gap else z3.Not(enc.missing(n)))
            continue
        bound = enc.type_constraint(n)
        if bound is not None:
            opt.add(bound)
        y = logits[n][r].detach().double().cpu()
        if isinstance(var.type, A.RealType):
            target = z3.RealVal(Fraction(float(y)))
            cost.append(z3.If(x >= target, x - target, target - x))
            continue
        if isinstance(var.type, A.BoolType):
            options = [(z3.Not(x), float(F.logsigmoid(-y))), (x, float(F.logsigmoid(y)))]
        else:
            dom = A.domain(var.type)
            options = [(x == dom.z3_code(dom.code_at(k)), float(lp))
                       for k, lp in enumerate(torch.log_softmax(y, 0).numpy())]
        top = max(lp for _, lp in options)
        soft.extend((is_value, _cost(top - lp)) for is_value, lp in options
                    if lp < top)    # the most probable value costs 0
    return cost, soft


def _solve(opt, cost, soft, reals: bool, r, timeout: float):
    """The model of the least total cost, None when the row is infeasible."""
    if reals:
        # one objective: the finite values' costs and the real outputs' distances
        opt.minimize(z3.Sum([*cost, *(z3.If(c, w, z3.RealVal(0)) for c, w in soft)]))
    else:
        # weighted MaxSAT; Z3's exact "wmax" engine solves a 4x4 sudoku in 0.1 s
        # where the default (maxres) takes seconds and the arithmetic sum above more
        opt.set("maxsat_engine", "wmax")
        for is_value, w in soft:
            opt.add_soft(z3.Not(is_value), str(w.as_fraction()))
    try:
        result = opt.check()
    except z3.Z3Exception as err:  # pragma: no cover - depends on Z3 internals
        raise SolverError(f"Z3 failed while repairing row {r}: {err}") from None
    if result == z3.unknown:
        raise SolverError(
            f"Z3 found no most probable values satisfying the hard constraints for row "
            f"{r} within {timeout:g} s ({opt.reason_unknown()}); the row is not known "
            "to be infeasible")
    return opt.model() if result == z3.sat else None


def _read(m, enc, var):
    """A neural variable's repaired value from Z3's model: a real, or a value index."""
    v = m.eval(enc.const(var.name), model_completion=True)
    if isinstance(var.type, A.RealType):
        return real_value(v)
    if isinstance(var.type, A.BoolType):
        return int(z3.is_true(v))
    return A.domain(var.type).index_of(v.as_long())


def _cost(gap: float) -> z3.ArithRef:
    """A value's cost, ``log p(most probable) - log p(value)`` (from log-probabilities in
    float64: no floor, however improbable), as a Z3 rational to 1e-9."""
    return z3.RealVal(Fraction(max(gap, 0.0)).limit_denominator(10**9))


def overrides(kb, repaired: dict[int, dict], logits: dict[str, torch.Tensor], rows
              ) -> dict[str, torch.Tensor]:
    """Network outputs for the rows ``rows`` (in this order) that encode the repaired
    values: the value for a real, a certain logit for the rest."""
    out = {}
    for name, t in logits.items():
        var = kb.variables[name]
        sub = t[torch.as_tensor(np.asarray(rows), device=t.device)].detach().clone()
        for i, r in enumerate(rows):
            if name not in repaired[r]:
                continue
            v = repaired[r][name]
            if isinstance(var.type, A.RealType):
                sub[i] = v
            elif isinstance(var.type, A.BoolType):
                sub[i] = 1e4 if v else -1e4
            else:
                sub[i] = -1e4
                sub[i, v] = 0.0
        out[name] = sub
    return out
