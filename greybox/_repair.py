"""Hard constraints over real-valued network outputs: the most probable satisfying values.

Finite variables are conditioned exactly by the semantics. When a hard constraint reads a
network's *real* output (``neural risk: real = net(x)`` with ``constraint risk >= 0``),
there is nothing to enumerate; for each row that violates it, Z3 ``Optimize`` finds the
values closest to what the networks said that satisfy every hard constraint over
non-decided variables: real outputs move as little as possible (absolute deviation),
finite neural variables pay ``-log p`` for the value they take. Rows where no values
exist stay flagged infeasible.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import z3

from greybox.errors import SolverError
from greybox.rules import Z3Encoding, closure, plan, real_value
from greybox.rules import ast as A

__all__ = ["overrides", "repairable", "repair"]


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
    """For each row position in ``rows``: neural values (real values; value indices of
    finite variables) satisfying the hard constraints, closest to the networks' outputs.
    Rows without a solution are left out."""
    kb = model.to_kb()
    enc = Z3Encoding(kb)
    cons = list(plan(kb).fixed_constraints)
    names = set()
    for c in cons:
        names |= closure(kb, A.variables(c.formula))
    names = [n for n in kb.variables if n in names and kb.variables[n].role != "defined"]
    formulas = [enc.expr(c.formula) for c in cons]
    out = {}
    for r in rows:
        opt = z3.Optimize()
        opt.set("timeout", max(1, int(timeout * 1000)))
        opt.add(*formulas)
        cost = []
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
            elif isinstance(var.type, A.BoolType):
                p = float(torch.sigmoid(y))
                cost.append(z3.If(x, _nll(p), _nll(1 - p)))
            else:
                p = torch.softmax(y, 0).numpy()
                lo = var.type.lo if isinstance(var.type, A.IntType) else 0
                for k, pk in enumerate(p):
                    cost.append(z3.If(x == lo + k, _nll(float(pk)), z3.RealVal(0)))
        if cost:
            opt.minimize(z3.Sum(cost))
        try:
            result = opt.check()
        except z3.Z3Exception as err:  # pragma: no cover - depends on Z3 internals
            raise SolverError(f"Z3 failed while repairing row {r}: {err}") from None
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


def _nll(p: float) -> z3.ArithRef:
    return z3.RealVal(Fraction(-math.log(max(p, 1e-12))).limit_denominator(10**9))


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
