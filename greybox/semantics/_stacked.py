"""Constraints of one family evaluated at once under the t-norm semantics.

A relational knowledge base grounds ``constraint fs(p in person, q in person): ...`` into
one constraint per pair; evaluated one by one, 10,000 groundings would cost 10,000 Python
walks of the formula per batch. Groundings of one template share the formula's shape and
differ only in the variables they read, so they are grouped by shape (a :class:`Stack`)
and evaluated once, by the same fuzzy context, on values stacked along a groundings axis:
truth degrees (rows, G), distributions (rows, G, K). The truth degrees are the same,
elementwise, as evaluating each grounding alone (``tests/features/test_relational.py`` checks it).

Rules of one template are stacked the same way (:class:`RuleStack`): their bodies evaluated
at once, their contributions ``weight * body`` summed per head variable with one
``index_add``, when their bodies read nothing decided (so that the stack can be computed
before any decision).

A constraint joins a stack only where stacked evaluation is exactly the per-grounding one:
no ``~`` threshold (each grounding has its own parameter), and comparisons that are crisp
(nothing neural below them) or exact on distributions (a finite variable against a
constant, or two variables with the same domain under ``==`` / ``!=``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from greybox.rules import ast as A
from greybox.rules.engine import closure, definite, not_false, plan

from .._batch import kb_cached

__all__ = ["ConstraintValues", "RuleStack", "RuleValues", "Stack", "decided_families",
           "rule_stacks", "stacks"]

#: Fewest groundings worth a stack (below it, one-by-one evaluation costs as little).
MIN_STACK = 4
_PLACEHOLDER = "\x00"


@dataclass(frozen=True, eq=False)
class Stack:
    """Constraints of the same shape. ``formula`` is the first one's; ``columns`` maps each
    variable it reads to the variable read in its place by each constraint, in order."""

    names: tuple[str, ...]
    formula: A.Expr
    columns: dict[str, tuple[str, ...]]
    hard: bool
    weights: tuple[float, ...]


def stacks(kb) -> tuple[Stack, ...]:
    """The stacks of ``kb``'s constraints (computed once per knowledge base object)."""
    return _entry(kb)[0]


def _positions(kb) -> dict[str, tuple[int, int]]:
    """Each stacked constraint's stack and place in it."""
    return _entry(kb)[1]


def _entry(kb) -> tuple:
    """``(stacks, their places, rule stacks, their places)``, once per knowledge
    base object (by identity: equal knowledge bases hold different AST nodes, and the
    compiled caches look comparisons up by node)."""
    return kb_cached(kb, "stacks", _make_entry)


def _make_entry(kb) -> tuple:
    groups: dict[tuple, list] = {}
    for c in kb.constraints.values():
        if not_false(kb, c.formula) is not c.formula:
            continue   # reads an optional input: evaluated alone, three-valued
        shaped = _shape(c.formula, kb)
        if shaped is not None:
            shape, names, signature = shaped
            groups.setdefault((shape, signature, c.hard), []).append((c, names))
    found = tuple(
        Stack(tuple(c.name for c, _ in members), members[0][0].formula,
              dict(zip(members[0][1], zip(*(names for _, names in members)))), key[2],
              tuple(1.0 if c.hard else float(c.weight) for c, _ in members))
        for key, members in groups.items() if len(members) >= MIN_STACK)
    positions = {name: (i, j) for i, s in enumerate(found) for j, name in enumerate(s.names)}
    rules = _rule_stacks(kb)
    rule_positions = {name: (i, j) for i, s in enumerate(rules)
                      for j, name in enumerate(s.names)}
    return found, positions, rules, rule_positions


@dataclass(frozen=True, eq=False)
class RuleStack:
    """Rules of the same body shape pushing the same value of heads of the same type:
    ``heads[g]`` is the variable rule ``names[g]`` decides, ``negative[g]`` whether it
    pushes against (``-> not x``); ``targets`` are the distinct heads, ``target_index[g]``
    the place of ``heads[g]`` among them."""

    names: tuple[str, ...]
    formula: A.Expr
    columns: dict[str, tuple[str, ...]]
    value_index: int
    negative: tuple[bool, ...]
    targets: tuple[str, ...]
    target_index: torch.Tensor


