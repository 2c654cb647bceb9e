"""Recursive definitions: least fixpoints by bounded unrolling.

A bool define may read itself, directly or through other bool defines (``define
reach(x in node, y in node): bool = edge(x, y) or exists z in node: edge(x, z) and
reach(z, y)``). Its meaning is the least fixpoint: an atom is false until its body proves it.
On the grounded knowledge base, each strongly connected component of ``m`` recursive atoms
is unrolled once into layers: layer 0 is false, layer ``k + 1`` is each body read over layer
``k``, and layer ``m`` is the least fixpoint (each step before the fixpoint makes at least
one more atom true, and the bodies are monotone). Layers ``1 .. m - 1`` become hidden bool
defines named ``p@k`` (:attr:`Recursion.layers`); ``p`` itself reads layer ``m - 1``. Every backend
then reads plain, non-recursive defines.

Negation is stratified: a component's atoms may read each other only positively (under
``and``, ``or``, ``exists``, ``forall`` and an ``->`` consequent); reading a lower stratum
under ``not`` is fine. A component through a non-bool define, a rule's head or a network
is not unrolled: it stays a "cycle among definitions".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import networkx as nx

from . import _ast as A
from ._checker import Variable
from ._ground import MAX_GROUNDINGS
from ._ground_nodes import _rebuild, _simplify

__all__ = ["LAYER", "Recursion", "unroll", "written"]

#: Layer ``k`` of recursive define ``p`` is the hidden define ``f"{p}{LAYER}{k}"``.
LAYER = "@"

_FALSE = A.BoolConst(False)


@dataclass(frozen=True)
class Recursion:
    """What unrolling did: the recursive components (their defines in statement order),
    the hidden layer defines, and each recursive define's own (recursive) expression."""

    components: tuple[tuple[str, ...], ...]
    layers: frozenset[str]
    original: Mapping[str, A.Expr]


def _reads_back(variables: Mapping[str, Variable], defined_reads: Mapping, order) -> bool:
    """Whether some define reads itself or a define declared after it: without one no
    define is on a cycle (the common case, checked without building a graph)."""
    for name, reads in defined_reads.items():
        at = order.get(name)
        for q in reads:
            if order.get(q, -1) >= at and variables[q].role == "defined":
                return True
    return False


def _reads_graph(variables: Mapping[str, Variable], defined_reads: Mapping) -> nx.DiGraph:
    """``p -> q`` when define ``p``'s expression reads define ``q``."""
    g = nx.DiGraph()
    for v in variables.values():
        if v.role == "defined" and v.expr is not None:
            g.add_node(v.name)
            g.add_edges_from((v.name, q) for q in defined_reads.get(v.name, ())
                             if q in variables and variables[q].role == "defined"
                             and variables[q].expr is not None)
    return g


def _components(g: nx.DiGraph, order: Mapping[str, int]) -> list[tuple[str, ...]]:
    """The recursive components (a cycle, or one define reading itself), in source order."""
    out = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1 or any(g.has_edge(p, p) for p in comp):
            out.append(tuple(sorted(comp, key=order.__getitem__)))
    return sorted(out, key=lambda c: order[c[0]])


_NOT_POSITIVE = {A.Not: "'not'", A.Iff: "'<->'", A.Count: "'count'",
                 A.Compare: "a comparison", A.InSet: "'in'"}


def _negative_reads(expr, members):
    """``(occurrence, why)`` for each read of a ``members`` atom in ``expr`` that is not
    positive (under ``not``, in an ``->`` antecedent, ``<->``, ``count``, a comparison or
    arithmetic)."""
    stack = [(expr, None)]
    while stack:
        node, why = stack.pop()
        if isinstance(node, A.Var):
            if why is not None and node.name in members:
                yield node, why
            continue
        if isinstance(node, A.Implies):   # the innermost reason is named
            stack.append((node.right, why))
            stack.append((node.left, "an '->' antecedent"))
            continue
        if not isinstance(node, (A.And, A.Or, A.Quantified)):
            why = _NOT_POSITIVE.get(type(node), "arithmetic")
        stack.extend((c, why) for c in reversed(A.children(node)))


def _cycle_text(g: nx.DiGraph, p: str, q: str, ck) -> str:
    """The cycle through ``p`` and ``q`` by family (``even -> odd -> even``: the same text
    for every grounding, which reports the problem once), else by variable."""
    path = [p] + nx.shortest_path(g, q, p)
    labels = list(dict.fromkeys(ck.family_of(n) or n for n in path))
    return " -> ".join(labels + labels[:1])


def _stratified(comp, variables, g, ck) -> bool:
    """Whether ``comp`` is bool and reads itself only positively; a negative read is
    reported at its occurrence. A component through a non-bool define is left alone (the
    cycle check reports it as before)."""
    if not all(isinstance(variables[p].type, A.BoolType) for p in comp):
        return False
    members = set(comp)
    ok = True
    for p in comp:
        for occ, why in _negative_reads(variables[p].expr, members):
            ck.statement = p
            ck.error(f"recursion through negation: {p!r} reads {occ.name!r} under {why}, on the "
                     f"cycle {_cycle_text(g, p, occ.name, ck)}; a "
                     "recursive definition may read its own cycle only positively (under "
                     "and, or, exists, forall or an '->' consequent): stratified negation",
                     occ)
            ok = False
            break
    ck.statement = None
    return ok


