"""Type-checking expressions: each node's static type, enum values resolved.

:func:`check_expr` checks one expression against the declared variables, reporting into a
:class:`~greybox.rules._checker._Checker`, and returns it with enum values resolved
(``employment == employed``: ``employed`` becomes a :class:`Sym`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from greybox.errors import listed

from . import _ast as A
from ._checker import MAX_INT, Variable, _big_type_text, _Checker, _expr_text, _type_text
from ._domain import big_int

__all__ = ["check_expr", "value_reads"]


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


def value_reads(e) -> list[str]:
    """The variables whose *value* ``e`` reads: every name but those only tested with
    ``is missing`` (a define may test an optional input, not read it; ``_missing.py``
    guards the values read)."""
    seen: dict[str, None] = {}
    stack = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, A.IsMissing):
            continue
        if isinstance(node, A.Var):
            seen.setdefault(node.name, None)
        stack.extend(reversed(A.children(node)))
    return list(seen)


def _check_range(x, expect: A.IntType, variables, ck: _Checker, what: str) -> None:
    """A definition by non-linear arithmetic whose every value lies outside its declared
    type (found from the operands' ranges; one that may leave it is `check`'s
    define-out-of-domain finding, as for sums)."""
    from ._intervals import interval

    found = interval(x, variables)
    if found is not None and (found[1] < expect.lo or found[0] > expect.hi):
        ck.error(f"{what} takes values in {found[0]}..{found[1]}, never within "
                 f"{_type_text(expect)}", x if getattr(x, "span", None) else None)
