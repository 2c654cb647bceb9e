"""A Python builder for knowledge bases, with z3py-style operators.

The builder hands out :class:`Term` wrappers; their operators (``& | ~ < == + *``...) build
AST formulas, so the AST itself keeps structural ``==``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from greybox.errors import RuleError

from . import _ast as A
from ._kb import KnowledgeBase
from ._parser import parse_fragment
from ._printer import expr_to_text

__all__ = ["Builder", "Term", "count", "iff", "implies", "learnable"]


def _lift(x) -> A.Expr:
    if isinstance(x, Term):
        return x.expr
    if isinstance(x, bool):
        return A.BoolConst(x)
    if isinstance(x, (int, float)):
        return A.Num(x)
    if isinstance(x, str):
        return A.Sym(x)
    if isinstance(x, A.Node):
        return x
    raise RuleError(f"cannot use {x!r} ({type(x).__name__}) in a formula")


class Term:
    """A formula or arithmetic expression under construction.

    Examples
    --------
    >>> from greybox.rules import Builder
    >>> b = Builder()
    >>> income, debt = b.input("income", "real[0, 1000000]"), b.input("debt", "real[0, 10]")
    >>> print((income < 20000) & (debt > 0.6))
    income < 20000 and debt > 0.6
    """

    __slots__ = ("expr",)
    __hash__ = None  # == builds a formula, so terms are not hashable

    def __init__(self, expr: A.Expr):
        self.expr = expr

    def __repr__(self) -> str:
        return f"Term({expr_to_text(self.expr)})"

    def __str__(self) -> str:
        return expr_to_text(self.expr)

    def __bool__(self):
        raise RuleError(
            "a formula has no truth value in Python: use & | ~ instead of and/or/not, and "
            "write a < x and x < b as (a < x) & (x < b)"
        )

    # boolean connectives (n-ary chains stay flat, like the parser's)
    def __and__(self, other) -> Term:
        return Term(A.And(_flat(A.And, self.expr) + _flat(A.And, _lift(other))))

    def __rand__(self, other) -> Term:
        return Term(_lift(other)) & self

    def __or__(self, other) -> Term:
        return Term(A.Or(_flat(A.Or, self.expr) + _flat(A.Or, _lift(other))))

    def __ror__(self, other) -> Term:
        return Term(_lift(other)) | self

    def __invert__(self) -> Term:
        return Term(A.Not(self.expr))

    def implies(self, other) -> Term:
        """``self -> other``"""
        return Term(A.Implies(self.expr, _lift(other)))

    def iff(self, other) -> Term:
        """``self <-> other``"""
        return Term(A.Iff(self.expr, _lift(other)))

    def isin(self, values: Iterable) -> Term:
        """``self in {values}``"""
        return Term(A.InSet(self.expr, tuple(_lift(v) for v in values)))

    # comparisons
    def _cmp(self, op: str, other) -> Term:
        return Term(A.Compare(op, self.expr, _lift(other)))

    def __lt__(self, other) -> Term:
        return self._cmp("<", other)

    def __le__(self, other) -> Term:
        return self._cmp("<=", other)

    def __gt__(self, other) -> Term:
        return self._cmp(">", other)

    def __ge__(self, other) -> Term:
        return self._cmp(">=", other)

    def __eq__(self, other) -> Term:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other) -> Term:  # type: ignore[override]
        return self._cmp("!=", other)

    # arithmetic
    def _sum(self, op: str, other, *, reverse: bool = False) -> Term:
        left, right = (_lift(other), self.expr) if reverse else (self.expr, _lift(other))
        if isinstance(left, A.Sum):
            return Term(A.Sum(left.args + (right,), left.ops + (op,)))
        return Term(A.Sum((left, right), (op,)))

    def __add__(self, other) -> Term:
        return self._sum("+", other)

    def __radd__(self, other) -> Term:
        return self._sum("+", other, reverse=True)

    def __sub__(self, other) -> Term:
        return self._sum("-", other)

    def __rsub__(self, other) -> Term:
        return self._sum("-", other, reverse=True)

    def __mul__(self, other) -> Term:
        return Term(A.Mul(self.expr, _lift(other)))

    def __rmul__(self, other) -> Term:
        return Term(A.Mul(_lift(other), self.expr))

    def __neg__(self) -> Term:
        return Term(A.neg(self.expr))

    def __floordiv__(self, other) -> Term:
        return Term(A.Arith("//", (self.expr, _lift(other))))

    def __rfloordiv__(self, other) -> Term:
        return Term(A.Arith("//", (_lift(other), self.expr)))

    def __mod__(self, other) -> Term:
        return Term(A.Arith("%", (self.expr, _lift(other))))

    def __rmod__(self, other) -> Term:
        return Term(A.Arith("%", (_lift(other), self.expr)))

    def __abs__(self) -> Term:
        return Term(A.Arith("abs", (self.expr,)))


def _flat(cls, e: A.Expr) -> tuple[A.Expr, ...]:
    return e.args if isinstance(e, cls) else (e,)


def implies(a, b) -> Term:
    """``a -> b``"""
    return Term(A.Implies(_lift(a), _lift(b)))


def iff(a, b) -> Term:
    """``a <-> b``"""
    return Term(A.Iff(_lift(a), _lift(b)))


def count(*formulas) -> Term:
    """``count(f1, f2, ...)``: how many of the formulas hold (an integer).

    Examples
    --------
    >>> from greybox.rules import Builder, count
    >>> b = Builder()
    >>> x, y = b.input("x", bool), b.input("y", "int 0..9")
    >>> print(count(x, y > 3) >= 1)
    count(x, y > 3) >= 1
    """
    if not formulas:
        raise RuleError("count needs at least one formula")
    return Term(A.Count(tuple(_lift(f) for f in formulas)))


def minimum(*terms) -> Term:
    """``min(a, b, ...)``: the smallest of integer expressions (``maximum``: the largest;
    ``abs(term)``, ``term // k`` and ``term % k`` work on terms as on numbers).

    Examples
    --------
    >>> from greybox.rules import Builder, minimum, maximum
    >>> b = Builder()
    >>> x, y = b.input("x", "int 0..9"), b.input("y", "int 1..3")
    >>> print(minimum(x, y * 2) + maximum(x // y, abs(x - 5), x % 3) >= 4)
    min(x, y * 2) + max(x // y, abs(x - 5), x % 3) >= 4
    """
    return _extreme("min", terms)


def maximum(*terms) -> Term:
    """``max(a, b, ...)``: the largest of integer expressions (see :func:`minimum`)."""
    return _extreme("max", terms)


def _extreme(op: str, terms) -> Term:
    if not terms:
        raise RuleError(f"{op} needs at least one expression")
    return Term(A.Arith(op, tuple(_lift(t) for t in terms)))


def learnable(value: float) -> Term:
    """A learnable threshold, written ``~value`` in rule text.

    Examples
    --------
    >>> from greybox.rules import learnable
    >>> print(learnable(15.0))
    ~15.0
    """
    return Term(A.Num(value, learnable=True))


def _type(t) -> A.Type:
    if isinstance(t, A.Node):
        return t
    if t is bool:
        return A.BoolType()
    if t is float:
        return A.RealType()
    if isinstance(t, range):
        if t.step != 1 or len(t) == 0:
            raise RuleError(f"an int type needs a non-empty range with step 1, got {t!r}")
        return A.IntType(t.start, t.stop - 1)
    if isinstance(t, str):
        return parse_fragment(t, "type", filename="<type>")
    if isinstance(t, Sequence) and all(isinstance(v, str) for v in t):
        return A.EnumType(tuple(t))
    raise RuleError(f"not a type: {t!r} (use text such as 'int 0..9', or bool, float, range, "
                    "a list of enum values)")


def _head(h) -> A.Head:
    if isinstance(h, str):
        return parse_fragment(h, "head", filename="<head>")
    e = _lift(h)
    if isinstance(e, A.Var):
        return A.Head(e.name, True)
    if isinstance(e, A.Not) and isinstance(e.operand, A.Var):
        return A.Head(e.operand.name, False)
    if isinstance(e, A.Compare) and e.op == "==" and isinstance(e.left, A.Var) and isinstance(
        e.right, (A.Num, A.Sym)
    ):
        return A.Head(e.left.name, e.right)
    if isinstance(e, A.Head):
        return e
    raise RuleError(f"a rule head must be x, ~x or x == value, got {expr_to_text(e)}")


def _formula(f) -> A.Expr:
    if isinstance(f, str):
        return parse_fragment(f, "expr", filename="<formula>")
    return _lift(f)


def _own_numbers(e: A.Expr) -> A.Expr:
    """``e`` with a node of its own for each ``~`` number: a :func:`learnable` Term used
    twice is written twice (``~2.0`` in each place), so it is two numbers, as its text
    says -- a model gives each its parameter (one node read by two rules was one
    parameter read by both, the other dead)."""
    def fresh(node):
        if isinstance(node, A.Num) and node.learnable:
            return A.Num(node.value, True, span=node.span)
        return None

    return A.rewrite(e, fresh)


class Builder:
    """Build a :class:`KnowledgeBase` from Python.

    Every method that declares a variable returns a :class:`Term` for it; bodies and
    formulas are Terms or rule text. ``build()`` runs the same checks as :func:`parse`.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> b = gr.Builder()
    >>> age = b.input("age", "int 0..120")
    >>> income = b.input("income", "real[0, 1000000]")
    >>> approve = b.output("approve", bool)
    >>> b.rule("poor", income < gr.learnable(20000), ~approve, weight=2.0)
    >>> b.constraint("minors", (age < 18).implies(~approve))
    >>> kb = b.build()
    >>> print(gr.to_text(kb), end="")
    input age: int 0..120
    input income: real[0, 1000000]
    output approve: bool
    rule poor weight 2.0: income < ~20000 -> not approve
    constraint minors: age < 18 -> not approve
    >>> kb == gr.parse(gr.to_text(kb))
    True
    """

    def __init__(self, kb: KnowledgeBase | None = None):
        self._statements: list[A.Statement] = list(kb.statements) if kb is not None else []

    def var(self, name: str) -> Term:
        """A Term for a variable declared earlier (or later: checked at ``build()``)."""
        return Term(A.Var(name))

    __getitem__ = var

    def input(self, name: str, type) -> Term:
        self._statements.append(A.InputDecl(name, _type(type)))
        return self.var(name)

    def neural(self, name: str, type, *, network: str, args: Sequence) -> Term:
        names = tuple(a.expr.name if isinstance(a, Term) and isinstance(a.expr, A.Var) else a
                      for a in args)
        self._statements.append(A.NeuralDecl(name, _type(type), network, names))
        return self.var(name)

    def define(self, name: str, type, expr=None) -> Term:
        body = None if expr is None else _formula(expr)
        self._statements.append(A.DefineDecl(name, _type(type), body))
        return self.var(name)

    def output(self, name: str, type) -> Term:
        self._statements.append(A.OutputDecl(name, _type(type)))
        return self.var(name)

    def rule(self, name: str, body, head, *, weight: float = 1.0, fixed: bool = False) -> None:
        self._statements.append(A.Rule(name, _own_numbers(_formula(body)), _head(head),
                                       _weight(weight), fixed))

    def constraint(self, name: str, formula, *, weight: float | None = None) -> None:
        w = None if weight is None else _weight(weight)
        self._statements.append(A.Constraint(name, _own_numbers(_formula(formula)), w))

    def build(self) -> KnowledgeBase:
        """Validate and return the knowledge base (raises RuleError on problems)."""
        return KnowledgeBase(self._statements)


def _weight(w) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise RuleError(f"a weight must be a number, got {w!r}")
    return float(w)
