"""A row as facts, and running the decision function on changed rows.

Shared by every backend: the facts of a row (table inputs, neural concept values, residual
logits), what ``predict``'s decision function says on a changed row, and the steps that
turn a solver's answer into values a person can apply (put back, pulled to the threshold,
rounded to the data's precision) -- each checked against that decision function.
"""

from __future__ import annotations

import numpy as np
import torch

from greybox import Batch
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import MISSING, missing_key

__all__ = ["concepts_after", "decision_on", "decisions_on", "distance", "inputs_after", "num", "overridden",
           "person_step", "pull_back", "residual_facts", "round_changes", "row_position",
           "row_state", "sampled_differs", "sampled_refuted", "show"]


def show(kb, name, code):
    """The value a fact's code stands for (a residual logit is a real; a missing value is
    None)."""
    if code is MISSING:
        return None
    if name.startswith("residual:"):
        return float(code)
    return A.domain(kb.variables[name].type).decode(code)


def num(value) -> float:
    return float(value) if not isinstance(value, str) and value is not None else 0.0


def residual_facts(model, batch, row: int) -> dict:
    """The residual networks' logits on a row, as named facts (``residual:NAME`` for a
    bool, ``residual:NAME=VALUE`` per value otherwise)."""
    if model.residual is None:
        return {}
    sub = batch.take(torch.as_tensor([row]))
    with torch.no_grad():
        res = model.residual_scores(sub)
    out = {}
    for name, r in res.items():
        r = r.detach().double().cpu().reshape(-1)
        t = model.kb.variables[name].type
        if isinstance(t, A.BoolType):
            out[f"residual:{name}"] = float(r[0])
        else:
            for k, v in enumerate(A.domain_values(t)):
                out[f"residual:{name}={v}"] = float(r[k])
    return out


