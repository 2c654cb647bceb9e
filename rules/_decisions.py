"""How a knowledge base decides: the structure shared by crisp evaluation and Z3.

A decided variable's *score* is ``bias + sum(weight * [body])`` over the rules concluding
it. Decided variables that hard constraints tie together form a *component*; a component's
decision is the joint assignment with the highest total score that satisfies its hard
constraints (ties go to the earlier assignment in domain order: False before True).
Components are decided in dependency order.

A variable decided on its own (no hard constraint, no cycle through other decisions) is
never enumerated: every value that no rule concludes and no bias names scores exactly 0,
so the argmax is among the :func:`candidates` -- those values plus the first other value
in domain order, which wins the ties among all of them. An ``int 0..900000000`` output
costs as much as a two-valued one. Components that must be enumerated (joint assignments
checked against hard constraints) are refused beyond :data:`MAX_ASSIGNMENTS`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from greybox.errors import RuleError, listed

from . import _ast as A
from ._domain import domain

__all__ = ["Component", "DecisionPlan", "MAX_ASSIGNMENTS", "additive_value", "candidates",
           "closure", "kb_cached", "memo", "plan"]

#: Most joint assignments a component that must be enumerated may have (crisp evaluation
#: and the Z3 encoding check each one against the hard constraints).
MAX_ASSIGNMENTS = 1 << 16


def candidates(kb, name: str, biased=()) -> tuple:
    """The values of decided variable ``name`` among which its argmax lies when it is
    decided alone, in domain order: the values some rule concludes or ``biased`` names,
    plus the first other value (every other value scores 0 like it, and it comes first).
    A bool's are (False, True)."""
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        return (False, True)
    pushed = set(biased)
    for r in kb.rules_for(name):
        head = r.head.value
        pushed.add(head.value if isinstance(head, A.Num) else head.name)
    pushed.discard(None)
    d = domain(t)
    free = next((x for x in d.values if x not in pushed), None)
    found = pushed | ({free} if free is not None else set())
    return tuple(sorted(found, key=d.index))


def additive_value(t, score):
    """An additive (regression) variable's value from its score (float64 array): a real's
    is the score, clipped to its bounds when it declares them; an int's is the score
    rounded to the nearest whole number, halves up (``floor(s) + [s - floor(s) >= 1/2]``,
    exact in float64), clipped to ``lo..hi``.

    Examples
    --------
    >>> import numpy as np
    >>> from greybox.rules import ast as A
    >>> additive_value(A.IntType(0, 10), np.array([2.5, 2.49, -3.0, 12.7])).tolist()
    [3.0, 2.0, 0.0, 10.0]
    """
    s = np.asarray(score, dtype=np.float64)
    if isinstance(t, A.IntType):
        f = np.floor(s)
        s = f + (s - f >= 0.5)
    if getattr(t, "lo", None) is not None:
        s = np.clip(s, float(t.lo), float(t.hi))
    return s


def closure(kb, names) -> set[str]:
    """``names`` plus every variable they reach through ``define`` expressions."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        v = kb.variables[n]
        if v.role == "defined":
            stack.extend(A.variables(v.expr))
    return seen


def _decided_under(kb) -> dict[str, frozenset]:
    """Each define's decided variables, reached through define expressions: each define
    looked at once (a closure per define cost the square of a deep chain of defines, such
    as an unrolled recursive one)."""
    found: dict[str, frozenset] = {}
    reads: dict[str, list] = {}
    for root, v in kb.variables.items():
        if v.role != "defined":
            continue
        stack = [root]
        while stack:
            n = stack[-1]
            if n in found:
                stack.pop()
                continue
            if n not in reads:
                reads[n] = A.variables(kb.variables[n].expr)
                todo = [r for r in reads[n]
                        if kb.variables[r].role == "defined" and r not in found]
                if todo:
                    stack.extend(todo)
                    continue
            stack.pop()
            acc: set = set()
            for r in reads[n]:
                role = kb.variables[r].role
                if role == "defined":
                    acc |= found[r]
                elif role == "decided":
                    acc.add(r)
            found[n] = frozenset(acc)
    return found


@dataclass(frozen=True)
class Component:
    """Decided variables decided jointly, with the rules and hard constraints involved."""

    variables: tuple[str, ...]
    rules: tuple[A.Rule, ...]
    constraints: tuple[A.Constraint, ...]
    #: defined variables whose value depends on this component's variables
    tainted: frozenset[str]
    #: the component's rules whose bodies read its own variables (through defines): they
    #: are scored with each joint assignment; the others once, before deciding. Every
    #: backend (crisp evaluation, the torch semantics, Z3, the MILP) reads this split here.
    dynamic: frozenset[str] = frozenset()

    def reads_itself(self, rule: A.Rule) -> bool:
        """Whether ``rule`` (one of :attr:`rules`) reads the component's own decisions."""
        return rule.name in self.dynamic

    @property
    def enumerated(self) -> bool:
        """Whether deciding it checks every joint assignment (hard constraints, or several
        variables); otherwise its one variable is decided among its :func:`candidates`."""
        return bool(self.constraints) or len(self.variables) > 1

    def size(self, kb) -> int:
        """The number of joint assignments."""
        out = 1
        for v in self.variables:
            out *= domain(kb.variables[v].type).size
        return out

    def assignments(self, kb) -> list[tuple]:
        """Joint assignments in enumeration order (tie-breaking order)."""
        domains = [domain(kb.variables[v].type).values for v in self.variables]
        return list(itertools.product(*domains))


