"""The proofs an explanation shows for recursive defines: the path that makes them true.

The concepts table of :func:`~greybox.explain.explain` names, for a derived concept, the most
probable assignments of the network values it rests on -- which it cannot list for a
recursive define over many neural facts (``reach(a, d)`` reads every edge). There the
proof is the crisp one of the model's decision (:meth:`Evaluation.proof
<greybox.rules.Evaluation.proof>` on what ``predict`` decides): the shortest chain of facts
that makes it true, each network value with its probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["recursive_proofs"]


def recursive_proofs(model, batch, concepts: pd.DataFrame, values: dict) -> pd.DataFrame:
    """``concepts`` with the empty proof of each recursive define that the model decides
    true filled in (``reach(a, d) = True because edge(a, b) (p=0.97) and edge(b, d)
    (p=0.91)``); unchanged where nothing is recursive."""
    kb = model.kb
    if kb.recursion is None or not len(concepts):
        return concepts
    todo = np.flatnonzero((concepts["concept"].isin(kb.recursion.original)
                           & (concepts["proof"] == "")).to_numpy())
    if not len(todo):
        return concepts
    ev, _ = model.decision.evaluate(batch)
    out = concepts.copy()
    for k in todo:
        name, row = out["concept"].iat[k], int(out["row"].iat[k])
        proof = ev.proof(name, row)
        if proof.holds:
            facts = [_with_probability(kb, f, values, row) for f in proof.facts]
            out.iat[k, out.columns.get_loc("proof")] = f"{name} = True because " + \
                " and ".join(facts)
    return out


def _with_probability(kb, fact: str, values: dict, row: int) -> str:
    """A fact, with the probability of a network's bool value where it is one."""
    name, negated = (fact[4:], True) if fact.startswith("not ") else (fact, False)
    var = kb.variables.get(name)
    if var is None or var.role != "neural" or name not in values or values[name].dim() != 1:
        return fact
    p = float(values[name][row])
    return f"{fact} (p={1 - p if negated else p:.2f})"