def rule_stacks(kb) -> tuple[RuleStack, ...]:
    """The stacks of ``kb``'s rules (computed once per knowledge base object)."""
    return _entry(kb)[2]


def _rule_stacks(kb) -> tuple[RuleStack, ...]:
    groups: dict[tuple, list] = {}
    for r in kb.rules.values():
        if definite(kb, r.body) is not r.body:
            continue   # reads an optional input: evaluated alone, three-valued
        shaped = _shape(r.body, kb)
        if shaped is None or any(kb.variables[n].role == "decided" for n in shaped[1]):
            continue
        shape, names, signature = shaped
        key = (shape, signature, kb.variables[r.head.name].type, _value_index(kb, r))
        groups.setdefault(key, []).append((r, names))
    out = []
    for key, members in groups.items():
        if len(members) < MIN_STACK:
            continue
        heads = [r.head.name for r, _ in members]
        targets = tuple(dict.fromkeys(heads))
        where = {t: i for i, t in enumerate(targets)}
        out.append(RuleStack(
            tuple(r.name for r, _ in members), members[0][0].body,
            dict(zip(members[0][1], zip(*(names for _, names in members)))), key[3],
            tuple(r.head.value is False for r, _ in members), targets,
            torch.tensor([where[h] for h in heads])))
    return tuple(out)


def decided_families(kb) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """``(rule stack, its heads)`` for each rule stack whose heads are bools decided alone
    (no hard constraint, no rule reading them) and pushed by that stack's rules only: their
    scores are the stack's summed contributions plus their biases, taken at once
    (computed once per knowledge base object)."""
    return kb_cached(kb, "decided_families", _decided_families)


def _decided_families(kb) -> tuple:
    where = _entry(kb)[3]
    alone = {c.variables[0] for c in plan(kb).components
             if len(c.variables) == 1 and not c.constraints and not c.dynamic}
    found = []
    for i, s in enumerate(rule_stacks(kb)):
        if all(t in alone and isinstance(kb.variables[t].type, A.BoolType)
               and all(where.get(r.name, (None,))[0] == i for r in kb.rules_for(t))
               for t in s.targets):
            found.append((i, s.targets))
    return tuple(found)


def _value_index(kb, rule: A.Rule) -> int:
    """The index of the value a rule's head pushes (1 = True for bools)."""
    t = kb.variables[rule.head.name].type
    if isinstance(t, A.BoolType) or isinstance(rule.head.value, bool):   # or adds to a number
        return 1
    v = rule.head.value
    return A.domain(t).index(v.value if isinstance(v, A.Num) else v.name)


def _shape(formula, kb):
    """``(shape, variables, signature)``: the formula with its variables replaced by
    placeholders in order of first reading; None when it cannot be stacked."""
    names: dict[str, str] = {}
    for node in A.walk(formula):
        if isinstance(node, A.Num) and node.learnable:
            return None
        if isinstance(node, (A.Compare, A.InSet)) and not _exact(node, kb):
            return None
        if isinstance(node, A.Var):
            var = kb.variables[node.name]
            if var.role == "defined" or isinstance(var.type, A.TensorType):
                return None
            names.setdefault(node.name, f"{_PLACEHOLDER}{len(names)}")

    def rename(e):
        return A.Var(names[e.name]) if isinstance(e, A.Var) else None

    shape = A.rewrite(formula, rename)
    signature = tuple((kb.variables[n].role, kb.variables[n].type) for n in names)
    return shape, tuple(names), signature