@dataclass(frozen=True)
class DecisionPlan:
    components: tuple[Component, ...]
    #: hard constraints mentioning no decided variable: violated -> the row is infeasible
    fixed_constraints: tuple[A.Constraint, ...]


def memo(kb) -> dict:
    """What is derived from ``kb`` alone and reused by every evaluation of it (its decision
    plan, its compiled formulas, the columns it reads): a dict held by the knowledge base
    object itself, so it goes with it (never pickled). Keyed by identity, not equality: two
    equal knowledge bases (a model's rules and its learned copy) hold different AST nodes,
    and callers look nodes of the plan up by identity."""
    return kb._memo


def kb_cached(kb, key: str, make):
    """``make(kb)``, computed once per knowledge base object and per ``key`` and kept in
    its :func:`memo` (knowledge bases are immutable): what every evaluation or forward
    pass would otherwise recompute from the rules. The one per-knowledge-base cache of
    the engine and the model.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: real  output y: bool  rule r: x > 1 -> y")
    >>> gr.engine.kb_cached(kb, "doc/inputs", lambda kb: tuple(kb.inputs))
    ('x',)
    """
    store = memo(kb)
    found = store.get(key, store)
    if found is store:
        found = store[key] = make(kb)
    return found


def plan(kb) -> DecisionPlan:
    """The decision structure of ``kb`` (cached per knowledge base object)."""
    return kb_cached(kb, "plan", _make_plan)


def _make_plan(kb) -> DecisionPlan:
    # in time about linear in the knowledge base: every variable, rule and constraint is
    # looked at once, then found through an index per component (scanning them all per
    # component made an output family of n members cost n^2: 8,000 members 75 s)
    decided = [n for n, v in kb.variables.items() if v.role == "decided"]
    position = {n: i for i, n in enumerate(decided)}
    uf = nx.utils.UnionFind(decided)
    hard = [c for c in kb.constraints.values() if c.hard]
    touches = {}
    for c in hard:
        ds = sorted(closure(kb, A.variables(c.formula)) & position.keys())
        touches[c.name] = ds
        if ds:
            uf.union(*ds)
    groups = [tuple(sorted(g, key=position.__getitem__)) for g in uf.to_sets()]
    # order groups so that each comes after those its rules read; merge groups in a cycle
    owner = {v: i for i, g in enumerate(groups) for v in g}
    reads = {r.name: closure(kb, A.variables(r.body)) for r in kb.rules.values()}
    dg = nx.DiGraph()
    dg.add_nodes_from(range(len(groups)))
    for r in kb.rules.values():
        for dep in reads[r.name]:
            if dep in owner and owner[dep] != owner[r.head.name]:
                dg.add_edge(owner[dep], owner[r.head.name])
    # per decided variable: its rules, its hard constraints and the defines that read it,
    # each in the knowledge base's order
    rules_of: dict[str, list] = {}
    for i, r in enumerate(kb.rules.values()):
        rules_of.setdefault(r.head.name, []).append((i, r))
    constraints_of: dict[str, list] = {}
    for i, c in enumerate(hard):
        for v in touches[c.name]:
            constraints_of.setdefault(v, []).append((i, c))
    defines_of: dict[str, set] = {}
    for n, ds in _decided_under(kb).items():
        for d in ds:
            defines_of.setdefault(d, set()).add(n)
    cond = nx.condensation(dg)
    comps = []
    for node in nx.lexicographical_topological_sort(cond, key=lambda n: min(cond.nodes[n]["members"])):
        members = sorted(cond.nodes[node]["members"])
        names = tuple(v for i in members for v in groups[i])
        nameset = set(names)
        tainted = frozenset(n for v in names for n in defines_of.get(v, ()))
        rules = tuple(r for _, r in sorted(
            (x for v in names for x in rules_of.get(v, ())), key=lambda x: x[0]))
        constraints = dict(sorted((x for v in names for x in constraints_of.get(v, ())),
                                  key=lambda x: x[0]))
        comp = Component(
            names,
            rules,
            tuple(constraints.values()),
            tainted,
            frozenset(r.name for r in rules if reads[r.name] & nameset),
        )
        if comp.enumerated and comp.size(kb) > MAX_ASSIGNMENTS:
            message, loc = _too_large(kb, comp, len(members) > 1)
            raise RuleError(message, loc, kb.source)
        comps.append(comp)
    fixed = tuple(c for c in hard if not touches[c.name])
    return DecisionPlan(tuple(comps), fixed)


def _too_large(kb, comp: Component, cycle: bool) -> tuple[str, object]:
    """Why a component that must be enumerated is refused, naming what is too large, and
    where (the first hard constraint that ties it, if any). A constraint written as one
    ``forall`` over sets is shown rewritten as a constraint family, whose instances each
    tie only the decisions they read."""
    from ._printer import type_to_text

    def typed(n):
        return f"{n} ({type_to_text(kb.variables[n].type)})"

    loc = comp.constraints[0].span if comp.constraints else None
    message = _too_large_message(kb, comp, cycle, typed)
    for c in comp.constraints:
        rewrite = _as_family(kb, c.name)
        if rewrite is not None:
            message += (f". Constraint {c.name} is one statement over all its instances; "
                        f"written as a constraint family, each instance ties only the "
                        f"decisions it reads:\n    {rewrite}")
            loc = c.span
            break
    return message, loc


def _as_family(kb, name: str) -> str | None:
    """The text of constraint ``name`` rewritten as a family, when it was written as a
    (nested) ``forall`` over sets or ranges: ``constraint c: forall u in s: F`` becomes
    ``constraint c(u in s): F``; None otherwise."""
    from ._kb import to_text

    program = getattr(kb, "program", None)
    if program is None:
        return None
    for t in program.templates:
        if isinstance(t, A.Constraint) and t.name == name:
            binders, body = [], t.formula
            while isinstance(body, A.Quantified) and body.kind == "forall":
                binders += body.binders
                body = body.body
            if not binders:
                return None
            family = A.Family(params=tuple(binders), statement=A.Constraint(
                name=t.name, formula=body, weight=t.weight), paren=True)
            try:
                return to_text(family)
            except Exception:  # noqa: BLE001 -- a hint only: no hint rather than an error
                return None
    return None


def _too_large_message(kb, comp: Component, cycle: bool, typed) -> str:
    """What is too large in ``comp`` and how it came to be decided jointly."""
    limit = f"more than the {MAX_ASSIGNMENTS:,} that crisp evaluation and Z3 enumerate"
    cons = listed(c.name for c in comp.constraints)
    if len(comp.variables) == 1:
        (n,) = comp.variables
        return (f"the decision of {typed(n)} must satisfy the hard constraint(s) {cons}, so "
                f"each of its {comp.size(kb):,} values is checked against them: {limit}; "
                f"narrow the type of {n}")
    names = listed((typed(n) for n in comp.variables), limit=5)
    if cons:
        why = f"hard constraint(s) {cons} tie the decisions {names} together"
        if cycle:
            why += " and their rules read each other's decisions"
    else:
        why = f"the rules of {names} read each other's decisions, so they are decided jointly"
    return (f"{why}: {comp.size(kb):,} joint assignments, {limit}; narrow their types "
            "or untie them")


def constrains_networks(kb) -> bool:
    """True when a hard constraint over non-decided variables reads a neural variable:
    the networks' most probable values may then violate it, and a model repairs them.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> gr.engine.constrains_networks(gr.parse("input i: tensor  neural d: int 0..3 = net(i)  "
    ...                                 "constraint c: d != 2"))
    True
    """
    for c in plan(kb).fixed_constraints:
        if any(kb.variables[n].role == "neural"
               for n in closure(kb, A.variables(c.formula))):
            return True
    return False


_NO_RULES = ((), ())


def _split_rules(kb, comp) -> dict[tuple, tuple]:
    """Per (decided variable, value) whose score ``comp``'s rules push: those rules whose
    bodies read no decision of ``comp``, and the others (once per knowledge base object
    and component of its plan)."""
    made = kb_cached(kb, "rules by value", lambda kb: {})
    found = made.get(id(comp))
    if found is None or found[0] is not comp:   # the component is kept: its id is not reused
        by_head: dict[tuple, list] = {}
        for r in comp.rules:
            by_head.setdefault((r.head.name, _pushed(r.head)), []).append(r)
        found = made[id(comp)] = (comp, {
            key: (tuple(r for r in rules if not comp.reads_itself(r)),
                  tuple(r for r in rules if comp.reads_itself(r)))
            for key, rules in by_head.items()})
    return found[1]


def _pushed(head: A.Head):
    """The value whose score a rule's head pushes (True for ``x`` and ``not x``)."""
    if isinstance(head.value, bool):
        return True
    return head.value.value if isinstance(head.value, A.Num) else head.value.name
