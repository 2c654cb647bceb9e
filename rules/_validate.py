"""Semantic checks: names, types, domains, heads and cycles.

Runs on parsed statements and on builder output alike, and returns the statements with
enum values resolved (``employment == employed``: ``employed`` becomes a :class:`Sym`).
All problems found are reported together in one :class:`~greybox.errors.RuleError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from greybox.errors import Location, RuleError, listed

from . import _ast as A
from ._domain import big_int

__all__ = ["Variable", "validate", "check_expr"]

#: Integers beyond this are not exactly representable in float64, which evaluation uses
#: (except in int defines and their bounds: big integers, computed as Python ints).
MAX_INT = 2**53

#: why a big integer is refused where it is (rules, constraints, inputs...)
_BIG_WHERE = ("; beyond it only in the bounds and expressions of int defines and outputs, "
              "computed exactly (rules and constraints compute in float64)")


@dataclass(frozen=True)
class Variable:
    """A declared variable of a knowledge base.

    ``role`` is ``"input"`` (data), ``"neural"`` (predicted by ``network`` from ``args``),
    ``"defined"`` (``expr`` of other variables) or ``"decided"`` (by the rules whose head it
    is). ``output`` says whether it was declared ``output``; ``optional`` whether it is an
    input declared ``optional`` (a row may leave it missing).
    """

    name: str
    type: A.Type
    role: str
    output: bool = False
    expr: A.Expr | None = None
    network: str | None = None
    args: tuple[str, ...] = ()
    optional: bool = False

    @property
    def finite(self) -> bool:
        return A.is_finite_type(self.type)


class _T:
    """Static type of an expression during checking."""

    __slots__ = ("kind", "integral", "enum")

    def __init__(self, kind: str, integral: bool = False, enum: A.EnumType | None = None):
        self.kind, self.integral, self.enum = kind, integral, enum

    def describe(self) -> str:
        if self.kind == "num":
            return "an integer" if self.integral else "a number"
        if self.kind == "enum":
            return "an enum value of {" + ", ".join(self.enum.values) + "}"
        return {"bool": "true/false", "sym": "an enum value", "tensor": "a tensor"}[self.kind]


BOOL = _T("bool")
ERR = _T("error")
SYM = _T("sym")
#: what a rule's body and a constraint must be (one node for all of them)
_BOOL_TYPE = A.BoolType()
INTEGRAL = _T("num", True)
NUMBER = _T("num", False)


def _type_text(t: A.Type) -> str:
    from ._printer import type_to_text

    return type_to_text(t)


def _expr_text(e: A.Expr) -> str:
    from ._printer import expr_to_text

    text = expr_to_text(e)
    return text if len(text) <= 60 else text[:57] + "..."


#: What differs between the grounded copies of one problem: member names (quoted or
#: back-quoted) and numbers (index values).
_GROUNDED_NAMES = re.compile(r"`[^`]*`|'[^']*'|\d+")


class _Checker:
    def __init__(self, filename: str | None, families: Mapping | None = None):
        self.filename = filename
        self.problems: list[tuple[str, Location | None]] = []
        self.statement: str | None = None       # the statement being checked
        self._sources: list[str | None] = []    # the statement of each problem
        # grounded member -> (keyword, family name, number of members)
        self._families = {m: (info.kind, info.name, len(info.members))
                          for info in (families or {}).values()
                          for m in info.members.values()}

    def error(self, message: str, node) -> None:
        span = getattr(node, "span", None) if node is not None else None
        if span is not None and self.filename is not None:
            span = dataclasses.replace(span, filename=self.filename)
        self.problems.append((message, span))
        self._sources.append(self.statement)

    def retract(self) -> None:
        """Take back the last problem reported."""
        self.problems.pop()
        self._sources.pop()

    def diagnostics(self) -> tuple[tuple[str, Location | None], ...]:
        """The problems, each template's once: grounded copies of one piece of rule text
        (a family's members, a quantifier's instances) report the same problem at the same
        place, so the first is shown, with how many groundings have it."""
        groups: dict = {}
        for (message, span), source in zip(self.problems, self._sources):
            family = self._families.get(source)
            owner = family[:2] if family is not None else source
            key = ((owner, span, _GROUNDED_NAMES.sub("_", message)) if span is not None
                   else object())
            groups.setdefault(key, []).append((message, span, source))
        out = []
        for items in groups.values():
            message, span, source = items[0]
            family = self._families.get(source)
            if len(items) > 1 and family is not None:
                kind, name, size = family
                k = len({s for _, _, s in items})
                have = f"all {size}" if k == size else f"{k} of the {size}"
                message += f" ({have} groundings of {kind} {name}; shown for `{source}`)"
            elif len(items) > 1:
                within = f" of `{source}`" if source is not None else ""
                message += f" ({len(items)} grounded copies{within}; the first shown)"
            out.append((message, span))
        return tuple(out)

    # ------------------------------------------------------------------ declarations
    def check_name(self, name, node, what: str) -> bool:
        problem = A.name_problem(name)
        if problem:
            self.error(f"invalid {what} name: {problem}", node)
            return False
        return True

    def check_number(self, value, node, what: str, *, big: bool = False) -> None:
        """``big``: an integer beyond ±2**53 is allowed (an int define's bound or
        coefficient, computed exactly)."""
        problem = A.number_problem(value)
        if problem is None and isinstance(value, int) and abs(value) > MAX_INT and not big:
            problem = f"{_shown_int(value)} is too large (integers are limited to ±2**53)" \
                + _BIG_WHERE
        if problem is not None:
            self.error(f"{what}: {problem}", node)

    def check_type(self, t, node, name: str, *, big: bool = False) -> bool:
        """``big``: int bounds beyond ±2**53 are allowed (a define or an output)."""
        if isinstance(t, A.BoolType):
            return True
        if isinstance(t, A.IntType):
            for b in (t.lo, t.hi):
                self.check_number(b, t, f"bound of {name!r}",
                                  big=big and not isinstance(b, bool))
            if isinstance(t.lo, int) and isinstance(t.hi, int) and t.lo > t.hi:
                self.error(f"empty int range {t.lo}..{t.hi} for {name!r}", t)
                return False
            return True
        if isinstance(t, A.RealType):
            for b in (t.lo, t.hi):
                if b is not None:
                    self.check_number(b, t, f"bound of {name!r}")
            if (t.lo is None) != (t.hi is None):
                self.error(f"real range of {name!r} needs both bounds", t)
            elif t.lo is not None and t.lo > t.hi:
                self.error(f"empty real range [{t.lo}, {t.hi}] for {name!r}", t)
                return False
            return True
        if isinstance(t, A.EnumType):
            if not t.values:
                self.error(f"enum type of {name!r} has no values", t)
                return False
            seen = set()
            for v in t.values:
                self.check_name(v, t, "enum value")
                if v in seen:
                    self.error(f"enum type of {name!r} lists {v!r} twice", t)
                seen.add(v)
            return True
        if isinstance(t, A.TensorType):
            if t.shape is not None and any(
                not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in t.shape
            ):
                self.error(f"tensor shape of {name!r} must be positive integers", t)
            return True
        self.error(f"{name!r} has no valid type (got {t!r})", node)
        return False


def _declared_vars(statements, ck: _Checker) -> dict[str, Variable]:
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
    variables: dict[str, Variable] = {}
    for name, items in decls.items():
        ck.statement = name
        kinds = [type(d) for d in items]
        ok_pair = sorted(k.__name__ for k in kinds) == ["DefineDecl", "OutputDecl"]
        if len(items) > 1 and not ok_pair:
            first = items[0].span
            where = f" (first declared at line {first.line})" if first else ""
            for d in items[1:]:
                ck.error(f"duplicate declaration of {name!r}{where}", d)
            continue
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
            variables[name] = Variable(name, out.type, role, True, dfn.expr)
            continue
        d = items[0]
        if isinstance(d, A.InputDecl):
            variables[name] = Variable(name, d.type, "input", optional=d.optional)
        elif isinstance(d, A.NeuralDecl):
            ck.check_name(d.network, d, "network")
            variables[name] = Variable(name, d.type, "neural", network=d.network, args=d.args)
        elif isinstance(d, A.DefineDecl):
            role = "defined" if d.expr is not None else "decided"
            variables[name] = Variable(name, d.type, role, False, d.expr)
        else:
            variables[name] = Variable(name, d.type, "decided", True)
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
    return variables


def _shown_int(value: int) -> str:
    """An integer as text, a long one by its number of digits."""
    return str(value) if len(str(abs(value))) <= 20 else (
        f"{'-' if value < 0 else ''}a {len(str(abs(value)))}-digit number")


def _big_type_text(t: A.IntType) -> str:
    """An int range with bounds of more than 20 digits written as floats."""
    def bound(b: int) -> str:
        return str(b) if len(str(abs(b))) <= 20 else f"{float(b):.3g}"
    return f"int {bound(t.lo)}..{bound(t.hi)}"


def _decl_of(statements, name: str):
    for st in statements:
        if getattr(st, "name", None) == name and not isinstance(st, (A.Rule, A.Constraint)):
            return st
    return None


# ---------------------------------------------------------------------- expressions


class _ExprChecker:
    """Type-checks one expression and resolves enum values, reporting into a _Checker."""

    def __init__(self, ck: _Checker, variables: dict[str, Variable], *, learnable_ok: bool,
                 big_ok: bool = False, reads: dict | None = None):
        self.ck, self.vars, self.learnable_ok = ck, variables, learnable_ok
        #: integers beyond ±2**53 allowed (an int define's expression: computed exactly)
        self.big_ok = big_ok
        #: whether the expression holds a product of variables, //, %, min, max or abs
        self.nonlinear = False
        #: the declared variables the expression reads, in reading order (for the cycle
        #: check: collected on this one walk rather than by walking the result again)
        self.reads = {} if reads is None else reads
        #: how many variables and enum values the results checked so far hold: a side of
        #: '*' is constant when checking it adds none (``A.is_constant`` without walking
        #: the side again, at every level of a chain of products)
        self.mentions = 0

    def undeclared(self, node: A.Var) -> None:
        hint = difflib.get_close_matches(node.name, list(self.vars), n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        if node.name.lower() in ("nan", "na", "null", "none", "missing"):
            extra += ("; a missing value is tested with 'x is missing', on an input declared "
                      "'input x: optional TYPE'")
        self.ck.error(f"undeclared name {node.name!r}{extra}", node)

    def check(self, e, expect_enum: A.EnumType | None = None):
        """Return ``(resolved_expr, _T)``. A node none of whose parts changes is returned
        as it is (nodes are immutable), not rebuilt."""
        kind = type(e)
        if kind is A.Var:
            return self.var(e, expect_enum)
        method = _METHODS.get(kind)
        if method is None:
            if isinstance(e, A.Var):
                return self.var(e, expect_enum)
            method = _method_of(kind)
        return method(self, e)

    def bool_const(self, e: A.BoolConst):
        return e, BOOL

    def sym(self, e: A.Sym):
        self.mentions += 1
        return e, SYM

    def not_expression(self, e):
        self.ck.error(f"not an expression: {e!r}", None)
        self.mentions += not A.is_constant(e)
        return e, ERR

    def number(self, e: A.Num):
        value = e.value
        if not ((type(value) is float and math.isfinite(value))
                or (type(value) is int and -MAX_INT <= value <= MAX_INT)):
            self.ck.check_number(value, e, "number", big=self.big_ok)
        if e.learnable and not self.learnable_ok:
            self.ck.error("learnable numbers (~) are only allowed in rules and constraints", e)
        return e, INTEGRAL if isinstance(value, int) and not e.learnable else NUMBER

    def var(self, e: A.Var, expect_enum: A.EnumType | None):
        """A variable, or where an enum value is expected and no variable has the name,
        that value."""
        self.mentions += 1   # a variable, or the enum value it stands for
        v = self.vars.get(e.name)
        if v is not None:
            self.reads[e.name] = None
            if not self.big_ok and big_int(v.type):
                self.ck.error(f"{e.name!r} is {_big_type_text(v.type)}, beyond ±2**53: it can "
                              "only be read by int defines (computed exactly; rules and "
                              "constraints compute in float64)", e)
            return e, _var_type(v, e, self.ck)
        if expect_enum is None:
            self.undeclared(e)
            return e, ERR
        if e.name in expect_enum.values:
            return A.Sym(e.name, span=e.span), SYM
        self.ck.error(
            f"{e.name!r} is neither a declared variable nor one of the values "
            f"{{{listed(expect_enum.values)}}}",
            e,
        )
        return e, ERR

    def neg(self, e: A.Neg):
        x, t = self.check(e.operand)
        self.need_num(t, e.operand, "unary minus")
        return (e if x is e.operand else dataclasses.replace(e, operand=x),
                INTEGRAL if t.integral else NUMBER)

    def sum(self, e: A.Sum):
        if len(e.args) < 2 or len(e.ops) != len(e.args) - 1 or any(
            op not in ("+", "-") for op in e.ops
        ):
            self.ck.error("malformed sum", e)
            return e, ERR
        args, integral = [], True
        for a in e.args:
            x, t = self.check(a)
            self.need_num(t, a, "'+'/'-'")
            integral &= t.integral
            args.append(x)
        return (_same(e, e.args, args) or dataclasses.replace(e, args=tuple(args)),
                INTEGRAL if integral else NUMBER)

    def mul(self, e: A.Mul):
        before = self.mentions
        left, lt = self.check(e.left)
        between = self.mentions
        right, rt = self.check(e.right)
        self.need_num(lt, e.left, "'*'")
        self.need_num(rt, e.right, "'*'")
        out = e if left is e.left and right is e.right else A.Mul(left, right, span=e.span)
        if between != before and self.mentions != between:   # neither side is constant
            if "error" in (lt.kind, rt.kind):
                pass
            elif not (lt.integral and rt.integral):
                self.ck.error(
                    f"'*' between two variable expressions needs integers on both sides "
                    f"(finite int ranges; arithmetic on reals is linear): {_expr_text(e)}", e)
            else:
                self.nonlinear = True
                self.within_exact(out, "'*'")
        return out, INTEGRAL if lt.integral and rt.integral else NUMBER

    def arith(self, e: A.Arith):
        """``//``, ``%``, ``min``, ``max``, ``abs``: integers with finite ranges, a
        divisor whose range excludes 0, results within float64's exact integers."""
        from ._intervals import interval

        need = {"//": (2, 2), "%": (2, 2), "abs": (1, 1)}.get(e.op, (1, None))
        if e.op not in A.ARITH_OPS:
            self.ck.error(f"unknown operation {e.op!r}", e)
            return e, ERR
        if len(e.args) < need[0] or (need[1] is not None and len(e.args) > need[1]):
            many = "one argument" if need == (1, 1) else (
                "two operands" if need == (2, 2) else "at least one argument")
            self.ck.error(f"'{e.op}' takes {many}, got {len(e.args)}: {_expr_text(e)}", e)
            return e, ERR
        args, ok = [], True
        for a in e.args:
            x, t = self.check(a)
            self.need_num(t, a, f"'{e.op}'")
            if t.kind == "num" and not t.integral:
                self.ck.error(f"'{e.op}' needs integers (finite int ranges), got "
                              f"{t.describe()} ({_expr_text(a)})", a)
            ok &= t.kind == "num" and t.integral
            args.append(x)
        out = A.Arith(e.op, tuple(args), span=e.span)
        if not ok:
            return out, _T("num", True)
        self.nonlinear = True
        if e.op in ("//", "%"):
            divisor = interval(args[1], self.vars)
            if divisor is not None and divisor[0] <= 0 <= divisor[1]:
                self.ck.error(
                    f"'{e.op}' divides by {_expr_text(args[1])}, which can be 0 (its range "
                    f"is {divisor[0]}..{divisor[1]}): declare a range without 0 (for example "
                    f"int 1..{max(divisor[1], 1)}) or divide by a constant", args[1])
                return out, _T("num", True)
        self.within_exact(out, f"'{e.op}'")
        return out, _T("num", True)

    def within_exact(self, e, what: str) -> None:
        """Refuse non-linear arithmetic whose range reaches beyond ±2**53 (beyond the
        integers evaluation and the smooth semantics hold exactly)."""
        from ._intervals import interval

        found = interval(e, self.vars)
        if found is not None and max(abs(found[0]), abs(found[1])) > MAX_INT:
            self.ck.error(f"{what}: {_expr_text(e)} can reach {found[0]}..{found[1]}, "
                          "beyond ±2**53 (integers are limited to ±2**53): declare "
                          "tighter ranges", e)

    def count(self, e: A.Count):
        if not e.args:
            self.ck.error("'count' needs at least one formula", e)
            return e, ERR
        args = []
        for a in e.args:
            x, t = self.check(a)
            self.need_bool(t, a, "'count'")
            args.append(x)
        return _same(e, e.args, args) or A.Count(tuple(args), span=e.span), INTEGRAL

    def is_missing(self, e: A.IsMissing):
        x = e.operand
        v = self.vars.get(x.name) if isinstance(x, A.Var) else None
        self.mentions += not A.is_constant(x)   # the operand is not checked on the walk
        if v is not None:
            self.reads[x.name] = None
        if v is None and isinstance(x, A.Var):
            self.undeclared(x)
        elif v is None or not v.optional:
            what = f"{v.role} {x.name!r}" if v is not None else _expr_text(x)
            self.ck.error(f"'is missing' tests an input declared optional "
                          f"('input NAME: optional TYPE'), got {what}", e)
        return e, BOOL

    def not_(self, e: A.Not):
        x, t = self.check(e.operand)
        self.need_bool(t, e.operand, "'not'")
        return e if x is e.operand else A.Not(x, span=e.span), BOOL

    def and_or(self, e):
        word = "and" if isinstance(e, A.And) else "or"
        if len(e.args) < 2:
            self.ck.error(f"'{word}' needs at least two operands", e)
        args = []
        for a in e.args:
            x, t = self.check(a)
            self.need_bool(t, a, f"'{word}'")
            args.append(x)
        return _same(e, e.args, args) or type(e)(tuple(args), span=e.span), BOOL

    def implies(self, e):
        word = "->" if isinstance(e, A.Implies) else "<->"
        left, lt = self.check(e.left)
        right, rt = self.check(e.right)
        self.need_bool(lt, e.left, f"'{word}'")
        self.need_bool(rt, e.right, f"'{word}'")
        same = left is e.left and right is e.right
        return e if same else type(e)(left, right, span=e.span), BOOL

    def need_num(self, t: _T, node, what: str) -> None:
        if t.kind not in ("num", "error"):
            self.ck.error(f"{what} needs numbers, got {t.describe()} ({_expr_text(node)})", node)

    def need_bool(self, t: _T, node, what: str) -> None:
        if t.kind not in ("bool", "error"):
            self.ck.error(f"{what} needs true/false, got {t.describe()} ({_expr_text(node)})", node)

    def sym_in_enum(self, sym: A.Sym, enum: A.EnumType, other, node) -> None:
        if sym.name not in enum.values:
            self.ck.error(
                f"{sym.name!r} is not a value of {_expr_text(other)} "
                f"({{{listed(enum.values)}}})",
                node,
            )
        elif sym.name in self.vars:
            self.ck.error(
                f"{sym.name!r} is both a variable and a value of {_expr_text(other)}; "
                "rename one of them",
                node,
            )

    def domain_value(self, var_expr, value: A.Num, node) -> None:
        """``age == 150`` with ``age: int 0..120``: the value lies outside the domain."""
        if not isinstance(var_expr, A.Var) or value.learnable:
            return
        v = self.vars.get(var_expr.name)
        if v is None:
            return
        t = v.type
        if isinstance(t, A.IntType) and not (
            isinstance(value.value, (int, float)) and t.lo <= value.value <= t.hi
            and float(value.value).is_integer()
        ):
            self.ck.error(
                f"value {value.value!r} is outside the domain of {v.name!r} ({_type_text(t)})",
                node,
            )
        elif isinstance(t, A.RealType) and t.lo is not None and not t.lo <= value.value <= t.hi:
            self.ck.error(
                f"value {value.value!r} is outside the domain of {v.name!r} ({_type_text(t)})",
                node,
            )

    def compare(self, e: A.Compare):
        ck = self.ck
        if e.op not in A.COMPARE_OPS:
            ck.error(f"unknown comparison {e.op!r}", e)
            return e, ERR
        left, lt = self.check(e.left)
        right, rt = self.check(e.right, expect_enum=lt.enum if lt.kind == "enum" else None)
        if lt.kind == "error" and isinstance(e.left, A.Var) and rt.kind == "enum":
            # ``employed == employment``: resolve the left side now that we know the right
            if e.left.name in rt.enum.values:
                ck.retract()
                left, lt = A.Sym(e.left.name, span=e.left.span), SYM
        resolved = (e if left is e.left and right is e.right
                    else A.Compare(e.op, left, right, span=e.span))
        if "error" in (lt.kind, rt.kind):
            return resolved, BOOL
        if e.op in ("==", "!="):
            kinds = {lt.kind, rt.kind}
            if kinds == {"num"}:
                for a, b in ((left, right), (right, left)):
                    if isinstance(b, A.Num):
                        self.domain_value(a, b, e)
            elif kinds == {"bool"}:
                pass
            elif kinds == {"enum"}:
                if lt.enum.values != rt.enum.values:
                    ck.error(f"compares enums of different types: {_expr_text(e)}", e)
            elif kinds == {"enum", "sym"}:
                enum_side, sym = (lt, right) if lt.kind == "enum" else (rt, left)
                other = left if lt.kind == "enum" else right
                self.sym_in_enum(sym, enum_side.enum, other, e)
            elif "enum" in kinds and "num" in kinds:
                ck.error(f"an enum is compared with a number: {_expr_text(e)}", e)
            else:
                ck.error(
                    f"'{e.op}' compares {lt.describe()} with {rt.describe()}: {_expr_text(e)}", e
                )
        else:
            for t, side in ((lt, e.left), (rt, e.right)):
                if t.kind == "enum":
                    ck.error(
                        f"'{e.op}' orders numbers; {_expr_text(side)} is an enum "
                        "(use == or in {...})",
                        e,
                    )
                else:
                    self.need_num(t, side, f"'{e.op}'")
        return resolved, BOOL

    def inset(self, e: A.InSet):
        ck = self.ck
        x, t = self.check(e.operand)
        if not e.values:
            ck.error("'in' needs at least one value", e)
        if t.kind == "enum":
            for v in e.values:
                if isinstance(v, A.Sym):
                    self.sym_in_enum(v, t.enum, e.operand, v)
                else:
                    ck.error(f"an enum is compared with a number: {_expr_text(e)}", v)
        elif t.kind == "num":
            for v in e.values:
                if isinstance(v, A.Num):
                    ck.check_number(v.value, v, "number")
                    self.domain_value(x, v, v)
                else:
                    ck.error(f"{_expr_text(e.operand)} is a number, {_expr_text(v)} is not", v)
        elif t.kind != "error":
            ck.error(f"'in' needs a number or an enum on its left, got {t.describe()}", e)
        if any(not isinstance(v, A.Num) and not A.is_constant(v) for v in e.values):
            self.mentions += 1   # the values are kept as they are, enum values counted
        if x is e.operand and type(e.values) is tuple:
            return e, BOOL
        return A.InSet(x, tuple(e.values), span=e.span), BOOL


