"""The nodes grounding builds: a template's node copied with some fields changed, fast
(grounding builds one per instance), and the truth constants it leaves folded."""

from __future__ import annotations

import dataclasses

from . import _ast as A
from ._indices import Member


def _value_node(value: Member, node) -> A.Num | A.Sym:
    """An index variable's value where a value is written (``g[i] = i``, ``{i, 3}``): a
    number, or a member's name (validation then checks it is in the variable's type)."""
    if isinstance(value, int):
        return A.Num(value, span=node.span)
    return A.Sym(value, span=node.span)


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