def pull_back(kb, changes: list, facts: dict, after: dict, still_changed, *,
              steps: int, precision=None, ways: int = 16, limits=None) -> None:
    """Move each changed real fact back towards its original value as far as
    ``still_changed`` allows (strict thresholds have no closest point, and solvers stop
    short of the infimum); updates ``after`` and ``changes`` in place.

    A search like bisection to ``steps`` halvings, ``ways - 1`` points of the interval at
    a time: ``still_changed(list of values) -> list of bools`` is asked once per round
    (one evaluation of the model for all the points), the interval's end that keeps the
    change moving to the first point that keeps it. ``precision(name)``: a step below
    which the search stops (the value is rounded to it afterwards). ``limits(name,
    value) -> (lo, hi)``: where the value may move (:func:`change_range`); a row value
    outside them is pulled towards only as far as their end."""
    per_round = max(1, int(np.log2(ways)))
    for change in changes:
        n = change["fact"]
        if n not in kb.variables or not isinstance(kb.variables[n].type, A.RealType) \
                or facts[n] is MISSING or after[n] is MISSING:
            continue
        start, end = float(facts[n]), float(after[n])
        if limits is not None:     # a row beyond the range: towards it, up to its end
            start = min(max(start, limits(n, end)[0]), limits(n, end)[1])
        lo, hi = 0.0, 1.0     # fraction of the move: hi keeps the change, lo does not
        n_steps = steps
        step = precision(n) if precision is not None else 0.0
        if step > 0 and end != start:
            n_steps = min(steps, max(1, int(np.ceil(np.log2(abs(end - start) / step))) + 2))
        for _ in range(-(-n_steps // per_round)):
            points = [lo + (hi - lo) * j / ways for j in range(1, ways)]
            trials = []
            for mid in points:
                trial = dict(after)
                trial[n] = start + (end - start) * mid
                trials.append(trial)
            kept = still_changed(trials)
            first = next((j for j, k in enumerate(kept) if k), None)
            if first is None:
                lo = points[-1]
            else:
                hi = points[first]
                lo = points[first - 1] if first else lo
        # hi == 1: the solver's value itself (start + (end - start) * 1.0 can round to
        # another float, on the threshold's wrong side)
        after[n] = end if hi == 1.0 else start + (end - start) * hi
        change["after"] = show(kb, n, after[n])


def inputs_after(model, batch, row: int, after: dict) -> dict:
    """The row with the table inputs in ``after`` changed, as :meth:`GreyBox.predict`
    reads it: every input's single value (enums by label) where the model's inputs are
    all table inputs; where it has tensor inputs, one-row arrays (each table value in a
    list, each tensor input the row's tensor with its row axis), so that the mapping is
    one row either way."""
    kb = model.kb
    sub = batch.take(torch.as_tensor([row]))
    tensors = {n: sub.values[n].detach().cpu() for n in kb.inputs
               if isinstance(kb.variables[n].type, A.TensorType)}
    out = {}
    for n in kb.inputs:
        if n in tensors:
            out[n] = tensors[n]
            continue
        code = after[n] if n in after else \
            MISSING if kb.variables[n].optional and sub.columns[missing_key(n)][0] else \
            sub.columns[n][0]
        code = code.item() if hasattr(code, "item") else code
        value = show(kb, n, code)
        out[n] = [value] if tensors else value
    return out


def overridden(model, data, concepts: dict):
    """``data`` read by the model (a :class:`greybox.Batch`) with each neural concept in
    ``concepts`` (name -> value) held at that value: its network's output on the row is
    replaced by logits whose most probable value it is (a bool's logit +-10^4, a finite
    concept's one-hot of 0 and -10^4, a real's value). ``model.predict`` on it is the
    decision function with those concepts given -- what a counterfactual's ``verified``
    runs."""
    changed = model.batch(data)
    if not concepts:
        return changed
    kb = model.kb
    with torch.no_grad():
        logits = model.run_networks(changed)
    overrides = {}
    for n, value in concepts.items():
        var = kb.variables[n]
        o = logits[n].detach().clone()
        if isinstance(var.type, A.BoolType):
            o[:] = 1e4 if value else -1e4
        elif A.is_finite_type(var.type):
            o[:] = -1e4
            o[:, A.domain(var.type).index(value)] = 0.0
        else:
            o[:] = float(value)
        overrides[n] = o
    changed.overrides = overrides
    return changed


def concepts_after(kb, after: dict) -> dict:
    """The neural concepts' values among a counterfactual's facts (name -> value)."""
    return {n: show(kb, n, code) for n, code in after.items()
            if n in kb.variables and kb.variables[n].role == "neural"}


def decision_on(model, batch, row, output, after: dict):
    """The model's decision function (what ``predict`` returns) on the row with the facts
    in ``after`` (table inputs changed; neural concepts held at their values where they
    are facts: :func:`overridden`); None when no decision satisfies the hard constraints
    there."""
    return decisions_on(model, batch, row, output, [after])[0]


def decisions_on(model, batch, row, output, afters: list) -> list:
    """:func:`decision_on` for each of several versions of the row, in one evaluation
    (one per distinct set of held neural concepts). The versions go to the decision
    function as codes (:meth:`greybox.Batch.variants`), as ``predict`` would read them."""
    if not afters:
        return []
    kb = model.kb
    concepts = [concepts_after(kb, a) for a in afters]
    if any(c != concepts[0] for c in concepts[1:]):
        return [decisions_on(model, batch, row, output, [a])[0] for a in afters]
    changes = [{n: c for n, c in a.items() if n in kb.variables
                and kb.variables[n].role == "input"} for a in afters]
    ev, _ = model.decision.evaluate(overridden(model, batch.variants(kb, row, changes),
                                               concepts[0]))
    d = A.domain(kb.variables[output].type)
    got = [d.decode(c) for c in ev.code(output).tolist()]
    return [None if bad else g for g, bad in zip(got, ev.infeasible_rows.tolist())]


def change_range(model, kb, name: str, value: float) -> tuple[float, float]:
    """Where polishing may move real fact ``name``, now at ``value`` (a solver's answer):
    an input's declared bounds and, on a side declared without one, its training range
    -- unless ``value`` already lies beyond it: the Z3 backend ranges over every real, and
    its answer clipped back into the training range would no longer change the decision.
    Unbounded for a neural value."""
    if kb.variables[name].role != "input":
        return -np.inf, np.inf
    lo, hi, from_data = model.input_range(name)
    if from_data and not lo <= value <= hi:
        t = kb.variables[name].type
        lo = float(t.lo) if getattr(t, "lo", None) is not None else -np.inf
        hi = float(t.hi) if getattr(t, "hi", None) is not None else np.inf
    return lo, hi


def person_step(model, name: str) -> float:
    """The step a counterfactual value of a real input is rounded to: the data's
    precision, coarsened to about a hundredth of the input's spread (``17.71``, not
    ``17.708656311035156``)."""
    step = model.input_step(name)
    spread = float(model.spread(name))
    if spread > 0 and np.isfinite(spread):
        step = max(step, 10.0 ** np.floor(np.log10(spread / 100.0)))
    return step


def decimals(step: float) -> int:
    return max(0, int(-np.floor(np.log10(step)))) if step > 0 else 12


def round_changes(model, kb, facts: dict, after: dict, changes: list, differs_all, *,
                  limits=None) -> bool:
    """Round each changed real table input away from its original value to a person's
    precision (so it lands on the decided side of a threshold with a margin), pushing a
    step further while the model's decision does not differ; keeps the unrounded values
    when no rounding within 3 steps works. Returns whether the decision differs.
    ``differs_all(list of values) -> list of bools``: all the roundings and the unrounded
    values are decided in one evaluation. ``limits(name, value) -> (lo, hi)``: where a
    value may move (default :func:`change_range`)."""
    if limits is None:
        def limits(n, v):
            return change_range(model, kb, n, v)
    reals = [c["fact"] for c in changes if c["fact"] in kb.variables
             and isinstance(kb.variables[c["fact"]].type, A.RealType)
             and kb.variables[c["fact"]].role == "input"
             and facts[c["fact"]] is not MISSING and after[c["fact"]] is not MISSING]
    if not reals:
        return differs_all([after])[0]
    steps = {n: person_step(model, n) for n in reals}
    trials = []
    for extra in range(4):
        trial = dict(after)
        for n in reals:
            step, before, value = steps[n], float(facts[n]), float(after[n])
            if step <= 0:
                continue
            up = value > before
            k = np.ceil(value / step - 1e-9) if up else np.floor(value / step + 1e-9)
            k += extra if up else -extra
            v = round(float(k * step), decimals(step))
            lo, hi = limits(n, value)
            trial[n] = min(max(v, lo), hi)
        trials.append(trial)
    found = differs_all([*trials, after])
    for trial, ok in zip(trials, found):
        if ok:
            after.update(trial)
            for c in changes:
                if c["fact"] in trial:
                    c["after"] = show(kb, c["fact"], trial[c["fact"]])
            return True
    return found[-1]


def distance(model, kb, changes: list, facts: dict, after: dict, minimize: str,
             cost: dict | None = None) -> float:
    """A counterfactual's size: its number of changes (``minimize="count"``) or the sum of
    its real and int changes in units of each input's spread (a changed bool, enum or
    neural class counts 1); each change weighted by ``cost`` (name -> weight, default 1)."""
    total = 0.0
    cost = cost or {}
    for c in changes:
        n = c["fact"]
        w = float(cost.get(n, 1.0))
        t = kb.variables[n].type if n in kb.variables else None
        if minimize == "count" or not isinstance(t, (A.RealType, A.IntType)) or \
                kb.variables[n].role == "neural" and isinstance(t, A.IntType) or \
                facts[n] is MISSING or after[n] is MISSING:   # a value filled in: 1
            total += w
        else:
            spread = float(model.spread(n)) if n in model.feature_names else 1.0
            total += w * abs(float(after[n]) - float(facts[n])) / max(spread, 1e-12)
    return total



def sampled_differs(model, kb, facts: dict, fixed: dict, output: str, decision, rng,
                    n: int = 64) -> bool:
    """Whether one of ``n`` random completions of the inputs not in ``fixed`` (uniform
    within their ranges, the range's ends included) changes ``predict``'s decision."""
    return sampled_refuted(model, kb, facts, [fixed], output, decision, rng, n)[0]


def sampled_refuted(model, kb, facts: dict, fixeds: list, output: str, decision, rng,
                    n: int = 64) -> list[bool]:
    """For each set of fixed facts in ``fixeds``: whether one of ``n`` random completions
    of the other inputs (uniform within their ranges, the range's ends included) changes
    ``predict``'s decision -- all of them in one run of the decision function, on the
    completions' codes (as ``predict`` reads them: :meth:`greybox.Batch.from_codes`). A
    set leaving free an input with an unbounded range is never refuted (it cannot be
    sampled)."""
    k = len(fixeds)
    if k == 0:
        return []
    sampleable = np.ones(k, bool)
    cols = {}
    for name, code in facts.items():
        var = kb.variables[name]
        held = np.repeat([name in f for f in fixeds], n)
        drawn = _drawn(model, kb, name, held, n, k, rng)
        if drawn is None:   # an unbounded range: only the sets holding it are sampled
            sampleable &= np.asarray([name in f for f in fixeds])
            held = np.ones(n * k, bool)
            drawn = np.zeros(n * k, _code_dtype(var.type))
        if var.role != "input":
            continue
        if var.optional:
            cols[missing_key(name)] = held & (code is MISSING)
        if code is not MISSING:
            drawn[held] = code
        cols[name] = drawn
    batch = Batch.from_codes(kb, cols, n * k, device=model.device)
    target = A.domain(kb.variables[output].type).code(decision)
    differs = [(ev.code(output) != target) & ~ev.infeasible_rows
               for _, ev, _ in model.decision.chunks(batch, 4096)]
    differs = np.concatenate(differs) if differs else np.zeros(0, bool)
    return [bool(x) for x in differs.reshape(k, n).any(axis=1) & sampleable]


def _code_dtype(t):
    """How a table input's codes are held (as the model reads them)."""
    return np.int64 if isinstance(t, A.EnumType) else bool if isinstance(t, A.BoolType) \
        else np.float64


def _drawn(model, kb, name: str, held: np.ndarray, n: int, k: int, rng):
    """``n`` random codes of input ``name`` per set of ``k``, uniform within its range
    (a real's ends drawn first in each set), or None where its range is unbounded."""
    t = kb.variables[name].type
    if held.all():
        return np.zeros(n * k, _code_dtype(t))
    if isinstance(t, A.EnumType):
        return rng.integers(0, len(t.values), n * k)
    if isinstance(t, A.BoolType):
        return rng.integers(0, 2, n * k).astype(bool)
    lo, hi, _ = model.input_range(name)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if isinstance(t, A.IntType):
        return rng.integers(int(lo), int(hi) + 1, n * k).astype(np.float64)
    drawn = rng.uniform(lo, hi, n * k)
    drawn[0::n], drawn[1::n] = lo, hi
    return drawn


def row_position(index, row) -> int:
    """The position of the row labelled ``row`` in ``index`` (None: the first row);
    ModelError listing the labels when it is not there, or is there several times."""
    if row is None:
        return 0
    try:
        pos = index.get_loc(row)
    except (KeyError, TypeError):
        pos = None
    if not isinstance(pos, (int, np.integer)):
        shown = ", ".join(repr(x) for x in list(index[:8]))
        more = ", ..." if len(index) > 8 else ""
        what = "is not a row label of the data" if pos is None else \
            "names several rows (the index repeats it)"
        raise ModelError(f"row {row!r} {what}; rows are named by the data's index labels: "
                         f"{shown}{more}")
    return int(pos)


def row_state(model, batch, row: int, output: str) -> tuple[dict, object]:
    """The row's facts (name -> code: enum index, int value, bool, float) and the decision
    function's value of ``output`` there, from one evaluation. Neural concepts take the
    values the decision function used (the networks' most probable values, repaired
    where they break a hard constraint). ModelError when no decision satisfies the hard
    constraints on the row, or the output is real-valued."""
    kb = model.kb
    if not A.is_finite_type(kb.variables[output].type):
        raise ModelError(f"{output!r} is real-valued; reasons explain finite decisions")
    ev, _ = model.decision.evaluate(batch.take(torch.as_tensor([row])))
    if bool(ev.infeasible_rows[0]):
        raise ModelError(f"row {batch.index[row]!r}: no decision satisfies the hard "
                         "constraints, so there is no decision to explain")
    facts = {}
    for name in kb.inputs:
        if name in batch.columns:
            v = batch.columns[name][row]
            facts[name] = v.item() if hasattr(v, "item") else v
            if kb.variables[name].optional and batch.columns[missing_key(name)][row]:
                facts[name] = MISSING
    for name in kb.neural:
        v = ev.code(name)[0]
        d = A.domain(kb.variables[name].type)
        facts[name] = d.code(d.decode(v))
    return facts, A.domain(kb.variables[output].type).decode(ev.code(output)[0])
