"""What every semantics shares: the environment of variable values and the decision layer.

A semantics says how a formula gets a truth value (a probability, a fuzzy degree) and how
variables are represented; the decision layer on top is the same for all of them and
mirrors crisp evaluation (``greybox.rules``): a decided variable's score is
``bias + sum(weight * truth(body))`` (+ residual), and decided variables tied together by
hard constraints are decided jointly, over every joint assignment, with the assignments
that violate a hard constraint masked out (weighted by the constraint's truth).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nn_f

from greybox.errors import ModelError
from greybox.functional import safe_log
from greybox.rules import _ast as A
from greybox.rules._decisions import closure, plan

from .._trace import LazyValues, Trace

__all__ = ["Context", "Env", "Semantics"]


class Env:
    """Variable values for a batch; defined variables are computed on first use. A child
    environment fixes some decided variables and recomputes the definitions that read them."""

    def __init__(self, ctx: Context, parent: Env | None = None, fixed: dict | None = None,
                 tainted: frozenset = frozenset()):
        self.ctx, self.parent, self.tainted = ctx, parent, tainted
        self.values: dict[str, Any] = dict(fixed or {})
        self.depth = 0 if parent is None else parent.depth + 1
        self.key = "" if parent is None else f"@{id(self)}"

    def __getitem__(self, name: str):
        if name in self.values:
            return self.values[name]
        if self.parent is not None and name not in self.tainted:
            return self.parent[name]
        var = self.ctx.kb.variables[name]
        if var.role == "defined":
            value = self.values[name] = self.ctx.define(name, self)
            return value
        raise ModelError(f"variable {name!r} ({var.role}) has no value here")

    def __setitem__(self, name: str, value) -> None:
        self.values[name] = value


class Context:
    """Per-batch state of one semantics. Subclasses implement the value constructors,
    ``define``, ``truth`` and the per-variable queries."""

    def __init__(self, model, batch):
        self.model, self.batch, self.kb = model, batch, model.kb
        self.n = batch.n
        self.device = model.device

    # constructors of values -------------------------------------------------------
    def observe(self, name: str, x: torch.Tensor):
        raise NotImplementedError

    def neural(self, name: str, out: torch.Tensor):
        raise NotImplementedError

    def decided(self, name: str, dist: torch.Tensor):
        """A decided variable's value from its distribution (bool: P(True), (n,); else (n, K))."""
        raise NotImplementedError

    def fixed(self, name: str, index: int):
        """A decided variable fixed to its ``index``-th value (for the joint decision)."""
        raise NotImplementedError

    def define(self, name: str, env: Env):
        raise NotImplementedError

    def truth(self, e: A.Expr, env: Env) -> torch.Tensor:
        """The truth of formula ``e`` in ``env``: a tensor of shape (n,) in [0, 1]."""
        raise NotImplementedError

    #: True while a hard constraint is evaluated: its comparisons are crisp, so that what
    #: it forbids gets weight exactly 0 (hard constraints mask, they do not train)
    hard = False

    def truth_hard(self, e: A.Expr, env: Env) -> torch.Tensor:
        """The truth of a hard constraint (comparisons crisp)."""
        self.hard = True
        try:
            return self.truth(e, env)
        finally:
            self.hard = False

    # queries -------------------------------------------------------------------------
    def log_prob(self, name: str, target: torch.Tensor, env: Env) -> torch.Tensor:
        raise NotImplementedError

    def has_marginal(self, name: str) -> bool:
        """Whether the trace can hold ``name``'s distribution (sums with too many values
        to enumerate cannot)."""
        return True

    def marginal(self, name: str, env: Env) -> torch.Tensor | None:
        raise NotImplementedError

    def mode(self, name: str, env: Env) -> torch.Tensor:
        """The most probable value index (or real value) of a non-decided variable."""
        raise NotImplementedError

    def feasible(self, env: Env) -> torch.Tensor:
        """(n,) bool: some assignment satisfies the hard constraints over non-decided
        variables."""
        out = torch.ones(self.n, dtype=torch.bool, device=self.device)
        for c in plan(self.kb).fixed_constraints:
            out = out & (self.truth_hard(c.formula, env) > 0)
        return out


