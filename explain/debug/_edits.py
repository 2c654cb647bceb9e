"""Edits a person makes to a model's rules while debugging.

Each edit is a small frozen dataclass with ``apply(statements) -> statements`` over the
learned knowledge base's statements (``model.to_kb()``); the result is validated like any
rule text, so an invalid edit is refused with the error and changes nothing. On a
relational model an edit may name a template (``SetWeight("spread", 0)``: the whole
family) or, failing that, one grounded member (``spread(bob, anna)``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from greybox.errors import RuleError, listed
from greybox.rules import ast as A
from greybox.rules.engine import parse_statements

__all__ = ["EDIT_FIELDS", "MAX_EDIT_TEXT", "AddStatement", "Disable", "DropResidual", "Edit",
           "Remove", "Replace", "SetThreshold", "SetWeight", "parse_edit"]

#: The most characters of rule text a mapping edit (the web debugger's form) may carry: an
#: edit is a rule or a few, and parsing and re-evaluating grow with the text.
MAX_EDIT_TEXT = 20_000
#: The longest rule or constraint name a mapping edit may give.
MAX_NAME = 200


class Edit:
    """Base of edits: ``apply`` returns the edited statements; ``describe`` says what."""

    def apply(self, statements: list) -> list:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_spec(self) -> dict:
        """The mapping :func:`parse_edit` turns back into this edit (the form the web
        debugger sends): ``parse_edit(e.to_spec()) == e``.

        Examples
        --------
        >>> SetThreshold("big", 0, 6.5).to_spec()
        {'op': 'threshold', 'name': 'big', 'index': 0, 'value': 6.5}
        >>> parse_edit(Disable("big").to_spec())
        Disable(name='big')
        """
        raise RuleError(f"a {type(self).__name__} edit has no mapping form")

    def __str__(self) -> str:
        return self.describe()


class NotFound(RuleError):
    """An edit names no rule or constraint of the statements it is applied to."""


def _numbers(e) -> list:
    """The numbers of a formula in source order, as the grounded rules have them: not
    the index arithmetic of a template (``x[i + 1]``, ``10^(3 - i)``, ranges)."""
    out, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, A.Num):
            out.append(node)
        elif isinstance(node, A.Index) or isinstance(node, A.Pow):
            continue
        elif isinstance(node, (A.Quantified, A.Aggregate)):
            stack.extend(reversed((node.body,) if isinstance(node, A.Quantified) else node.args))
        else:
            stack.extend(reversed(A.children(node)))
    return out


def _find(statements, name: str, kind=(A.Rule, A.Constraint)):
    """The place and the statement named ``name`` (a relational template's inner
    statement: ``spread`` names the rule family ``rule spread(p in person, ...)``)."""
    for i, s in enumerate(statements):
        inner = s.statement if isinstance(s, A.Family) else s
        if isinstance(inner, kind) and inner.name == name:
            return i, inner
    what = "rule" if kind is A.Rule else "rule or constraint"
    names = [(s.statement if isinstance(s, A.Family) else s).name for s in statements
             if isinstance(s.statement if isinstance(s, A.Family) else s, kind)]
    raise NotFound(f"no {what} named {name!r} (there are: {listed(names) or 'none'})")


def _put(statements, i: int, new) -> list:
    """``statements`` with the ``i``-th one's statement replaced by ``new`` (kept inside
    its family, if it is a template)."""
    out = list(statements)
    old = out[i]
    out[i] = dataclasses.replace(old, statement=new) if isinstance(old, A.Family) else new
    return out


@dataclass(frozen=True)
class SetWeight(Edit):
    """Give rule ``name`` the weight ``weight``."""

    name: str
    weight: float

    @property
    def rule(self) -> str:
        """The rule's name (an alias of ``name``)."""
        return self.name

    def apply(self, statements):
        i, r = _find(statements, self.name, A.Rule)
        problem = A.number_problem(self.weight)
        if problem:
            raise RuleError(f"weight of rule {self.name!r}: {problem}")
        return _put(statements, i, dataclasses.replace(r, weight=float(self.weight)))

    def to_spec(self) -> dict:
        return {"op": "weight", "name": self.name, "value": float(self.weight)}

    def describe(self):
        return f"set the weight of {self.name} to {self.weight:g}"


@dataclass(frozen=True)
class SetThreshold(Edit):
    """Set the ``index``-th number of a rule or constraint (in source order, counting
    every number, ``~`` or not) to ``value``."""

    name: str
    index: int
    value: float

    def apply(self, statements):
        i, s = _find(statements, self.name)
        body = s.body if isinstance(s, A.Rule) else s.formula
        nums = _numbers(body)
        if not 0 <= self.index < len(nums):
            raise RuleError(f"{self.name!r} has {len(nums)} number(s); index {self.index} is "
                            "out of range")
        problem = A.number_problem(self.value)
        if problem:
            raise RuleError(f"threshold of {self.name!r}: {problem}")
        target = nums[self.index]
        value = A.Num(float(self.value), target.learnable, span=target.span)
        new = A.rewrite(body, lambda node: value if node is target else None)
        return _put(statements, i, dataclasses.replace(s, body=new) if isinstance(s, A.Rule)
                    else dataclasses.replace(s, formula=new))

    def to_spec(self) -> dict:
        return {"op": "threshold", "name": self.name, "index": int(self.index),
                "value": float(self.value)}

    def describe(self):
        return f"set number {self.index} of {self.name} to {self.value:g}"


@dataclass(frozen=True)
class Disable(Edit):
    """Switch rule ``name`` off (its weight becomes 0, fixed)."""

    name: str

    @property
    def rule(self) -> str:
        """The rule's name (an alias of ``name``)."""
        return self.name

    def apply(self, statements):
        i, r = _find(statements, self.name, A.Rule)
        return _put(statements, i, dataclasses.replace(r, weight=0.0, fixed=True))

    def to_spec(self) -> dict:
        return {"op": "disable", "name": self.name}

    def describe(self):
        return f"disable {self.name}"


@dataclass(frozen=True)
class Remove(Edit):
    """Remove a rule or constraint."""

    name: str

    def apply(self, statements):
        i, _ = _find(statements, self.name)
        return statements[:i] + statements[i + 1:]

    def to_spec(self) -> dict:
        return {"op": "remove", "name": self.name}

    def describe(self):
        return f"remove {self.name}"


@dataclass(frozen=True)
class AddStatement(Edit):
    """Add rules or constraints written as rule text."""

    text: str

    def apply(self, statements):
        new = parse_statements(self.text, filename="<edit>")
        bad = [s for s in new if not isinstance(
            s.statement if isinstance(s, A.Family) else s, (A.Rule, A.Constraint))]
        if bad:
            raise RuleError("an edit may add rules and constraints only, not declarations")
        return list(statements) + new

    def to_spec(self) -> dict:
        return {"op": "add", "text": self.text}

    def describe(self):
        return f"add: {self.text.strip()}"


@dataclass(frozen=True)
class Replace(Edit):
    """Replace the rule or constraint ``name`` by one written as rule text."""

    name: str
    text: str

    def apply(self, statements):
        i, _ = _find(statements, self.name)
        new = parse_statements(self.text, filename="<edit>")
        if len(new) != 1 or not isinstance(
                new[0].statement if isinstance(new[0], A.Family) else new[0],
                (A.Rule, A.Constraint)):
            raise RuleError("a replacement must be exactly one rule or constraint")
        return statements[:i] + new + statements[i + 1:]

    def to_spec(self) -> dict:
        return {"op": "replace", "name": self.name, "text": self.text}

    def describe(self):
        return f"replace {self.name} by: {self.text.strip()}"


@dataclass(frozen=True)
class _ReplaceBy(Edit):
    """Replace the rule or constraint ``name`` by an already grounded statement (the
    debugger's :class:`Replace` of one grounding of a relational model)."""

    name: str
    statement: object

    def apply(self, statements):
        i, _ = _find(statements, self.name)
        return statements[:i] + [self.statement] + statements[i + 1:]

    def describe(self):
        return f"replace {self.name}"


#: The fields of each op of a mapping edit: (required, optional). ``name`` is always the
#: name of the rule or constraint edited; ``rule`` is accepted as an alias of it.
@dataclass(frozen=True)
class DropResidual(Edit):
    """Drop the residual network of output ``name``: the rules alone decide it.

    The statements do not change; the debugger rebuilds its model without that residual
    (:meth:`greybox.GreyBox.replace` with ``drop_residual``). With rules learned from
    what the residual added (``Debugger.residual_rules``), this replaces an opaque
    correction by readable rules, and ``what_if`` says what that costs.

    Examples
    --------
    >>> DropResidual("y").describe()
    'drop the residual network of y'
    >>> parse_edit(DropResidual("y").to_spec())
    DropResidual(name='y')
    """

    name: str

    def apply(self, statements):
        return list(statements)

    def to_spec(self) -> dict:
        return {"op": "drop_residual", "name": self.name}

    def describe(self):
        return f"drop the residual network of {self.name}"


EDIT_FIELDS = {
    "weight": (("name", "value"), ()),
    "threshold": (("name", "value"), ("index",)),
    "disable": (("name",), ()),
    "remove": (("name",), ()),
    "add": (("text",), ()),
    "replace": (("name", "text"), ()),
    "drop_residual": (("name",), ()),
}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _name(op: str, value) -> str:
    if not isinstance(value, str):
        raise RuleError(f"edit {op!r}: 'name' must be a string, got {_short(value)}")
    if len(value) > MAX_NAME:
        raise RuleError(f"edit {op!r}: a name of {len(value)} characters is longer than any "
                        f"rule's (at most {MAX_NAME})")
    return value