#: how :meth:`_ExprChecker.check` checks each kind of expression, in this order (a
#: variable, which may stand for an enum value, is checked by ``_ExprChecker.var``)
_CHECKS = (
    (A.BoolConst, _ExprChecker.bool_const),
    (A.Sym, _ExprChecker.sym),
    (A.Num, _ExprChecker.number),
    (A.Neg, _ExprChecker.neg),
    (A.Sum, _ExprChecker.sum),
    (A.Mul, _ExprChecker.mul),
    (A.Arith, _ExprChecker.arith),
    (A.Count, _ExprChecker.count),
    (A.Compare, _ExprChecker.compare),
    (A.InSet, _ExprChecker.inset),
    (A.IsMissing, _ExprChecker.is_missing),
    (A.Not, _ExprChecker.not_),
    ((A.And, A.Or), _ExprChecker.and_or),
    ((A.Implies, A.Iff), _ExprChecker.implies),
)

#: the method of each kind of node met so far (a dict lookup, not a chain of isinstance
#: tests, for every node of every rule)
_METHODS: dict = {}


def _method_of(kind):
    found = next((method for kinds, method in _CHECKS if issubclass(kind, kinds)),
                 _ExprChecker.not_expression)
    _METHODS[kind] = found
    return found


def _same(e, old: tuple, new: list):
    """``e`` when its checked parts ``new`` are its parts ``old`` (a tuple), else None."""
    if type(old) is not tuple:
        return None
    for a, b in zip(old, new):
        if a is not b:
            return None
    return e