def signed_weight(model, rule: A.Rule) -> torch.Tensor:
    w = model.rule_weight(rule.name)
    return -w if rule.head.value is False else w


def head_index(kb, rule: A.Rule) -> int:
    """Index of the value a rule's head pushes (1 = True for bools)."""
    t = kb.variables[rule.head.name].type
    if isinstance(t, A.BoolType):
        return 1
    v = rule.head.value
    target = v.value if isinstance(v, A.Num) else v.name
    return list(A.domain_values(t)).index(target)


class Semantics:
    """Base of the semantics in :data:`greybox.semantics.REGISTRY`.

    ``trace(model, batch)`` runs the networks, builds the environment and decides every
    decided variable; subclasses provide a :class:`Context`.
    """

    name = "?"
    context_class: type[Context] = Context

    def __repr__(self) -> str:
        return f"<semantics {self.name}>"

    def trace(self, model, batch) -> Trace:
        kb = model.kb
        ctx = self.context_class(model, batch)
        root = Env(ctx)
        for name in kb.inputs:
            if not isinstance(kb.variables[name].type, A.TensorType):
                root[name] = ctx.observe(name, batch.values[name])
        logits = model.run_networks(batch)
        for name, out in logits.items():
            root[name] = ctx.neural(name, out)
        residual = model.residual_scores(batch)

        bodies, contributions, scores = {}, {}, {}
        probs: dict[str, torch.Tensor] = {}        # bool: P(True) (n,); else (n, K)
        log_dists: dict[str, object] = {}          # (n, K) log-probabilities, or a maker
        joint_best: dict[str, object] = {}         # value index per row, or a maker
        infeasible = ~ctx.feasible(root)
        n = batch.n

        def push(acc, k, x):
            acc[k] = x if acc[k] is None else acc[k] + x

        def full(x):
            return torch.zeros(n, device=ctx.device) if x is None else x.expand(n)

        for comp in plan(kb).components:
            comp_vars = set(comp.variables)
            dynamic_rules = set()
            # per decided variable, one score vector per value (None = 0): bias, residual,
            # and the rules whose bodies read nothing of this component
            partial: dict[str, list] = {}
            for v in comp.variables:
                var = kb.variables[v]
                is_bool = isinstance(var.type, A.BoolType)
                size = len(A.domain_values(var.type))
                acc: list = [None] * size
                bias = model.decisions_bias(v)
                if is_bool:
                    acc[1] = bias
                else:
                    acc = [bias[k] for k in range(size)]
                if v in residual:
                    r = residual[v]
                    for k in ([1] if is_bool else range(size)):
                        push(acc, k, r if is_bool else r[:, k])
                for r in kb.rules_for(v):
                    if closure(kb, A.variables(r.body)) & comp_vars:
                        dynamic_rules.add(r.name)
                        continue
                    t = ctx.truth(r.body, root)
                    bodies[r.name] = t
                    contributions[r.name] = signed_weight(model, r) * t
                    push(acc, head_index(kb, r), contributions[r.name])
                partial[v] = acc
            if not dynamic_rules and not comp.constraints and len(comp.variables) == 1:
                v = comp.variables[0]
                if isinstance(kb.variables[v].type, A.BoolType):
                    score = full(partial[v][1])
                    probs[v] = torch.sigmoid(score)
                    log_dists[v] = (lambda s=score: torch.stack(
                        [nn_f.logsigmoid(-s), nn_f.logsigmoid(s)], 1))
                    joint_best[v] = (lambda s=score: (s > 0).long())
                else:
                    stacked = torch.stack([full(x) for x in partial[v]], 1)
                    log_dists[v] = torch.log_softmax(stacked, dim=1)
                    probs[v] = log_dists[v].exp()
                    joint_best[v] = (lambda s=stacked: s.argmax(dim=1))
            else:
                logp_joint, assignments, ok = self._joint(model, ctx, root, comp, partial,
                                                          dynamic_rules)
                infeasible = infeasible | ~ok   # not in place: the trace may run under vmap
                best = logp_joint.argmax(dim=1)
                for j, v in enumerate(comp.variables):
                    size = len(A.domain_values(kb.variables[v].type))
                    which = torch.tensor([a[j] for a in assignments], device=ctx.device)
                    onehot = torch.nn.functional.one_hot(which, size).to(logp_joint.dtype)
                    p = logp_joint.exp() @ onehot
                    log_dists[v] = safe_log(p)
                    probs[v] = p[:, 1] if isinstance(kb.variables[v].type, A.BoolType) else p
                    joint_best[v] = which[best]
            for v in comp.variables:
                root[v] = ctx.decided(v, probs[v])
            for v in comp.variables:  # rules that read the component: under its marginals
                acc = list(partial[v])
                for r in kb.rules_for(v):
                    if r.name in dynamic_rules:
                        t = ctx.truth(r.body, root)
                        bodies[r.name] = t
                        contributions[r.name] = signed_weight(model, r) * t
                        push(acc, head_index(kb, r), contributions[r.name])
                if isinstance(kb.variables[v].type, A.BoolType):
                    scores[v] = full(acc[1])
                else:
                    scores[v] = torch.stack([full(x) for x in acc], 1)

        values, pending = {}, {}
        for name, var in kb.variables.items():
            if isinstance(var.type, A.TensorType):
                continue
            if var.role == "decided":
                values[name] = probs[name]
            else:
                pending[name] = (lambda name=name: ctx.marginal(name, root))
            if name in pending and not ctx.has_marginal(name):
                del pending[name]
        values = LazyValues(values, pending)

        def log_prob(name, target):
            if name in log_dists:
                if callable(log_dists[name]):
                    log_dists[name] = log_dists[name]()
                return log_dists[name].gather(1, target.long().view(-1, 1)).squeeze(1)
            return ctx.log_prob(name, target, root)

        def decide():
            out = {}
            for name in kb.outputs:
                if name in joint_best:
                    best = joint_best[name]
                    out[name] = best() if callable(best) else best
                else:
                    out[name] = ctx.mode(name, root)
            return out

        order = list(kb.rules)
        constraints = LazyValues({}, {
            c.name: (lambda c=c: (ctx.truth_hard if c.hard else ctx.truth)(c.formula, root))
            for c in kb.constraints.values()})
        return Trace(
            semantics=self.name, n=n, kb=kb, values=values, logits=logits,
            bodies={r: bodies[r] for r in order}, contributions={r: contributions[r] for r in order},
            scores=scores, constraints=constraints, infeasible=infeasible, _log_prob=log_prob,
            _decide=decide,
        )

    def _joint(self, model, ctx, root, comp, partial, dynamic_rules):
        """Log probabilities (n, A) of the component's joint assignments, in enumeration
        order, conditioned on its hard constraints; the assignments; and per row whether
        any assignment is feasible."""
        kb = model.kb
        domains = [A.domain_values(kb.variables[v].type) for v in comp.variables]
        import itertools

        assignments = list(itertools.product(*[range(len(d)) for d in domains]))
        objs, feas = [], []
        for a in assignments:
            fixed = {v: ctx.fixed(v, k) for v, k in zip(comp.variables, a)}
            sub = Env(ctx, root, fixed, comp.tainted)
            obj = 0.0
            for v, k in zip(comp.variables, a):
                if partial[v][k] is not None:
                    obj = obj + partial[v][k]
                for r in kb.rules_for(v):
                    if r.name in dynamic_rules and head_index(kb, r) == k:
                        obj = obj + signed_weight(model, r) * ctx.truth(r.body, sub)
            lf = torch.zeros(ctx.n, device=ctx.device)
            for c in comp.constraints:
                lf = lf + safe_log(ctx.truth_hard(c.formula, sub).clamp(min=0.0))
            objs.append(torch.as_tensor(obj, device=ctx.device).expand(ctx.n))
            feas.append(lf)
        obj = torch.stack(objs, 1)
        lf = torch.stack(feas, 1)
        ok = torch.isfinite(lf).any(dim=1)
        logits = obj + torch.where(ok.unsqueeze(1), lf, torch.zeros_like(lf))
        return torch.log_softmax(logits, dim=1), assignments, ok
