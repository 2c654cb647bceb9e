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
from greybox.rules import ast as A
from greybox.rules.engine import definite, missing_key, not_false, plan

from .._batch import kb_cached
from .._trace import LazyValues, Trace
from ._stacked import _value_index, decided_families

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
        if var.role == "input" and self.parent is None and not isinstance(
                var.type, A.TensorType) and name in self.ctx.batch.values:
            # observed when first read: a relational model has an input per grounded
            # member, most of them read only stacked (see _stacked.py)
            value = self.values[name] = self.ctx.observe(name, self.ctx.batch.values[name])
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
        #: this pass's differences between each ``~`` threshold and the value predict
        #: decides with (see :func:`._compiled.stated_threshold`)
        self.offsets: dict[int, float] = {}

    # comparisons as predict decides them ----------------------------------------
    def _crisp(self, e) -> bool:
        """Whether comparison or membership test ``e`` is crisp here."""
        raise NotImplementedError

    def _observed_truth(self, e) -> torch.Tensor | None:
        """Where ``e`` is crisp here and reads observed inputs only: its truth from the
        crisp evaluation of the batch (exact where float64 arithmetic may round), as 0/1
        float32; None otherwise (or where the batch does not hold those columns)."""
        if self._crisp(e) and self.model.compiled.observed(e):
            return self.batch.crisp_truth(self.kb, e, self.device)
        return None

    def _widened(self, e, env, evaluate, narrow):
        """``evaluate(e, env)``, in float64 where ``e`` reads real values or fractions
        (:meth:`Compiled.float64`) and this pass is not already wide; such a result goes
        through ``narrow`` (its truth back to float32)."""
        if self.wide or not self.model.compiled.float64(e):
            return evaluate(e, env)
        self.wide = True
        try:
            out = evaluate(e, env)
        finally:
            self.wide = False
        return narrow(out)

    def missing(self, name: str) -> torch.Tensor:
        """``name is missing`` per row (optional input ``name``), as 0/1 float32."""
        return self.batch.values[missing_key(name)].to(torch.float32)

    # constructors of values -------------------------------------------------------
    def observe(self, name: str, x: torch.Tensor):
        raise NotImplementedError

    def neural(self, name: str, out: torch.Tensor):
        raise NotImplementedError

    def neurals(self, outs: dict[str, torch.Tensor]) -> dict:
        """Each neural variable's value from its network output (``neural`` of each)."""
        return {name: self.neural(name, out) for name, out in outs.items()}

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

    def log_probs(self, names: tuple[str, ...], target: torch.Tensor, env: Env):
        """:meth:`log_prob` of many bool variables at once, (n, M); None where this
        context has no faster way than one by one."""
        return None

    def has_marginal(self, name: str) -> bool:
        """Whether the trace can hold ``name``'s distribution (sums with too many values
        to enumerate cannot)."""
        return True

    def marginal(self, name: str, env: Env) -> torch.Tensor | None:
        raise NotImplementedError

    def mode(self, name: str, env: Env) -> torch.Tensor:
        """The most probable value index (or real value) of a non-decided variable."""
        raise NotImplementedError

    def constraint_values(self, env: Env) -> LazyValues:
        """Each constraint's truth in ``env`` by name, computed on first access (hard ones
        with crisp comparisons)."""
        return LazyValues({}, {
            c.name: (lambda c=c: (self.truth_hard if c.hard else self.truth)(
                not_false(self.kb, c.formula), env))
            for c in self.kb.constraints.values()})

    def rule_values(self, env: Env):
        """Rules evaluated a template at a time (a :class:`~._stacked.RuleValues`), or None
        where the semantics evaluates each rule alone."""
        return None

    def feasible(self, env: Env) -> torch.Tensor:
        """(n,) bool: some assignment satisfies the hard constraints over non-decided
        variables."""
        out = torch.ones(self.n, dtype=torch.bool, device=self.device)
        for c in plan(self.kb).fixed_constraints:
            out = out & (self.truth_hard(not_false(self.kb, c.formula), env) > 0)
        return out