def _substituted(expr, names: Mapping[str, A.Expr], hits: dict, fold: bool):
    """``expr`` with every read of ``names`` replaced (``hits`` caches, by node id, whether
    a subtree reads one); ``fold``: truth constants folded (layer 1 reads false; the
    other layers only rename, so nothing folds)."""
    def sub(e):
        kind = type(e)
        if kind is A.Var:
            new = names.get(e.name)
            return e if new is None else (new if new is _FALSE
                                          else A.Var(new.name, span=e.span))
        reads = hits.get(id(e))
        if reads is None:
            reads = hits[id(e)] = any(isinstance(n, A.Var) and n.name in names
                                      for n in A.walk(e))
        if not reads:
            return e
        if not fold and (kind is A.And or kind is A.Or):
            return kind(tuple(sub(a) for a in e.args), span=e.span)
        new = _rebuild(e, sub)
        return _simplify(new) if fold else new
    return sub(expr)


def _refuse_oversized(comps, variables, ck, decl_of) -> bool:
    """Refuse an unrolling past :data:`MAX_GROUNDINGS` variable reads, before building it."""
    total = 0
    for comp in comps:
        size = sum(sum(1 for n in A.walk(variables[p].expr) if isinstance(n, A.Var))
                   for p in comp)
        total += (len(comp) - 1) * size
    if total <= MAX_GROUNDINGS:
        return True
    biggest = max(comps, key=len)
    ck.statement = biggest[0]
    ck.error(f"unrolling the recursive definitions makes {total:,} instances, more than "
             f"{MAX_GROUNDINGS:,} (the largest cycle, through {biggest[0]!r}, has {len(biggest):,} "
             "mutually recursive atoms, unrolled that many times): use smaller sets",
             decl_of(biggest[0]))
    ck.statement = None
    return False


def _layers(comp, variables, defined_reads):
    """The layer defines of ``comp`` (layer 1 first) and each member's final expression."""
    m = len(comp)
    hits: dict = {}
    below = dict.fromkeys(comp, _FALSE)
    layers = []
    for k in range(1, m):
        level = {p: A.Var(f"{p}{LAYER}{k}") for p in comp}
        for p in comp:
            v = variables[p]
            expr = _substituted(v.expr, below, hits, fold=k == 1)
            layers.append(Variable(level[p].name, v.type, "defined", False, expr))
            defined_reads[level[p].name] = _renamed_reads(expr, defined_reads[p], below)
        below = level
    final = {p: _substituted(variables[p].expr, below, hits, fold=m == 1) for p in comp}
    for p in comp:
        defined_reads[p] = _renamed_reads(final[p], defined_reads[p], below)
    return layers, final


def _renamed_reads(expr, reads, below) -> dict:
    """What an expression substituted with ``below`` reads: its own reads renamed (read
    again where constants were folded)."""
    if any(v is _FALSE for v in below.values()):
        return dict.fromkeys(A.variables(expr))
    return {(below[q].name if q in below else q): None for q in reads}


def unroll(statements: list, variables: dict, defined_reads: dict, ck, decl_of):
    """Unroll the recursive components of validated ``statements``; returns
    ``(statements, variables, recursion)`` (``recursion`` None when nothing recurses).
    Problems (negation on a cycle, an unrolling too large) go to ``ck``."""
    order = {name: i for i, name in enumerate(variables)}
    if not _reads_back(variables, defined_reads, order):
        return statements, variables, None
    g = _reads_graph(variables, defined_reads)
    comps = [c for c in _components(g, order) if _stratified(c, variables, g, ck)]
    if not comps or ck.problems or not _refuse_oversized(comps, variables, ck, decl_of):
        return statements, variables, None
    original, new_vars, new_layers = {}, {}, {}
    for comp in comps:
        layers, final = _layers(comp, variables, defined_reads)
        new_layers[comp[0]] = layers
        for p, expr in final.items():
            original[p] = variables[p].expr
            new_vars[p] = Variable(p, variables[p].type, "defined", variables[p].output, expr)
    clash = next((v.name for ls in new_layers.values() for v in ls if v.name in variables),
                 None)
    if clash is not None:
        ck.error(f"{clash!r} is declared, but it is the name of a layer of recursive define "
                 f"{clash.rsplit(LAYER, 1)[0]!r} (the unrolling's hidden defines are named "
                 f"NAME{LAYER}K): rename it", decl_of(clash))
        return statements, variables, None
    owner = {p: comp[0] for comp in comps for p in comp}
    out_vars: dict[str, Variable] = {}
    for name, v in variables.items():
        for layer in new_layers.get(name, ()):
            out_vars[layer.name] = layer
        out_vars[name] = new_vars.get(name, v)
    hidden = frozenset(v.name for ls in new_layers.values() for v in ls)
    out_statements = []
    for st in statements:
        if isinstance(st, A.DefineDecl) and st.name in original:
            # the layers go before the component's first definition in the text
            for layer in new_layers.pop(owner[st.name], ()):
                out_statements.append(A.DefineDecl(layer.name, layer.type, layer.expr,
                                                   span=st.span))
            st = A.DefineDecl(st.name, st.type, new_vars[st.name].expr, span=st.span)
        out_statements.append(st)
    recursion = Recursion(tuple(comps), hidden, MappingProxyType(original))
    return out_statements, out_vars, recursion


def written(statements, recursion: Recursion | None):
    """``statements`` as written: each recursive define with its own expression, without
    the layers unrolling added (what :func:`~greybox.rules.to_text` prints)."""
    if recursion is None:
        return statements
    return [dataclasses.replace(s, expr=recursion.original[s.name])
            if isinstance(s, A.DefineDecl) and s.name in recursion.original else s
            for s in statements
            if not (isinstance(s, A.DefineDecl) and s.name in recursion.layers)]
