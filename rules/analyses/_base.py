"""The protocol every rule-base analysis follows."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import z3

from .._z3 import Z3Encoding, make_solver, solve, witness_row

__all__ = ["Analysis", "Context", "Finding", "SEVERITIES"]

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
    """What an analysis works with: the knowledge base, its Z3 encoding, the time limit
    per solver call, and the findings of the analyses that ran before."""

    def __init__(self, kb, *, timeout: float | None):
        self.kb = kb
        self.enc = Z3Encoding(kb)
        self.timeout = timeout
        self.findings: list[Finding] = []

    def solver(self, *, constraints: bool = True) -> z3.Solver:
        """A solver holding the declared types of all non-defined variables and, unless
        told otherwise, the hard constraints -- left out too when they contradict each
        other (a contradiction already reported would make every later question vacuous)."""
        s = make_solver(self.timeout)
        s.add(*self.enc.domain())
        if constraints and not any(f.check == "contradiction" and f.severity == "error"
                                   for f in self.findings):
            s.add(*self.enc.hard_constraints())
        return s

    def check(self, solver: z3.Solver, *assumptions) -> z3.CheckSatResult:
        return solve(solver, *assumptions)

    def witness(self, model: z3.ModelRef, roles=("input", "neural")) -> pd.DataFrame:
        """A row of the values ``model`` gives the variables with these roles."""
        return witness_row(self.enc, model, self.enc.free_names(roles))

    def undecided(self, analysis: str, what: str, solver: z3.Solver,
                  subjects=()) -> Finding:
        return Finding(analysis, "info",
                       f"could not decide {what} ({solver.reason_unknown()})", tuple(subjects))


class Analysis:
    """One analysis of a knowledge base: ``run(ctx)`` returns its findings."""

    #: short name, shown in reports and used to select analyses
    name: str = ""
    #: what it looks for, one line
    description: str = ""

    def run(self, ctx: Context) -> list[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError
