"""The abstract syntax of the rule language.

Every node is a frozen dataclass with structural equality; the source location (``span``)
is carried but takes no part in equality, so ``parse(to_text(kb)) == kb``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Union

from greybox.errors import Location

from ._lexicon import KEYWORDS, is_plain_name, name_problem, number_problem  # noqa: F401

__all__ = [
    "And",
    "Arith",
    "BoolConst",
    "BoolType",
    "Compare",
    "Count",
    "Constraint",
    "DefineDecl",
    "EnumType",
    "Head",
    "Iff",
    "Implies",
    "InSet",
    "InputDecl",
    "IntType",
    "IsMissing",
    "Mul",
    "Neg",
    "NeuralDecl",
    "Not",
    "Num",
    "Or",
    "OutputDecl",
    "RealType",
    "Rule",
    "Sum",
    "Sym",
    "TensorType",
    "Var",
    # relational (templates; grounded into the statements above)
    "Aggregate",
    "Binder",
    "Family",
    "Index",
    "Pow",
    "Quantified",
    "Range",
    "SetDecl",
]

@dataclass(frozen=True)
class Node:
    """Base of all syntax nodes."""

    span: Location | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __str__(self) -> str:
        """The node's rule text (``print(kb.rules["r"])``)."""
        return _node_text(self)


#: how a node shows as text: ``._printer`` sets its ``node_to_text`` here when imported (it
#: imports this module, which cannot import it back); ``import greybox.rules`` imports both
_node_text = repr


# ----------------------------------------------------------------------------- types


@dataclass(frozen=True)
class BoolType(Node):
    """``bool``"""