def _var_type(v: Variable, node, ck: _Checker) -> _T:
    t = v.type
    if isinstance(t, A.BoolType):
        return BOOL
    if isinstance(t, A.IntType):
        return INTEGRAL
    if isinstance(t, A.RealType):
        return NUMBER
    if isinstance(t, A.EnumType):
        return _T("enum", enum=t)
    ck.error(f"tensor {v.name!r} can only be an argument of a neural network", node)
    return ERR


def check_expr(expr, variables: dict[str, Variable], ck: _Checker, *, expect: A.Type | None,
               learnable_ok: bool, what: str, big_ok: bool = False,
               reads: dict | None = None):
    """Check ``expr``; when ``expect`` is given, the expression must fit that type.
    ``big_ok``: integers beyond ±2**53 may appear (an int define's expression). The
    declared variables it reads are added to ``reads`` (a dict used as an ordered set)."""
    enum = expect if isinstance(expect, A.EnumType) else None
    checker = _ExprChecker(ck, variables, learnable_ok=learnable_ok, big_ok=big_ok,
                           reads=reads)
    x, t = checker.check(expr, expect_enum=enum)
    if t.kind == "error" or expect is None:
        return x
    if checker.nonlinear and isinstance(expect, A.IntType):
        _check_range(x, expect, variables, ck, what)
    ok = (
        (isinstance(expect, A.BoolType) and t.kind == "bool")
        or (isinstance(expect, A.IntType) and t.kind == "num" and t.integral)
        or (isinstance(expect, A.RealType) and t.kind == "num")
        or (isinstance(expect, A.EnumType) and t.kind == "enum" and t.enum.values == expect.values)
    )
    if isinstance(expect, A.EnumType) and t.kind == "sym":
        ok = x.name in expect.values
    if not ok:
        ck.error(f"{what} must be {_type_text(expect)}, got {t.describe()} ({_expr_text(expr)})",
                 expr if getattr(expr, "span", None) else None)
    return x


