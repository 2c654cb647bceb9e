"""Relational templates -> propositional statements (grounding).

A relational knowledge base declares index sets (``set cell: 0..15``, ``set person``) and
families of statements over them (``neural digit[c in cell]: ... = net(img[c])``, ``rule
contagion(p in person, q in person): ...``), and uses quantifiers (``forall``, ``exists``),
aggregates (``sum(... for i in s)``, ``count``, ``all_different``) and index arithmetic
(``digit[4*r + k]``, ``10^(3-i)``). Grounding writes every member out as an ordinary
statement named like its reference (``digit[5]``, ``contagion(anna, bob)``), so that the
propositional core -- validation, evaluation, Z3, models, explanations -- sees plain
variables, and every grounded node keeps the location of the template text it came from.
Index arithmetic and comparisons between indices are done while grounding, before any data
is seen (``_indices.py``); the families' members and their data are in ``_families.py``,
the nodes grounding builds in ``_ground_nodes.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from greybox.errors import Location, RuleError

from . import _ast as A
from ._families import (
    _VARIABLE_KINDS,
    FamilyInfo,
    _first_duplicate,
    _separator_problem,
    data_members,
    family_columns,
    member_name,
)
from ._ground_nodes import _count, _rebuild, _replace, _simplify, _value_node
from ._indices import IndexArithmetic, Member, _as_member, _compare, _NotStatic, _Problem

__all__ = ["AGGREGATES", "FamilyInfo", "MAX_FORMULA_INSTANCES", "MAX_GROUNDINGS", "Program", "family_columns", "ground",
           "ground_formula", "member_name"]

#: The aggregates the language knows: ``sum`` (an int or real expression), ``count`` (how
#: many instances of a formula hold: an int, :class:`~greybox.rules.ast.Count`) and
#: ``all_different`` (a formula: every two instances differ).
AGGREGATES = ("sum", "count", "all_different", "min", "max")
#: Most instances one knowledge base may ground to (statements and aggregated terms).
MAX_GROUNDINGS = 1_000_000
#: Most instances one formula may ground to (its quantifiers and aggregates expanded): a
#: formula is evaluated term by term (a nested ``forall`` over 985 x 985 people built for
#: 99 s and died at 3.7 GB, about 0.5 ms and 10 KB per instance).
MAX_FORMULA_INSTANCES = 100_000


@dataclass(frozen=True)
class Program:
    """The relational text a knowledge base was grounded from: its template statements,
    the members of every set and the families."""

    templates: tuple
    sets: Mapping[str, tuple]
    families: Mapping[str, FamilyInfo]


_KINDS = {A.InputDecl: "input", A.NeuralDecl: "neural", A.DefineDecl: "define",
          A.OutputDecl: "output", A.Rule: "rule", A.Constraint: "constraint"}


class _Grounder:
    def __init__(self, templates: list, given: Mapping[str, Sequence] | None,
                 filename: str | None):
        self.templates, self.filename = templates, filename
        self.problems: list[tuple[str, Location | None]] = []
        self.count = 0
        self.sets: dict[str, tuple] = {}
        self.families: dict[str, FamilyInfo] = {}
        self.plain: set[str] = {  # variables declared without parameters
            t.name for t in self.templates if _KINDS.get(type(t)) in _VARIABLE_KINDS}
        self.failed: set[int] = set()  # templates already reported
        self.index = IndexArithmetic(self.plain, self.families)
        self._resolve_sets(dict(given or {}))
        # each set's members for lookups (a tuple's `in` scans it: 300x300 spent 4 s there)
        self.lookup: dict[str, frozenset] = {k: frozenset(v) for k, v in self.sets.items()}
        self._mentioned: dict[int, tuple[frozenset, bool]] = {}   # template node -> names

    # ---------------------------------------------------------------- diagnostics
    def report(self, message: str, node) -> None:
        span = getattr(node, "span", None)
        if span is not None and self.filename is not None:
            span = dataclasses.replace(span, filename=self.filename)
        self.problems.append((message, span))

    def tick(self, node, n: int = 1) -> None:
        self.count += n
        if self.count > MAX_GROUNDINGS:
            raise _Problem(f"grounding makes more than {MAX_GROUNDINGS:,} instances (are the "
                           "sets this large on purpose?)", node)

    # ---------------------------------------------------------------------- sets
    def _resolve_sets(self, given: dict) -> None:
        declared = [t for t in self.templates if isinstance(t, A.SetDecl)]
        for decl in declared:
            try:
                self._declare_set(decl, given)
            except _Problem as p:
                self.report(p.message, p.node)
        unknown = sorted(set(given) - {d.name for d in declared})
        if unknown:
            self.report("sets= gives members of " + ", ".join(map(repr, unknown)) +
                        ", which no `set` statement declares", None)

    def _declare_set(self, decl: A.SetDecl, given: dict) -> None:
        if decl.name in self.sets:
            raise _Problem(f"set {decl.name!r} is declared twice", decl)
        problem = A.name_problem(decl.name)
        if problem:
            raise _Problem(f"invalid set name: {problem}", decl)
        if decl.members is None:
            if decl.name not in given:
                raise _Problem(f"set {decl.name!r} takes its members from the data: pass them "
                               f"as sets={{{decl.name!r}: [...]}}", decl)
            members = data_members(decl, given[decl.name])
        elif decl.name in given:
            raise _Problem(f"set {decl.name!r} lists its members in the rules; sets= must not "
                           "give them again", decl)
        elif isinstance(decl.members, A.Range):
            members = self._range(decl.members, {})
        else:
            members = decl.members
            for m in members:
                if isinstance(m, str) and _separator_problem(m):
                    raise _Problem(f"member {m!r} of set {decl.name!r}: "
                                   f"{_separator_problem(m)}", decl)
            dup = _first_duplicate(members)
            if dup is not None:
                raise _Problem(f"set {decl.name!r} lists {dup!r} twice", decl)
        self.sets[decl.name] = tuple(members)

    def _range(self, r: A.Range, env: dict) -> range:
        try:
            lo, hi = self.index.static(r.lo, env), self.index.static(r.hi, env)
        except _NotStatic:
            lo = hi = None
        if not isinstance(lo, int) or not isinstance(hi, int):
            raise _Problem("a range's bounds must be whole numbers known before the data", r)
        if hi - lo + 1 > MAX_GROUNDINGS:
            raise _Problem(f"range {lo}..{hi} has more than {MAX_GROUNDINGS:,} members", r)
        return range(lo, hi + 1)

    def _members(self) -> frozenset:
        """Every member of every set of names (for comparisons such as ``p == anna``)."""
        found = getattr(self, "_all_members", None)
        if found is None:
            found = self._all_members = frozenset(
                m for ms in self.sets.values() if not isinstance(ms, range) for m in ms)
        return found

    def domain(self, binder: A.Binder, env: dict) -> Sequence[Member]:
        if isinstance(binder.domain, A.Range):
            return self._range(binder.domain, env)
        if binder.domain not in self.sets:
            close = difflib.get_close_matches(binder.domain, list(self.sets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Problem(f"unknown set {binder.domain!r}{hint}", binder)
        return self.sets[binder.domain]

    def assignments(self, binders: Sequence[A.Binder], env: dict) -> Iterator[dict]:
        """Every assignment of the binders (a later binder's range may read earlier ones);
        each counts as an instance toward :data:`MAX_GROUNDINGS`."""
        if not binders:
            yield env
            return
        if not env and self.count + self._size(binders) > MAX_GROUNDINGS:
            self.tick(binders[0], self._size(binders))  # refused at once, not enumerated
        first, rest = binders[0], binders[1:]
        for value in self.domain(first, env):
            self.tick(first)
            yield from self.assignments(rest, {**env, first.var: value})

    def _size(self, binders: Sequence[A.Binder]) -> int:
        """The number of assignments of binders over sets and constant ranges (a range that
        reads another binder counts as one)."""
        size = 1
        for b in binders:
            try:
                size *= len(self.domain(b, {}))
            except (_Problem, _NotStatic):
                pass
        return size

    def _ticks(self, e) -> int:
        """How many instances grounding ``e`` once will count (as :meth:`tick` does), known
        before it is grounded (a range that reads an enclosing binder counts as one)."""
        if isinstance(e, (A.Quantified, A.Aggregate)):
            size = self._size(e.binders)
            if isinstance(e, A.Quantified):
                return self._binding_ticks(e.binders) + size * self._ticks(e.body)
            inner = sum(self._ticks(a) for a in e.args)
            return (self._binding_ticks(e.binders) + size * inner
                    + _aggregate_ticks(e.name, size * len(e.args)))
        if isinstance(e, A.Index) and e.paren and e.name in AGGREGATES \
                and self.variable_family(e.name) is None:
            return sum(self._ticks(a) for a in e.args) + _aggregate_ticks(e.name, len(e.args))
        return sum(self._ticks(c) for c in A.children(e))

    def _binding_ticks(self, binders: Sequence[A.Binder]) -> int:
        """The instances :meth:`assignments` counts: one per value at every level."""
        total, size = 0, 1
        for b in binders:
            size *= self._size([b])
            total += size
        return total

    def _refuse_oversized(self) -> int:
        """Refuse a knowledge base whose grounding will pass :data:`MAX_GROUNDINGS`,
        before any statement is grounded (the instances of every template, added up); the
        instances the whole grounding will count."""
        total = self.count
        for t in self.templates:
            if isinstance(t, A.SetDecl) or id(t) in self.failed:
                continue
            inner = t.statement if isinstance(t, A.Family) else t
            params = _positional(t.params) if isinstance(t, A.Family) else []
            ticks = {id(e): self._ticks(e) for e in _exprs(inner)}
            total += self._binding_ticks(params) + self._size(params) * sum(ticks.values())
            if total > MAX_GROUNDINGS:   # pointed at the largest expression (quantifier)
                where = max(_exprs(inner), key=lambda e: ticks[id(e)], default=t)
                raise _Problem(f"grounding makes more than {MAX_GROUNDINGS:,} instances "
                               f"(about {total:,} up to this statement; are the sets this "
                               "large on purpose?)", where)
            for e in _exprs(inner):
                if ticks[id(e)] > MAX_FORMULA_INSTANCES:
                    raise _Problem(
                        f"{_KINDS[type(inner)]} {inner.name!r}: its formula grounds to "
                        f"{ticks[id(e)]:,} instances, more than one formula may hold "
                        f"({MAX_FORMULA_INSTANCES:,}; it is built and evaluated term by term): "
                        "use smaller sets, or state it over fewer members (a family of "
                        "statements, one per member, each over a part of the sets)", e)
        return total

    # ------------------------------------------------------------------ families
    def declare_families(self) -> None:
        for t in self.templates:
            st = t.statement if isinstance(t, A.Family) else t
            if isinstance(t, A.SetDecl) or not isinstance(st, A.Node):
                continue
            kind = _KINDS.get(type(st))
            if kind in _VARIABLE_KINDS and not isinstance(t, A.Family):
                self.plain.add(st.name)
            if not isinstance(t, A.Family):
                continue
            try:
                self._declare_family(t, kind)
            except _Problem as p:
                self.report(p.message, p.node)
                self.failed.add(id(t))

    def _declare_family(self, fam: A.Family, kind: str) -> None:
        names = [b.var for b in fam.params]
        dup = _first_duplicate(names)
        if dup is not None and any(b.var != b.domain for b in fam.params if b.var == dup):
            raise _Problem(f"parameter {dup!r} is bound twice", fam)
        members = {}
        for env in self.assignments(_positional(fam.params), {}):
            index = tuple(env.values())
            members[index] = member_name(fam.statement.name, index, fam.paren)
        sets = tuple(_domain_text(b.domain) for b in fam.params)
        info = FamilyInfo(fam.statement.name, kind, sets, fam.paren, MappingProxyType(members))
        key = (kind if kind in ("rule", "constraint") else "var", fam.statement.name)
        known = self.families.get(key)
        if known is not None and (known.sets != info.sets or known.members != info.members):
            raise _Problem(f"family {fam.statement.name!r} is declared again over other sets "
                           f"({', '.join(known.sets)} before)", fam)
        if known is None or kind == "output":
            self.families[key] = info

    def variable_family(self, name: str) -> FamilyInfo | None:
        return self.families.get(("var", name))

    # ---------------------------------------------------------------- statements
    def run(self) -> list:
        self.declare_families()
        try:
            self._refuse_oversized()
        except _Problem as p:
            self.report(p.message, p.node)
            return []
        out: list = []
        for t in self.templates:
            if isinstance(t, A.SetDecl) or id(t) in self.failed:
                continue
            try:
                out.extend(self._template(t))
            except _Problem as p:
                self.report(p.message, p.node)
        return out

    def _template(self, t) -> list:
        if not isinstance(t, A.Family):
            st = self.statement(t, {}, t.name)
            return [] if st is None else [st]
        binders = _positional(t.params)
        out, dead = [], []
        for env in self.assignments(binders, {}):
            index = [env[b.var] for b in binders]
            name = member_name(t.statement.name, index, t.paren)
            st = self.statement(t.statement, env, name)
            if isinstance(st, A.Rule) and st.body == A.BoolConst(False):
                dead.append(st)   # p != q for p = q: this member says nothing
            elif st is not None:
                out.append(st)
        # a family none of whose members can fire is kept, so `check` reports it dead
        return out if out else dead

    def statement(self, st, env: dict, name: str):
        """The member of template ``st`` for ``env``, named ``name``; None when it says
        nothing (a constraint that is true). A rule whose body is false is kept (a plain
        rule's ``exists`` over an empty range is a dead rule, not no rule)."""
        if isinstance(st, (A.InputDecl, A.OutputDecl)):
            return _replace(st, name=name)
        if isinstance(st, A.NeuralDecl):
            args = tuple(a if isinstance(a, str) else self.reference(a, env).name
                         for a in st.args)
            return _replace(st, name=name, args=args)
        if isinstance(st, A.DefineDecl):
            expr = None if st.expr is None else self.expr(st.expr, env)
            return _replace(st, name=name, expr=expr)
        if isinstance(st, A.Rule):
            body = self.expr(st.body, env)
            head = st.head
            if isinstance(head.value, A.Sym) and head.value.name in env:   # -> g[i] = i
                head = _replace(head, value=_value_node(env[head.value.name],
                                                                   head.value))
            if head.index:
                target = self.reference(A.Index(head.name, head.index, head.paren,
                                                span=head.span), env)
                head = A.Head(target.name, head.value, span=head.span)
            return _replace(st, name=name, body=body, head=head)
        if isinstance(st, A.Constraint):
            formula = self.expr(st.formula, env)
            if formula == A.BoolConst(True):
                return None
            return _replace(st, name=name, formula=formula)
        raise _Problem(f"not a statement: {st!r}", st)

    # --------------------------------------------------------------- expressions
    def reference(self, e: A.Index, env: dict) -> A.Var:
        """The variable a family reference names."""
        fam = self.variable_family(e.name)
        if fam is None:
            if e.name in self.plain:
                raise _Problem(f"{e.name!r} is not a family (it is declared without "
                               "parameters), so it takes no index", e)
            known = [k[1] for k in self.families if k[0] == "var"]
            close = difflib.get_close_matches(e.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Problem(f"undeclared family {e.name!r}{hint}", e)
        if len(e.args) != len(fam.sets):
            raise _Problem(f"{e.name} takes {len(fam.sets)} "
                           f"{'index' if len(fam.sets) == 1 else 'indices'} "
                           f"({', '.join(fam.sets)}), got {len(e.args)}", e)
        index = []
        for k, arg in enumerate(e.args):
            members = self.lookup.get(fam.sets[k])
            try:
                index.append(_as_member(self.index.static(arg, env, members), members))
            except _NotStatic:
                raise _Problem(f"index {k + 1} of {e.name} must be known before the data: "
                               "whole numbers, index variables, set members and + - * ^",
                               arg) from None
        name = fam.members.get(tuple(index))
        if name is None:
            raise _Problem(self._outside(fam, index), e)
        return A.Var(name, span=e.span)

    def _outside(self, fam: FamilyInfo, index: list) -> str:
        for k, (value, set_name) in enumerate(zip(index, fam.sets)):
            members = self.sets.get(set_name)
            if members is not None and value not in members:
                return (f"{member_name(fam.name, index, fam.paren)}: index {k + 1} "
                        f"({value!r}) is not in {set_name} ({_describe(members)})")
        return f"{member_name(fam.name, index, fam.paren)} is not a member of {fam.name}"

    def expr(self, e, env: dict):
        if isinstance(e, A.Var):
            return self._var(e, env)
        if isinstance(e, A.Index):
            if e.paren and e.name in AGGREGATES and self.variable_family(e.name) is None:
                return self._aggregate(e.name, list(e.args), e, env)
            return self.reference(e, env)
        if isinstance(e, A.Count) and getattr(self.variable_family("count"), "paren", False):
            return self.reference(A.Index("count", e.args, True, span=e.span), env)
        if isinstance(e, A.Arith) and e.op in A.ARITH_FUNCTIONS and \
                getattr(self.variable_family(e.op), "paren", False):   # a family min(p)
            return self.reference(A.Index(e.op, e.args, True, span=e.span), env)
        if isinstance(e, A.Aggregate):
            if e.name not in AGGREGATES:
                raise _Problem(f"unknown aggregate {e.name!r} (the language has "
                               f"{', '.join(AGGREGATES)})", e)
            _refuse_rebinding(e.binders)
            args = [self.expr(a, inner) for inner in self.assignments(e.binders, env)
                    for a in e.args]
            return self._aggregate(e.name, args, e, env, grounded=True)
        if isinstance(e, A.Quantified):
            _refuse_rebinding(e.binders)
            parts = [self.expr(e.body, inner) for inner in self.assignments(e.binders, env)]
            return _simplify(A.And(tuple(parts), span=e.span) if e.kind == "forall"
                             else A.Or(tuple(parts), span=e.span))
        if isinstance(e, A.Pow):
            try:
                return A.Num(self.index.number(e, env), span=e.span)
            except _NotStatic:
                raise _Problem("'^' takes whole numbers known before the data (index "
                               "arithmetic such as 10^(3 - i)), not variables", e) from None
        if isinstance(e, A.Compare) and self._mentions(e, env):
            try:
                members = self._members()
                return A.BoolConst(_compare(e.op, self.index.static(e.left, env, members),
                                            self.index.static(e.right, env, members), e),
                                   span=e.span)
            except _NotStatic:
                pass
        if isinstance(e, A.Sym) and e.name in env:   # x[i] in {i, 3}
            return _value_node(env[e.name], e)
        if not A.children(e):
            return e
        return _simplify(_rebuild(e, lambda c: self.expr(c, env)))

    def _mentions(self, e, env: dict) -> bool:
        """Whether ``e`` (a node of the templates) reads an index variable of ``env`` or
        holds a power: it is decided while grounding. Its names are read once per node,
        not once per instance."""
        found = self._mentioned.get(id(e))
        if found is None:
            found = self._mentioned[id(e)] = (
                frozenset(n.name for n in A.walk(e) if isinstance(n, A.Var)),
                any(isinstance(n, A.Pow) for n in A.walk(e)))
        names, power = found
        return power or not names.isdisjoint(env)

    def _var(self, e: A.Var, env: dict):
        if e.name in env:
            value = env[e.name]
            if isinstance(value, int):
                return A.Num(value, span=e.span)
            raise _Problem(f"index variable {e.name!r} stands for a member ({value}); use it "
                           "in an index or compare it with another index", e)
        if self.variable_family(e.name) is not None and e.name not in self.plain:
            fam = self.variable_family(e.name)
            raise _Problem(f"{e.name!r} is a family over {', '.join(fam.sets)}: name a member, "
                           f"e.g. {member_name(e.name, ['...'] * len(fam.sets), fam.paren)}", e)
        return e

    def _aggregate(self, name: str, args: list, node, env: dict, grounded: bool = False):
        if not grounded:
            args = [self.expr(a, env) for a in args]
        self.tick(node, len(args))
        if name == "sum":
            if not args:
                return A.Num(0, span=node.span)
            if len(args) == 1:
                return args[0]
            return A.Sum(tuple(args), ("+",) * (len(args) - 1), span=node.span)
        if name == "count":
            return _count(args, node)
        if name in ("min", "max"):
            if not args:
                raise _Problem(f"'{name}' over no instances has no value", node)
            return args[0] if len(args) == 1 else A.Arith(name, tuple(args), span=node.span)
        pairs = [A.Compare("!=", a, b, span=node.span)
                 for a, b in itertools.combinations(args, 2)]
        self.tick(node, len(pairs))
        return A.And(tuple(pairs), span=node.span) if len(pairs) > 1 else \
            pairs[0] if pairs else A.BoolConst(True, span=node.span)


def _exprs(st) -> tuple:
    """The expressions of a statement."""
    if isinstance(st, A.Rule):
        return (st.body,)
    if isinstance(st, A.Constraint):
        return (st.formula,)
    if isinstance(st, A.DefineDecl) and st.expr is not None:
        return (st.expr,)
    return ()


def _positional(params: Sequence[A.Binder]) -> list[A.Binder]:
    """A family's parameters as binders: a bare set name binds that name, except where it
    repeats (``friends(person, person)``), where each position binds a fresh variable."""
    counts: dict[str, int] = {}
    for b in params:
        counts[b.var] = counts.get(b.var, 0) + 1
    return [dataclasses.replace(b, var=f"\x00{i}") if b.var == b.domain and counts[b.var] > 1
            else b for i, b in enumerate(params)]


def _aggregate_ticks(name: str, n: int) -> int:
    """The instances an aggregate over ``n`` terms counts (all_different: and its
    pairs)."""
    return n + (n * (n - 1) // 2 if name == "all_different" else 0)


def _refuse_rebinding(binders: Sequence[A.Binder]) -> None:
    """A variable bound twice in one list (``sum(z[i] for i in c, i in c)``) is refused, as
    a family's parameters are: the second would shadow the first and repeat every
    instance."""
    seen = set()
    for b in binders:
        if b.var in seen:
            raise _Problem(f"index variable {b.var!r} is bound twice in one list of binders "
                           "(give each its own name)", b)
        seen.add(b.var)


def _domain_text(domain) -> str:
    if isinstance(domain, A.Range):
        from ._printer import expr_to_text

        return f"{expr_to_text(domain.lo)}..{expr_to_text(domain.hi)}"
    return domain


def _describe(members: Sequence) -> str:
    if isinstance(members, range) or (members and all(isinstance(m, int) for m in members)
                                      and list(members) == list(range(members[0],
                                                                      members[-1] + 1))):
        return f"{members[0]}..{members[-1]}" if len(members) else "empty"
    shown = ", ".join(map(str, list(members)[:6]))
    return shown + (", ..." if len(members) > 6 else "")


def ground_formula(expr, program: Program, *, filename: str | None = None,
                   source: str | None = None):
    """A relational formula (``forall c in cell: x[c]``) grounded over ``program``'s sets
    and families."""
    given = {t.name: program.sets[t.name] for t in program.templates
             if isinstance(t, A.SetDecl) and t.members is None}
    g = _Grounder(list(program.templates), given, filename)
    g.declare_families()
    try:
        out = g.expr(expr, {})
    except _Problem as p:
        g.report(p.message, p.node)
    if g.problems:
        raise RuleError("", diagnostics=tuple(g.problems), source=source)
    return out


def ground(templates: Sequence, sets: Mapping[str, Sequence] | None = None, *,
           filename: str | None = None, source: str | None = None) -> tuple[list, Program]:
    """Ground relational ``templates`` into propositional statements.

    Returns ``(statements, program)``; raises :class:`RuleError` listing every problem
    (unknown set, index outside its set, wrong arity, unbound index...) at its location.
    """
    g = _Grounder(list(templates), sets, filename)
    statements = g.run() if not g.problems else []
    if g.problems:
        raise RuleError("", diagnostics=tuple(g.problems), source=source)
    families = {info.name if k == "var" else f"{k}:{info.name}": info
                for (k, _), info in g.families.items()}
    program = Program(tuple(templates), MappingProxyType(dict(g.sets)),
                      MappingProxyType(families))
    return statements, program
