"""Missing values: what a formula over an optional input means, for every backend.

An input declared ``input x: optional TYPE`` may be missing in a row. A condition that
reads a missing value is *unknown* -- neither true nor false -- and the connectives follow
Kleene's strong three-valued logic: ``not unknown`` is unknown, ``unknown and false`` is
false, ``unknown or true`` is true. ``x is missing`` is always known.

* a rule fires only where its body is **known true** (:func:`definite`);
* a constraint (hard or soft) and a property to verify are violated only where they are
  **known false** (:func:`not_false`): an unknown one restricts nothing.

Both are written as ordinary two-valued formulas over the inputs and their ``is missing``
tests, so every backend (crisp, the t-norms, exact inference, Z3, the MILP) computes the
same meaning from the same formula: an atom ``x > 3`` is known true where ``x is not
missing and x > 3`` and known false where ``x is not missing and not x > 3``. A formula
that reads no optional value is returned as it is (the same object), so knowledge bases
without optional inputs compute exactly what they did. Where every value is present the
rewritten formula has the same truth as the written one, under every t-norm too (each
t-norm and its t-conorm are De Morgan duals under ``1 - a``, and ``a -> b`` is read as
``not a or b``).

A missing value is held as a placeholder (:func:`placeholder`, a value of the input's
type) together with its mask, whose key is :func:`missing_key`; the placeholder is only
ever read under ``x is not missing``, so its choice never shows.
"""

from __future__ import annotations

from . import _ast as A
from ._decisions import memo
from ._typecheck import value_reads  # beside the type checker, which reads it too

__all__ = ["MISSING", "definite", "missing_key", "not_false", "placeholder", "value_reads"]


class _Missing:
    """The code of a fact whose optional input is missing in the row (one object)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self):
        return "MISSING"


#: a missing value among a row's facts (formal reasons and counterfactuals)
MISSING = _Missing()


def missing_key(name: str) -> str:
    """The key of input ``name``'s missing-value mask in a table of columns (no variable
    can have it: names hold no control character)."""
    return name + "\x00missing"


def placeholder(t: A.Type):
    """The value a missing cell of type ``t`` is held as (never read: see the module)."""
    if isinstance(t, A.BoolType):
        return False
    if isinstance(t, A.EnumType):
        return t.values[0]
    if isinstance(t, A.IntType):
        return 0 if t.lo <= 0 <= t.hi else t.lo
    if isinstance(t, A.RealType) and t.lo is not None and not t.lo <= 0.0 <= t.hi:
        return float(t.lo)
    return 0.0


def _optional(kb) -> frozenset:
    """The optional inputs of ``kb`` (held in its memo)."""
    store = memo(kb)
    found = store.get("optional")
    if found is None:
        found = store["optional"] = frozenset(
            n for n in kb.inputs if kb.variables[n].optional)
    return found


def _and(args):
    flat = tuple(x for a in args for x in (a.args if isinstance(a, A.And) else (a,)))
    return flat[0] if len(flat) == 1 else A.And(flat)


def _or(args):
    flat = tuple(x for a in args for x in (a.args if isinstance(a, A.Or) else (a,)))
    return flat[0] if len(flat) == 1 else A.Or(flat)


def _reads(e, optional) -> list[str]:
    return [n for n in value_reads(e) if n in optional]


def _tf(e, optional):
    """``(T, F)``: formulas true where ``e`` is known true / known false."""
    if not _reads(e, optional):
        return e, A.Not(e)
    if isinstance(e, (A.And, A.Or)):
        parts = [_tf(a, optional) for a in e.args]
        ts, fs = [p[0] for p in parts], [p[1] for p in parts]
        return (_and(ts), _or(fs)) if isinstance(e, A.And) else (_or(ts), _and(fs))
    if isinstance(e, A.Not):
        t, f = _tf(e.operand, optional)
        return f, t
    if isinstance(e, A.Implies):
        (lt, lf), (rt, rf) = _tf(e.left, optional), _tf(e.right, optional)
        return _or([lf, rt]), _and([lt, rf])
    if isinstance(e, A.Iff):
        (lt, lf), (rt, rf) = _tf(e.left, optional), _tf(e.right, optional)
        return (_and([_or([lf, rt]), _or([rf, lt])]),
                _or([_and([lt, rf]), _and([rt, lf])]))
    # an atom (a bool input, a comparison, a membership test): known where all it reads is
    guard = [A.Not(A.IsMissing(A.Var(n))) for n in _reads(e, optional)]
    return _and([*guard, e]), _and([*guard, A.Not(e)])


def definite(kb, e):
    """``e`` known true: a formula true exactly where ``e`` holds and reads no missing value
    that decides it (a rule's body fires only there). ``e`` itself when it reads no optional
    input.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: optional real\\noutput y: bool\\nrule r: not x > 3 -> y")
    >>> print(definite(kb, kb.rules["r"].body))
    x is not missing and not x > 3
    """
    optional = _optional(kb)
    if not optional:
        return e
    return _memo(kb, e, 0, optional)


def not_false(kb, e):
    """``e`` not known false: a formula false exactly where ``e`` is false whatever the
    missing values it reads would be (a constraint or a property is violated only there).
    ``e`` itself when it reads no optional input.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: optional real\\noutput y: bool\\nconstraint c: x > 3 -> y")
    >>> print(not_false(kb, kb.constraints["c"].formula))
    not (x is not missing and x > 3 and not y)
    """
    optional = _optional(kb)
    if not optional:
        return e
    return _memo(kb, e, 1, optional)


def _memo(kb, e, which: int, optional):
    store = memo(kb).setdefault("missing", {})
    found = store.get((id(e), which))
    if found is not None and found[0] is e:
        return found[1]
    if not _reads(e, optional):
        out = e
    else:
        t, f = _tf(e, optional)
        out = t if which == 0 else A.Not(f)
    store[(id(e), which)] = (e, out)
    return out
