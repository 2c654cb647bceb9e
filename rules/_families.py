"""Families of variables, rules and constraints: their members' names and their data.

A family (``input img[c in cell]: tensor[64]``, ``output smokes(p in person): bool``) is
grounded into members named like their references (``img[3]``, ``smokes(anna)``); a
:class:`FamilyInfo` maps each index to its member, and :func:`family_columns` splits the
data given for a whole family into its members' columns.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from greybox.errors import DataError

from . import _ast as A
from ._indices import Member, _Problem

__all__ = ["MEMBER_SEPARATOR", "FamilyInfo", "data_members", "family_columns", "member_name"]

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


def member_name(name: str, index: Sequence[Member], paren: bool) -> str:
    """``digit[5]``, ``friends(anna, bob)``: a member's name, as its reference is written."""
    inner = ", ".join(str(i) for i in index)
    return f"{name}({inner})" if paren else f"{name}[{inner}]"


_VARIABLE_KINDS = ("input", "neural", "define", "output")


#: The text between the indices of a member's name (``friends(anna, bob)``).
MEMBER_SEPARATOR = ", "


def _separator_problem(name: str) -> str | None:
    """Why a member named ``name`` would make member names ambiguous, or None."""
    if MEMBER_SEPARATOR in name:
        return (f"it contains {MEMBER_SEPARATOR!r}, which separates the indices of a "
                "member's name (f(a, b, c) could be f(`a, b`, c) or f(a, `b, c`)); rename it")
    return None


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


def data_members(decl: A.SetDecl, values) -> tuple[str, ...]:
    """The members of set ``decl`` given by ``sets=`` (a list, or an entity table's
    index): their names, checked."""
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


def _first_duplicate(items) -> object | None:
    seen = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None
