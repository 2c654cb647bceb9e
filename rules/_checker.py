"""What the semantic checks share: the declared :class:`Variable` and the :class:`_Checker`
that collects every problem found (each template's once) and checks names, numbers and
declared types."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from greybox.errors import Location

from . import _ast as A

__all__ = ["MAX_INT", "Variable"]

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

    def family_of(self, member: str) -> str | None:
        """The family a grounded member belongs to (None for a plain variable)."""
        family = self._families.get(member)
        return None if family is None else family[1]

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


def _shown_int(value: int) -> str:
    """An integer as text, a long one by its number of digits."""
    return str(value) if len(str(abs(value))) <= 20 else (
        f"{'-' if value < 0 else ''}a {len(str(abs(value)))}-digit number")


def _big_type_text(t: A.IntType) -> str:
    """An int range with bounds of more than 20 digits written as floats."""
    def bound(b: int) -> str:
        return str(b) if len(str(abs(b))) <= 20 else f"{float(b):.3g}"
    return f"int {bound(t.lo)}..{bound(t.hi)}"
