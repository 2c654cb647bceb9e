"""``check``: a Z3 lint of a knowledge base."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import pandas as pd
import z3

from greybox.errors import RuleError, listed

from ._deadline import Deadline, OutOfTime, timeout_seconds
from ._kb import KnowledgeBase
from ._z3 import z3_message, z3_serialised
from .analyses import REGISTRY, Context, Finding
from .analyses._base import first_row

__all__ = ["CheckReport", "Finding", "check"]

_ORDER = {"error": 0, "warning": 1, "info": 2}
#: a grounded member's name in a message: ``cancer(anna)``, ``friends(anna, bob)``, ``x[3]``
_MEMBER = re.compile(r"[^\W\d][\w.]*(?:\([^()\[\]]*\)|\[[^()\[\]]*\])")


@dataclass(frozen=True)
class CheckReport:
    """The findings of :func:`check`, most severe first.

    Attributes
    ----------
    findings : tuple of Finding
    seconds : float
        Time the analyses took.
    analyses : tuple of str
        Names of the analyses that ran.

    Printed, the findings of a relational knowledge base are grouped by template: the
    groundings of one template with the same finding (``no rule about cancer(anna) fires
    ...`` for every person) are one finding with their count and the first one's witness,
    which shows the inputs its subjects read (all of them are in :meth:`to_frame` and
    :meth:`to_json`, which keep one finding per grounding).
    """

    findings: tuple[Finding, ...]
    seconds: float
    analyses: tuple[str, ...]
    kb: KnowledgeBase | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def infos(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    @property
    def ok(self) -> bool:
        """No error and no warning."""
        return not (self.errors or self.warnings)

    def __bool__(self) -> bool:
        return self.ok

    def to_frame(self) -> pd.DataFrame:
        """One row per finding: severity, check, message, subjects, witness (a dict)."""
        rows = [f.to_dict() for f in self.findings]
        return pd.DataFrame(rows, columns=["severity", "check", "message", "subjects", "witness"])

    def to_json(self) -> str:
        return json.dumps({
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "infos": len(self.infos),
            "seconds": round(self.seconds, 4),
            "findings": [f.to_dict() for f in self.findings],
        }, indent=2, default=str)

    def __str__(self) -> str:
        head = (f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                f"{len(self.infos)} info ({self.seconds:.2f} s)")
        program = None if self.kb is None else self.kb.program
        if program is None:
            return "\n".join([*(str(f) for f in self.findings), head])
        family = _templates(self.kb)
        return "\n".join([*(_grouped_text(self.kb, family, g)
                            for g in _by_template(family, self.findings)), head])

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


@z3_serialised
def check(kb: KnowledgeBase, *, timeout: float | None = 10.0,
          analyses: Sequence[str] | None = None) -> CheckReport:
    """Analyse a knowledge base with Z3.

    Findings, by severity:

    * **error** -- hard constraints that contradict each other (a minimal conflicting set
      from the unsat core); inputs for which no decision satisfies the hard constraints
      (with a witness); defined variables that can leave their declared type.
    * **warning** -- rules that can never fire; rules subsumed by another with the same
      head (or equivalent to it).
    * **info** -- rules with opposite heads that can fire together (normal for weighted
      evidence, with a witness); inputs on which no rule concludes a decided variable;
      questions the solver could not decide, and where the check stopped when
      ``timeout`` ran out.

    Parameters
    ----------
    kb : KnowledgeBase
    timeout : float, optional
        Seconds for the whole check, building included; None: no limit. When it runs
        out, the check stops with the findings made so far and an info finding saying
        what was under way and which analyses did not run.
    analyses : sequence of str, optional
        Names of the analyses to run (default all, see ``REGISTRY``).

    Returns
    -------
    CheckReport

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... input age: int 0..120
    ... output approve: bool
    ... rule adult: age >= 18 -> approve
    ... rule old: age >= 200 -> approve
    ... rule senior: age >= 65 -> approve
    ... ''')
    >>> report = gr.check(kb)
    >>> [(f.severity, f.check, f.subjects) for f in report.findings]
    [('warning', 'dead-rule', ('old',)), ('warning', 'subsumed-rule', ('senior', 'adult')), ('info', 'uncovered', ('approve',))]
    >>> report.ok
    False
    """
    if not isinstance(kb, KnowledgeBase):
        raise TypeError(f"check needs a KnowledgeBase, got {type(kb).__name__}")
    timeout = timeout_seconds(timeout, none=True)
    known = {a.name: a for a in REGISTRY}
    if analyses is not None:
        unknown = [a for a in analyses if a not in known]
        if unknown:
            raise RuleError(f"unknown analysis {unknown[0]!r}; known: {', '.join(known)}")
    chosen = [a for a in REGISTRY if analyses is None or a.name in analyses]
    start = time.perf_counter()
    deadline = Deadline(timeout)
    ctx = Context(kb, timeout=timeout, deadline=deadline)
    try:
        _run(ctx, chosen, timeout)
    finally:
        # the pools point back at the context: no Z3 term may wait for the cyclic
        # garbage collector, which runs in any thread, outside Z3_LOCK
        ctx._pools.clear()
    ordered = sorted(ctx.findings, key=lambda f: _ORDER[f.severity])
    return CheckReport(tuple(ordered), time.perf_counter() - start,
                       tuple(a.name for a in chosen), kb)


def _run(ctx: Context, chosen: list, timeout: float | None) -> None:
    for i, analysis in enumerate(chosen):
        ctx.doing = ""
        try:
            ctx.findings.extend(analysis.run(ctx))
        except OutOfTime as stop:
            ctx.findings.extend(getattr(stop, "findings", ()))
            left = [a.name for a in chosen[i + 1:]]
            ctx.findings.append(Finding(
                analysis.name, "info",
                f"stopped: the {timeout:g} s timeout ran out while {stop.doing}"
                + (f"; not run: {', '.join(left)}" if left else "")
                + " (findings so far are kept; a larger timeout checks the rest)"))
            break
        except z3.Z3Exception as err:
            ctx.findings.append(Finding(analysis.name, "info",
                                        f"could not run: Z3 failed ({z3_message(err)})"))


def _templates(kb: KnowledgeBase) -> dict[str, str]:
    """The family (template) of each grounded member: ``cancer(anna)`` -> ``cancer``."""
    return {member: info.name for info in kb.program.families.values()
            for member in info.members.values()}


def _by_template(family: dict[str, str], findings) -> list[list[Finding]]:
    """Findings in their order, those that say the same of the groundings of the same
    templates (the message equal once each subject is replaced by its template) together."""
    groups: dict[tuple, list[Finding]] = {}
    for i, f in enumerate(findings):
        key: tuple = (i,)   # a finding about anything not grounded stays on its own
        if f.subjects and all(s in family for s in f.subjects):
            message = f.message
            for s in sorted(f.subjects, key=len, reverse=True):
                message = message.replace(s, "\0" + family[s] + "\0")
            message = _MEMBER.sub(lambda m: "\0" + family.get(m[0], m[0]) + "\0", message)
            key = (f.check, f.severity, message, tuple(family[s] for s in f.subjects))
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def _grouped_text(kb: KnowledgeBase, family: dict[str, str], group: list[Finding]) -> str:
    """A finding as printed, with the count of the groundings it stands for and its
    witness cut to the inputs its subjects read (the rest are in ``to_json``)."""
    first = group[0]
    text = f"{first.severity}: [{first.check}] {first.message}"
    if len(group) > 1:
        names = sorted({family[s] for f in group for s in f.subjects}, key=str)
        text += (f"\n    the same for {len(group)} groundings of {listed(names)} "
                 f"({listed([' / '.join(f.subjects) for f in group], limit=5)})")
    if first.witness is not None and len(first.witness):
        row = first_row(first.witness)
        read = _read_by(kb, first.subjects)
        shown = {k: v for k, v in row.items() if k in read} or row
        text += "\n    witness: " + listed([f"{k}={v!r}" for k, v in shown.items()], limit=30)
        if len(shown) < len(row):
            text += (f" (the inputs it reads; {len(row) - len(shown)} others in to_json() or "
                     "--json)")
    return text


def _read_by(kb: KnowledgeBase, subjects) -> set[str]:
    """The variables subjects (variables, rules, constraints) read, and those read by the
    decisions a subject constrains or concludes."""
    graph = kb.graph
    out: set[str] = set()
    for s in subjects:
        node = s if s in kb.variables else f"rule:{s}" if s in kb.rules else \
            f"constraint:{s}" if s in kb.constraints else None
        if node is None or node not in graph:
            continue
        out |= nx.ancestors(graph, node)
        for after in graph.successors(node):    # a rule's head, a constrained decision
            out |= nx.ancestors(graph, after)
    return out