@dataclass(frozen=True)
class IntType(Node):
    """``int lo..hi`` (both bounds included)."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    @property
    def values(self) -> range:
        """The values in order (a ``range``: a domain of a billion values costs nothing)."""
        return range(self.lo, self.hi + 1)


@dataclass(frozen=True)
class RealType(Node):
    """``real`` or ``real[lo, hi]`` (closed interval)."""

    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class EnumType(Node):
    """``{a, b, c}``: a finite set of symbols, in this order."""

    values: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class TensorType(Node):
    """``tensor`` or ``tensor[d1, d2, ...]`` (the shape of one example)."""

    shape: tuple[int, ...] | None = None


Type = Union[BoolType, IntType, RealType, EnumType, TensorType]


def is_finite_type(t: Type) -> bool:
    return isinstance(t, (BoolType, IntType, EnumType))


def domain_values(t: Type) -> Sequence:
    """The values of a finite type, in order (False before True for bool); a ``range`` for
    an int type, so that asking for a large domain allocates nothing."""
    if isinstance(t, BoolType):
        return (False, True)
    if isinstance(t, IntType):
        return t.values
    if isinstance(t, EnumType):
        return t.values
    raise TypeError(f"{t!r} is not a finite type")


# ----------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num(Node):
    """A number; ``learnable`` marks ``~15.0``, a threshold that training may move."""

    value: int | float
    learnable: bool = False


@dataclass(frozen=True)
class BoolConst(Node):
    """``true`` / ``false``"""

    value: bool


@dataclass(frozen=True)
class Var(Node):
    """A reference to a declared variable."""

    name: str


@dataclass(frozen=True)
class Sym(Node):
    """A value of an enum type (``employed`` in ``employment == employed``)."""

    name: str


@dataclass(frozen=True)
class Neg(Node):
    """Unary minus."""

    operand: Expr


@dataclass(frozen=True)
class Sum(Node):
    """``a + b - c``: ``ops[i]`` (``"+"`` or ``"-"``) joins ``args[i]`` and ``args[i+1]``."""

    args: tuple[Expr, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Mul(Node):
    """``left * right`` (one side must be constant: arithmetic stays linear)."""

    left: Expr
    right: Expr


#: the operators of :class:`Arith`; the last three are written as calls
ARITH_OPS = ("//", "%", "min", "max", "abs")
ARITH_FUNCTIONS = ("min", "max", "abs")


@dataclass(frozen=True)
class Arith(Node):
    """Integer arithmetic beyond ``+ - *``: ``a // b`` (floor division, rounding toward
    minus infinity, as Python's), ``a % b`` (its remainder ``a - b * (a // b)``, which has
    the sign of ``b``), ``min(a, b, ...)``, ``max(a, b, ...)`` and ``abs(a)``; ``op`` is
    one of :data:`ARITH_OPS`. Operands are integers with finite ranges; a divisor's range
    must exclude 0."""

    op: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Count(Node):
    """``count(f1, f2, ...)``: how many of the formulas ``args`` hold, an integer in
    ``0..len(args)`` (``count(f)`` alone is ``f``'s indicator: 1 when it holds, else 0).
    The one place where a formula becomes a number; ``count(F for i in s)`` grounds to it."""

    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare(Node):
    """``left OP right`` with OP in ``< <= > >= == !=``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class InSet(Node):
    """``operand in {v1, v2, ...}``"""

    operand: Expr
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class IsMissing(Node):
    """``x is missing``: whether optional input ``x`` has no value in the row (``x is not
    missing`` is ``Not(IsMissing(x))``). Always true or false, never unknown."""

    operand: Expr


@dataclass(frozen=True)
class Not(Node):
    operand: Expr


@dataclass(frozen=True)
class And(Node):
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Or(Node):
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Implies(Node):
    """``left -> right`` (right-associative)."""

    left: Expr
    right: Expr


@dataclass(frozen=True)
class Iff(Node):
    """``left <-> right``"""

    left: Expr
    right: Expr


# ------------------------------------------------------------ relational expressions


@dataclass(frozen=True)
class Range(Node):
    """``lo..hi`` (both included), bounds known before the data (index arithmetic)."""

    lo: Expr
    hi: Expr


@dataclass(frozen=True)
class Binder(Node):
    """``var in domain``: an index variable over a set (by name) or a :class:`Range`. A
    family parameter written as a bare set name (``img[cell]``) binds the set's own name."""

    var: str
    domain: str | Range


@dataclass(frozen=True)
class Index(Node):
    """A member of a family: ``digit[4*r + k]`` or ``friends(p, q)`` (``paren``); also an
    aggregate over listed arguments, ``all_different(a, b, c)``."""

    name: str
    args: tuple[Expr, ...]
    paren: bool = False


@dataclass(frozen=True)
class Aggregate(Node):
    """``name(arg, ... for i in s, j in t)``: ``sum`` or ``all_different`` over the
    arguments' instances for every combination of the binders."""

    name: str
    args: tuple[Expr, ...]
    binders: tuple[Binder, ...]


@dataclass(frozen=True)
class Quantified(Node):
    """``forall i in s, ...: body`` / ``exists ...``: the conjunction / disjunction of the
    body's instances."""

    kind: str
    binders: tuple[Binder, ...]
    body: Expr


@dataclass(frozen=True)
class Pow(Node):
    """``left ^ right`` on whole numbers known before the data (``10^(3-i)``)."""

    left: Expr
    right: Expr


Expr = Union[Num, BoolConst, Var, Sym, Neg, Sum, Mul, Arith, Count, Compare, InSet, IsMissing,
             Not, And, Or, Implies, Iff, Index, Aggregate, Quantified, Pow]

COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")


def neg(e: Expr, *, span: Location | None = None) -> Expr:
    """Unary minus in canonical form: a negated number is a negative number."""
    if isinstance(e, Num):
        return Num(-e.value, e.learnable, span=span or e.span)
    return Neg(e, span=span)


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``e``."""
    return (_CHILDREN.get(type(e)) or _children_of(type(e)))(e)


def _generic_children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, (Neg, Not, IsMissing)):
        return (e.operand,)
    if isinstance(e, (Sum, And, Or, Count, Arith)):
        return e.args
    if isinstance(e, (Mul, Compare, Implies, Iff)):
        return (e.left, e.right)
    if isinstance(e, InSet):
        return (e.operand, *e.values)
    if isinstance(e, (Index, Pow, Aggregate, Quantified)):
        return _relational_children(e)
    return ()


def _relational_children(e) -> tuple:
    if isinstance(e, Index):
        return e.args
    if isinstance(e, Pow):
        return (e.left, e.right)
    bounds = tuple(x for b in e.binders if isinstance(b.domain, Range)
                   for x in (b.domain.lo, b.domain.hi))
    return (*bounds, *(e.args if isinstance(e, Aggregate) else (e.body,)))


#: how to read the children of each kind of node (a dict lookup, not a chain of
#: isinstance tests: walks over every rule are the bulk of validating a large file)
_CHILDREN: dict = {}


def _children_of(kind):
    found = _CHILDREN.get(kind)
    if found is None:
        if kind in (Neg, Not, IsMissing):
            found = _operand
        elif kind in (Sum, And, Or, Count, Index, Arith):
            found = _args
        elif kind in (Mul, Compare, Implies, Iff, Pow):
            found = _sides
        elif kind in (InSet, Aggregate, Quantified):
            found = _generic_children
        else:   # leaves (numbers, names, constants) and anything that is not a node
            found = _none
        _CHILDREN[kind] = found
    return found


def _operand(e):
    return (e.operand,)


def _args(e):
    return e.args


def _sides(e):
    return (e.left, e.right)


def _none(e):
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """Every node of ``e``, pre-order, without recursion (safe on deep trees)."""
    stack = [e]
    pop, extend, get = stack.pop, stack.extend, _CHILDREN.get
    while stack:
        node = pop()
        yield node
        kids = (get(type(node)) or _children_of(type(node)))(node)
        if kids:
            extend(kids[::-1])


def depth(e: Expr) -> int:
    """Nesting depth of ``e`` (a leaf has depth 1), computed without recursion."""
    best = 0
    stack = [(e, 1)]
    pop, push, get = stack.pop, stack.append, _CHILDREN.get
    while stack:
        node, d = pop()
        if d > best:
            best = d
        for c in (get(type(node)) or _children_of(type(node)))(node):
            push((c, d + 1))
    return best


def rewrite(e, fn):
    """``e`` with every node for which ``fn(node)`` returns a node replaced by it (a node
    ``fn`` leaves alone -- returns None for -- is rebuilt from its rewritten children).
    Used to write learned values or edits into expressions."""
    new = fn(e)
    if new is not None:
        return new
    changes = {}
    for f in fields(e):
        if f.name == "span":
            continue
        v = getattr(e, f.name)
        if isinstance(v, Node):
            changes[f.name] = rewrite(v, fn)
        elif isinstance(v, tuple) and v and isinstance(v[0], Node):
            changes[f.name] = tuple(rewrite(x, fn) for x in v)
    return replace(e, **changes) if changes else e


def variables(e: Expr) -> list[str]:
    """Names of the variables ``e`` refers to, in first-occurrence order."""
    seen: dict[str, None] = {}
    for node in walk(e):
        if isinstance(node, Var):
            seen.setdefault(node.name, None)
    return list(seen)


def is_constant(e: Expr) -> bool:
    """True when ``e`` mentions no variable (so it can scale a product)."""
    return not any(isinstance(n, (Var, Sym)) for n in walk(e))


# ------------------------------------------------------------------------ statements


@dataclass(frozen=True)
class InputDecl(Node):
    """``input NAME: TYPE``, or ``input NAME: optional TYPE`` (``optional``: a row may
    leave it missing)."""

    name: str
    type: Type
    optional: bool = False


@dataclass(frozen=True)
class NeuralDecl(Node):
    """``neural NAME: TYPE = NET(ARG, ...)`` (in a family template an argument may be a
    member of an input family, ``digit_net(img[c])``)."""

    name: str
    type: Type
    network: str
    args: tuple[str | Index, ...]


@dataclass(frozen=True)
class DefineDecl(Node):
    """``define NAME: TYPE = EXPR``; without ``= EXPR`` the variable is decided by rules."""

    name: str
    type: Type
    expr: Expr | None = None


@dataclass(frozen=True)
class OutputDecl(Node):
    """``output NAME: TYPE``"""

    name: str
    type: Type


@dataclass(frozen=True)
class Head(Node):
    """A rule's conclusion: ``x`` (value True), ``not x`` (False) or ``x = value``."""

    name: str
    value: bool | Num | Sym = True
    #: a family member's index in a rule template (``-> smokes(q)``); empty once grounded
    index: tuple[Expr, ...] = ()
    paren: bool = False

    @property
    def is_bool(self) -> bool:
        return isinstance(self.value, bool)


@dataclass(frozen=True)
class Rule(Node):
    """``rule NAME [weight W] [fixed]: BODY -> HEAD``"""

    name: str
    body: Expr
    head: Head
    weight: float = 1.0
    fixed: bool = False


@dataclass(frozen=True)
class Constraint(Node):
    """``constraint NAME [weight W]: FORMULA`` -- hard when ``weight`` is None."""

    name: str
    formula: Expr
    weight: float | None = None

    @property
    def hard(self) -> bool:
        return self.weight is None


@dataclass(frozen=True)
class SetDecl(Node):
    """``set NAME: lo..hi``, ``set NAME: {a, b}`` or ``set NAME`` (members from the data)."""

    name: str
    members: Range | tuple[str, ...] | None = None


@dataclass(frozen=True)
class Family(Node):
    """A statement for every combination of ``params``: ``neural digit[c in cell]: ...``,
    ``rule contagion(p in person, q in person): ...``. The members are named like their
    references: ``digit[5]``, ``contagion(anna, bob)``."""

    params: tuple[Binder, ...]
    statement: Statement
    paren: bool = False


Statement = Union[InputDecl, NeuralDecl, DefineDecl, OutputDecl, Rule, Constraint]
Template = Union[Statement, SetDecl, Family]

RELATIONAL_EXPRS = (Index, Aggregate, Quantified, Pow)


def is_relational(st) -> bool:
    """True when statement ``st`` needs grounding (a set, a family, an indexed reference, a
    quantifier, an aggregate or ``^``)."""
    if isinstance(st, (SetDecl, Family)):
        return True
    if isinstance(st, NeuralDecl):
        return any(isinstance(a, Index) for a in st.args)
    if isinstance(st, Rule):
        return bool(st.head.index) or _has_relational(st.body)
    if isinstance(st, Constraint):
        return _has_relational(st.formula)
    if isinstance(st, DefineDecl):
        return st.expr is not None and _has_relational(st.expr)
    return False


def _has_relational(e) -> bool:
    return any(isinstance(n, RELATIONAL_EXPRS) for n in walk(e))
