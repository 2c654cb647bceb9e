"""Index arithmetic: the whole numbers and members grounding computes before the data.

``digit[4*r + k]``, ``10^(3-i)``, ``p != q``: an index expression reads index variables
(bound to members), whole numbers and set members, never the data; grounding computes its
value (:class:`IndexArithmetic`) and compares members (:func:`_compare`) as it writes each
instance out. ``_Problem`` is what grounding reports at a node; ``_NotStatic`` says that an
expression is not known before the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import _ast as A

#: An index: a whole number, or the name of a member of a set of names.
Member = int | str


class _Problem(Exception):
    def __init__(self, message: str, node):
        super().__init__(message)
        self.message, self.node = message, node


class _NotStatic(Exception):
    pass


#: Most decimal digits of a whole number index arithmetic computes: exact Python ints
#: (coefficients such as ``10^(99 - k)`` in a big int define), bounded by their digit
#: count so that ``10^(10^9)`` is refused before it is computed. Beyond any set (members
#: are at most ``MAX_GROUNDINGS``), within what a rule file may write (literals of up to
#: 4,000 digits) and Python prints (4,300 digits).
MAX_INDEX_DIGITS = 4000
#: A number has more than :data:`MAX_INDEX_DIGITS` digits exactly when it reaches this
_LIMIT = 10 ** MAX_INDEX_DIGITS
#: ... which needs at least this many bits (10^4000 < 2^13288.8)
_MAX_BITS = _LIMIT.bit_length()


def _too_large(node) -> _Problem:
    return _Problem(f"index arithmetic beyond {MAX_INDEX_DIGITS:,} digits (whole numbers "
                    "known before the data: member names, coefficients)", node)


def _short(value: int) -> str:
    """A whole number for a message: its digits, or their count when there are many."""
    if abs(value) < 10 ** 20:
        return str(value)
    return f"{'-' * (value < 0)}(a {len(str(abs(value)))}-digit number)"


def _bounded(value: int, node) -> int:
    if abs(value) >= _LIMIT:
        raise _too_large(node)
    return value


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


class IndexArithmetic:
    """The value of an index expression, given the names a knowledge base declares:
    ``plain`` (variables without parameters) and ``families`` (the grounder's, keyed by
    ``(kind, name)``), both filled in place while families are declared."""

    def __init__(self, plain: set[str], families: Mapping):
        self.plain, self.families = plain, families

    def _family(self, name: str):
        return self.families.get(("var", name))

    def static(self, e, env: dict, members: Sequence | None = None) -> Member:
        """The value of an index expression, known before the data; ``members`` (the set
        of the index position) lets a member be named directly (``friends(anna, p)``)."""
        if isinstance(e, A.Var):
            if e.name in env:
                return env[e.name]
            if members is not None and e.name in members:
                return e.name
            if e.name not in self.plain and self._family(e.name) is None:
                raise _Problem(f"unbound index variable {e.name!r} (bind it with forall, "
                               "exists, 'for' or a family parameter)", e)
            raise _NotStatic
        if isinstance(e, A.Sym) and members is not None and e.name in members:
            return e.name
        return self.number(e, env)

    def number(self, e, env: dict) -> int:
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
            return -self.number(e.operand, env)
        if isinstance(e, A.Sum):
            acc = self.number(e.args[0], env)
            for op, arg in zip(e.ops, e.args[1:]):
                x = self.number(arg, env)
                acc = _bounded(acc + x if op == "+" else acc - x, e)
            return acc
        if isinstance(e, A.Mul):
            return _bounded(self.number(e.left, env) *
                            self.number(e.right, env), e)
        if isinstance(e, A.Arith):
            from ._intervals import apply

            if e.op in A.ARITH_FUNCTIONS and getattr(self._family(e.op), "paren",
                                                     False):
                raise _NotStatic      # a member of a family named min, max or abs

            values = [self.number(a, env) for a in e.args]
            if e.op in ("//", "%") and len(values) == 2 and values[1] == 0:
                raise _Problem(f"index arithmetic divides by 0 ('{e.op}')", e)
            if e.op in ("//", "%") and len(values) != 2 or e.op == "abs" and len(values) != 1:
                raise _NotStatic
            return _bounded(apply(e.op, values), e)
        if isinstance(e, A.Pow):
            base, exp = self.number(e.left, env), self.number(e.right, env)
            if exp < 0:
                raise _Problem(f"a power in index arithmetic needs an exponent of at least 0, "
                               f"got {_short(base)}^{_short(exp)}", e)
            # |base| >= 2^(bits - 1): the power has at least exp * (bits - 1) bits, refused
            # by that count before it is computed (10^(10^9) costs nothing); below, the
            # power (at most about twice the limit's bits) is computed and bounded exactly
            if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > _MAX_BITS:
                raise _too_large(e)
            return _bounded(base ** exp, e)
        raise _NotStatic
