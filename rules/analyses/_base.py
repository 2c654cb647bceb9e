"""The protocol every rule-base analysis follows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import z3

from .._deadline import Deadline, OutOfTime
from .._z3 import Z3Encoding, make_solver, solve, witness_row

__all__ = ["Analysis", "Context", "Finding", "SEVERITIES", "keep_partial"]

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One result of :func:`greybox.rules.check`.

    ``check`` names the analysis, ``subjects`` the rules, constraints or variables
    concerned, ``witness`` (when there is one) a row of input values showing the finding.
    """

    check: str
    severity: str
    message: str
    subjects: tuple[str, ...] = ()
    witness: pd.DataFrame | None = None

    def __str__(self) -> str:
        text = f"{self.severity}: [{self.check}] {self.message}"
        if self.witness is not None and len(self.witness):
            text += "\n    witness: " + ", ".join(
                f"{k}={v!r}" for k, v in first_row(self.witness).items())
        return text

    def to_dict(self) -> dict:
        witness = None
        if self.witness is not None and len(self.witness):
            witness = first_row(self.witness)
        return {"check": self.check, "severity": self.severity, "message": self.message,
                "subjects": list(self.subjects), "witness": witness}


def first_row(frame: pd.DataFrame) -> dict:
    """The first row as plain Python values, each column keeping its own type (a row of a
    mixed frame would turn ints into floats)."""
    out = {}
    for k in frame.columns:
        v = frame[k].iloc[0]
        out[k] = v.item() if hasattr(v, "item") else v
    return out


class Context:
    """What an analysis works with: the knowledge base, its Z3 encoding, the deadline of
    the whole check, and the findings of the analyses that ran before."""

    def __init__(self, kb, *, timeout: float | None, deadline: Deadline | None = None):
        self.kb = kb
        self.enc = Z3Encoding(kb)
        self.timeout = timeout
        self.deadline = deadline or Deadline(timeout)
        self.findings: list[Finding] = []
        #: what the analysis running now is doing (named when the deadline passes)
        self.doing = ""
        self._pools: dict = {}

    def _constraints_hold(self) -> bool:
        """Hard constraints are assumed unless a contradiction among them was found."""
        return not any(f.check == "contradiction" and f.severity == "error"
                       for f in self.findings)

    def pool(self):
        """Points within the types (and hard constraints, as :meth:`solver` holds them)
        with each rule body's truth there (see :mod:`._pool`)."""
        from ._pool import Pool

        key = self._constraints_hold()
        if key not in self._pools:
            self.deadline.check("drawing sample points")
            self._pools[key] = Pool(self, constraints=key)
        return self._pools[key]

    def solver(self, *, constraints: bool = True) -> z3.Solver:
        """A solver holding the declared types of all non-defined variables and, unless
        told otherwise, the hard constraints -- left out too when they contradict each
        other (a contradiction already reported would make every later question vacuous)."""
        s = make_solver(None)
        s.add(*self.enc.domain())
        if constraints and self._constraints_hold():
            s.add(*self.enc.hard_constraints())
        return s

    def check(self, solver: z3.Solver, *assumptions, doing: str = "") -> z3.CheckSatResult:
        """``solver.check`` within the time left; :class:`OutOfTime` once it has run out
        (also when it runs out during this call)."""
        doing = doing or self.doing or "solving"
        self.deadline.check(doing)
        ms = self.deadline.solver_ms()
        if ms is not None:
            solver.set("timeout", ms)
        result = solve(solver, *assumptions)
        if result == z3.unknown and self.deadline.expired():
            self.deadline.check(doing)
        return result

    def witness(self, model: z3.ModelRef, roles=("input", "neural")) -> pd.DataFrame:
        """A row of the values ``model`` gives the variables with these roles."""
        return witness_row(self.enc, model, self.enc.free_names(roles))

    def undecided(self, analysis: str, what: str, solver: z3.Solver,
                  subjects=()) -> Finding:
        return Finding(analysis, "info",
                       f"could not decide {what} ({solver.reason_unknown()})", tuple(subjects))


@contextmanager
def keep_partial(findings: list) -> Iterator[None]:
    """Hand the findings made so far to :func:`~greybox.rules.check` when the deadline
    passes inside the block (they are reported, then the check stops)."""
    try:
        yield
    except OutOfTime as stop:
        stop.findings = list(findings)
        raise


class Analysis:
    """One analysis of a knowledge base: ``run(ctx)`` returns its findings."""

    #: short name, shown in reports and used to select analyses
    name: str = ""
    #: what it looks for, one line
    description: str = ""

    def run(self, ctx: Context) -> list[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError
