"""The backend protocol: what reason, counterfactual and verify ask a solver."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NO_WISHES", "Backend", "Problem", "Wishes"]


@dataclass(frozen=True)
class Wishes:
    """What a person asks of a counterfactual beyond "closest, decision differs", in the
    facts' codes: ``target`` the decision wanted (None: any other than the row's);
    ``ranges`` name -> (lo, hi), where a real or int fact may move (``increase_only``
    and ``decrease_only`` become one-sided ranges); ``values`` name -> the codes an
    enum or bool fact may take when changed; ``cost`` name -> weight of its change in
    the objective (count and L1); ``exclude``: change sets (frozensets of names) of
    earlier answers -- each answer keeps at least one fact of every one unchanged;
    ``fill_missing``: an optional input missing in the row may be given a value (else it
    stays missing; a value present in the row is never erased). A fact may always keep
    its row value."""

    target: object = None
    ranges: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    exclude: tuple = ()
    fill_missing: bool = False

    def weight(self, name: str) -> float:
        return float(self.cost.get(name, 1.0))


#: no wishes: the closest change to any other decision
NO_WISHES = Wishes()


class Problem:
    """One row's decision, compiled by a backend.

    Attributes: ``facts`` (name -> code: enum index, int value, bool, float; residual
    logits at the concept level as ``residual:NAME``), ``decision`` (the decision
    function's value for the row), ``level``.
    """

    facts: dict
    decision: object
    level: str

    def differs(self, fixed: dict):
        """Values of every fact, with ``fixed`` held, under which the decision is not
        ``decision``; None when there are none."""
        raise NotImplementedError

    def forces(self, fixed: dict) -> bool:
        """Whether the facts in ``fixed`` guarantee the decision: ``differs(fixed) is
        None``, where a backend may skip reading the witness."""
        return self.differs(fixed) is None

    def core(self, fixed: dict) -> dict:
        """After ``differs(fixed)`` returned None: a subset of ``fixed`` that already
        guarantees the decision (an unsat core where the backend has one)."""
        return fixed

    def closest(self, *, minimize: str, immutable, spreads: dict, wishes: Wishes = NO_WISHES):
        """The facts closest to the row's whose decision differs (is ``wishes.target``
        where it is set), within ``wishes``; None when none."""
        raise NotImplementedError

    def assumptions(self, fixed=()) -> tuple:
        """What a result assumes beyond the declared types (training ranges of the free
        inputs declared without bounds)."""
        return ()

    def why_none(self) -> str:
        """Why no change of the facts changes the decision, in terms of the model (or
        an empty string)."""
        return ""

    def held(self, name: str) -> bool:
        """Whether ``name`` is a fact a counterfactual never changes (a residual logit)."""
        return name.startswith("residual:")


class Backend:
    """A solver backend: compiles a row's decision into a :class:`Problem` and refutes
    properties of the whole model."""

    name = "?"

    def problem(self, model, batch, row: int, output: str, *, level: str, max_relus: int,
                timeout: float) -> Problem:
        raise NotImplementedError

    def refute(self, model, formula, *, level: str, max_relus: int, timeout: float):
        """``(row, assumptions)``: a one-row DataFrame of inputs (and, at the concept
        level, neural values and residual logits) on which ``formula`` fails, or None;
        and what the search assumed."""
        raise NotImplementedError
