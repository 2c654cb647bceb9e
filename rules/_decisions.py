"""How a knowledge base decides: the structure shared by crisp evaluation and Z3.

A decided variable's *score* is ``bias + sum(weight * [body])`` over the rules concluding
it. Decided variables that hard constraints tie together form a *component*; a component's
decision is the joint assignment with the highest total score that satisfies its hard
constraints (ties go to the earlier assignment in domain order: False before True).
Components are decided in dependency order.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import networkx as nx

from greybox.errors import RuleError

from . import _ast as A

__all__ = ["Component", "DecisionPlan", "MAX_ASSIGNMENTS", "plan", "closure"]

#: Most joint assignments a component may have (crisp evaluation enumerates them).
MAX_ASSIGNMENTS = 1 << 16


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


@dataclass(frozen=True)
class Component:
    """Decided variables decided jointly, with the rules and hard constraints involved."""

    variables: tuple[str, ...]
    rules: tuple[A.Rule, ...]
    constraints: tuple[A.Constraint, ...]
    #: defined variables whose value depends on this component's variables
    tainted: frozenset[str]

    def assignments(self, kb) -> list[tuple]:
        """Joint assignments in enumeration order (tie-breaking order)."""
        domains = [A.domain_values(kb.variables[v].type) for v in self.variables]
        return list(itertools.product(*domains))


@dataclass(frozen=True)
class DecisionPlan:
    components: tuple[Component, ...]
    #: hard constraints mentioning no decided variable: violated -> the row is infeasible
    fixed_constraints: tuple[A.Constraint, ...]


#: id(kb) -> (weak reference to kb, its plan). Keyed by identity, not equality: two equal
#: knowledge bases (a model's rules and its learned copy) hold different AST nodes, and
#: callers look nodes of the plan up by identity.
_PLANS: dict[int, tuple] = {}


def plan(kb) -> DecisionPlan:
    """The decision structure of ``kb`` (cached per knowledge base object)."""
    entry = _PLANS.get(id(kb))
    if entry is not None and entry[0]() is kb:
        return entry[1]
    found = _make_plan(kb)
    key = id(kb)
    _PLANS[key] = (weakref.ref(kb, lambda ref, key=key: _drop(key, ref)), found)
    return found


def _drop(key: int, ref) -> None:
    entry = _PLANS.get(key)
    if entry is not None and entry[0] is ref:
        del _PLANS[key]


def _make_plan(kb) -> DecisionPlan:
    decided = [n for n, v in kb.variables.items() if v.role == "decided"]
    uf = nx.utils.UnionFind(decided)
    hard = [c for c in kb.constraints.values() if c.hard]
    touches = {}
    for c in hard:
        ds = sorted(closure(kb, A.variables(c.formula)) & set(decided))
        touches[c.name] = ds
        if ds:
            uf.union(*ds)
    groups = [tuple(sorted(g, key=decided.index)) for g in uf.to_sets()]
    # order groups so that each comes after those its rules read; merge groups in a cycle
    owner = {v: i for i, g in enumerate(groups) for v in g}
    dg = nx.DiGraph()
    dg.add_nodes_from(range(len(groups)))
    for r in kb.rules.values():
        for dep in closure(kb, A.variables(r.body)):
            if dep in owner and owner[dep] != owner[r.head.name]:
                dg.add_edge(owner[dep], owner[r.head.name])
    cond = nx.condensation(dg)
    comps = []
    for node in nx.lexicographical_topological_sort(cond, key=lambda n: min(cond.nodes[n]["members"])):
        members = sorted(cond.nodes[node]["members"])
        names = tuple(v for i in members for v in groups[i])
        size = 1
        for v in names:
            size *= len(A.domain_values(kb.variables[v].type))
        if size > MAX_ASSIGNMENTS:
            raise RuleError(
                f"hard constraints tie the decisions {', '.join(names)} together: "
                f"{size} joint assignments, more than the {MAX_ASSIGNMENTS} the crisp "
                "decision can enumerate"
            )
        nameset = set(names)
        tainted = frozenset(
            n for n, v in kb.variables.items()
            if v.role == "defined" and closure(kb, [n]) & nameset
        )
        comps.append(Component(
            names,
            tuple(r for r in kb.rules.values() if r.head.name in nameset),
            tuple(c for c in hard if set(touches[c.name]) & nameset),
            tainted,
        ))
    fixed = tuple(c for c in hard if not touches[c.name])
    return DecisionPlan(tuple(comps), fixed)
