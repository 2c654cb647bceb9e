"""A grey-box model's rule parameters: weights, ``~`` thresholds, decision biases.

:func:`build_parameters` builds the ``rules``, ``constraints`` and ``decisions`` module
dicts that :class:`~greybox.GreyBox` registers (state-dict names ``rules.<rule>.weight``,
``rules.<rule>.thresholds.<i>``, ``constraints.<c>.thresholds.<i>``,
``decisions.<output>.bias``); :class:`RuleIndex` says which parameter each statement and
``~`` number reads; :class:`RuleValues`, a component of the model, reads them as the
semantics need them and writes the learned values back into rules (:meth:`RuleValues.to_kb`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import ModelError
from greybox.rules import ast as A

from ._names import _key

__all__ = ["MAX_DECIDED_VALUES", "DecisionParameters", "RuleIndex", "RuleParameters",
           "RuleValues", "build_parameters", "learned_value", "owners"]

#: Most values a variable decided by rules may have: the model keeps a bias and a score
#: for each of them.
MAX_DECIDED_VALUES = 100_000


class RuleParameters(nn.Module):
    """A rule's weight (a buffer when the rule is ``fixed``) and its ``~`` thresholds."""

    def __init__(self, weight: float, thresholds: list[float], fixed: bool = False):
        super().__init__()
        w = torch.tensor(float(weight))
        if fixed:
            self.register_buffer("weight", w)
        else:
            self.weight = nn.Parameter(w)
        if thresholds:
            self.thresholds = _thresholds(thresholds)
        self._init = (float(weight), list(thresholds))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(self._init[0])
            for p, v in zip(self.thresholds if self._init[1] else (), self._init[1]):
                p.fill_(v)

    def extra_repr(self) -> str:
        fixed = "" if isinstance(self.weight, nn.Parameter) else ", fixed"
        th = (f", thresholds={[round(p.item(), 6) for p in self.thresholds]}"
              if self._init[1] else "")
        return f"weight={self.weight.item():g}{fixed}{th}"


class DecisionParameters(nn.Module):
    """A decided variable's bias: one number for a bool (added to the score of True), one
    per value otherwise."""

    def __init__(self, size: int | None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()) if size is None else torch.zeros(size))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bias.zero_()


class RuleIndex:
    """Where each rule, constraint, decided variable and ``~`` number of knowledge base
    ``kb`` finds its parameter: the module-dict key of its owner (a relational family's
    members share their template's) and each ``~`` number's place among its owner's
    thresholds. Holds no tensors; rebuilt whenever ``kb``'s AST objects are new (after
    unpickling or copying), since numbers are found by node.

    Examples
    --------
    >>> import greybox as gb
    >>> kb = gb.rules.parse("set i: 0..1  input v[i]: real  output h[i]: bool "
    ...                     "rule r[k in i]: v[k] > ~1.5 -> h[k]")
    >>> index = RuleIndex(kb)
    >>> index.key("rule", "r[0]"), index.key("var", "h[1]"), index.slot_values("rules", "r[1]")
    ('r[*]', 'h[*]', [1.5])
    """

    def __init__(self, kb):
        self.kb = kb
        self.owner = owners(kb)
        #: id of a ~ number node -> (group, owner, place)
        self.nums: dict[int, tuple[str, str, int]] = {}
        #: (group, owner) -> {where in the text: (place, value in the rule file)}
        self.slots: dict[tuple[str, str], dict] = {}
        for r in kb.rules.values():
            self._collect(r.body, "rules", r.name)
        for c in kb.constraints.values():
            self._collect(c.formula, "constraints", c.name)

    def owner_of(self, kind: str, name: str) -> str:
        """Whose parameters statement or variable ``name`` reads (``kind``: ``"rule"``,
        ``"constraint"`` or ``"var"``): its family's shared name, or its own."""
        return self.owner.get((kind, name), name)

    def key(self, kind: str, name: str) -> str:
        """The module-dict key of :meth:`owner_of`."""
        return _key(self.owner_of(kind, name))

    def shared(self, kind: str, names) -> bool:
        """Whether the named statements or variables all read one owner's parameters."""
        owner = self.owner.get((kind, names[0]))
        return owner is not None and all(self.owner.get((kind, n)) == owner for n in names)

    def place(self, node: A.Num) -> tuple[str, str, int] | None:
        """``(group, owner, place)`` of a ``~`` number of ``kb`` (None: not one of its)."""
        return self.nums.get(id(node))

    def _collect(self, e, group: str, name: str) -> None:
        """Give each ``~`` number of ``e`` its place among its owner's thresholds. The
        copies of one template number (a family's members; a quantifier's, ``sum``'s or
        ``count``'s instances) share a place: they are one number of the rule text, found
        by its location there (by AST node for rules built in Python)."""
        owner = self.owner_of("rule" if group == "rules" else "constraint", name)
        slots = self.slots.setdefault((group, owner), {})
        for node in A.walk(e):
            if isinstance(node, A.Num) and node.learnable:
                where = _number_key(node)
                if where not in slots:
                    slots[where] = (len(slots), float(node.value))
                self.nums[id(node)] = (group, owner, slots[where][0])

    def slot_values(self, group: str, name: str) -> list[float]:
        """The rule-file values of the thresholds of statement ``name``'s owner."""
        owner = self.owner_of("rule" if group == "rules" else "constraint", name)
        return [v for _, v in self.slots.get((group, owner), {}).values()]

    def upgrade_state(self, state: dict) -> dict:
        """``state`` with the ``~`` thresholds of an earlier layout renamed to this one's.

        Files written before the copies of a ``~`` number shared one parameter hold a
        threshold per copy (``rules.r.thresholds.0``, ``.1``, ... for a number inside a
        quantifier over a set of members), of which the model read the last; that one
        becomes the number's parameter. Any other state is returned as it is."""
        out = dict(state)
        for (group, owner), slots in self.slots.items():
            prefix = f"{group}.{_key(owner)}.thresholds."
            if f"{prefix}{len(slots)}" not in state:
                continue                       # no threshold beyond this layout's
            copies = self._copies(group, owner)
            if set(copies) != set(slots) or f"{prefix}{len(copies)}" in state or \
                    any(f"{prefix}{j}" not in state for j in range(len(copies))):
                continue                       # not that layout: load names the mismatch
            old = [out.pop(f"{prefix}{j}") for j in range(len(copies))]
            for where, (i, _) in slots.items():
                out[f"{prefix}{i}"] = old[max(j for j, k in enumerate(copies) if k == where)]
        return out

    def _copies(self, group: str, owner: str) -> list:
        """Where each ``~`` number copy of the first statement ``owner`` holds stands."""
        kind = "rule" if group == "rules" else "constraint"
        table = self.kb.rules if group == "rules" else self.kb.constraints
        first = next(st for st in table.values() if self.owner_of(kind, st.name) == owner)
        return [_number_key(n) for n in
                A.walk(first.body if group == "rules" else first.formula)
                if isinstance(n, A.Num) and n.learnable]


def build_parameters(kb, index: RuleIndex) -> dict[str, nn.ModuleDict]:
    """The ``rules``, ``constraints`` and ``decisions`` module dicts of ``kb``. The members
    of a relational family share their template's parameters (one weight and one threshold
    per ``~`` number of the rule template, one bias per output family), under the family's
    name with ``*`` for each index: ``rules.smoking_causes(*).weight``. A ``~`` number
    inside a quantifier, ``sum`` or ``count`` is one parameter too, read by each of its
    grounded copies."""
    rules: dict[str, RuleParameters] = {}
    for r in kb.rules.values():
        key = index.key("rule", r.name)
        if key not in rules:
            rules[key] = RuleParameters(r.weight, index.slot_values("rules", r.name), r.fixed)
    cons = {}
    for c in kb.constraints.values():
        key = index.key("constraint", c.name)
        ths = index.slot_values("constraints", c.name)
        if ths and key not in cons:
            m = nn.Module()
            m.thresholds = _thresholds(ths)
            cons[key] = m
    decisions = {}
    for v in kb.decided:
        key = index.key("var", v)
        if key not in decisions:
            decisions[key] = DecisionParameters(_bias_size(kb, v))
    return {"rules": nn.ModuleDict(rules), "constraints": nn.ModuleDict(cons),
            "decisions": nn.ModuleDict(decisions)}


def _bias_size(kb, v: str) -> int | None:
    """How many numbers decided variable ``v``'s bias holds (None: one scalar)."""
    t = kb.variables[v].type
    # one number for a bool (the score of True) and for an additive variable
    # (regression output: its score is its value)
    if isinstance(t, A.BoolType) or v in kb.additive:
        return None
    size = A.domain(t).size
    if size > MAX_DECIDED_VALUES:
        raise ModelError(
            f"{v!r} ({gr.to_text(t)}) is decided by rules over {size:,} values: "
            f"a model scores every value of a decided variable, at most "
            f"{MAX_DECIDED_VALUES:,}; narrow its type, or compute it with a "
            f"define (define {v}: ... = expression)")
    return size


class RuleValues:
    """The rule weights, ``~`` thresholds and decision biases of knowledge base ``kb`` as
    the semantics read them and as rules write them. It is given the three module dicts
    (registered on the model, so that the state dict keeps the names
    ``rules.<rule>.weight``, ``rules.<rule>.thresholds.<i>``,
    ``constraints.<c>.thresholds.<i>``, ``decisions.<output>.bias``) and owns the
    :class:`RuleIndex` over them and the per-row rule mask (:attr:`scale`).

    Contract: every parameter a rule, constraint or decided variable reads is found
    here by name or by ``~`` node; :meth:`to_kb` is the knowledge base with them written in.
    """

    def __init__(self, kb, *, rules: nn.ModuleDict, constraints: nn.ModuleDict,
                 decisions: nn.ModuleDict, index: RuleIndex | None = None):
        self.kb = kb
        self.index = RuleIndex(kb) if index is None else index
        self.rules, self.constraints, self.decisions = rules, constraints, decisions
        #: (rows, rules) multipliers of the rule weights, set while rules are ablated
        self.scale: torch.Tensor | None = None
        self._kb_cache: tuple | None = None

    def reset_parameters(self) -> None:
        """Rule weights and thresholds back to the rule file's values, biases to 0."""
        for m in (*self.rules.values(), *self.decisions.values()):
            m.reset_parameters()

    # parameters as the semantics read them ------------------------------------------------
    def rule_weight(self, name: str) -> torch.Tensor:
        """A rule's weight (times the per-row rule mask while one is set for ablation)."""
        w = self.rules[self.index.key("rule", name)].weight
        if self.scale is not None:
            w = w * self.scale[:, list(self.kb.rules).index(name)]
        return w

    def rule_module(self, name: str) -> RuleParameters:
        """The module holding rule ``name``'s weight and thresholds (its family's)."""
        return self.rules[self.index.key("rule", name)]

    def threshold(self, node: A.Num) -> torch.Tensor:
        """The current value of a ``~`` threshold (an AST node of this model's rules)."""
        group, owner, i = self.index.nums[id(node)]
        return (self.rules if group == "rules" else self.constraints)[_key(owner)] \
            .thresholds[i]

    def decisions_bias(self, name: str) -> torch.Tensor:
        """A decided variable's bias: a number for a bool, one per value otherwise (the
        members of an output family share one)."""
        return self.decisions[self.index.key("var", name)].bias

    def replace_bias(self, name: str, value: torch.Tensor) -> None:
        """Make ``value`` (same shape, any float dtype) the decided variable's bias."""
        old = self.decisions_bias(name)
        if tuple(value.shape) != tuple(old.shape):
            raise ModelError(f"the bias of {name!r} has shape {tuple(old.shape)}; "
                             f"got {tuple(value.shape)}")
        self.decisions[self.index.key("var", name)].bias = nn.Parameter(value)

    def bias_table(self, residual: dict) -> dict:
        """Biases as :func:`greybox.rules.evaluate` takes them, plus ``residual``'s per-row
        float64 arrays of scores by output where given."""
        out = {}
        for name in self.kb.decided:
            b = self.decisions_bias(name).detach().double().cpu()
            r = residual.get(name)
            if b.dim() == 0:
                out[name] = float(b) if r is None else float(b) + r
            else:
                values = A.domain_values(self.kb.variables[name].type)
                out[name] = {v: (float(b[i]) if r is None else float(b[i]) + r[:, i])
                             for i, v in enumerate(values)}
        return out

    # parameters as rules ---------------------------------------------------------------------
    def to_kb(self) -> gr.KnowledgeBase:
        """The knowledge base with the learned weights and thresholds written in."""
        state = self._values()
        if self._kb_cache is not None and self._kb_cache[0] == state:
            return self._kb_cache[1]
        stmts = []
        for s in self.kb.statements:
            if isinstance(s, A.Rule):
                m = self.rule_module(s.name)
                s = dataclasses.replace(s, weight=learned_value(m.weight),
                                        body=self._written(s.body))
            elif isinstance(s, A.Constraint):
                s = dataclasses.replace(s, formula=self._written(s.formula))
            stmts.append(s)
        kb = gr.KnowledgeBase(stmts, filename=self.kb.filename)
        if self.kb.program is not None:   # the relational text, when it says the same
            kb = self._relational(kb)
        self._kb_cache = (state, kb)
        return kb

    def _values(self) -> tuple:
        """Every weight and threshold: the key of :meth:`to_kb`'s cache, so the values
        themselves (a tensor's version counter misses ``p.data.mul_(2)`` and
        ``p.data = x``). The modules are walked afresh (one may have been replaced) and
        each number read with an ``.item()`` on the CPU (~0.5 µs; a ``detach`` and a
        ``reshape`` each then one ``cat`` cost 0.3 ms for 50 rules), in one transfer from
        an accelerator."""
        read = []
        stack = [*self.rules._modules.values(), *self.constraints._modules.values()]
        try:
            for m in stack:   # grows as it goes: every submodule
                read.extend(m._parameters.values())
                if m._buffers:
                    read.extend(m._buffers.values())
                if m._modules:
                    stack.extend(m._modules.values())
            if not read:
                return ()
            if read[0].device.type == "cpu":
                return tuple([t.item() for t in read])   # each one number
            with torch.no_grad():
                return tuple(torch.stack(read).reshape(-1).tolist())
        except (AttributeError, RuntimeError):   # a None, a tensor of another shape
            return self._flat_values()

    def _flat_values(self) -> tuple:
        """:meth:`_values` of any modules and tensors: each flattened, then one ``cat``."""
        read, stack = [], [*self.rules.values(), *self.constraints.values()]
        while stack:
            m = stack.pop()
            if m is None:
                continue
            read += [t.detach().reshape(-1) for t in (*m._parameters.values(),
                                                      *m._buffers.values()) if t is not None]
            stack += m._modules.values()
        return tuple(torch.cat(read).tolist()) if read else ()

    def _relational(self, grounded: gr.KnowledgeBase) -> gr.KnowledgeBase:
        """The learned values written into the relational templates -- a family's members
        share them -- when that grounds to exactly ``grounded``; else ``grounded``."""
        program, out = self.kb.program, []
        for t in program.templates:
            st = t.statement if isinstance(t, A.Family) else t
            if isinstance(st, (A.Rule, A.Constraint)):
                learned = self._template_values(t, st)
                if learned is None:
                    return grounded
                t = learned
            elif isinstance(t, A.SetDecl) and t.members is None:
                t = A.SetDecl(t.name, program.sets[t.name], span=t.span)
            out.append(t)
        try:
            relational = gr.KnowledgeBase(out, filename=self.kb.filename)
        except gr.RuleError:
            return grounded
        return relational if relational == grounded else grounded

    def _template_owner(self, t, st, group: str):
        """``(owner, members)`` of template ``t``; owner None when its members do not
        share one owner, ``...`` when every member was simplified away."""
        statements = self.kb.rules if group == "rule" else self.kb.constraints
        if not isinstance(t, A.Family):
            return st.name, [st.name] if st.name in statements else []
        fam = self.kb.families.get(f"{group}:{st.name}")
        members = [m for m in ([] if fam is None else fam.members.values())
                   if m in statements]
        owners_ = {self.index.owner.get((group, m)) for m in members}
        if not owners_:
            return ..., members
        if len(owners_) != 1 or None in owners_:
            return None, members
        return owners_.pop(), members

    def _template_values(self, t, st):
        """Template ``t`` with its weight and ``~`` numbers learned, or None when its
        members do not share one set of values."""
        group = "rule" if isinstance(st, A.Rule) else "constraint"
        owner, _ = self._template_owner(t, st, group)
        if owner is ...:
            return t          # every member simplified away: nothing learned
        if owner is None:
            return None
        modules = self.rules if group == "rule" else self.constraints
        module = modules[_key(owner)] if _key(owner) in modules else None
        nums = [n for n in A.walk(st.body if group == "rule" else st.formula)
                if isinstance(n, A.Num) and n.learnable]
        # each ~ number's learned value is the parameter its grounded copies read (a
        # number inside a quantifier has a copy per instance), found by its place in the
        # text; one no member kept (grounding simplified it away) keeps its value
        slots = self.index.slots.get((f"{group}s", owner), {})
        values = []
        for n in nums:
            slot = slots.get(_number_key(n))
            values.append(n.value if slot is None or module is None
                          else learned_value(module.thresholds[slot[0]]))
        where = {id(n): i for i, n in enumerate(nums)}

        def learned(node):
            if isinstance(node, A.Num) and node.learnable:
                return A.Num(values[where[id(node)]], True, span=node.span)
            return None

        if group == "rule":
            weight = learned_value(module.weight) if module is not None else st.weight
            st = dataclasses.replace(st, weight=weight, body=A.rewrite(st.body, learned))
        else:
            st = dataclasses.replace(st, formula=A.rewrite(st.formula, learned))
        return dataclasses.replace(t, statement=st) if isinstance(t, A.Family) else st

    def _written(self, e):
        """``e`` with each ``~`` number replaced by its learned value."""
        def learned(node):
            if isinstance(node, A.Num) and node.learnable:
                return A.Num(learned_value(self.threshold(node)), True, span=node.span)
            return None

        return A.rewrite(e, learned)


def owners(kb) -> dict[tuple[str, str], str]:
    """Who holds the parameters of each member of a relational family: ``("rule", name)``,
    ``("constraint", name)`` or ``("var", name)`` -> the family's name with ``*`` for each
    index (``smoking_causes(*)``). Members share their template's weight and ``~`` numbers
    also where grounding simplified some numbers away in some members (they read the
    ones they keep). Non-members keep their own, and so do the members of a family when a
    statement has the family's shared name."""
    out: dict[tuple[str, str], str] = {}
    taken = {*kb.rules, *kb.constraints, *kb.variables}
    # where each rule or constraint template stands in the text: a statement written on
    # its own under a member's name (the debugger exports an edited grounding so, its
    # template's grounding there guarded away) is not the template's, and keeps its own
    where = {(t.statement.name, type(t.statement)): t.statement.span
             for t in (kb.program.templates if kb.program is not None else ())
             if isinstance(t, A.Family)}
    for fam in kb.families.values():
        shared = gr.engine.member_name(fam.name, ["*"] * len(fam.sets), fam.paren)
        if shared in taken:
            continue   # a statement of that very name keeps it: members keep their own
        if fam.kind in ("rule", "constraint"):
            table = kb.rules if fam.kind == "rule" else kb.constraints
            span = where.get((fam.name, A.Rule if fam.kind == "rule" else A.Constraint))
            out.update(((fam.kind, m), shared) for m in fam.members.values()
                       if m in table and (span is None or table[m].span is None
                                          or table[m].span == span))
        elif fam.kind in ("output", "define"):
            decided = [m for m in fam.members.values()
                       if m in kb.variables and kb.variables[m].role == "decided"]
            out.update((("var", m), shared) for m in decided)
    return out


def _number_key(node: A.Num) -> tuple:
    """What names a ``~`` number of the rule text: its location and value (its grounded
    copies keep them), or the node itself when it was built in Python."""
    if node.span is None:
        return ("node", id(node))
    return ("text", node.span.filename, node.span.line, node.span.column, node.value)


def learned_value(p: torch.Tensor) -> float:
    """A learned weight or threshold as the rules state it: the shortest decimal that
    names the parameter's value in its own precision (``1.6``, not the float32's
    ``1.600000023841858``). The decision function, the solvers and exported rule files
    all use this value."""
    x = p.detach().cpu()
    if x.dtype == torch.float64:
        return float(x.item())
    return float(str(np.float32(x.item())))


def _thresholds(values: list[float]) -> nn.ParameterList:
    return nn.ParameterList([nn.Parameter(torch.tensor(float(v))) for v in values])
