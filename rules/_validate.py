"""Semantic checks: names, types, domains, heads and cycles.

Runs on parsed statements and on builder output alike, and returns the statements with
enum values resolved (``employment == employed``: ``employed`` becomes a :class:`Sym`).
All problems found are reported together in one :class:`~greybox.errors.RuleError`.
Expressions are type-checked in ``_typecheck.py``; the problems are collected by
``_checker.py``'s ``_Checker``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping

import networkx as nx

from greybox.errors import RuleError, listed

from . import _ast as A
from ._checker import Variable, _big_type_text, _Checker, _type_text
from ._domain import big_int
from ._recursion import unroll
from ._typecheck import _BOOL_TYPE, check_expr, value_reads

__all__ = ["Variable", "validate", "check_expr"]


def _declared_vars(statements, ck: _Checker) -> dict[str, Variable]:
    decls = _declarations(statements, ck)
    variables: dict[str, Variable] = {}
    for name, items in decls.items():
        ck.statement = name
        v = _variable(name, items, ck)
        if v is not None:
            variables[name] = v
    _check_decided(statements, variables, ck)
    return variables


def _declarations(statements, ck: _Checker) -> dict[str, list]:
    """The declarations of each variable name, their names and types checked."""
    decls: dict[str, list] = {}
    for st in statements:
        ck.statement = getattr(st, "name", None)
        if isinstance(st, (A.InputDecl, A.NeuralDecl, A.DefineDecl, A.OutputDecl)):
            if ck.check_name(st.name, st, "variable"):
                decls.setdefault(st.name, []).append(st)
            # (int bounds beyond ±2**53: refused below by role, where they cannot be exact)
            ck.check_type(st.type, st, st.name, big=True)
            if isinstance(st.type, A.TensorType) and not isinstance(st, A.InputDecl):
                ck.error(f"{st.name!r}: only inputs can be tensors", st)
            if getattr(st, "optional", False) and isinstance(st.type, A.TensorType):
                ck.error(f"{st.name!r}: a tensor input cannot be optional (only table "
                         "inputs: bool, numbers and enums)", st)
    return decls


def _variable(name: str, items: list, ck: _Checker) -> Variable | None:
    """The variable declared by ``items`` (one declaration, or an output and its
    definition); None for a duplicate declaration, reported."""
    kinds = [type(d) for d in items]
    ok_pair = sorted(k.__name__ for k in kinds) == ["DefineDecl", "OutputDecl"]
    if len(items) > 1 and not ok_pair:
        first = items[0].span
        where = f" (first declared at line {first.line})" if first else ""
        for d in items[1:]:
            ck.error(f"duplicate declaration of {name!r}{where}", d)
        return None
    if ok_pair:
        out = next(d for d in items if isinstance(d, A.OutputDecl))
        dfn = next(d for d in items if isinstance(d, A.DefineDecl))
        if out.type != dfn.type:
            ck.error(
                f"output {name!r} is declared {_type_text(out.type)} but defined as "
                f"{_type_text(dfn.type)}",
                dfn,
            )
        role = "defined" if dfn.expr is not None else "decided"
        return Variable(name, out.type, role, True, dfn.expr)
    d = items[0]
    if isinstance(d, A.InputDecl):
        return Variable(name, d.type, "input", optional=d.optional)
    if isinstance(d, A.NeuralDecl):
        ck.check_name(d.network, d, "network")
        return Variable(name, d.type, "neural", network=d.network, args=d.args)
    if isinstance(d, A.DefineDecl):
        role = "defined" if d.expr is not None else "decided"
        return Variable(name, d.type, role, False, d.expr)
    return Variable(name, d.type, "decided", True)


def _check_decided(statements, variables: dict[str, Variable], ck: _Checker) -> None:
    """Big ints only where computed exactly; a variable the rules decide has a type they
    can decide."""
    for v in variables.values():
        ck.statement = v.name
        if big_int(v.type) and v.role != "defined":
            why = {"input": "inputs are read as float64",
                   "neural": "a network's distribution would enumerate its values",
                   "decided": "rules would score each of its values"}[v.role]
            ck.error(f"{v.name!r} is {_big_type_text(v.type)}, beyond ±2**53: only int defines "
                     f"and outputs defined by an expression may be that large ({why})",
                     _decl_of(statements, v.name))
        if v.role == "decided" and not v.finite and not isinstance(v.type, A.RealType):
            decl = "output" if v.output else "define"
            ck.error(
                f"{decl} {v.name!r} has type {_type_text(v.type)} and no definition; variables "
                "decided by rules must be bool, int lo..hi, an enum or real (a score the "
                "rules add to)",
                _decl_of(statements, v.name),
            )


def _decl_of(statements, name: str):
    for st in statements:
        if getattr(st, "name", None) == name and not isinstance(st, (A.Rule, A.Constraint)):
            return st
    return None


def _check_head(rule: A.Rule, variables: dict[str, Variable], ck: _Checker) -> None:
    h = rule.head
    if not isinstance(h, A.Head):
        ck.error(f"rule {rule.name!r}: the head must be a literal, got {h!r}", rule)
        return
    v = variables.get(h.name)
    if v is None:
        hint = difflib.get_close_matches(h.name, list(variables), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        ck.error(f"rule {rule.name!r} concludes undeclared {h.name!r}{extra}", h)
        return
    if v.role != "decided":
        why = {
            "input": "an input",
            "neural": "predicted by a network",
            "defined": "defined by an expression",
        }[v.role]
        ck.error(
            f"rule {rule.name!r} concludes {h.name!r}, which is {why}; rules can only conclude "
            "outputs or variables declared 'define NAME: TYPE' without an expression",
            h,
        )
        return
    t = v.type
    if isinstance(h.value, bool):
        # a real or int head without a value adds the rule's weight to the score (a
        # regression output, see :func:`additive`); an enum needs its value
        if not isinstance(t, (A.BoolType, A.RealType, A.IntType)):
            ck.error(
                f"rule {rule.name!r}: {h.name!r} is {_type_text(t)}; conclude a value with "
                f"'{h.name} = VALUE'",
                h,
            )
    elif isinstance(t, A.RealType):
        ck.error(f"rule {rule.name!r}: {h.name!r} is real; a rule adds its weight to it "
                 f"with '-> {h.name}' (or subtracts it with '-> not {h.name}')", h)
    elif isinstance(t, A.BoolType):
        ck.error(f"rule {rule.name!r}: {h.name!r} is bool; write '{h.name}' or 'not {h.name}'", h)
    elif isinstance(t, A.IntType):
        val = h.value
        if not (isinstance(val, A.Num) and isinstance(val.value, int) and not val.learnable
                and t.lo <= val.value <= t.hi):
            shown = val.value if isinstance(val, A.Num) else getattr(val, "name", val)
            ck.error(
                f"rule {rule.name!r}: {shown!r} is outside the domain of {h.name!r} "
                f"({_type_text(t)})",
                h,
            )
    elif isinstance(t, A.EnumType):
        val = h.value
        if not (isinstance(val, A.Sym) and val.name in t.values):
            shown = val.value if isinstance(val, A.Num) else getattr(val, "name", val)
            ck.error(
                f"rule {rule.name!r}: {shown!r} is not a value of {h.name!r} "
                f"({{{listed(t.values)}}})",
                h,
            )


def _check_define_reads(st, expr, variables: dict[str, Variable], ck: _Checker) -> None:
    """A define computes a value in every row: it may test ``x is missing`` but not read an
    optional input's value (rules and constraints read it, three-valued)."""
    for name in value_reads(expr):
        v = variables.get(name)
        if v is not None and v.optional:
            ck.error(f"the definition of {st.name!r} reads optional input {name!r}, which may "
                     f"be missing; test it in rules and constraints, or write "
                     f"'{name} is missing' here", st)
            return


def _check_cycles(statements, variables: dict[str, Variable], ck: _Checker, *,
                  defined_reads: Mapping[str, Iterable[str]],
                  rule_reads: Iterable[tuple[str, Iterable[str]]]) -> None:
    """A cycle among the variables, read from what each defined variable's expression and
    each rule's body (head name, names) reads -- ``A.variables`` of each, collected while
    checking them, not by walking them again."""
    # an input reads nothing, so it is on no cycle: only edges between computed variables
    # count (a grounded family's 90,000 rules over inputs add none)
    computed = {name for name, v in variables.items() if v.role != "input"}
    edges: dict[tuple[str, str], None] = {}   # in the order they are found
    for v in variables.values():
        if v.role == "neural":
            edges.update(((a, v.name), None) for a in v.args if a in computed)
        elif v.role == "defined" and v.expr is not None:
            edges.update(((a, v.name), None) for a in defined_reads[v.name] if a in computed)
    for head, reads in rule_reads:
        if head in variables:
            edges.update(((a, head), None) for a in reads if a in computed)
    g = nx.DiGraph()
    g.add_edges_from(edges)
    order = list(variables)
    for cycle in nx.simple_cycles(g):
        start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
        cycle = cycle[start:] + cycle[:start]  # start at the first-declared variable
        names = cycle + [cycle[0]]
        ck.error("cycle among definitions: " + " -> ".join(names),
                 _decl_of(statements, cycle[0]))
        break


