"""Relational templates -> propositional statements (grounding).

A relational knowledge base declares index sets (``set cell: 0..15``, ``set person``) and
families of statements over them (``neural digit[c in cell]: ... = net(img[c])``, ``rule
contagion(p in person, q in person): ...``), and uses quantifiers (``forall``, ``exists``),
aggregates (``sum(... for i in s)``, ``count``, ``all_different``) and index arithmetic
(``digit[4*r + k]``, ``10^(3-i)``). Grounding writes every member out as an ordinary
statement named like its reference (``digit[5]``, ``contagion(anna, bob)``), so that the
propositional core -- validation, evaluation, Z3, models, explanations -- sees plain
variables, and every grounded node keeps the location of the template text it came from.
Index arithmetic and comparisons between indices are done here, before any data is seen.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from greybox.errors import DataError, Location, RuleError

from . import _ast as A

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

Member = int | str


@dataclass(frozen=True)
class FamilyInfo:
    """A family of variables, rules or constraints and its grounded members.

    ``kind`` is the statement keyword (``input``, ``neural``, ``define``, ``output``,
    ``rule``, ``constraint``); ``sets`` names the set of each parameter (a range is written
    ``lo..hi``); ``members`` maps each index tuple to the member's name.
    """

    name: str
    kind: str
    sets: tuple[str, ...]
    paren: bool
    members: Mapping[tuple, str]

    def member(self, *index: Member) -> str:
        """The name of the member at ``index`` (``kb.families["digit"].member(5)`` is
        ``"digit[5]"``); an index may also be written as text (``member("5")``).

        Raises
        ------
        DataError
            No member at ``index``: the message names the family, its parameters and the
            index received.
        """
        try:
            found = self.members.get(tuple(index))
        except TypeError:   # an unhashable index: compared as text below
            found = None
        if found is None:
            key = tuple(str(i) for i in index)
            found = next((n for ix, n in self.members.items()
                          if tuple(str(i) for i in ix) == key), None)
        if found is None:
            first = next(iter(self.members), ())
            raise DataError(f"{self.name} has no member at {_shown_index(index)}: it takes "
                            f"{len(self.sets)} index(es), one per parameter "
                            f"({', '.join(self.sets)}), e.g. {_shown_index(first)}")
        return found

    def split(self, values) -> dict:
        """Columns for the members from one array whose axes after the first (rows) follow
        the parameters in order: ``img`` of shape ``(rows, 16, 64)`` for ``input
        img[cell]: tensor[64]`` over ``set cell: 0..15`` gives ``{"img[0]": img[:, 0],
        ...}``. Works on numpy arrays, torch tensors and (nested) lists alike; a pandas
        DataFrame needs one column per member, named by the member's index (``anna``, or
        a tuple for several parameters) or its name (``smokes(anna)``), in any order.

        Raises
        ------
        DataError
            The array's shape (or a DataFrame's columns) does not match the members.

        Examples
        --------
        >>> import numpy as np, greybox.rules as gr
        >>> kb = gr.parse("set cell: 0..2  input x[cell]: int 0..9")
        >>> cols = kb.families["x"].split(np.array([[1, 2, 3], [4, 5, 6]]))
        >>> {k: v.tolist() for k, v in cols.items()}
        {'x[0]': [1, 4], 'x[1]': [2, 5], 'x[2]': [3, 6]}
        """
        if hasattr(values, "columns") and hasattr(values, "iloc"):   # a DataFrame
            return self._split_frame(values)
        sizes = [len({index[k] for index in self.members}) for k in range(len(self.sets))]
        if math.prod(sizes) != len(self.members):
            raise DataError(f"{self.name}'s members are not a full grid (a parameter's range "
                            "reads another): give them column by column, by member name")
        expected = (f"{self.name}: expected an array of shape (rows, "
                    f"{', '.join(map(str, sizes))}, ...) -- one axis per parameter "
                    f"({', '.join(self.sets)}) -- got ")
        kind = type(values).__name__
        if isinstance(values, (list, tuple)):
            try:
                values = np.asarray(values)
            except ValueError:
                raise DataError(expected + f"a ragged {kind} (its rows have different "
                                "lengths)") from None
        shape = tuple(getattr(values, "shape", ()))
        if len(shape) < 1 + len(sizes) or list(shape[1:1 + len(sizes)]) != sizes:
            raise DataError(expected + f"shape {shape} ({kind})")
        positions = [{v: i for i, v in enumerate(dict.fromkeys(ix[k] for ix in self.members))}
                     for k in range(len(sizes))]
        out = {}
        for index, name in self.members.items():
            at = tuple(positions[k][v] for k, v in enumerate(index))
            out[name] = values[(slice(None), *at)]
        return out

    def _split_frame(self, frame) -> dict:
        """A DataFrame's columns by member, aligned by name (see :meth:`split`)."""
        names = set(self.members.values())
        by_index = {tuple(str(i) for i in ix): n for ix, n in self.members.items()}
        out, unknown = {}, []
        for c in frame.columns:
            name = c if isinstance(c, str) and c in names else by_index.get(
                tuple(str(i) for i in (c if isinstance(c, tuple) else (c,))))
            if name is None:
                unknown.append(c)
            elif name in out:
                raise DataError(f"{self.name}: the DataFrame gives member {name} twice "
                                f"(columns {out[name].name!r} and {c!r})")
            else:
                out[name] = frame[c]
        missing = [n for n in self.members.values() if n not in out]
        if unknown or missing:
            shown = ", ".join(list(self.members.values())[:4]) + (
                ", ..." if len(self.members) > 4 else "")
            got = [f"{len(unknown)} column(s) naming no member ({_few(unknown)})"] if unknown \
                else []
            got += [f"no column for {len(missing)} member(s) ({_few(missing)})"] if missing \
                else []
            raise DataError(f"{self.name}: a DataFrame for the family needs one column per "
                            f"member ({len(self.members)}: {shown}), named by its index "
                            f"({', '.join(self.sets)}) or its name; got {'; '.join(got)}")
        return {n: out[n] for n in self.members.values()}