def _value(op: str, value) -> float:
    """A finite float from a JSON number or a number's string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RuleError(f"edit {op!r}: 'value' must be a number, got {_short(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise RuleError(f"edit {op!r}: 'value' must be a number, got {_short(value)}") from None
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise RuleError(f"edit {op!r}: 'value' must be a finite number within ±1.8e308, got "
                        f"{_short(value)}")
    return number


def _index(op: str, value) -> int:
    """A non-negative int from a JSON integer (or an integral float, or its string)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value) < 20:
        number = int(value)
    if number is None or number < 0:
        raise RuleError(f"edit {op!r}: 'index' must be a whole number from 0 (which number of "
                        f"the rule, in source order), got {_short(value)}")
    return number


def _text(op: str, value) -> str:
    if not isinstance(value, str):
        raise RuleError(f"edit {op!r}: 'text' must be rule text (a string), got "
                        f"{_short(value)}")
    if len(value) > MAX_EDIT_TEXT:
        raise RuleError(f"edit {op!r}: the text has {len(value):,} characters; an edit takes "
                        f"at most {MAX_EDIT_TEXT:,} (add long rule files with "
                        "greybox.rules.load instead)")
    return value


def parse_edit(spec) -> Edit:
    """An edit from an Edit, or a mapping -- the form the web debugger sends.

    Every op names the rule or constraint it edits by ``name`` (``rule`` is accepted as an
    alias): ``{"op": "weight", "name": "r", "value": 2.0}``,
    ``{"op": "threshold", "name": "r", "index": 0, "value": 6.5}`` (``index`` defaults to
    0), ``{"op": "disable", "name": "r"}``, ``{"op": "remove", "name": "r"}``,
    ``{"op": "add", "text": "rule ..."}``, ``{"op": "replace", "name": "r", "text": "rule
    ..."}`` (see :data:`EDIT_FIELDS`). Values are finite numbers (or their strings), texts
    at most :data:`MAX_EDIT_TEXT` characters; other fields are refused. Nothing in it is
    executed.

    Raises
    ------
    RuleError
        An unknown op, a missing, unexpected or ill-typed field.

    Examples
    --------
    >>> parse_edit({"op": "weight", "name": "big", "value": 2})
    SetWeight(name='big', weight=2.0)
    >>> parse_edit({"op": "disable", "rule": "big"})   # the older field name
    Disable(name='big')
    """
    if isinstance(spec, Edit):
        return spec
    if isinstance(spec, str):
        raise RuleError(f"an edit is an Edit or a mapping with an 'op', got the text "
                        f"{_short(spec)}: rule text is added by AddStatement(text) (op "
                        "'add') and put in place of a rule or constraint by Replace(name, "
                        "text) (op 'replace')")
    if not isinstance(spec, dict) or "op" not in spec:
        raise RuleError(f"an edit is an Edit or a mapping with an 'op', got {_short(spec)}")
    op = spec["op"]
    if not isinstance(op, str) or op not in EDIT_FIELDS:
        raise RuleError(f"unknown edit {_short(op)}; expected {', '.join(EDIT_FIELDS)}")
    required, optional = EDIT_FIELDS[op]
    fields = {k: v for k, v in spec.items() if k != "op"}
    if "rule" in fields and "name" in required:
        alias = fields.pop("rule")
        if "name" in fields and fields["name"] != alias:
            raise RuleError(f"edit {op!r}: 'rule' is an alias of 'name', and they differ "
                            f"({_short(alias)} and {_short(fields['name'])})")
        fields["name"] = alias
    for key in required:
        if key not in fields:
            raise RuleError(f"edit {op!r} lacks {key!r} (it takes {_takes(op)})")
    extra = [k for k in fields if k not in required and k not in optional]
    if extra:
        raise RuleError(f"edit {op!r} does not take {_short(str(extra[0]))} (it takes "
                        f"{_takes(op)})")
    if op == "weight":
        return SetWeight(_name(op, fields["name"]), _value(op, fields["value"]))
    if op == "threshold":
        return SetThreshold(_name(op, fields["name"]), _index(op, fields.get("index", 0)),
                            _value(op, fields["value"]))
    if op == "disable":
        return Disable(_name(op, fields["name"]))
    if op == "remove":
        return Remove(_name(op, fields["name"]))
    if op == "drop_residual":
        return DropResidual(_name(op, fields["name"]))
    if op == "add":
        return AddStatement(_text(op, fields["text"]))
    return Replace(_name(op, fields["name"]), _text(op, fields["text"]))


def _takes(op: str) -> str:
    required, optional = EDIT_FIELDS[op]
    return ", ".join(list(required) + [f"{k} (optional)" for k in optional])
