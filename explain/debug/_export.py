"""The edited rule file of a relational model, written relationally.

An edit of one grounding (``SetWeight("own(anna)", 5)``, ``Replace("own(anna)", ...)``)
turns the debugger's model into grounded statements; exporting those as they are would
write every template out member by member. :func:`relational_kb` writes the user's
templates back instead: a template none of whose members an edit touched stays as it was
written; an edited one is restricted to its other members by an index guard that grounding
decides (``p != anna and BODY``, ``not (p == bob and q == anna)`` for two parameters),
followed by the edited members' statements as plain rules named like the member
(``rule `own(anna)` weight 5.0: lvl(anna) >= 1 -> cancer(anna)``). The text is checked
by grounding it: it is returned only when it grounds to exactly the edited model's
statements.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import numpy as np

from greybox.errors import RuleError
from greybox.rules import KnowledgeBase, parse, to_text
from greybox.rules import ast as A

__all__ = ["bias_text", "relational_kb"]

_STYLES = ("references", "names", "grounded")


def relational_kb(final: KnowledgeBase, templates: list, *,
                  start: KnowledgeBase | None = None) -> KnowledgeBase | None:
    """``final`` (grounded statements) as relational text over ``templates`` (the
    relational statements whose grounding the edits started from), or None when no
    relational text grounds to exactly ``final``'s statements.

    ``start``: the grounding of ``templates``, when the caller has it.

    Three forms are tried, the first that grounds to ``final`` wins: (1) each edited
    template restricted to its untouched members by an index guard, the edited members
    written as plain rules with family references (``lvl(anna)``); (2) the same with the
    grounded names (`` `lvl(anna)` ``); (3) an edited template written as its grounded
    members (the others stay relational) -- for a template whose guard the language cannot
    state, e.g. a member whose name is also the binder's (``p != p``).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> base = gr.parse('''set person: {anna, bob}
    ... input lvl(person): int 0..5
    ... output sick(person): bool
    ... rule own(p in person): lvl(p) >= 3 -> sick(p)''')
    >>> edited = [s for s in base.statements if getattr(s, "name", "") != "own(anna)"]
    >>> print(to_text(relational_kb(KnowledgeBase(edited), list(base.program.templates))))
    set person: {anna, bob}
    input lvl(person): int 0..5
    output sick(person): bool
    rule own(p in person): p != anna and lvl(p) >= 3 -> sick(p)
    <BLANKLINE>
    """
    if start is None:   # the templates' grounding (given when the caller has it)
        try:
            start = KnowledgeBase(templates)
        except RuleError:
            return None
    if start.program is None:
        return None
    for style in _STYLES:
        statements = _write(final, start, style)
        if statements is None:
            continue
        text = "".join(to_text(s) + "\n" for s in statements)
        try:   # what the user gets is the text: check that, parsed back
            kb = parse(text, filename=final.filename)
        except RuleError:
            continue
        if Counter(kb.statements) == Counter(final.statements):
            return kb
    return None


def _is_statement(s) -> bool:
    return isinstance(s.statement if isinstance(s, A.Family) else s, (A.Rule, A.Constraint))


def _write(final: KnowledgeBase, start: KnowledgeBase, style: str) -> list | None:
    """The relational statements for ``final`` in ``style`` (see :func:`relational_kb`)."""
    program = start.program
    templates = list(program.templates)
    grounded = {s.name: s for s in start.statements if isinstance(s, (A.Rule, A.Constraint))}
    now = {s.name: s for s in final.statements if isinstance(s, (A.Rule, A.Constraint))}
    members: dict[int, dict] = {}     # template position -> {member name: index}
    owner: dict[str, int] = {}
    for pos, t in enumerate(templates):
        if not _is_statement(t):
            continue
        if isinstance(t, A.Family):
            kind = "rule" if isinstance(t.statement, A.Rule) else "constraint"
            info = program.families.get(f"{kind}:{t.statement.name}")
            if info is None:
                return None
            members[pos] = {name: index for index, name in info.members.items()}
        else:
            members[pos] = {t.name: ()}
        owner.update((name, pos) for name in members[pos])
    if not members:
        return None
    # the final statements each template writes, in their order: its members, and after
    # them the statements no template grounds to (a renamed replacement, in its place)
    written: dict[int, list] = {pos: [] for pos in members}
    last = min(members)
    for s in final.statements:
        if isinstance(s, (A.Rule, A.Constraint)):
            last = owner.get(s.name, last)
            written[last].append(s)
    rewrite = _references(start) if style == "references" else (lambda s: s)
    out = []
    for pos, t in enumerate(templates):
        if pos not in members:
            if isinstance(t, A.SetDecl) and t.members is None:   # members from the data
                t = A.SetDecl(t.name, program.sets[t.name], span=t.span)
            out.append(t)
            continue
        edited = [name for name in members[pos] if grounded.get(name) != now.get(name)]
        own = [s for s in written[pos] if s.name in members[pos]]
        extra = [s for s in written[pos] if s.name not in members[pos]]
        if not edited:
            out.append(t)
            out.extend(rewrite(s) for s in extra)
            continue
        kept = [name for name in members[pos] if name not in edited and name in grounded]
        weighted = None if kept or style == "grounded" else _one_weight(
            t, own, {n: grounded[n] for n in members[pos] if n in grounded})
        if weighted is not None:   # every member given one new weight: the template's
            out.append(weighted)
            out.extend(rewrite(s) for s in extra)
            continue
        if style == "grounded" or not kept or not isinstance(t, A.Family):
            out.extend(rewrite(s) for s in written[pos])
            continue
        out.append(_guarded(t, [members[pos][name] for name in edited]))
        out.extend(rewrite(s) for s in own if s.name in edited)
        out.extend(rewrite(s) for s in extra)
    return out


def _one_weight(t, own: list, grounded: dict):
    """Rule template ``t`` with the weight its members ``own`` all have instead of the
    template's, when that is all the edits changed in them (``SetWeight`` of every
    grounding, none removed); else None. ``grounded``: the template's own members."""
    if not isinstance(t, A.Family) or not isinstance(t.statement, A.Rule) or not own:
        return None
    if {s.name for s in own} != set(grounded):
        return None
    weights = {(s.weight, s.fixed) for s in own}
    if len(weights) != 1:
        return None
    weight, fixed = weights.pop()
    if any(dataclasses.replace(grounded[s.name], weight=weight, fixed=fixed) != s
           for s in own):
        return None
    return dataclasses.replace(t, statement=dataclasses.replace(t.statement, weight=weight,
                                                                fixed=fixed))


def _guarded(t: A.Family, excluded: list) -> A.Family:
    """Template ``t`` with its members at the ``excluded`` indices left out: a rule's
    body (a constraint's formula) behind a guard that grounding decides (``p != anna``),
    false (true) for those members, which grounding then leaves out."""
    guards = []
    for index in excluded:
        equal = [A.Compare("==", A.Var(b.var), _member(v)) for b, v in zip(t.params, index)]
        if len(equal) == 1:
            guards.append(dataclasses.replace(equal[0], op="!="))
        else:
            guards.append(A.Not(A.And(tuple(equal))))
    guard = guards[0] if len(guards) == 1 else A.And(tuple(guards))
    st = t.statement
    if isinstance(st, A.Rule):
        body = st.body.args if isinstance(st.body, A.And) else (st.body,)
        st = dataclasses.replace(st, body=A.And((*guards, *body)))
    else:
        st = dataclasses.replace(st, formula=A.Implies(guard, st.formula))
    return dataclasses.replace(t, statement=st)


def _member(value) -> A.Num | A.Var:
    """A set member as an index is written: a number, or a member's name."""
    return A.Num(value) if isinstance(value, int) else A.Var(value)


def _references(start: KnowledgeBase):
    """A function writing a grounded statement's references to family members as the
    references they ground from (`` `lvl(anna)` `` as ``lvl(anna)``)."""
    found = {}
    for fam in start.families.values():
        if fam.kind in ("rule", "constraint"):
            continue
        for index, name in fam.members.items():
            found[name] = (fam.name, tuple(_member(v) for v in index), fam.paren)

    def reference(node):
        if isinstance(node, A.Var) and node.name in found:
            name, args, paren = found[node.name]
            return A.Index(name, args, paren, span=node.span)
        return None

    def statement(s):
        if isinstance(s, A.Constraint):
            return dataclasses.replace(s, formula=A.rewrite(s.formula, reference))
        head = s.head
        if head.name in found:
            name, args, paren = found[head.name]
            head = A.Head(name, head.value, index=args, paren=paren, span=head.span)
        return dataclasses.replace(s, body=A.rewrite(s.body, reference), head=head)

    return statement


def bias_text(model, kb: KnowledgeBase) -> str:
    """The learned biases of ``model``'s decided variables as rule text to append to
    ``to_text(kb)``: the rule language has no bias statement, but a decision's score is
    ``bias + sum(weight * [body])``, so a bias ``b`` is exactly a fixed rule of weight
    ``b`` whose body is ``true`` (``rule bias_out weight -1.2 fixed: true -> out``; one
    per value of an int or enum, for each value whose bias is not 0; a family of decided
    variables sharing one bias, one rule template over its sets). Empty when every
    bias is 0. A model rebuilt from the text has its own biases at 0 beside these rules,
    so its decisions are the model's."""
    taken = set(kb.rules) | set(kb.constraints) | set(kb.variables)
    if kb.program is not None:
        taken |= {getattr(getattr(t, "statement", t), "name", None)
                  for t in kb.program.templates}
    lines, done = [], set()

    def name_for(*parts) -> str:
        base = "bias_" + re.sub(r"\W+", "_", "_".join(str(p) for p in parts)).strip("_")
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    biases = {name: model.decisions_bias(name).detach().double().cpu().numpy()
              for name in model.kb.decided}
    # a family of decided variables whose members share their biases: one rule template
    for info in (kb.program.families.values() if kb.program is not None else ()):
        members = list(info.members.values())
        if not members or any(m not in biases for m in members) or any(
                not np.array_equal(biases[m], biases[members[0]]) for m in members):
            continue
        b = biases[members[0]]
        binders = [f"i{k}" for k in range(len(info.sets))]
        params = ", ".join(f"{v} in {d}" for v, d in zip(binders, info.sets))
        ref = f"{info.name}({', '.join(binders)})"
        values = A.domain_values(model.kb.variables[members[0]].type)
        for i in ([None] if b.ndim == 0 and b != 0.0 else
                  [] if b.ndim == 0 else [int(i) for i in np.flatnonzero(b)]):
            w = float(b) if i is None else float(b[i])
            head = ref if i is None else f"{ref} = {values[i]}"
            rule = name_for(info.name) if i is None else name_for(info.name, values[i])
            lines.append(f"rule {rule}({params}) weight {w!r} fixed: true -> {head}")
        done.update(members)
    for name in model.kb.decided:
        if name in done:
            continue
        b = biases[name]
        t = model.kb.variables[name].type
        if b.ndim == 0:
            if b != 0.0:
                lines.append(f"rule {name_for(name)} weight {float(b)!r} fixed: true -> "
                             f"{_ref(name)}")
            continue
        values = A.domain_values(t)
        for i in np.flatnonzero(b):
            v = values[int(i)]
            lines.append(f"rule {name_for(name, v)} weight {float(b[i])!r} fixed: true -> "
                         f"{_ref(name)} = {v}")
    if not lines:
        return ""
    return ("# the learned decision biases: a score is bias + sum(weight * [body]), and each "
            "bias is written\n# as a fixed rule whose body is true\n" + "\n".join(lines) + "\n")


def _ref(name: str) -> str:
    """A variable as rule text names it: a family member by its reference
    (``cancer(anna)``), another name as it is, back-quoted where it is not a word."""
    if re.fullmatch(r"[A-Za-z_]\w*(\([\w, ]*\))?", name):
        return name
    return f"`{name}`"
