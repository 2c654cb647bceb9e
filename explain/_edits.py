"""Edits a person makes to a model's rules while debugging.

Each edit is a small frozen dataclass with ``apply(statements) -> statements`` over the
learned knowledge base's statements (``model.to_kb()``); the result is validated like any
rule text, so an invalid edit is refused with the error and changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from greybox.rules import _ast as A
from greybox.rules._parser import parse_statements

from greybox.errors import RuleError

__all__ = ["AddStatement", "Disable", "Edit", "Remove", "Replace", "SetThreshold",
           "SetWeight", "parse_edit"]


class Edit:
    """Base of edits: ``apply`` returns the edited statements; ``describe`` says what."""

    def apply(self, statements: list) -> list:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.describe()


def _find(statements, name: str, kind=(A.Rule, A.Constraint)):
    for i, s in enumerate(statements):
        if isinstance(s, kind) and s.name == name:
            return i, s
    what = "rule" if kind is A.Rule else "rule or constraint"
    names = [s.name for s in statements if isinstance(s, kind)]
    raise RuleError(f"no {what} named {name!r} (there are: {', '.join(names) or 'none'})")


@dataclass(frozen=True)
class SetWeight(Edit):
    """Give rule ``rule`` the weight ``weight``."""

    rule: str
    weight: float

    def apply(self, statements):
        i, r = _find(statements, self.rule, A.Rule)
        problem = A.number_problem(self.weight)
        if problem:
            raise RuleError(f"weight of rule {self.rule!r}: {problem}")
        out = list(statements)
        out[i] = dataclasses.replace(r, weight=float(self.weight))
        return out

    def describe(self):
        return f"set the weight of {self.rule} to {self.weight:g}"


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
        nums = [n for n in A.walk(body) if isinstance(n, A.Num)]
        if not 0 <= self.index < len(nums):
            raise RuleError(f"{self.name!r} has {len(nums)} number(s); index {self.index} is "
                            "out of range")
        problem = A.number_problem(self.value)
        if problem:
            raise RuleError(f"threshold of {self.name!r}: {problem}")
        target = nums[self.index]
        value = A.Num(float(self.value), target.learnable, span=target.span)
        new = A.rewrite(body, lambda node: value if node is target else None)
        out = list(statements)
        out[i] = dataclasses.replace(s, body=new) if isinstance(s, A.Rule) else \
            dataclasses.replace(s, formula=new)
        return out

    def describe(self):
        return f"set number {self.index} of {self.name} to {self.value:g}"


@dataclass(frozen=True)
class Disable(Edit):
    """Switch a rule off (its weight becomes 0, fixed)."""

    rule: str

    def apply(self, statements):
        i, r = _find(statements, self.rule, A.Rule)
        out = list(statements)
        out[i] = dataclasses.replace(r, weight=0.0, fixed=True)
        return out

    def describe(self):
        return f"disable {self.rule}"


@dataclass(frozen=True)
class Remove(Edit):
    """Remove a rule or constraint."""

    name: str

    def apply(self, statements):
        i, _ = _find(statements, self.name)
        return statements[:i] + statements[i + 1:]

    def describe(self):
        return f"remove {self.name}"


@dataclass(frozen=True)
class AddStatement(Edit):
    """Add rules or constraints written as rule text."""

    text: str

    def apply(self, statements):
        new = parse_statements(self.text, filename="<edit>")
        bad = [s for s in new if not isinstance(s, (A.Rule, A.Constraint))]
        if bad:
            raise RuleError("an edit may add rules and constraints only, not declarations")
        return list(statements) + new

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
        if len(new) != 1 or not isinstance(new[0], (A.Rule, A.Constraint)):
            raise RuleError("a replacement must be exactly one rule or constraint")
        return statements[:i] + new + statements[i + 1:]

    def describe(self):
        return f"replace {self.name} by: {self.text.strip()}"


def parse_edit(spec) -> Edit:
    """An edit from an Edit, or a mapping such as ``{"op": "weight", "rule": "r",
    "value": 2.0}`` (ops: weight, threshold, disable, remove, add, replace) -- the form the
    web debugger sends. Nothing in it is executed."""
    if isinstance(spec, Edit):
        return spec
    if not isinstance(spec, dict) or "op" not in spec:
        raise RuleError(f"an edit is an Edit or a mapping with an 'op', got {spec!r}")
    op = spec["op"]
    try:
        if op == "weight":
            return SetWeight(str(spec["rule"]), float(spec["value"]))
        if op == "threshold":
            return SetThreshold(str(spec["name"]), int(spec.get("index", 0)),
                                float(spec["value"]))
        if op == "disable":
            return Disable(str(spec["rule"]))
        if op == "remove":
            return Remove(str(spec["name"]))
        if op == "add":
            return AddStatement(str(spec["text"]))
        if op == "replace":
            return Replace(str(spec["name"]), str(spec["text"]))
    except KeyError as err:
        raise RuleError(f"edit {op!r} lacks {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise RuleError(f"edit {op!r}: {err}") from None
    raise RuleError(f"unknown edit {op!r}; expected weight, threshold, disable, remove, add "
                    "or replace")
