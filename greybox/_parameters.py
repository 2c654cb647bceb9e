"""A grey-box model's rule parameters: weights, ``~`` thresholds, decision biases.

:class:`RuleValues` is mixed into :class:`~greybox.GreyBox`: it builds the ``rules``,
``constraints`` and ``decisions`` module dicts (state-dict names ``rules.<rule>.weight``,
``rules.<rule>.thresholds.<i>``, ``constraints.<c>.thresholds.<i>``,
``decisions.<output>.bias``), reads them as the semantics need them, and writes the
learned values back into rules (:meth:`RuleValues.to_kb`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import DataError, ModelError
from greybox.rules import ast as A

from ._batch import Batch
from ._names import _key

__all__ = ["MAX_DECIDED_VALUES", "DecisionParameters", "RuleParameters", "RuleValues",
           "learned_value", "owners"]

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


class RuleValues:
    """The rule weights, thresholds and biases of a :class:`~greybox.GreyBox` (a mixin:
    the modules live on the model, so its state dict keeps their names)."""

    def _init_rule_parameters(self) -> None:
        """Register ``rules``, ``constraints`` and ``decisions`` from ``self.kb``. The
        members of a relational family share their template's parameters (one weight and
        one threshold per ``~`` number of the rule template, one bias per output family),
        under the family's name with ``*`` for each index: ``rules.smoking_causes(*).weight``.
        A ``~`` number inside a quantifier, ``sum`` or ``count`` is one parameter too, read
        by each of its grounded copies."""
        kb = self.kb
        self._index_numbers()
        rules: dict[str, RuleParameters] = {}
        for r in kb.rules.values():
            key = _key(self._owner.get(("rule", r.name), r.name))
            if key not in rules:
                rules[key] = RuleParameters(r.weight, self._slot_values("rules", r.name),
                                            r.fixed)
        self.rules = nn.ModuleDict(rules)
        cons = {}
        for c in kb.constraints.values():
            key = _key(self._owner.get(("constraint", c.name), c.name))
            ths = self._slot_values("constraints", c.name)
            if ths and key not in cons:
                m = nn.Module()
                m.thresholds = _thresholds(ths)
                cons[key] = m
        self.constraints = nn.ModuleDict(cons)
        decisions = {}
        for v in kb.decided:
            key = _key(self._owner.get(("var", v), v))
            if key not in decisions:
                t = kb.variables[v].type
                # one number for a bool (the score of True) and for an additive variable
                # (regression output: its score is its value)
                scalar = isinstance(t, A.BoolType) or v in kb.additive
                size = None if scalar else A.domain(t).size
                if size is not None and size > MAX_DECIDED_VALUES:
                    raise ModelError(
                        f"{v!r} ({gr.to_text(t)}) is decided by rules over {size:,} values: "
                        f"a model scores every value of a decided variable, at most "
                        f"{MAX_DECIDED_VALUES:,}; narrow its type, or compute it with a "
                        f"define (define {v}: ... = expression)")
                decisions[key] = DecisionParameters(None if scalar else size)
        self.decisions = nn.ModuleDict(decisions)

    def _index_numbers(self) -> None:
        """Map each ``~`` number of ``self.kb`` (by AST node) to its parameter: after
        unpickling, the knowledge base comes back with new AST objects."""
        self._owner = owners(self.kb)
        self._nums: dict[int, tuple[str, str, int]] = {}
        self._slots: dict[tuple[str, str], dict] = {}
        for r in self.kb.rules.values():
            self._collect(r.body, "rules", r.name)
        for c in self.kb.constraints.values():
            self._collect(c.formula, "constraints", c.name)

    def _collect(self, e, group: str, name: str) -> None:
        """Give each ``~`` number of ``e`` its place among its owner's thresholds. The
        copies of one template number (a family's members; a quantifier's, ``sum``'s or
        ``count``'s instances) share a place: they are one number of the rule text, found
        by its location there (by AST node for rules built in Python)."""
        owner = self._owner.get(("rule" if group == "rules" else "constraint", name), name)
        slots = self._slots.setdefault((group, owner), {})
        for node in A.walk(e):
            if isinstance(node, A.Num) and node.learnable:
                where = _number_key(node)
                if where not in slots:
                    slots[where] = (len(slots), float(node.value))
                self._nums[id(node)] = (group, owner, slots[where][0])

    def _slot_values(self, group: str, name: str) -> list[float]:
        """The rule-file values of the thresholds of statement ``name``'s owner."""
        owner = self._owner.get(("rule" if group == "rules" else "constraint", name), name)
        return [v for _, v in self._slots.get((group, owner), {}).values()]

    def _upgrade_state(self, state: dict) -> dict:
        """``state`` with the ``~`` thresholds of an earlier layout renamed to this one's.

        Files written before the copies of a ``~`` number shared one parameter hold a
        threshold per copy (``rules.r.thresholds.0``, ``.1``, ... for a number inside a
        quantifier over a set of members), of which the model read the last; that one
        becomes the number's parameter. Any other state is returned as it is."""
        out = dict(state)
        for (group, owner), slots in self._slots.items():
            prefix = f"{group}.{_key(owner)}.thresholds."
            if f"{prefix}{len(slots)}" not in state:
                continue                       # no threshold beyond this layout's
            kind = "rule" if group == "rules" else "constraint"
            table = self.kb.rules if group == "rules" else self.kb.constraints
            first = next(st for st in table.values()
                         if self._owner.get((kind, st.name), st.name) == owner)
            copies = [_number_key(n) for n in
                      A.walk(first.body if group == "rules" else first.formula)
                      if isinstance(n, A.Num) and n.learnable]
            if set(copies) != set(slots) or f"{prefix}{len(copies)}" in state or \
                    any(f"{prefix}{j}" not in state for j in range(len(copies))):
                continue                       # not that layout: load names the mismatch
            old = [out.pop(f"{prefix}{j}") for j in range(len(copies))]
            for where, (i, _) in slots.items():
                out[f"{prefix}{i}"] = old[max(j for j, k in enumerate(copies) if k == where)]
        return out

    def reset_parameters(self) -> None:
        """Rule weights and thresholds back to the rule file's values, biases to 0."""
        for m in (*self.rules.values(), *self.decisions.values()):
            m.reset_parameters()

    # parameters as the semantics read them ------------------------------------------------
    def rule_weight(self, name: str) -> torch.Tensor:
        """A rule's weight (times the per-row rule mask while one is set for ablation)."""
        w = self.rules[_key(self._owner.get(("rule", name), name))].weight
        if self._rule_scale is not None:
            w = w * self._rule_scale[:, list(self.kb.rules).index(name)]
        return w

    def shares_weight(self, rules) -> bool:
        """Whether the named rules all read one weight (members of one family)."""
        owner = self._owner.get(("rule", rules[0]))
        return owner is not None and all(self._owner.get(("rule", r)) == owner for r in rules)

    def shares_bias(self, names) -> bool:
        """Whether the named decided variables all read one bias (members of one family)."""
        owner = self._owner.get(("var", names[0]))
        return owner is not None and all(self._owner.get(("var", n)) == owner for n in names)

    def threshold(self, node: A.Num) -> torch.Tensor:
        """The current value of a ``~`` threshold (an AST node of this model's rules)."""
        group, owner, i = self._nums[id(node)]
        return getattr(self, group)[_key(owner)].thresholds[i]

    def decisions_bias(self, name: str) -> torch.Tensor:
        """A decided variable's bias: a number for a bool, one per value otherwise (the
        members of an output family share one)."""
        return self.decisions[_key(self._owner.get(("var", name), name))].bias

    def replace_bias(self, name: str, value: torch.Tensor) -> None:
        """Make ``value`` (a tensor of the same shape, of any float dtype, e.g. float64 where
        a decision needs the bias less a threshold exactly) the decided variable's bias
        parameter."""
        old = self.decisions_bias(name)
        if tuple(value.shape) != tuple(old.shape):
            raise ModelError(f"the bias of {name!r} has shape {tuple(old.shape)}; "
                             f"got {tuple(value.shape)}")
        self.decisions[_key(self._owner.get(("var", name), name))].bias = nn.Parameter(value)

    # parameters as rules ---------------------------------------------------------------------
    def to_kb(self) -> gr.KnowledgeBase:
        """The knowledge base with the learned weights and thresholds written in."""
        # every weight and threshold, read from the device at once (an .item() each, or
        # nn.Module.parameters()' generators, cost ~1 ms for 50 rules)
        read, stack = [], [*self.rules.values(), *self.constraints.values()]
        while stack:
            m = stack.pop()
            read += [t.detach().reshape(-1) for t in (*m._parameters.values(),
                                                      *m._buffers.values()) if t is not None]
            stack += m._modules.values()
        state = tuple(torch.cat(read).tolist()) if read else ()
        if self._kb_cache is not None and self._kb_cache[0] == state:
            return self._kb_cache[1]
        stmts = []
        for s in self.kb.statements:
            if isinstance(s, A.Rule):
                m = self.rules[_key(self._owner.get(("rule", s.name), s.name))]
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

    def _template_values(self, t, st):
        """Template ``t`` with its weight and ``~`` numbers learned, or None when its
        members do not share one set of values."""
        group = "rule" if isinstance(st, A.Rule) else "constraint"
        statements = self.kb.rules if group == "rule" else self.kb.constraints
        if isinstance(t, A.Family):
            fam = self.kb.families.get(f"{group}:{st.name}")
            members = [m for m in ([] if fam is None else fam.members.values())
                       if m in statements]
            owners_ = {self._owner.get((group, m)) for m in members}
            if not owners_:
                return t          # every member simplified away: nothing learned
            if len(owners_) != 1 or None in owners_:
                return None
            owner = owners_.pop()
        else:
            owner, members = st.name, [st.name] if st.name in statements else []
        modules = self.rules if group == "rule" else self.constraints
        module = modules[_key(owner)] if _key(owner) in modules else None
        nums = [n for n in A.walk(st.body if group == "rule" else st.formula)
                if isinstance(n, A.Num) and n.learnable]
        # each ~ number's learned value is the parameter its grounded copies read (a
        # number inside a quantifier has a copy per instance), found by its place in the
        # text; one no member kept (grounding simplified it away) keeps its value
        slots = self._slots.get((f"{group}s", owner), {})
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

    def bias_table(self, batch: Batch | None = None) -> dict:
        """Biases as :func:`greybox.rules.evaluate` takes them (per-row arrays when a
        residual network adds to the scores)."""
        res = self.residual_scores(batch) if batch is not None else {}
        out = {}
        for name in self.kb.decided:
            b = self.decisions_bias(name).detach().double().cpu()
            r = res.get(name)
            r = None if r is None else r.detach().double().cpu().numpy()
            if r is not None and not np.isfinite(r).all():
                _overflowed(self, name, r, batch)
            if b.dim() == 0:
                out[name] = float(b) if r is None else float(b) + r
            else:
                values = A.domain_values(self.kb.variables[name].type)
                out[name] = {v: (float(b[i]) if r is None else float(b[i]) + r[:, i])
                             for i, v in enumerate(values)}
        return out


def _overflowed(model, name: str, logits: np.ndarray, batch: Batch):
    """DataError: the residual's logits for ``name`` are not finite on a row (an input far
    beyond the range the network's arithmetic holds), naming the row by its label and the
    inputs to blame (those whose standardised value overflowed, else the farthest)."""
    bad = ~np.isfinite(logits.reshape(len(logits), -1)).all(axis=1)
    pos = int(np.flatnonzero(bad)[0])
    got = logits.reshape(len(logits), -1)[pos]
    got = got[~np.isfinite(got)][0]
    label = batch.index[pos]
    label = label.item() if hasattr(label, "item") else label
    with torch.no_grad():
        feats = model._features(batch.take(torch.as_tensor([pos])))[0].double().cpu().numpy()
    names = list(model.feature_names)
    reals = [i for i, f in enumerate(names) if f in model.kb.variables]
    over = [i for i in reals if not np.isfinite(feats[i])]
    if not over:
        net = model.residual_for(name)
        broken = [n for n, p in (net.named_parameters() if net is not None else ())
                  if not torch.isfinite(p).all()]
        if broken:
            raise ModelError(f"the residual network for {name!r} has non-finite weights "
                             f"({broken[0]!r}): its logit at row {label!r} is "
                             f"{float(got)!r}")
        over = [max(reals, key=lambda i: abs(feats[i]))] if reals else []
    shown = []
    for i in over:
        f = names[i]
        value = batch.columns[f][pos] if f in batch.columns else feats[i]
        value = value.item() if hasattr(value, "item") else value
        lo, hi, from_data = model.input_range(f)
        where = "training range" if from_data else "declared range"
        shown.append(f"input {f!r} = {value!r} (its {where} [{lo:.6g}, {hi:.6g}])")
    blame = (", ".join(shown) + " lies" if len(shown) == 1 else ", ".join(shown) + " lie") \
        if shown else "the inputs lie"
    raise DataError(f"the residual network for {name!r} overflowed at row {label!r} (its "
                    f"logit is {float(got)!r}): {blame} beyond "
                    "what its float arithmetic holds, so the decision is not defined there; "
                    "drop the row or clip the input to a plausible value")


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
        shared = gr.member_name(fam.name, ["*"] * len(fam.sets), fam.paren)
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