def _check_range(x, expect: A.IntType, variables, ck: _Checker, what: str) -> None:
    """A definition by non-linear arithmetic whose every value lies outside its declared
    type (found from the operands' ranges; one that may leave it is `check`'s
    define-out-of-domain finding, as for sums)."""
    from ._intervals import interval

    found = interval(x, variables)
    if found is not None and (found[1] < expect.lo or found[0] > expect.hi):
        ck.error(f"{what} takes values in {found[0]}..{found[1]}, never within "
                 f"{_type_text(expect)}", x if getattr(x, "span", None) else None)


# ------------------------------------------------------------------------- the pass


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
    from ._missing import value_reads

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
    """Check ``statements``; return ``(resolved_statements, variables)`` or raise RuleError.
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
    named: dict[str, A.Node] = {}
    resolved = []
    defined_reads: dict[str, dict] = {}      # what each definition and rule body reads
    rule_reads: list[tuple[str, dict]] = []
    for st in statements:
        ck.statement = getattr(st, "name", None)
        if isinstance(st, (A.Rule, A.Constraint)):
            kind = "rule" if isinstance(st, A.Rule) else "constraint"
            if ck.check_name(st.name, st, kind):
                if st.name in named:
                    prev = named[st.name]
                    where = f" at line {prev.span.line}" if prev.span else ""
                    ck.error(f"duplicate {kind} name {st.name!r} (already used{where})", st)
                named[st.name] = st
        if isinstance(st, A.Rule):
            if not (type(st.weight) is float and math.isfinite(st.weight)):
                ck.check_number(st.weight, st, f"weight of rule {st.name!r}")
            reads: dict = {}
            body = check_expr(st.body, variables, ck, expect=_BOOL_TYPE, learnable_ok=True,
                              what=f"the body of rule {st.name!r}", reads=reads)
            _check_head(st, variables, ck)
            if isinstance(st.head, A.Head):
                rule_reads.append((st.head.name, reads))
            if body is not st.body:
                st = dataclasses.replace(st, body=body)
        elif isinstance(st, A.Constraint):
            if st.weight is not None:
                ck.check_number(st.weight, st, f"weight of constraint {st.name!r}")
                if A.number_problem(st.weight) is None and st.weight <= 0:
                    ck.error(f"constraint {st.name!r}: a soft constraint's weight must be "
                             f"positive, got {st.weight!r}", st)
            formula = check_expr(st.formula, variables, ck, expect=_BOOL_TYPE,
                                 learnable_ok=True, what=f"constraint {st.name!r}")
            if formula is not st.formula:
                st = dataclasses.replace(st, formula=formula)
        elif isinstance(st, A.DefineDecl) and st.expr is not None:
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
        resolved.append(st)
    ck.statement = None
    if not ck.problems:
        rules = [s for s in resolved if isinstance(s, A.Rule)]
        _check_additive(resolved, variables, rules, ck)
    if not ck.problems:
        _check_cycles(resolved, variables, ck, defined_reads=defined_reads,
                      rule_reads=rule_reads)
    if ck.problems:
        raise RuleError("", diagnostics=ck.diagnostics(), source=source)
    return resolved, variables
