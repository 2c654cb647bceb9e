"""A solver's counterfactual made into values a person can apply, each step replayed
through the decision function: unneeded changes put back, changes pushed over a threshold
they stop within the solver's tolerance of, pulled back to it, rounded to the data's
precision."""

from __future__ import annotations

import numpy as np

from greybox.rules import MISSING
from greybox.rules import ast as A

from ._protocol import NO_WISHES, Wishes
from ._row import change_range, num, person_step, pull_back, round_changes

__all__: list[str] = []


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