def additive(variables, rules) -> tuple[str, ...]:
    """The decided variables whose value is their score, ``bias + sum(weight * [body])``
    (+ residual): every decided ``real``, and a decided ``int`` whose rules add to it
    (heads ``-> y`` / ``-> not y`` rather than ``-> y = VALUE``). Regression outputs."""
    adds = {r.head.name for r in rules
            if isinstance(r.head, A.Head) and isinstance(r.head.value, bool)}
    return tuple(v.name for v in variables.values() if v.role == "decided" and (
        isinstance(v.type, A.RealType) or (isinstance(v.type, A.IntType) and v.name in adds)))


def _check_additive(statements, variables, rules, ck: _Checker) -> None:
    """An additive variable's rules all add to it, and nothing reads it (its value is a
    sum of scores: no rule, constraint or definition is decided from it)."""
    names = set(additive(variables, rules))
    if not names:
        return
    for r in rules:
        if r.head.name in names and not isinstance(r.head.value, bool):
            ck.statement = r.name
            ck.error(f"rule {r.name!r} concludes a value of {r.head.name!r}, but other rules "
                     f"add their weights to it ('-> {r.head.name}'); use one form: values "
                     "for a class, additions for a number", r.head)
    for st in statements:
        what = {A.Rule: "rule", A.Constraint: "constraint", A.DefineDecl: "define"}.get(type(st))
        e = st.body if isinstance(st, A.Rule) else st.formula if isinstance(st, A.Constraint) \
            else getattr(st, "expr", None)
        read = [n for n in A.variables(e) if n in names] if e is not None else []
        if read:
            ck.statement = st.name
            ck.error(f"{what} {st.name!r} reads {read[0]!r}, which rules decide by adding "
                     "weights (a regression output): no rule, constraint or definition may "
                     "read it", st)
    ck.statement = None


def validate(statements, *, filename: str | None = None, source: str | None = None,
             families: Mapping | None = None):
    """Check ``statements``; return ``(resolved_statements, variables, recursion)`` or
    raise RuleError. Recursive bool defines are unrolled (``recursion``: what was, or None;
    see ``_recursion.py``).
    ``families`` (a grounded program's) lets a problem of a template be reported once,
    not once per grounding."""
    ck = _Checker(filename, families)
    statements = list(statements)
    for st in statements:
        if not isinstance(st, (A.InputDecl, A.NeuralDecl, A.DefineDecl, A.OutputDecl, A.Rule,
                               A.Constraint)):
            ck.error(f"not a statement: {st!r}", None)
    statements = [s for s in statements if isinstance(s, A.Node)]
    variables = _declared_vars(statements, ck)
    _check_networks(statements, variables, ck)
    defined_reads: dict[str, dict] = {}      # what each definition and rule body reads
    rule_reads: list[tuple[str, dict]] = []
    resolved = _check_statements(statements, variables, ck, defined_reads=defined_reads,
                                 rule_reads=rule_reads)
    if not ck.problems:
        rules = [s for s in resolved if isinstance(s, A.Rule)]
        _check_additive(resolved, variables, rules, ck)
    recursion = None
    if not ck.problems:
        resolved, variables, recursion = unroll(
            resolved, variables, defined_reads, ck, lambda name: _decl_of(resolved, name))
    if not ck.problems:
        _check_cycles(resolved, variables, ck, defined_reads=defined_reads,
                      rule_reads=rule_reads)
    if ck.problems:
        raise RuleError("", diagnostics=ck.diagnostics(), source=source)
    return resolved, variables, recursion


