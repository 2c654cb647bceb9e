"""Proofs of bool facts: the chain of facts that makes a define true in a row.

:meth:`Evaluation.proof <greybox.rules.Evaluation.proof>` answers "why is ``reach(a, d)``
true in this row?" with the facts that prove it -- ``edge(a, b)``, ``edge(b, d)`` -- and the
derivation that uses them (``reach(a, d)`` because ``edge(a, b)`` and ``reach(b, d)``;
``reach(b, d)`` because ``edge(b, d)``). A recursive define means its least fixpoint
(docs/language.md, Recursion): an atom is true when a finite derivation proves it, and the
proof is such a derivation, read on the row's values.

The proof returned is a *shortest* one: fewest facts (counted once per use in the
derivation tree), then the fewest derivation levels. For reachability that is a shortest
path. It is found by a shortest-hyperpath search (Knuth's generalisation of Bellman-Ford):
every atom of a recursive component starts unproved; a round reads each atom's own
(recursive) expression over the proofs found so far and keeps a cheaper proof where it
finds one; costs only fall, and each atom's chosen proof costs strictly more than every
atom it uses, so the derivation read back is finite and the rounds stop. A fact that the
proof uses is a literal that holds in the row: a bool input or neural value (``edge(a,
b)``, or ``not edge(a, b)`` where the expression needs it false), a comparison or another
atom that is not itself a bool define (``dist(a, b) < 3``), or a lower stratum's define
read under ``not`` (``not blocked(b)``: a negation is not proved by a chain, it is read as
a fact of the row). A bool define read positively is proved in its turn.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from greybox.errors import RuleError

from . import _ast as A
from ._exact import compile_truth
from ._missing import definite
from ._printer import expr_to_text

__all__ = ["Proof", "ProofStep", "prove"]

_LEAF = (1, 0)    # a fact: one fact, no derivation level
_NONE = (0, 0)    # a constant: nothing to cite


@dataclass(frozen=True)
class ProofStep:
    """One derivation step: ``fact`` holds ``because`` of these facts and atoms (each
    atom that is itself a bool define has its own step)."""

    fact: str
    because: tuple[str, ...]
    depth: int

    def __str__(self) -> str:
        return f"{'  ' * self.depth}{self.fact} because {' and '.join(self.because) or 'true'}"


@dataclass(frozen=True)
class Proof:
    """Why a bool fact holds in one row of a crisp evaluation: the facts of the row that
    prove it and the derivation that uses them (see :meth:`Evaluation.proof
    <greybox.rules.Evaluation.proof>`).

    Attributes
    ----------
    fact : str
        The fact proved (``"reach(a, d)"``).
    row : int
        The row's position in the evaluation.
    holds : bool
        Whether the fact holds in the row; ``False``: there is no proof (``steps`` and
        ``facts`` are empty).
    steps : tuple of ProofStep
        The derivation, the fact's own step first, each atom's step after the step that
        uses it (depth first; an atom used twice is proved once).
    facts : tuple of str
        The facts of the row the proof rests on, in the order the derivation uses them
        (for reachability, the edges of a shortest path from its source).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... set node: {a, b, c}
    ... input edge(node, node): bool
    ... define reach(x in node, y in node): bool =
    ...     edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
    ... ''')
    >>> ev = gr.evaluate(kb, {f"edge({x}, {y})": [(x, y) in {("a", "b"), ("b", "c")}]
    ...                       for x in "abc" for y in "abc"})
    >>> proof = ev.proof("reach(a, c)")
    >>> proof.facts, proof.depth
    (('edge(a, b)', 'edge(b, c)'), 2)
    >>> proof.to_frame()["because"].tolist()
    ['edge(a, b) and reach(b, c)', 'edge(b, c)']
    >>> ev.proof("reach(c, a)").holds
    False
    """

    fact: str
    row: int
    holds: bool
    steps: tuple[ProofStep, ...] = ()
    facts: tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        """The number of derivation levels (0: the fact is a fact of the row itself)."""
        return 1 + max((s.depth for s in self.steps), default=-1)

    def __str__(self) -> str:
        if not self.holds:
            return f"{self.fact} does not hold in row {self.row}: nothing to prove"
        head = (f"{self.fact} holds in row {self.row}, proved by {len(self.facts)} "
                f"fact{'s' * (len(self.facts) != 1)}: {', '.join(self.facts)}")
        return "\n".join([head, *map(str, self.steps)])

    def to_frame(self) -> pd.DataFrame:
        """One line per derivation step: ``fact``, ``because`` (joined by ``and``),
        ``depth``."""
        return pd.DataFrame({"fact": [s.fact for s in self.steps],
                             "because": [" and ".join(s.because) for s in self.steps],
                             "depth": [s.depth for s in self.steps]},
                            columns=["fact", "because", "depth"])

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Two parts of one conjunction: their facts add up, the deeper one sets the depth."""
    return a[0] + b[0], max(a[1], b[1])


class _Prover:
    """The shortest proofs of one row's true bool atoms, computed on demand."""

    def __init__(self, evaluation, row: int):
        self.kb = evaluation.kb
        self.env = evaluation._env
        self.n = evaluation.n
        self.row = row
        rec = self.kb.recursion
        self.component = {} if rec is None else {p: comp for comp in rec.components
                                                 for p in comp}
        self.original = {} if rec is None else rec.original
        #: atom -> (cost, items): items are ("fact", text) or ("atom", name)
        self.best: dict[str, tuple[tuple[int, int], list]] = {}
        self._truth: dict[object, tuple[A.Expr, bool, bool]] = {}

    # ------------------------------------------------------------------ the row's truths
    def known(self, expr) -> tuple[bool, bool]:
        """``(known true, known false)`` of ``expr`` in the row (Kleene: a formula that
        reads a missing value may be neither)."""
        key = expr.name if isinstance(expr, A.Var) else id(expr)
        hit = self._truth.get(key)
        if hit is None:
            both = []
            for f in (expr, A.Not(expr)):
                value = compile_truth(definite(self.kb, f), self.kb)(self.env)
                both.append(bool(value if getattr(value, "ndim", 0) == 0 else value[self.row]))
            hit = self._truth[key] = (expr, both[0], both[1])   # expr kept: ids stay unique
        return hit[1], hit[2]

    def expression(self, name: str):
        """A bool define's own expression (a recursive one's, not its unrolling)."""
        return self.original.get(name, self.kb.variables[name].expr)

    def is_define(self, name: str) -> bool:
        var = self.kb.variables.get(name)
        return (var is not None and var.role == "defined" and var.expr is not None
                and isinstance(var.type, A.BoolType))

    # ------------------------------------------------------------------ the search
    def support(self, expr, want: bool, inside: frozenset):
        """The cheapest way the row makes ``expr`` ``want``: ``(cost, items)``, or None.
        Atoms of ``inside`` (the component being proved) cost what :attr:`best` holds."""
        if isinstance(expr, A.BoolConst):
            return (_NONE, []) if expr.value == want else None
        if isinstance(expr, A.Not):
            return self.support(expr.operand, not want, inside)
        if isinstance(expr, (A.And, A.Or)):
            return self._connective(expr.args, want == isinstance(expr, A.And), want, inside)
        if isinstance(expr, A.Implies):   # a -> b is (not a) or b
            return self._pair((expr.left, not want), (expr.right, want), not want, inside)
        if isinstance(expr, A.Iff):
            options = [self._pair((expr.left, v), (expr.right, v == want), True, inside)
                       for v in (True, False)]
            return min((o for o in options if o is not None), key=lambda o: o[0], default=None)
        if isinstance(expr, A.Var) and want and (expr.name in inside or self.is_define(expr.name)):
            found = self.best.get(expr.name) if expr.name in inside else self.prove(expr.name)
            return None if found is None else (found[0], [("atom", expr.name)])
        true, false = self.known(expr)
        if not (true if want else false):
            return None
        text = expr.name if isinstance(expr, A.Var) else expr_to_text(expr)
        if not want:
            text = f"not {text}" if isinstance(expr, A.Var) else f"not ({text})"
        return _LEAF, [("fact", text)]

    def _pair(self, a, b, both: bool, inside: frozenset):
        """Two parts joined by ``and`` (``both``) or ``or``."""
        return self._connective((a[0], b[0]), both, None, inside, wants=(a[1], b[1]))

    def _connective(self, args, every: bool, want, inside, wants=None):
        """All of ``args`` made ``want`` (``every``: a conjunction made true, or a
        disjunction made false), else the cheapest one of them."""
        wants = wants or (want,) * len(args)
        parts = [self.support(a, w, inside) for a, w in zip(args, wants)]
        if every:
            if any(p is None for p in parts):
                return None
            cost, items = _NONE, []
            for c, its in parts:
                cost = _add(cost, c)
                items.extend(its)
            return cost, items
        return min((p for p in parts if p is not None), key=lambda p: p[0], default=None)

    def prove(self, name: str):
        """``(cost, items)`` of ``name``'s shortest proof, or None where it is not true."""
        if name in self.best:
            return self.best[name]
        comp = self.component.get(name)
        if comp is None:
            found = self.support(self.expression(name), True, frozenset())
            if found is not None:
                found = ((found[0][0], found[0][1] + 1), found[1])
                self.best[name] = found
            return found
        self._settle(comp)
        return self.best.get(name)

    def _settle(self, comp) -> None:
        """Shortest proofs of every true atom of a recursive component (rounds until no
        cost falls)."""
        inside = frozenset(comp)
        candidates = [p for p in comp if self.known(A.Var(p))[0]]
        changed = True
        while changed:
            changed = False
            for p in candidates:
                found = self.support(self.original[p], True, inside)
                if found is None:
                    continue
                cost = (found[0][0], found[0][1] + 1)
                if p not in self.best or cost < self.best[p][0]:
                    self.best[p] = (cost, found[1])
                    changed = True

    # ------------------------------------------------------------------ reading it back
    def steps(self, name: str) -> tuple[tuple[ProofStep, ...], tuple[str, ...]]:
        """The derivation of a proved atom (depth first) and its facts in order of use."""
        steps, facts, seen = [], {}, {name}
        stack = [(0, iter([("atom", name)]))]     # no recursion: a chain may be long
        while stack:
            depth, items = stack[-1]
            item = next(items, None)
            if item is None:
                stack.pop()
                continue
            kind, text = item
            if kind == "fact":
                facts.setdefault(text, None)
                continue
            if text in seen and steps:
                continue
            seen.add(text)
            own = self.best[text][1]
            steps.append(ProofStep(text, tuple(t for _, t in own), depth))
            stack.append((depth + 1, iter(own)))
        return tuple(steps), tuple(facts)


def prove(evaluation, name: str, row: int = 0) -> Proof:
    """A shortest proof of bool fact ``name`` in row ``row`` (a position) of a crisp
    evaluation; :meth:`Evaluation.proof <greybox.rules.Evaluation.proof>` is the public
    entry (see the module for what a proof is)."""
    kb = evaluation.kb
    var = kb.variables.get(name)
    if var is None or name in kb.layers:
        raise RuleError(f"proof: unknown variable {name!r}")
    if not isinstance(var.type, A.BoolType) or var.role == "decided":
        what = "decided by rules" if var.role == "decided" else "not a bool"
        raise RuleError(f"proof: {name!r} is {what}; a proof is made for a bool define, "
                        "input or neural value (a rule's decision is explained by its "
                        "contributions)")
    if isinstance(row, bool) or not isinstance(row, int) or not -evaluation.n <= row < evaluation.n:
        raise RuleError(f"proof: row must be a position in 0..{evaluation.n - 1}, got {row!r}")
    row = row % evaluation.n
    prover = _Prover(evaluation, row)
    if not prover.known(A.Var(name))[0]:
        return Proof(name, row, False)
    if var.role != "defined":
        return Proof(name, row, True, (), (name,))
    if prover.prove(name) is None:
        raise RuleError(f"proof: {name!r} holds in row {row} but no derivation from the row's "
                        "facts proves it (its value there is not its least fixpoint)")
    steps, facts = prover.steps(name)
    return Proof(name, row, True, steps, facts)
