"""A counterfactual replayed through the decision function (:class:`Judge`: ``predict``'s,
or an additive output's number against its target, :class:`Replay`), and a solver's answer
made into values a person can apply, each step replayed: solver noise and unneeded changes
put back, changes pushed over a threshold they stop within the solver's tolerance of,
pulled back to it, rounded to the data's precision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from greybox.rules import ast as A
from greybox.rules.engine import MISSING

from ._protocol import NO_WISHES, Wishes
from ._row import (
    change_range,
    decision_on,
    decisions_on,
    num,
    person_step,
    pull_back,
    round_changes,
)

__all__ = ["Judge", "Replay", "drop_noise"]


@dataclass(frozen=True)
class Replay:
    """Where a counterfactual is replayed: ``model``'s decision function, its value of
    ``output``, accepted where ``accept(value)`` (an additive output's target, found on
    a threshold model but checked on the number ``predict`` returns)."""

    model: object
    output: str
    accept: Callable


class Judge:
    """A counterfactual's facts replayed through the decision function (``replay``'s,
    where given): whether a value of the output is one the search asked for
    (``reached``), whether facts reach one (``applied``; ``applied_all``: many, decided
    in one evaluation) and the value they give (``decision``)."""

    def __init__(self, model, p, batch, row: int, output: str, wishes: Wishes,
                 replay: Replay | None = None):
        self.model, self.output = (model, output) if replay is None else \
            (replay.model, replay.output)
        self.batch, self.row = batch, row
        self.replay, self.wishes, self.p = replay, wishes, p

    def reached(self, got) -> bool:
        replay, wishes, p = self.replay, self.wishes, self.p
        if replay is not None:
            return got is not None and bool(replay.accept(got))
        if wishes.target is not None:
            return got == wishes.target
        return got is not None and got != p.decision

    def applied(self, trial):
        return self.applied_all([trial])[0]

    def applied_all(self, trials):
        return [self.reached(got)
                for got in decisions_on(self.model, self.batch, self.row, self.output, trials)]

    def decision(self, after: dict):
        return decision_on(self.model, self.batch, self.row, self.output, after)


def drop_noise(facts: dict, after: dict, judge: Judge) -> None:
    """Put back, in ``after``, the changes within solver noise of the row's value -- unless
    the decision needs them. Updates ``after`` in place."""
    # solver noise is not a change -- unless the decision needs it: on a row whose sum
    # sits exactly on a threshold (0.1 + 0.2 + 0.3 > 0.6) the closest change is that small
    noise = {n: facts[n] for n, code in after.items()
             if isinstance(code, float) and code != facts[n] and facts[n] is not MISSING
             and abs(code - float(facts[n])) <= 1e-9 * max(1.0, abs(float(facts[n])))}
    if noise:
        trial = {**after, **noise}
        if judge.applied(trial) or (not judge.applied(after)
                                    and any(trial[n] != facts[n] for n in trial)):
            after.update(noise)


def _polish(model, p, changes: list, after: dict, applied, applied_all,
            wishes: Wishes = NO_WISHES) -> None:
    """A solver's counterfactual made into values a person can apply, each step checked by
    the decision function: changes that are not needed put back; a real change that
    stops within the solver's tolerance of a threshold pushed over it; real changes
    pulled back to the threshold, then rounded to the data's precision on the decided
    side -- each within ``wishes``' ranges. Updates ``changes`` and ``after`` in place."""
    kb, facts = p.kb, p.facts

    def limits(n, v):
        lo, hi = change_range(model, kb, n, v)
        a, b = wishes.ranges.get(n, (None, None))
        return (lo if a is None else max(lo, a)), (hi if b is None else min(hi, b))

    if applied(after):
        for change in sorted(changes, key=lambda c: abs(num(c["after"]) - num(c["before"]))):
            trial = dict(after)
            trial[change["fact"]] = facts[change["fact"]]
            if applied(trial):
                after.update(trial)
        changes[:] = [c for c in changes if after[c["fact"]] != facts[c["fact"]]]
    reals = [c["fact"] for c in changes
             if c["fact"] in kb.variables and isinstance(kb.variables[c["fact"]].type,
                                                         A.RealType)
             and facts[c["fact"]] is not MISSING]   # a filled-in value is not pushed
    # pushed by growing hairs, each real alone first (a change can sit on two
    # thresholds, one the push must cross and one it must not), then all together
    base = dict(after)
    groups = [[n] for n in reals] + ([reals] if len(reals) > 1 else [])
    for k in range(10):
        if not reals or applied(after):
            break
        pushed = {}
        for n in reals:
            step = float(base[n]) - float(facts[n])
            moved = float(base[n]) + np.sign(step) * max(abs(float(facts[n])), 1.0) \
                * 1e-9 * 10 ** k
            lo, hi = limits(n, float(base[n]))
            pushed[n] = float(np.clip(moved, lo, hi))
        trials = [{**base, **{n: pushed[n] for n in group}} for group in groups]
        for trial, ok in zip(trials, applied_all(trials)):   # decided in one evaluation
            if ok:
                after.update(trial)
                break
    if applied(after):
        pull_back(kb, changes, facts, after, applied_all, steps=24,
                  precision=lambda n: person_step(model, n) / 4
                  if kb.variables[n].role == "input" else 0.0,
                  limits=limits)
    round_changes(model, kb, facts, after, changes, applied_all, limits=limits)
