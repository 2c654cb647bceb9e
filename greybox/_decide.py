"""The decision function of a grey-box model: train smooth, decide crisp.

A model is *trained* under a smooth semantics (exact probabilities, fuzzy t-norms), but it
*decides* with one crisp function, and every formal result (reasons, counterfactuals,
verification, the debugger's what-if diffs) is a statement about that same function:

1. each network's most probable value is taken (a bool's logit > 0, a finite concept's
   argmax with ties to the first value, a real output as is); where those values violate
   a hard constraint over non-decided variables, the most probable values that satisfy
   it are used instead (:mod:`greybox._repair`);
2. defined variables follow from them;
3. each decided variable's score is ``bias + residual + sum(weight * [body])`` with the
   learned weights and thresholds, and the decision is the best-scoring (joint)
   assignment that satisfies the hard constraints, ties to the earlier value in domain
   order -- exactly :func:`greybox.rules.evaluate` on the learned knowledge base.

The probability reported with a decision (:meth:`GreyBox.predict_proba`) is the softmax
of the same crisp scores over the values the hard constraints allow (for variables that
constraints tie together: of the best joint score with each value), so the most probable
value is always the decision.
"""

from __future__ import annotations

import numpy as np
import torch

from greybox.rules import ast as A
from greybox.rules.engine import constrains_networks, evaluate_codes, plan

__all__ = ["decide", "decision_scores", "indices", "neural_codes", "output_codes",
           "output_indices"]


def neural_codes(kb, logits: dict) -> dict:
    """Each neural variable's crisp value from its network output, as codes (a bool's
    logit > 0; a finite concept's argmax, ties to the first value, plus its offset: an
    enum's index, an int's value in float64; a real's value in float64)."""
    out = {}
    for name, t in logits.items():
        var = kb.variables[name]
        t = t.detach()
        if isinstance(var.type, A.BoolType):
            out[name] = (t > 0).cpu().numpy()
        elif isinstance(var.type, A.EnumType):
            out[name] = t.argmax(1).cpu().numpy()
        elif A.is_finite_type(var.type):
            out[name] = t.argmax(1).cpu().numpy().astype(np.float64) + var.type.lo
        else:
            out[name] = t.double().cpu().numpy()
    return out


def _evaluate(kb, batch, logits, bias, neural=None):
    """The rules' crisp evaluation on the batch's input codes and the networks' values
    (``neural``: their codes, when already known): the engine's code entry, no label in
    between."""
    columns = dict(batch.columns)
    columns.update(neural_codes(kb, logits) if neural is None else neural)
    return evaluate_codes(kb, columns, n=batch.n, index=batch.index, bias=bias)


def decide(model, batch, logits: dict | None = None):
    """The model's crisp decision of every row of ``batch``: ``(Evaluation, logits)``.

    ``logits`` are the networks' outputs (computed when not given); rows whose networks'
    most probable values violate a hard constraint are decided with the most probable
    values that satisfy it, and the returned logits encode those values (the evaluation
    uses them exactly, in float64).
    """
    kb = model.to_kb()
    if logits is None:
        with torch.no_grad():
            logits = model.run_networks(batch)
    bias = model.bias_table(batch)
    ev = _evaluate(kb, batch, logits, bias)
    bad = np.flatnonzero(ev.infeasible_rows)
    if len(bad) and constrains_networks(kb):
        from ._repair import overrides, repair

        fixed = repair(model, batch, logits, bad.tolist())
        rows = [r for r in bad.tolist() if r in fixed]
        if rows:
            neural = neural_codes(kb, logits)
            for name, col in neural.items():
                d = A.domain(kb.variables[name].type)
                col = col.copy()
                for r in rows:
                    if name in fixed[r]:
                        col[r] = d.code_at(fixed[r][name]) if d.finite else \
                            float(fixed[r][name])
                neural[name] = col
            new = overrides(model.kb, fixed, logits, rows)
            logits = dict(logits)
            for name, sub in new.items():
                full = logits[name].detach().clone()
                full[torch.as_tensor(rows, device=full.device)] = sub.to(full.dtype)
                logits[name] = full
            ev = _evaluate(kb, batch, logits, bias, neural=neural)
    return ev, logits


def decision_scores(model, kb, batch, logits, ev, name: str) -> np.ndarray:
    """(rows, values) scores of a decided variable's values whose softmax is the
    probability reported with the decision: the crisp scores where nothing ties the
    variable; else, per value, the best joint score among the assignments the hard
    constraints allow with that value (``-inf`` where none is allowed)."""
    var = kb.variables[name]
    values = list(A.domain_values(var.type))
    comp = next(c for c in plan(kb).components if name in c.variables)
    if len(comp.variables) == 1 and not comp.constraints:
        return _scores_of(ev, kb, name, values)
    # force each value in turn with a bias larger than any score difference: the
    # evaluation then picks the best allowed assignment containing it, if there is one
    bound = 1.0 + sum(abs(r.weight) for r in kb.rules.values())
    for v in comp.variables:
        s = ev.scores[[c for c in ev.scores.columns if c == v or c.startswith(f"{v}=")]]
        bound += float(np.abs(s.to_numpy()).max(initial=0.0))
    force = 4.0 * bound
    out = np.full((ev.n, len(values)), -np.inf)
    base = model.bias_table(batch)
    for k, x in enumerate(values):
        bias = dict(base)
        b = bias.get(name, 0.0)
        if isinstance(var.type, A.BoolType):
            bias[name] = b + (force if x else -force)
        else:
            b = dict(b) if isinstance(b, dict) else {y: 0.0 for y in values}
            b[x] = b.get(x, 0.0) + force
            bias[name] = b
        forced = _evaluate(kb, batch, logits, bias)
        hit = (forced.code(name) == A.domain(var.type).code(x)) & ~forced.infeasible_rows
        total = np.zeros(ev.n)
        for v in comp.variables:
            vv = kb.variables[v]
            sc = _scores_of(forced, kb, v, list(A.domain_values(vv.type)))
            idx = A.domain(vv.type).index_of(forced.code(v))
            total = total + sc[np.arange(len(idx)), idx]
        if x is not False:   # the forced value's score carries the force (a False scores 0)
            total = total - force
        out[:, k] = np.where(hit, total, -np.inf)
    return out


def indices(t, codes: np.ndarray) -> np.ndarray:
    """Codes (an evaluation's column) as value indices: an enum's index, an int's offset
    from ``lo``, a bool as 0/1; real values as they are (float64)."""
    if A.is_finite_type(t):
        return A.domain(t).index_of(codes)
    return np.asarray(codes).astype(np.float64)


def output_codes(kb, name: str, ev, logits: dict) -> np.ndarray:
    """The decision function's value of variable ``name`` (decided, defined or neural) on
    every row, as codes (:class:`~greybox.rules.ast.Domain`'s convention)."""
    if kb.variables[name].role in ("decided", "defined"):
        return ev.code(name)
    return neural_codes(kb, {name: logits[name]})[name]


def output_indices(kb, name: str, ev, logits: dict) -> np.ndarray:
    """:func:`output_codes` as value indices (:func:`indices`)."""
    return indices(kb.variables[name].type, output_codes(kb, name, ev, logits))


def _scores_of(ev, kb, name: str, values: list) -> np.ndarray:
    """(rows, values) crisp scores of a decided variable (a bool's False scores 0)."""
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        s = ev.scores[name].to_numpy()
        return np.stack([np.zeros_like(s), s], 1)
    return np.stack([ev.scores[f"{name}={v}"].to_numpy() for v in values], 1)
