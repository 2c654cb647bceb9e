"""Proving properties of a knowledge base's crisp decisions with Z3."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import z3

from greybox.errors import SolverError

from . import _ast as A
from ._deadline import Deadline, OutOfTime
from ._kb import KnowledgeBase, parse_formula
from ._missing import not_false
from ._printer import expr_to_text
from ._z3 import Z3Encoding, make_solver, solve, witness_row, z3_message, z3_serialised
from .analyses._base import first_row

__all__ = ["Entailment", "entails"]


@dataclass(frozen=True)
class Entailment:
    """The answer to :func:`entails`.

    Attributes
    ----------
    property : str
        The property, as rule text.
    holds : bool
        True when it holds for every input within the declared types (neural variables
        anywhere within theirs) for which a decision exists.
    counterexample : DataFrame or None
        When it does not hold: one row of inputs and neural values on which the crisp
        decision violates the property, followed by the decided (and defined) values.
    confirmed : bool
        The counterexample was re-run through :func:`evaluate`, which reproduced the
        decisions and the violation (always True when the property holds).
    """

    property: str
    holds: bool
    counterexample: pd.DataFrame | None = None
    confirmed: bool = True

    def __bool__(self) -> bool:
        return self.holds

    def __str__(self) -> str:
        if self.holds:
            return f"proved: {self.property}"
        values = ", ".join(f"{k}={v!r}" for k, v in first_row(self.counterexample).items())
        return f"refuted: {self.property}\n  counterexample: {values}"

    def _repr_html_(self) -> str:
        head = f"<p><b>{'proved' if self.holds else 'refuted'}</b>: {html.escape(self.property)}</p>"
        if self.holds:
            return head
        return head + self.counterexample._repr_html_()

    def to_frame(self) -> pd.DataFrame:
        """The counterexample (an empty frame when the property holds)."""
        return self.counterexample if self.counterexample is not None else pd.DataFrame()


@z3_serialised
def entails(kb: KnowledgeBase, prop, *, bias: Mapping | None = None,
            timeout: float | None = 30.0) -> Entailment:
    """Prove that ``prop`` holds for the crisp decisions of ``kb`` on every input.

    The decision is the rules' one: each decided variable's score is
    ``bias + sum(weight * [body])`` (bool: True when the score is > 0; int/enum: the
    highest-scoring value), then the hard constraints (the best-scoring joint assignment
    that satisfies them). Inputs range over their declared types and neural variables
    over theirs. Inputs for which no decision satisfies the hard constraints are left out
    (:func:`check` reports them).

    Parameters
    ----------
    kb : KnowledgeBase
    prop : str or expression
        A formula over the knowledge base's variables, e.g. ``"age < 18 -> not approve"``.
    bias : mapping, optional
        As in :func:`evaluate`.
    timeout : float, optional
        Seconds for the whole call -- building the encoding as well as solving; when it
        runs out, SolverError says what was under way. None: no limit.

    Returns
    -------
    Entailment
        Truthy when the property holds; otherwise with a counterexample row.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... input age: int 0..120
    ... input income: real[0, 1000000]
    ... output approve: bool
    ... rule earns: income >= 30000 -> approve
    ... ''')
    >>> result = gr.entails(kb, "age < 18 -> not approve")
    >>> result.holds
    False
    >>> row = result.counterexample
    >>> bool(row["age"].iloc[0] < 18 and row["income"].iloc[0] >= 30000)
    True
    >>> gr.entails(kb, "income < 30000 -> not approve").holds
    True
    """
    deadline = Deadline(timeout)
    formula = parse_formula(prop, kb)
    text = prop if isinstance(prop, str) else expr_to_text(formula)
    try:
        enc = Z3Encoding(kb, bias=bias)
        solver = make_solver(None)
        solver.add(*enc.domain(("input", "neural")))
        for c in kb.constraints.values():
            if c.hard and not _mentions_decided(kb, c):
                solver.add(enc.expr(not_false(kb, c.formula)))
        solver.add(*enc.decision(deadline=deadline))
        solver.add(z3.Not(enc.expr(not_false(kb, formula))))   # known false somewhere
        deadline.check(f"encoding {text!r}")
        ms = deadline.solver_ms()
        if ms is not None:
            solver.set("timeout", ms)
        result = solve(solver)
        if result == z3.unsat:
            return Entailment(text, True)
        if result != z3.sat:
            reason = solver.reason_unknown()
            if deadline.expired() or reason in ("timeout", "canceled"):
                raise OutOfTime(f"ran out of time (timeout={timeout:g} s) while proving "
                                f"{text!r}; try a larger timeout", "solving")
            raise SolverError(f"Z3 could not decide {text!r} ({reason})")
        model = solver.model()
        data_names = enc.free_names(("input", "neural"))
        hidden = kb.layers
        shown = data_names + [n for n in kb.variables
                              if kb.variables[n].role in ("decided", "defined")
                              and not isinstance(kb.variables[n].type, A.TensorType)
                              and n not in hidden]
        row = witness_row(enc, model, shown)
    except z3.Z3Exception as err:
        raise SolverError(f"Z3 failed on {text!r}: {z3_message(err)}") from None
    return Entailment(text, False, row, _confirm(kb, row, formula, data_names, bias))


def _mentions_decided(kb, c) -> bool:
    from ._decisions import closure

    return any(kb.variables[n].role == "decided" for n in closure(kb, A.variables(c.formula)))


def _confirm(kb, row: pd.DataFrame, formula, data_names, bias) -> bool:
    """Re-run the counterexample through crisp evaluation."""
    from ._evaluate import evaluate

    ev = evaluate(kb, row[data_names], bias=bias)
    if ev.infeasible.iloc[0]:
        return False
    same = all(ev.decisions[n].iloc[0] == row[n].iloc[0] for n in kb.decided)
    return bool(same and ev.holds(A.Not(formula)).iloc[0])   # known false there
