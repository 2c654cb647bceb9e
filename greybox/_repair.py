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

Two exact solvers compute it. When every variable the constraints read is finite, the
constraints are compiled into 0/1 factors (the probabilistic semantics' own factors, with
crisp comparisons) and max-product variable elimination (:func:`greybox._factors.mpe`)
decides every row of the batch at once -- when the largest table of the elimination
stays within :data:`MAX_TABLE` entries per row. Otherwise Z3 ``Optimize`` solves each row
(finite variables pay ``-log p`` above their most probable value's, rounded to 1e-9).
If Z3 gives no answer within ``timeout`` seconds, :class:`~greybox.errors.SolverError`
says so: a row is reported infeasible only when no values satisfy the constraints.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import z3

from greybox.errors import ModelError, SolverError
from greybox.rules import Z3Encoding, closure, plan, real_value
from greybox.rules import ast as A

__all__ = ["MAX_TABLE", "overrides", "repairable", "repair"]

#: Largest table (entries per row) that max-product elimination may build; larger
#: problems go to Z3, which is exact too but solves one row at a time.
MAX_TABLE = 1 << 22

#: Entries (rows x table) one elimination call may hold at once.
_CHUNK_ENTRIES = 1 << 26


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
        Z3 found neither a solution nor a proof that none exists within ``timeout``
        seconds for a row.
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
        if found is not None:
            return found
    return _by_z3(model, kb, cons, reads, batch, logits, rows, timeout)


def most_probable(model, batch, logits: dict[str, torch.Tensor], rows: list[int],
                  names: list[str]) -> dict[int, dict[str, int]] | None:
    """The most probable joint values of the finite neural variables ``names`` under the
    hard constraints over non-decided variables, by max-product variable elimination over
    the probabilistic semantics' factors: ``{row: {name: value index}}`` (rows without a
    satisfying assignment left out). None when the constraints cannot be compiled into
    factors or the elimination would build a table of more than :data:`MAX_TABLE`
    entries per row (the caller then asks Z3)."""
    from ._factors import elimination_order, mpe
    from .semantics._base import Env
    from .semantics.probabilistic import ProbContext

    kb = model.kb
    sub = batch.take(torch.as_tensor(rows, dtype=torch.long))
    ctx = ProbContext(model, sub)
    root = Env(ctx)
    for name in kb.inputs:
        if not isinstance(kb.variables[name].type, A.TensorType):
            root[name] = ctx.observe(name, sub.values[name])
    pick = torch.as_tensor(rows, dtype=torch.long)
    for name, out in logits.items():
        root[name] = ctx.neural(name, out.detach()[pick.to(out.device)].float())
    ok = torch.ones(len(rows), dtype=torch.bool, device=ctx.device)
    ctx.hard = True
    try:
        for c in plan(kb).fixed_constraints:
            f = ctx.field(c.formula, root)
            if f.scope:
                ctx.add_factor((f.scope, f.t), conditional=False)
            else:
                ok = ok & (f.t.expand(len(rows)) > 0)
    except ModelError:
        return None     # a formula exact inference cannot hold (a digit-by-digit sum)
    finally:
        ctx.hard = False
    factors = ctx.closure(names)
    scopes = tuple(s for s, _ in factors)
    largest = _largest_table(scopes, ctx.sizes, elimination_order(scopes, ()))
    if largest > MAX_TABLE:
        return None
    chunk = max(1, _CHUNK_ENTRIES // max(largest, 1))
    out: dict[int, dict[str, int]] = {}
    for start in range(0, len(rows), chunk):
        part = slice(start, min(len(rows), start + chunk))
        local = [(s, t if t.shape[0] == 1 else t[part]) for s, t in factors]
        with torch.no_grad():
            values, log_w = mpe(local, part.stop - part.start)
        feasible = (torch.isfinite(log_w) & ok[part]).cpu().numpy()
        codes = {n: values[n].cpu().numpy() for n in names}
        for i, r in enumerate(rows[part]):
            if feasible[i]:
                out[r] = {n: int(codes[n][i]) for n in names}
    return out


def _largest_table(scopes, sizes: dict[str, int], order) -> int:
    """Entries per row of the largest table eliminating ``order`` builds."""
    pool = [set(s) for s in scopes]
    largest = max((math.prod(sizes[v] for v in s) for s in pool), default=1)
    for v in order:
        with_v = [s for s in pool if v in s]
        pool = [s for s in pool if v not in s]
        union = set().union(*with_v)
        largest = max(largest, math.prod(sizes[u] for u in union))
        pool.append(union - {v})
    return largest


def _by_z3(model, kb, cons, reads, batch, logits, rows, timeout):
    """:func:`repair` row by row with Z3 ``Optimize``."""
    enc = Z3Encoding(kb)
    names = [n for n in kb.variables if n in reads and kb.variables[n].role != "defined"]
    formulas = [enc.expr(c.formula) for c in cons]
    reals = any(kb.variables[n].role == "neural" and isinstance(kb.variables[n].type, A.RealType)
                for n in names)
    out = {}
    for r in rows:
        opt = z3.Optimize()
        opt.set("timeout", max(1, int(timeout * 1000)))
        opt.add(*formulas)
        cost, soft = [], []
        for n in names:
            var = kb.variables[n]
            x = enc.const(n)
            if var.role == "input":
                opt.add(x == _const(batch.columns[n][r], var.type))
                continue
            bound = enc.type_constraint(n)
            if bound is not None:
                opt.add(bound)
            y = logits[n][r].detach().double().cpu()
            if isinstance(var.type, A.RealType):
                target = z3.RealVal(Fraction(float(y)))
                cost.append(z3.If(x >= target, x - target, target - x))
            else:
                if isinstance(var.type, A.BoolType):
                    p1 = float(torch.sigmoid(y))
                    options = [(z3.Not(x), 1 - p1), (x, p1)]
                else:
                    lo = var.type.lo if isinstance(var.type, A.IntType) else 0
                    options = [(x == lo + k, float(pk))
                               for k, pk in enumerate(torch.softmax(y, 0).numpy())]
                top = max(pk for _, pk in options)
                for is_value, pk in options:
                    if pk < top:    # the most probable value costs 0
                        soft.append((is_value, _nll(pk, top)))
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
        if result != z3.sat:
            continue
        m = opt.model()
        values = {}
        for n in names:
            var = kb.variables[n]
            if var.role != "neural":
                continue
            v = m.eval(enc.const(n), model_completion=True)
            if isinstance(var.type, A.RealType):
                values[n] = real_value(v)
            elif isinstance(var.type, A.BoolType):
                values[n] = int(z3.is_true(v))
            else:
                code = v.as_long()
                values[n] = code - var.type.lo if isinstance(var.type, A.IntType) else code
        out[int(r)] = values
    return out


def _nll(p: float, top: float = 1.0) -> z3.ArithRef:
    """``log top - log p`` (the cost of a value of probability ``p`` over the most
    probable one's, ``top``) as a Z3 rational, to 1e-9."""
    cost = math.log(max(top, 1e-12)) - math.log(max(p, 1e-12))
    return z3.RealVal(Fraction(max(cost, 0.0)).limit_denominator(10**9))


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