def _shown_index(index: tuple) -> str:
    if len(index) == 1:
        return repr(index[0])
    return "(" + ", ".join(repr(i) for i in index) + ")"


def _few(items: list) -> str:
    return ", ".join(repr(i) for i in items[:3]) + (", ..." if len(items) > 3 else "")


@dataclass(frozen=True)
class Program:
    """The relational text a knowledge base was grounded from: its template statements,
    the members of every set and the families."""

    templates: tuple
    sets: Mapping[str, tuple]
    families: Mapping[str, FamilyInfo]


class _Problem(Exception):
    def __init__(self, message: str, node):
        super().__init__(message)
        self.message, self.node = message, node


class _NotStatic(Exception):
    pass


def member_name(name: str, index: Sequence[Member], paren: bool) -> str:
    """``digit[5]``, ``friends(anna, bob)``: a member's name, as its reference is written."""
    inner = ", ".join(str(i) for i in index)
    return f"{name}({inner})" if paren else f"{name}[{inner}]"


_KINDS = {A.InputDecl: "input", A.NeuralDecl: "neural", A.DefineDecl: "define",
          A.OutputDecl: "output", A.Rule: "rule", A.Constraint: "constraint"}
_VARIABLE_KINDS = ("input", "neural", "define", "output")


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
            members = self._data_members(decl, given[decl.name])
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

    def _data_members(self, decl: A.SetDecl, values) -> tuple[str, ...]:
        if hasattr(values, "columns") and hasattr(values, "index"):
            values = values.index  # an entity table: one member per row, named by its label
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise _Problem(f"sets={{{decl.name!r}: ...}} must be a list of names, got "
                           f"{type(values).__name__}", decl)
        if isinstance(values, (set, frozenset)):
            raise _Problem(f"sets={{{decl.name!r}: ...}} is a Python {type(values).__name__}, "
                           "whose order changes from one process to the next: pass a list or "
                           "a tuple (its order is the order of the members, and of the "
                           "columns of a family's arrays)", decl)
        members = []
        for position, v in enumerate(values):
            name = _data_member(v)
            problem = ("a member is a name or a number (not a missing value, an array or "
                       "a tuple)" if name is None
                       else A.name_problem(name) or _separator_problem(name))
            if problem:
                raise _Problem(f"sets={{{decl.name!r}: ...}}: member {position} ({_shown(v)}) "
                               f"of set {decl.name!r}: {problem}", decl)
            members.append(name)
        dup = _first_duplicate(members)
        if dup is not None:
            raise _Problem(f"set {decl.name!r} is given {dup!r} twice", decl)
        return tuple(members)

    def _range(self, r: A.Range, env: dict) -> range:
        try:
            lo, hi = self.static(r.lo, env), self.static(r.hi, env)
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
                index.append(_as_member(self.static(arg, env, members), members))
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
                return A.Num(self._static_number(e, env), span=e.span)
            except _NotStatic:
                raise _Problem("'^' takes whole numbers known before the data (index "
                               "arithmetic such as 10^(3 - i)), not variables", e) from None
        if isinstance(e, A.Compare) and self._mentions(e, env):
            try:
                members = self._members()
                return A.BoolConst(_compare(e.op, self.static(e.left, env, members),
                                            self.static(e.right, env, members), e),
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

    # ----------------------------------------------------------- index arithmetic
    def static(self, e, env: dict, members: Sequence | None = None) -> Member:
        """The value of an index expression, known before the data; ``members`` (the set
        of the index position) lets a member be named directly (``friends(anna, p)``)."""
        if isinstance(e, A.Var):
            if e.name in env:
                return env[e.name]
            if members is not None and e.name in members:
                return e.name
            if e.name not in self.plain and self.variable_family(e.name) is None:
                raise _Problem(f"unbound index variable {e.name!r} (bind it with forall, "
                               "exists, 'for' or a family parameter)", e)
            raise _NotStatic
        if isinstance(e, A.Sym) and members is not None and e.name in members:
            return e.name
        return self._static_number(e, env)

    def _static_number(self, e, env: dict) -> int:
        if isinstance(e, A.Num):
            if e.learnable or not isinstance(e.value, int):
                raise _Problem("index arithmetic uses whole numbers", e)
            return e.value
        if isinstance(e, A.Var):
            value = self.static(e, env)
            if not isinstance(value, int):
                raise _Problem(f"{e.name!r} is a member ({value}), not a number", e)
            return value
        if isinstance(e, A.Neg):
            return -self._static_number(e.operand, env)
        if isinstance(e, A.Sum):
            acc = self._static_number(e.args[0], env)
            for op, arg in zip(e.ops, e.args[1:]):
                x = self._static_number(arg, env)
                acc = _bounded(acc + x if op == "+" else acc - x, e)
            return acc
        if isinstance(e, A.Mul):
            return _bounded(self._static_number(e.left, env) *
                            self._static_number(e.right, env), e)
        if isinstance(e, A.Arith):
            from ._intervals import apply

            if e.op in A.ARITH_FUNCTIONS and getattr(self.variable_family(e.op), "paren",
                                                     False):
                raise _NotStatic      # a member of a family named min, max or abs

            values = [self._static_number(a, env) for a in e.args]
            if e.op in ("//", "%") and len(values) == 2 and values[1] == 0:
                raise _Problem(f"index arithmetic divides by 0 ('{e.op}')", e)
            if e.op in ("//", "%") and len(values) != 2 or e.op == "abs" and len(values) != 1:
                raise _NotStatic
            return _bounded(apply(e.op, values), e)
        if isinstance(e, A.Pow):
            base, exp = self._static_number(e.left, env), self._static_number(e.right, env)
            # |base| >= 2^(bits - 1): beyond 2^64 for sure past that many bits (checked
            # before computing it); below, the power is computed and bounded exactly
            if exp < 0 or abs(base) > 1 and exp * (abs(base).bit_length() - 1) > _MAX_BITS \
                    or abs(base ** exp).bit_length() > _MAX_BITS:
                raise _Problem("a power in index arithmetic must be a whole number below "
                               f"2^{_MAX_BITS} with an exponent of at least 0", e)
            return base ** exp
        raise _NotStatic


#: Largest magnitude of index arithmetic, in bits (beyond any set or exact float).
_MAX_BITS = 64


def _bounded(value: int, node) -> int:
    if abs(value).bit_length() > _MAX_BITS:
        raise _Problem(f"index arithmetic beyond 2^{_MAX_BITS} (whole numbers known before "
                       "the data, used to name members)", node)
    return value


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


def _data_member(value) -> str | None:
    """A member's name from a value of the data (``"anna"``, ``3``, ``np.int64(3)``), or
    None for what names no member: a missing value (None, NaN), an array, a tuple (a
    MultiIndex label)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return str(value)
    return None


def _shown(value) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


#: The text between the indices of a member's name (``friends(anna, bob)``).
MEMBER_SEPARATOR = ", "


def _separator_problem(name: str) -> str | None:
    """Why a member named ``name`` would make member names ambiguous, or None."""
    if MEMBER_SEPARATOR in name:
        return (f"it contains {MEMBER_SEPARATOR!r}, which separates the indices of a "
                "member's name (f(a, b, c) could be f(`a, b`, c) or f(a, `b, c`)); rename it")
    return None


def _value_node(value: Member, node) -> A.Num | A.Sym:
    """An index variable's value where a value is written (``g[i] = i``, ``{i, 3}``): a
    number, or a member's name (validation then checks it is in the variable's type)."""
    if isinstance(value, int):
        return A.Num(value, span=node.span)
    return A.Sym(value, span=node.span)


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


def _first_duplicate(items) -> object | None:
    seen = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None


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




def _as_member(value: Member, members) -> Member:
    """A number naming a member of a set of names read from the data (``f(1)`` where
    the members are "1", "2")."""
    if members is not None and isinstance(value, int) and value not in members \
            and str(value) in members:
        return str(value)
    return value


def _compare(op: str, left: Member, right: Member, node) -> bool:
    if isinstance(left, str) != isinstance(right, str):   # a name from the data vs a number
        left, right = str(left), str(right)
    if op in ("==", "!="):
        return (left == right) == (op == "==")
    if isinstance(left, str) or isinstance(right, str):
        raise _Problem(f"members of a set of names can only be compared with == and !=, "
                       f"not {op}", node)
    return {"<": left < right, "<=": left <= right, ">": left > right,
            ">=": left >= right}[op]


def _count(args: list, node):
    """``count`` of grounded formulas, the instances grounding decided (``p != q``) folded:
    false ones dropped, true ones a constant added."""
    known = sum(1 for a in args if a == A.BoolConst(True))
    rest = tuple(a for a in args if not isinstance(a, A.BoolConst))
    if not rest:
        return A.Num(known, span=node.span)
    count = A.Count(rest, span=node.span)
    return A.Sum((count, A.Num(known, span=node.span)), ("+",), span=node.span) if known \
        else count


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(e) -> tuple[str, ...]:
    """The fields of node ``e`` but its span, read once per class (grounding builds a node
    per instance: dataclasses.replace took an eighth of a 90,000-member family's time)."""
    names = _FIELDS.get(type(e))
    if names is None:
        names = _FIELDS[type(e)] = tuple(f.name for f in dataclasses.fields(e)
                                         if f.name != "span")
    return names


def _replace(e, **changes):
    """``dataclasses.replace(e, **changes)`` for a node, faster."""
    return type(e)(**{n: changes[n] if n in changes else getattr(e, n) for n in _fields(e)},
                   span=e.span)


def _rebuild(e, fn):
    """``e`` with ``fn`` applied to each child node."""
    names = _fields(e)
    values = {}
    for name in names:
        v = getattr(e, name)
        if isinstance(v, A.Node):
            v = fn(v)
        elif isinstance(v, tuple) and v and isinstance(v[0], A.Node):
            v = tuple(fn(x) for x in v)
        values[name] = v
    return type(e)(**values, span=e.span)


_TRUE, _FALSE = A.BoolConst(True), A.BoolConst(False)


def _simplify(e):
    """Fold the truth constants grounding leaves (``p != p``, empty quantifiers)."""
    true, false = _TRUE, _FALSE
    if isinstance(e, (A.And, A.Or)):
        unit, zero = (true, false) if isinstance(e, A.And) else (false, true)
        args = []
        for a in e.args:
            if a == zero:
                return A.BoolConst(zero.value, span=e.span)
            if a != unit:
                args.extend(a.args if type(a) is type(e) else [a])
        if not args:
            return A.BoolConst(unit.value, span=e.span)
        return args[0] if len(args) == 1 else dataclasses.replace(e, args=tuple(args))
    if isinstance(e, A.Not) and isinstance(e.operand, A.BoolConst):
        return A.BoolConst(not e.operand.value, span=e.span)
    if isinstance(e, A.Implies):
        if e.left == false or e.right == true:
            return A.BoolConst(True, span=e.span)
        if e.left == true:
            return e.right
        if e.right == false:
            return _simplify(A.Not(e.left, span=e.span))
    return e


def family_columns(kb, columns: Mapping) -> Mapping:
    """``columns`` with each whole family given under its own name (``"img"``: an array
    with one axis per parameter after the rows) split into its members' columns. Anything
    else passes unchanged; a mapping without such an entry is returned as it is."""
    families = getattr(kb, "families", None)
    if not families:
        return columns
    if isinstance(columns, Mapping) or hasattr(columns, "columns"):   # a DataFrame too
        _refuse_unknown_members(kb, columns)
    if not isinstance(columns, Mapping):
        return columns
    hits = [n for n in families if n in columns and n not in kb.variables
            and families[n].kind in _VARIABLE_KINDS]
    if not hits:
        return columns
    out = {k: v for k, v in columns.items() if k not in hits}
    for name in hits:
        for member, values in families[name].split(columns[name]).items():
            if member in out:
                raise DataError(f"{member!r} is given twice: as its own column and in "
                                f"family {name!r}")
            out[member] = values
    return out


_REFERENCE = re.compile(r"\s*([A-Za-z_]\w*)\s*([(\[])(.*)([)\]])\s*", re.S)


def _refuse_unknown_members(kb, columns: Mapping) -> None:
    """A DataError for a column written as a member of a declared variable family that
    is no member of it (``friends(anna, dora)`` with ``dora`` outside ``person``): a typo
    or a member missing from ``sets=``, never a column silently left unread. Other
    columns the model does not read are allowed."""
    for column in columns:
        if not isinstance(column, str) or column in kb.variables:
            continue
        found = _REFERENCE.fullmatch(column)
        family = kb.families.get(found.group(1)) if found else None
        if family is None or family.kind not in _VARIABLE_KINDS:
            continue
        parts = [p.strip() for p in found.group(3).split(",")]
        where = f"column {column!r} is written as a member of {family.kind} {family.name}"
        if len(parts) != len(family.sets) or (found.group(2) == "(") != family.paren:
            example = next(iter(family.members.values()), family.name)
            raise DataError(f"{where}, whose members are written like {example} (one index "
                            f"per parameter: {', '.join(family.sets)})")
        for k, part in enumerate(parts):
            known = list(dict.fromkeys(str(ix[k]) for ix in family.members))
            if part not in known:
                shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
                raise DataError(f"{where}, but {part!r} is not in set {family.sets[k]} "
                                f"({shown}): a typo, or a member missing from the set")
        same = next((n for ix, n in family.members.items()
                     if [str(i) for i in ix] == parts), None)
        raise DataError(f"{where}, but " + (f"it is spelled {same!r}" if same else
                                            f"the family has no member at ({', '.join(parts)})"))


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