def _check_networks(statements, variables: dict[str, Variable], ck: _Checker) -> None:
    """A network reads declared variables, never an optional input."""
    for v in variables.values():
        ck.statement = v.name
        if v.role == "neural":
            for a in v.args:
                if a not in variables:
                    ck.error(f"network {v.network!r} of {v.name!r} reads undeclared {a!r}",
                             _decl_of(statements, v.name))
                elif variables[a].optional:
                    ck.error(f"network {v.network!r} of {v.name!r} reads optional input "
                             f"{a!r}; a network needs a value in every row (declare it "
                             "without 'optional', or test it in rules)",
                             _decl_of(statements, v.name))


def _check_statements(statements, variables: dict[str, Variable], ck: _Checker, *,
                      defined_reads: dict, rule_reads: list) -> list:
    """Every statement checked, with its expressions resolved; what each definition and
    rule body reads is added to ``defined_reads`` and ``rule_reads``."""
    named: dict[str, A.Node] = {}
    resolved = []
    for st in statements:
        ck.statement = getattr(st, "name", None)
        if isinstance(st, (A.Rule, A.Constraint)):
            _check_unique_name(st, named, ck)
        if isinstance(st, A.Rule):
            st = _check_rule(st, variables, ck, rule_reads)
        elif isinstance(st, A.Constraint):
            st = _check_constraint(st, variables, ck)
        elif isinstance(st, A.DefineDecl) and st.expr is not None:
            st = _check_define(st, variables, ck, defined_reads)
        resolved.append(st)
    ck.statement = None
    return resolved


def _check_unique_name(st, named: dict[str, A.Node], ck: _Checker) -> None:
    kind = "rule" if isinstance(st, A.Rule) else "constraint"
    if ck.check_name(st.name, st, kind):
        if st.name in named:
            prev = named[st.name]
            where = f" at line {prev.span.line}" if prev.span else ""
            ck.error(f"duplicate {kind} name {st.name!r} (already used{where})", st)
        named[st.name] = st


def _check_rule(st: A.Rule, variables: dict[str, Variable], ck: _Checker,
                rule_reads: list) -> A.Rule:
    if not (type(st.weight) is float and math.isfinite(st.weight)):
        ck.check_number(st.weight, st, f"weight of rule {st.name!r}")
    reads: dict = {}
    body = check_expr(st.body, variables, ck, expect=_BOOL_TYPE, learnable_ok=True,
                      what=f"the body of rule {st.name!r}", reads=reads)
    _check_head(st, variables, ck)
    if isinstance(st.head, A.Head):
        rule_reads.append((st.head.name, reads))
    return st if body is st.body else dataclasses.replace(st, body=body)


def _check_constraint(st: A.Constraint, variables: dict[str, Variable],
                      ck: _Checker) -> A.Constraint:
    if st.weight is not None:
        ck.check_number(st.weight, st, f"weight of constraint {st.name!r}")
        if A.number_problem(st.weight) is None and st.weight <= 0:
            ck.error(f"constraint {st.name!r}: a soft constraint's weight must be "
                     f"positive, got {st.weight!r}", st)
    formula = check_expr(st.formula, variables, ck, expect=_BOOL_TYPE,
                         learnable_ok=True, what=f"constraint {st.name!r}")
    return st if formula is st.formula else dataclasses.replace(st, formula=formula)


def _check_define(st: A.DefineDecl, variables: dict[str, Variable], ck: _Checker,
                  defined_reads: dict) -> A.DefineDecl:
    """A definition's expression; its variable takes the resolved expression."""
    reads = defined_reads[st.name] = {}
    expr = check_expr(st.expr, variables, ck, expect=st.type, learnable_ok=False,
                      what=f"the definition of {st.name!r}",
                      big_ok=isinstance(st.type, A.IntType), reads=reads)
    _check_define_reads(st, expr, variables, ck)
    if expr is not st.expr:
        st = dataclasses.replace(st, expr=expr)
    if st.name in variables and variables[st.name].expr is not None \
            and variables[st.name].expr is not expr:
        variables[st.name] = dataclasses.replace(variables[st.name], expr=expr)
    return st