def signed_weight(model, rule: A.Rule) -> torch.Tensor:
    w = model.rule_weight(rule.name)
    return -w if rule.head.value is False else w


def head_index(kb, rule: A.Rule) -> int:
    """Index of the value a rule's head pushes (1 = True for bools)."""
    return _value_index(kb, rule)


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
        return _Run(self, model, batch).trace()

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
                        obj = obj + signed_weight(model, r) * ctx.truth(
                            definite(kb, r.body), sub)
            lf = torch.zeros(ctx.n, device=ctx.device)
            for c in comp.constraints:
                lf = lf + safe_log(ctx.truth_hard(not_false(kb, c.formula), sub)
                                   .clamp(min=0.0))
            objs.append(torch.as_tensor(obj, device=ctx.device).expand(ctx.n))
            feas.append(lf)
        obj = torch.stack(objs, 1)
        lf = torch.stack(feas, 1)
        ok = torch.isfinite(lf).any(dim=1)
        logits = obj + torch.where(ok.unsqueeze(1), lf, torch.zeros_like(lf))
        return torch.log_softmax(logits, dim=1), assignments, ok


class _Run:
    """One forward pass of a semantics: the environment, then each component of the
    decision plan scored and decided in order, then the :class:`Trace`."""

    def __init__(self, semantics: Semantics, model, batch):
        self.sem, self.model, self.kb, self.n = semantics, model, model.kb, batch.n
        self.ctx = ctx = semantics.context_class(model, batch)
        self.root = root = Env(ctx)   # table inputs are observed when first read
        self.logits = model.run_networks(batch)
        root.values.update(ctx.neurals(self.logits))
        self.residual = model.residual_scores(batch)
        self.bodies: dict = {}
        self.contributions: dict = {}
        self.scores: dict = {}
        self.probs: dict[str, torch.Tensor] = {}   # bool: P(True) (n,); else (n, K)
        self.log_dists: dict[str, object] = {}     # (n, K) log-probabilities, or a maker
        self.bool_scores: dict[str, torch.Tensor] = {}   # bools decided alone: the score
        self.score_columns: dict[str, tuple] = {}  # decided at once: (their scores, column)
        self.joint_best: dict[str, object] = {}    # value index per row, or a maker
        self.infeasible = (~ctx.feasible(root) if plan(self.kb).fixed_constraints else
                           torch.zeros(self.n, dtype=torch.bool, device=ctx.device))
        self.stacked = ctx.rule_values(root)

    def full(self, x):
        return torch.zeros(self.n, device=self.ctx.device) if x is None else x.expand(self.n)

    def _rule(self, r, env, acc) -> None:
        """Rule ``r``'s truth in ``env`` recorded, its contribution pushed onto ``acc``."""
        t = self.ctx.truth(definite(self.kb, r.body), env)
        self.bodies[r.name] = t
        self.contributions[r.name] = signed_weight(self.model, r) * t
        _push(acc, head_index(self.kb, r), self.contributions[r.name])

    def partial(self, comp) -> tuple[dict, set]:
        """Per decided variable of ``comp``, one score per value (None = 0): bias,
        residual, and the rules whose bodies read nothing of the component; and the
        names of the rules that do (decided with the component)."""
        kb, dynamic, partial = self.kb, set(), {}
        for v in comp.variables:
            t = kb.variables[v].type
            # an additive variable's one score is pushed like a bool's score of True
            is_bool = isinstance(t, A.BoolType) or v in kb.additive
            size = 2 if is_bool else A.domain(t).size
            bias = self.model.decisions_bias(v)
            acc: list = [None, bias] if is_bool else [bias[k] for k in range(size)]
            if v in self.residual:
                r = self.residual[v]
                for k in ([1] if is_bool else range(size)):
                    _push(acc, k, r if is_bool else r[:, k])
            stacked = self.stacked
            for r in kb.rules_for(v):
                if stacked is not None and r.name in stacked:
                    continue  # its stack's contributions are pushed below
                if comp.reads_itself(r):
                    dynamic.add(r.name)
                else:
                    self._rule(r, self.root, acc)
            for k, x in (stacked.sums().get(v, ()) if stacked is not None else ()):
                _push(acc, k, x)
            partial[v] = acc
        return partial, dynamic

    def decide_alone(self, v: str, acc: list) -> None:
        """A variable nothing ties to others: sigmoid / softmax of its scores; an
        additive one's value is its score."""
        if v in self.kb.additive:
            score = self.full(acc[1])
            self.probs[v] = score
            self.joint_best[v] = score
            return
        if isinstance(self.kb.variables[v].type, A.BoolType):
            score = self.full(acc[1])
            self.probs[v] = torch.sigmoid(score)
            self.bool_scores[v] = score
            self.log_dists[v] = (lambda s=score: torch.stack(
                [nn_f.logsigmoid(-s), nn_f.logsigmoid(s)], 1))
            self.joint_best[v] = (lambda s=score: (s > 0).long())
        else:
            stacked = torch.stack([self.full(x) for x in acc], 1)
            self.log_dists[v] = torch.log_softmax(stacked, dim=1)
            self.probs[v] = self.log_dists[v].exp()
            self.joint_best[v] = (lambda s=stacked: s.argmax(dim=1))

    def decide_jointly(self, comp, partial: dict, dynamic: set) -> None:
        """A component decided over its joint assignments (hard constraints mask)."""
        logp, assignments, ok = self.sem._joint(self.model, self.ctx, self.root, comp,
                                                partial, dynamic)
        self.infeasible = self.infeasible | ~ok   # not in place: the trace may run under vmap
        best = logp.argmax(dim=1)
        for j, v in enumerate(comp.variables):
            t = self.kb.variables[v].type
            which = torch.tensor([a[j] for a in assignments], device=self.ctx.device)
            onehot = torch.nn.functional.one_hot(which, A.domain(t).size).to(logp.dtype)
            p = logp.exp() @ onehot
            self.log_dists[v] = safe_log(p)
            self.probs[v] = p[:, 1] if isinstance(t, A.BoolType) else p
            self.joint_best[v] = which[best]

    def final_scores(self, comp, partial: dict, dynamic: set) -> None:
        """The rules that read the component, under its marginals; the scores."""
        for v in comp.variables:
            acc = list(partial[v])
            for r in self.kb.rules_for(v):
                if r.name in dynamic:
                    self._rule(r, self.root, acc)
            if isinstance(self.kb.variables[v].type, A.BoolType) or v in self.kb.additive:
                self.scores[v] = self.full(acc[1])
            else:
                self.scores[v] = torch.stack([self.full(x) for x in acc], 1)

    def decide_family(self, i: int, heads: tuple[str, ...]) -> bool:
        """Bools decided alone, each by its bias and the summed contributions of rule
        stack ``i`` only, decided at once (as :meth:`decide_alone` does one by one);
        False where one has a residual (then they are decided one by one)."""
        if any(h in self.residual for h in heads):
            return False
        total = self.stacked.total(i)                           # (rows, heads)
        model = self.model
        bias = model.decisions_bias(heads[0]).expand(len(heads)) if model.shares_bias(heads) \
            else torch.stack([model.decisions_bias(h) for h in heads])
        scores = bias + total
        probs = torch.sigmoid(scores)
        for t, v in enumerate(heads):
            score = scores[:, t]
            self.scores[v] = self.bool_scores[v] = score
            self.score_columns[v] = (scores, t)
            self.probs[v] = probs[:, t]
            self.log_dists[v] = (lambda s=score: torch.stack(
                [nn_f.logsigmoid(-s), nn_f.logsigmoid(s)], 1))
            self.joint_best[v] = (lambda s=score: (s > 0).long())
            self.root[v] = self.ctx.decided(v, self.probs[v])
        return True

    def trace(self) -> Trace:
        done: set[str] = set()
        if self.stacked is not None:
            for i, heads in decided_families(self.kb):
                if self.decide_family(i, heads):
                    done.update(heads)
        for comp in plan(self.kb).components:
            if comp.variables[0] in done:
                continue
            partial, dynamic = self.partial(comp)
            if not dynamic and not comp.constraints and len(comp.variables) == 1:
                self.decide_alone(comp.variables[0], partial[comp.variables[0]])
            else:
                self.decide_jointly(comp, partial, dynamic)
            for v in comp.variables:
                if v not in self.kb.additive:   # nothing reads an additive variable
                    self.root[v] = self.ctx.decided(v, self.probs[v])
            self.final_scores(comp, partial, dynamic)
        return self.assemble()

    def _rules(self, order, ready: dict, what: str):
        """Per rule, in order: those evaluated alone, then the stacked ones on access."""
        if self.stacked is None:
            return {r: ready[r] for r in order}
        return LazyValues(ready, [r for r in order if r not in ready],
                          getattr(self.stacked, what), order=order)

    def assemble(self) -> Trace:
        kb, ctx, root = self.kb, self.ctx, self.root
        decided, pending = kb_cached(kb, f"trace_values/{type(ctx).__name__}",
                                     lambda kb: _trace_values(kb, ctx))
        values = {name: self.probs[name] for name in decided}
        log_dists, joint_best = self.log_dists, self.joint_best

        def log_prob(name, target):
            if name in kb.additive:
                raise ModelError(f"{name!r} is a number the rules add up (a regression "
                                 "output): it has no log-probability")
            if name in log_dists:
                if callable(log_dists[name]):
                    log_dists[name] = log_dists[name]()
                return log_dists[name].gather(1, target.long().view(-1, 1)).squeeze(1)
            return ctx.log_prob(name, target, root)

        bool_scores, columns = self.bool_scores, self.score_columns

        def log_probs(names, target):
            where = [columns.get(name) for name in names]
            if where[0] is not None and all(w is not None and w[0] is where[0][0]
                                            for w in where):   # a family decided at once
                s = where[0][0]
                picked = [w[1] for w in where]
                if picked != list(range(s.shape[1])):
                    s = s[:, picked]
                return torch.where(target.bool(), nn_f.logsigmoid(s), nn_f.logsigmoid(-s))
            scores = [bool_scores.get(name) for name in names]
            if all(s is not None for s in scores):   # bools decided alone, as log_prob
                s = torch.stack(scores, 1)
                return torch.where(target.bool(), nn_f.logsigmoid(s), nn_f.logsigmoid(-s))
            return ctx.log_probs(names, target, root)

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
        constraints = ctx.constraint_values(root)
        return Trace(
            semantics=self.sem.name, n=self.n, kb=kb, values=LazyValues(values, pending, lambda name: ctx.marginal(name, root)),
            logits=self.logits, bodies=self._rules(order, self.bodies, "body"),
            contributions=self._rules(order, self.contributions, "contribution"),
            scores=self.scores,
            constraints=constraints, infeasible=self.infeasible, _log_prob=log_prob,
            _decide=decide, _log_probs=log_probs)


def _trace_values(kb, ctx) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The decided variables, and the others whose values a trace holds (a context's
    ``has_marginal`` depends on the rules only)."""
    decided, others = [], []
    hidden = kb.layers
    for name, var in kb.variables.items():
        if isinstance(var.type, A.TensorType) or name in hidden:   # (a recursion's layers)
            continue
        if var.role == "decided":
            decided.append(name)
        elif ctx.has_marginal(name):
            others.append(name)
    return tuple(decided), tuple(others)


def _push(acc: list, k: int, x) -> None:
    acc[k] = x if acc[k] is None else acc[k] + x