def _exact(e, kb) -> bool:
    """Whether a comparison evaluates the same stacked: crisp (nothing neural below it) or
    exact on distributions."""
    neural = [n for n in closure(kb, A.variables(e)) if kb.variables[n].role == "neural"]
    if not neural:
        return True
    if isinstance(e, A.InSet):
        return isinstance(e.operand, A.Var) and _finite(e.operand, kb)
    sides = (e.left, e.right)
    if all(isinstance(s, A.Var) for s in sides):
        return (e.op in ("==", "!=") and all(_finite(s, kb) for s in sides)
                and kb.variables[e.left.name].type == kb.variables[e.right.name].type)
    return any(isinstance(s, A.Var) and _finite(s, kb) for s in sides) and \
        any(isinstance(s, (A.Num, A.Sym)) for s in sides)


def _finite(v: A.Var, kb) -> bool:
    """A variable whose value is a distribution (not a bool's single degree)."""
    t = kb.variables[v.name].type
    return A.is_finite_type(t) and not isinstance(t, A.BoolType)


class _StackedEnv:
    """An environment where each variable of a stack's formula holds the values of its
    column stacked along a groundings axis (after the rows). A column reads few distinct
    variables many times (``smokes(p)`` for every pair): those are stacked once and
    indexed, so that the backward pass is one gather, not one step per grounding. A column
    of table inputs (``friends(p, q)``) is read from the batch as one tensor, stacked once
    per batch (:meth:`~greybox.Batch.stacked`), never member by member."""

    def __init__(self, ctx, env, stack: Stack):
        self.ctx, self.env, self.stack = ctx, env, stack

    def __getitem__(self, name: str):
        distinct, index, inputs = _distinct(self.stack, name, self.ctx.kb)
        if inputs:
            value = self.ctx.observe(distinct[0], self.ctx.batch.stacked(distinct))
            tag, out = value[0], value[1]
        else:
            # columns over the same variables (smokes(p), smokes(q)) stack them once
            key = (id(self.env), distinct)
            made = self.ctx.column_stacks.get(key)
            if made is None:
                made = self.ctx.column_stacks[key] = self._stack(distinct)
            tag, out, value = made
        if index is not None:
            out = out.index_select(1, index.to(out.device))
        return (tag, out, value[2]) if tag == "d" else (tag, out)


    def _stack(self, distinct: tuple[str, ...]):
        """``(tag, values stacked (rows, G, ...), the first value)`` of the variables."""
        n = self.ctx.n
        values = [self.env[v] for v in distinct]
        tag = values[0][0]
        if tag == "d":
            return tag, torch.stack([v[1].expand(n, -1) for v in values], 1), values[0]
        parts = [v[1] for v in values]
        if not all(isinstance(p, torch.Tensor) and p.shape == (n,) for p in parts):
            parts = [self.ctx._full(p) for p in parts]
        return tag, torch.stack(parts, 1), values[0]


_DISTINCT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _distinct(stack: Stack, name: str, kb):
    """The distinct variables of a column, the index of each grounding's among them (None
    when every grounding reads its own), and whether they are table inputs (read from
    the batch at once)."""
    per_stack = _DISTINCT.setdefault(stack, {})
    found = per_stack.get(name)
    if found is None:
        column = stack.columns[name]
        position: dict[str, int] = {}
        index = [position.setdefault(v, len(position)) for v in column]
        distinct = tuple(position)
        var = kb.variables[distinct[0]]
        inputs = var.role == "input" and not isinstance(var.type, A.TensorType)
        found = per_stack[name] = (distinct, None if len(distinct) == len(column)
                                   else torch.tensor(index), inputs)
    return found


class ConstraintValues(Mapping):
    """A trace's constraint truths by name, computed on first access: stacked constraints
    a stack at a time, the others one by one; :meth:`soft_stacks` gives the loss whole
    stacks."""

    def __init__(self, ctx, env, kb):
        self._ctx, self._env, self._kb = ctx, env, kb
        self._stacks = stacks(kb)
        self._where = _positions(kb)
        self._results: dict[int, torch.Tensor] = {}
        self._ready: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        found = self._ready.get(name)
        if found is None:
            at = self._where.get(name)
            if at is not None:
                found = self.stacked(at[0])[:, at[1]]
            else:
                c = self._kb.constraints[name]
                found = (self._ctx.truth_hard if c.hard else self._ctx.truth)(
                    not_false(self._kb, c.formula), self._env)
            self._ready[name] = found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._kb.constraints)

    def __len__(self) -> int:
        return len(self._kb.constraints)

    def __contains__(self, name) -> bool:
        return name in self._kb.constraints

    def __repr__(self) -> str:
        return f"<{len(self)} constraints>"

    def stacked(self, i: int) -> torch.Tensor:
        """The truth degrees of stack ``i``, shape (rows, groundings)."""
        found = self._results.get(i)
        if found is None:
            s = self._stacks[i]
            env = _StackedEnv(self._ctx, self._env, s)
            truth = (self._ctx.truth_hard if s.hard else self._ctx.truth)(s.formula, env)
            found = self._results[i] = truth.expand(self._ctx.n, len(s.names))
        return found

    def soft_stacks(self) -> Iterator[tuple[tuple[str, ...], torch.Tensor, torch.Tensor]]:
        """``(names, weights (G,), truths (rows, G))`` of every stack of soft constraints."""
        for i, s in enumerate(self._stacks):
            if not s.hard:
                weights = torch.tensor(s.weights, device=self._ctx.device)
                yield s.names, weights, self.stacked(i)


class RuleValues:
    """One forward pass's stacked rules: bodies and contributions (rows, G) a stack at a
    time, and each head's summed contributions per pushed value."""

    def __init__(self, ctx, env, model):
        self.ctx, self.env, self.model = ctx, env, model
        entry = _entry(model.kb)
        self.stacks, self.where = entry[2], entry[3]
        self._done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._totals: dict[int, torch.Tensor] = {}
        self._sums: dict[str, list] | None = None

    def __contains__(self, rule: str) -> bool:
        return rule in self.where

    def stack(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bodies and contributions of stack ``i``, each (rows, groundings)."""
        found = self._done.get(i)
        if found is None:
            s, n = self.stacks[i], self.ctx.n
            body = self.ctx.truth(s.formula, _StackedEnv(self.ctx, self.env, s))
            body = body.expand(n, len(s.names))
            found = self._done[i] = (body, _signed_weights(self.model, s) * body)
        return found

    def body(self, rule: str) -> torch.Tensor:
        i, j = self.where[rule]
        return self.stack(i)[0][:, j]

    def contribution(self, rule: str) -> torch.Tensor:
        i, j = self.where[rule]
        return self.stack(i)[1][:, j]

    def total(self, i: int) -> torch.Tensor:
        """Stack ``i``'s contributions summed per head, (rows, heads) in ``targets`` order."""
        found = self._totals.get(i)
        if found is None:
            s, contrib = self.stacks[i], self.stack(i)[1]
            index = s.target_index.to(contrib.device)
            found = self._totals[i] = contrib.new_zeros(self.ctx.n, len(s.targets)).index_add(
                1, index, contrib)
        return found

    def sums(self) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Per head variable, ``(value index, summed contribution (rows,))`` of each stack
        that pushes it."""
        if self._sums is None:
            self._sums = {}
            for i, s in enumerate(self.stacks):
                total = self.total(i)
                for t, head in enumerate(s.targets):
                    self._sums.setdefault(head, []).append((s.value_index, total[:, t]))
        return self._sums


def _signed_weights(model, s: RuleStack) -> torch.Tensor:
    """The rules' weights with the sign of their heads, (groundings,) -- or (rows,
    groundings) while a per-row rule mask is set (rule ablation). Read from the model on
    every pass (never kept: ``functional_call``, ``load_state_dict`` and ``.to`` swap
    them); a family sharing one weight reads it once."""
    if getattr(model, "rule_scale", None) is not None:
        w = torch.stack([model.rule_weight(n).expand(model.rule_scale.shape[0])
                         for n in s.names], 1)
    elif model.shares_weight(s.names):
        w = model.rule_weight(s.names[0]).expand(len(s.names))
    else:
        w = torch.stack([model.rule_weight(n) for n in s.names])
    sign = torch.tensor([-1.0 if neg else 1.0 for neg in s.negative], device=w.device)
    return w * sign
