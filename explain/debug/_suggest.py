"""Repair suggestions: small rule edits that fix failing predictions, exact and certified.

How :func:`suggest` searches (``Debugger.suggest``):

1. **The decision taken apart.** One run of the model's decision function
   (``model.decision.evaluate``, what ``predict`` runs) gives every rule's body on every
   row and, per row, the score of each value of the output (bias, residual and the rules'
   weights; ``-inf`` where the hard constraints forbid the value). For a rule concluding
   the output (and not reading the output's own decision), an edit changes one column of
   that table, so the decision of every row under any weight or threshold of the rule is
   known without re-running the model.
2. **Exact sweeps.** A rule's weight moves each firing row's score linearly: the row's
   decision flips at one value of the weight. A number compared in the rule's body (``x >
   5``: the ``5``) flips the comparison at the row's own value of the other side; the body
   is evaluated with that comparison forced true and forced false, so the rule's truth, and
   the decision, on either side of the row's breakpoint are known. Sorting the breakpoints
   and adding up the rows' changes gives, for every interval between breakpoints, how many
   target failures the value fixes and how many correct rows it breaks: the best interval
   is exact. The value suggested is the shortest decimal in the middle of the best
   interval (a number a person would write; at an interval's closed end where the
   comparison allows, so ``age >= 18`` stays an integer), nearest the current value
   among equal intervals.
3. **Everything else by evaluation.** Switching a rule off, removing a hard constraint,
   the numbers of hard constraints (two evaluations each, the comparison forced true and
   false, then the same sweep), and rules on other decided variables are scored by crisp
   evaluations of the edited rules with the networks' and the residual's outputs held
   (they do not depend on the rules).
4. **Pairs** (``max_edits=2``): a bounded search, documented as such. The
   :data:`PAIR_FIRST` best single edits on rules concluding the output are each applied,
   and the exact sweeps of step 2 are run again on top of it for the
   :data:`PAIR_SECOND` other parameters (a weight -- or switching the rule off -- or a
   number of a rule concluding the output) that reach the most aimed failures the first
   edit leaves; a pair is kept when it scores better than its first edit alone. The
   second value is exact given the first; the pair as a whole is not proved optimal.
5. **Checked by predict, then certified.** The candidates, in the order of their estimated
   target failures fixed minus correct rows broken, run through :func:`measure` until
   enough distinct suggestions are kept (``top``, three times as many with validation, at
   most :data:`MAX_MEASURED` runs): the same rebuild and ``predict`` as
   ``Debugger.what_if``, so ``dbg.what_if(*s.edits)`` reports exactly ``s.fixed`` and
   ``s.broken``; then Z3 certifies each (:func:`measure`). Where the best value of one
   number breaks a ``keep`` property, the best value that keeps it is searched for by
   bisection over the sweep's intervals (one proof per step; exact when the values that
   keep the property form an interval around the current one).

A bias change is suggested as the rule it equals (the rule language has no bias
statement; ``Debugger.export`` writes a learned bias the same way): ``rule bias_shift_out
weight b fixed: true -> out`` adds ``b`` to the score of ``out`` on every row, its best
value swept exactly like a weight (propositional models).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from greybox.errors import ModelError
from greybox.rules import ast as A

from ._edits import (
    AddStatement,
    Disable,
    Edit,
    Remove,
    SetThreshold,
    SetWeight,
    _find,
    _numbers,
)
from ._measure import _cost, _Measure, _rows, at_least_one
from ._scene import _Cand, _Scene
from ._suggestions import Suggestion, Suggestions
from ._sweep import _best_interval, _compare_of, _force, _holds, _integral, _mirror

__all__ = ["PAIR_FIRST", "PAIR_SECOND", "suggest"]

#: How many of the best single edits a pair search builds on (step 4 above) ...
PAIR_FIRST = 4
#: ... and how many second parameters it sweeps after each (those reaching the most
#: failures left).
PAIR_SECOND = 24
#: Outputs with more values than this are searched by evaluation only (no score table).
MAX_VALUES = 64
#: Candidates checked through ``predict`` beyond ``top`` (their estimated ranks can tie).
MARGIN = 2
#: The most candidates one ``suggest`` call runs through ``predict``.
MAX_MEASURED = 60


def suggest(dbg, rows=None, *, validation=None, keep: Sequence = (), max_edits: int = 2,
            top: int = 10, timeout: float = 10.0, n_jobs: int | None = None) -> Suggestions:
    """Ranked, certified edits that fix failing predictions (see ``Debugger.suggest``)."""
    start = time.perf_counter()
    _searchable(dbg, max_edits, top)
    wanted = None if rows is None else _rows(dbg, rows)
    m = _Measure(dbg, validation=validation, keep=keep, timeout=timeout, rows=wanted)
    target = m.target & ~m.now_correct
    notes = []
    if not target.any():
        why = "no failure to fix" if wanted is None else "the rows given are all predicted right"
        return Suggestions((), tuple(dbg.batch.index[m.target]), 0, 0, (),
                           time.perf_counter() - start, (why, *notes))
    scene = _Scene(dbg, target)
    cands = _singles(scene, scene.S, notes)
    singles = sorted(cands, key=lambda c: -c.gain)
    if max_edits >= 2:
        cands += _pairs(scene, singles)
    cands = [c for c in cands if c.gain > scene.n]   # fixes more aimed rows than it breaks
    cands.sort(key=lambda c: (-c.gain, len(c.edits), _cost(c.edits, dbg)))
    # measured in the estimated order until enough distinct suggestions are kept (the
    # best single edits first, also where pairs outscore them), at most MAX_MEASURED
    wanted = top * (3 if validation is not None else 1) + MARGIN
    out, dropped, measured = _measured(m, cands, wanted, n_jobs)
    out.sort(key=lambda s: s._key)
    out = _distinct(out)
    return Suggestions(tuple(out[:top]), tuple(dbg.batch.index[target]), len(cands),
                       measured, tuple(dropped), time.perf_counter() - start, tuple(notes))


def _searchable(dbg, max_edits: int, top: int) -> None:
    """A ModelError unless ``max_edits`` and ``top`` are valid and the debugger's output
    is a class decided by rules, of at most :data:`MAX_VALUES` values."""
    at_least_one("max_edits", max_edits, "edits per suggestion")
    if max_edits > 2:
        raise ModelError(f"max_edits is 1 (single edits) or 2 (pairs too), got {max_edits!r}: "
                         "larger combinations are not searched")
    at_least_one("top", top, "suggestions returned")
    kb = dbg.model.kb
    var = kb.variables[dbg.output]
    if A.is_finite_type(var.type) and A.domain(var.type).size > MAX_VALUES:
        raise ModelError(f"suggest searches outputs of at most {MAX_VALUES} values: "
                         f"{dbg.output!r} has {A.domain(var.type).size:,}")
    if not A.is_finite_type(var.type) or dbg.output in dbg.model.kb.additive:
        raise ModelError(f"suggest needs a bool, int or enum class output: {dbg.output!r} is "
                         "a number (its sweeps of weights and thresholds count rows fixed "
                         "and broken between classes); try edits on it with what_if, which "
                         "reports the rows within the debugger's tol")
    if var.role != "decided":
        raise ModelError(f"{dbg.output!r} is {var.role}, not decided by rules: no rule edit "
                         "changes it directly (suggest edits the rules of decided outputs)")


def _measured(m: _Measure, cands: list[_Cand], wanted: int, n_jobs) -> tuple[list, list, int]:
    """Step 5: ``cands`` (best estimate first, the :data:`MARGIN` best single edits
    ahead) measured until ``wanted`` distinct effects are kept or :data:`MAX_MEASURED`
    were run: (the suggestions kept, the candidates dropped with why, how many ran)."""
    from .._parallel import Ahead

    firsts = [c for c in cands if len(c.edits) == 1][:MARGIN]
    seen, effects = set(), set()
    out, dropped, measured = [], [], 0
    ahead = Ahead(m, firsts + cands, lambda c: tuple(sorted(e.describe() for e in c.edits)),
                  n_jobs)
    for c in firsts + cands:
        if len(effects) >= wanted or measured >= MAX_MEASURED:
            break
        key = tuple(sorted(e.describe() for e in c.edits))   # a pair in either order
        if key in seen:
            continue
        seen.add(key)
        measured += 1
        s = ahead.run(c, seen)
        if isinstance(s, str) and s.startswith("keep") and c.sweep is not None:
            dropped.append(("; ".join(e.describe() for e in c.edits), s))
            edit = _within_keep(m, c)   # the best value of the same number that keeps them
            if edit is None or (edit.describe(),) in seen:
                continue
            seen.add((edit.describe(),))
            c, s = _Cand((edit,), c.kind, 0), m.run((edit,), c.kind)
        if isinstance(s, str):
            dropped.append(("; ".join(e.describe() for e in c.edits), s))
        elif s._key[1] < 0:   # it fixes more of the rows aimed at than it breaks
            out.append(s)
            v = s.validation or {}
            effects.add((s.fixed, s.broken, v.get("fixed"), v.get("broken")))
    return out, dropped, measured


def _within_keep(m: _Measure, c: _Cand) -> Edit | None:
    """The best value of a one-number edit whose best value broke a ``keep`` property,
    among the values that keep every property: the values kept are taken to be an
    interval around the current one (the properties monotone in the number). On each side
    of the current value, the side's best interval is tried; where it breaks a property,
    the kept interval's end on that side is found by bisection over the sweep's intervals
    (a Z3 proof per step) and the best interval up to it taken. The better side wins."""
    import dataclasses

    (edit,) = c.edits
    sweep = c.sweep
    name = "weight" if isinstance(edit, SetWeight) else "value"

    def make(k):
        return dataclasses.replace(edit, **{name: sweep.value(k)})

    def kept_best(bad):
        """The best interval between the current one and ``bad`` (which breaks a
        property) that keeps every property."""
        good = sweep.now
        while abs(bad - good) > 1:
            mid = (good + bad) // 2
            if m.keeps((make(mid),)):
                good = mid
            else:
                bad = mid
        return sweep.best(limit=good)

    raw = sweep.best()
    if raw is None:
        return None
    found = [kept_best(raw)]
    end = 0 if raw > sweep.now else len(sweep.totals) - 1   # the other side
    other = sweep.best(limit=end) if end != sweep.now else None
    if other is not None and other != raw:
        found.append(other if m.keeps((make(other),)) else kept_best(other))
    found = [k for k in found if k is not None]
    if not found:
        return None
    k = max(found, key=lambda k: (sweep.totals[k], -abs(k - sweep.now)))
    return make(k)


def _distinct(ranked: list[Suggestion]) -> list[Suggestion]:
    """The best-ranked of suggestions with the same effect (the same rows fixed and broken,
    on the held-out rows too): a rule's weight set to 0 and the rule switched off, say."""
    seen, out = set(), []
    for s in ranked:
        v = s.validation or {}
        key = (s.fixed, s.broken, v.get("fixed"), v.get("broken"))
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def _singles(scene: _Scene, S, notes) -> list[_Cand]:
    out = []
    for name in scene.direct:
        found = scene.sweep_weight(S, name)
        if found:
            out.append(_Cand((found[0],), "weight", *found[1:]))
        for i in range(len(_numbers(scene.direct[name]["rule"].body))):
            found = scene.sweep_number(S, name, i)
            if found:
                out.append(_Cand((found[0],), "threshold", *found[1:]))
        if scene.direct[name]["weight"] != 0:
            found = scene.disable(S, name)
            out.append(_Cand((found[0],), "disable", found[1], found[2], found[3]))
    kb = scene.kb
    if kb.program is None:   # a bias change, as the fixed rule export writes a bias as
        out += _biases(scene, S)
    behind = kb.depends_on(scene.output)
    out += _templates(scene, S, behind)
    others = [r for r in kb.rules if r not in scene.direct and "rule:" + r in behind]
    for r in others:   # rules on other decided variables: switched off, by evaluation
        d = scene.evaluate([Disable(r)])
        if d is not None:
            out.append(_Cand((Disable(r),), "disable", scene.gain(d), d))
    for c in kb.constraints.values():
        if not c.hard or "constraint:" + c.name not in behind:
            continue
        d = scene.evaluate([Remove(c.name)])
        if d is not None:
            out.append(_Cand((Remove(c.name),), "remove", scene.gain(d), d))
        for i, num in enumerate(_numbers(c.formula)):
            found = _constraint_number(scene, c, i, num)
            if found:
                out.append(found)
    if others:
        notes.append(f"rules on other decided variables ({', '.join(others[:5])}"
                     f"{', ...' if len(others) > 5 else ''}) are only tried switched off")
    return out


def _biases(scene: _Scene, S) -> list[_Cand]:
    """The output's bias shifted, per value: the rule language has no bias statement, but
    a bias ``b`` is exactly a fixed rule of weight ``b`` whose body is ``true`` (how
    ``Debugger.export`` writes learned biases), so the edit adds one."""
    kb, out = scene.kb, scene.output
    taken = set(kb.rules) | set(kb.constraints) | set(kb.variables)
    bool_out = isinstance(kb.variables[out].type, A.BoolType)
    found = []
    for col in ([1] if bool_out else range(len(scene.values))):
        got = scene.sweep_bias(S, col)
        if not got:
            continue
        value = scene.values[col]
        head = out if bool_out else f"{out} = {value}"
        base = "bias_shift_" + "_".join(str(p) for p in ([out] if bool_out else [out, value]))
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        text = f"rule {name} weight {float(got[0].weight)!r} fixed: true -> {head}"
        found.append(_Cand((AddStatement(text),), "bias", got[1], got[2]))
    return found


def _templates(scene: _Scene, S, behind) -> list[_Cand]:
    """A relational model's rule templates (``rule spread(p in person, ...)``): the
    whole family switched off, and its one shared weight swept exactly where every
    grounding the output depends on concludes it directly (a row's score then moves by
    the weight times the number of its groundings that fire)."""
    program = scene.kb.program
    if program is None:
        return []
    out = []
    for info in program.families.values():
        if info.kind != "rule":
            continue
        members = [m for m in info.members.values() if "rule:" + m in behind]
        if not members:
            continue
        name = info.name
        if any(m not in scene.direct for m in members):   # some act through other decisions
            d = scene.evaluate([Disable(name)])
            if d is not None:
                out.append(_Cand((Disable(name),), "disable", scene.gain(d), d))
            continue
        sts = [scene.direct[m] for m in members]
        col = sts[0]["col"]
        if any(st["col"] != col for st in sts):
            continue
        rest = S[:, col].copy()
        slope = np.zeros(scene.n)
        for st in sts:
            rest -= st["sign"] * st["weight"] * st["body"]
            slope += st["sign"] * st["body"]
        S0 = S.copy()
        S0[:, col] = rest
        d_off = scene.decisions(S0)
        if any(st["weight"] != 0 for st in sts):
            out.append(_Cand((Disable(name),), "disable", scene.gain(d_off), d_off))
        weights = {st["weight"] for st in sts}
        if len(weights) != 1:
            continue
        (current,) = weights
        found = _template_weight(scene, S0, members[0], name, rest, slope, current)
        if found is not None:
            out.append(found)
    return out


def _template_weight(scene: _Scene, S0, member: str, name: str, rest, slope,
                     current: float) -> _Cand | None:
    """The exact sweep of template ``name``'s shared weight: its value's score on each row
    is ``rest + w * slope`` (``S0``: the scores without the template's groundings,
    ``member``: one of them); None when no weight beats ``current``."""
    col = scene.direct[member]["col"]
    # v wins where rest + w * slope beats the best other value
    x, best, arg = scene.without(S0, member)
    x = rest
    feasible = np.isfinite(x)
    alone = arg < 0
    moves = (slope != 0) & feasible & ~alone
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(moves, (best - x) / np.where(slope == 0, 1, slope), 0.0)
    up = np.where(slope > 0, col, arg)      # above the breakpoint
    down = np.where(slope > 0, arg, col)
    still = scene.pick(x + current * slope, best, arg, col)
    still = np.where(feasible, still, arg)
    gain = scene.row_gain(still)
    found = _best_interval(point[moves], scene.row_gain(down)[moves],
                           scene.row_gain(up)[moves], gain[~moves].sum(), current,
                           closed=None, flip=True, now_gain=gain[moves].sum())
    if found is None or found[0] == 0:
        return None
    w, total, sweep = found
    d = np.where(feasible, scene.pick(x + w * slope, best, arg, col), arg)
    return _Cand((SetWeight(name, w),), "weight", total, d, None, sweep)


def _constraint_number(scene, c, index, num):
    """A hard constraint's number: the comparison forced true and false (two evaluations),
    then the sweep over the rows' values of its other side."""
    found = _compare_of(c.formula, num)
    if found is None:
        return None
    compare, on_left = found
    other = compare.right if on_left else compare.left
    if any(scene.kb.variables[v].role == "decided"
           for v in _closure_vars(scene.kb, other)):
        return None
    op = _mirror(compare.op) if on_left else compare.op
    d_t = scene.evaluate([_Force(c.name, compare, True)])
    d_f = scene.evaluate([_Force(c.name, compare, False)])
    if d_t is None or d_f is None:
        return None
    e = np.asarray(scene.ev.value(other), dtype=np.float64)
    low_true = op in (">", ">=")
    lo_d, hi_d = (d_t, d_f) if low_true else (d_f, d_t)
    moving = lo_d != hi_d
    current = float(num.value)
    cur_d = np.where(_holds(e, op, current), d_t, d_f)
    closed = "hi" if op in (">=", "<") else "lo"
    gain = scene.row_gain(cur_d)
    res = _best_interval(e[moving], scene.row_gain(lo_d)[moving], scene.row_gain(hi_d)[moving],
                         gain[~moving].sum(), current, closed=closed,
                         integral=_integral(scene.kb, other), now_gain=gain[moving].sum())
    if res is None:
        return None
    t, total, sweep = res
    d = np.where(_holds(e, op, t), d_t, d_f)
    return _Cand((SetThreshold(c.name, index, t),), "threshold", total, d, None, sweep)


def _closure_vars(kb, expr) -> set:
    from greybox.rules.engine import closure

    return closure(kb, A.variables(expr))


@dataclass(frozen=True)
class _Force(Edit):
    """The comparison ``compare`` of constraint ``name`` replaced by true or false (to
    know the decisions on either side of its breakpoints)."""

    name: str
    compare: object
    truth: bool

    def apply(self, statements):
        import dataclasses

        i, s = _find(statements, self.name)
        formula = _force(s.formula, self.compare, self.truth)
        out = list(statements)
        out[i] = dataclasses.replace(s, formula=formula)
        return out

    def describe(self):
        return f"force a comparison of {self.name}"


def _pairs(scene: _Scene, singles: list[_Cand]) -> list[_Cand]:
    """Step 4: the :data:`PAIR_FIRST` best single edits of direct rules, each followed by
    the exact sweeps of the :data:`PAIR_SECOND` other parameters (a direct rule's weight
    -- with switching it off -- or one of its numbers) that reach the most aimed failures
    the first edit leaves (rows where the rule fires, or where the number changes its
    body)."""
    out = []
    firsts = [c for c in singles if c.state is not None][:PAIR_FIRST]
    params, masks = [], []
    for name, st in scene.direct.items():
        params.append((name, None))
        masks.append(st["body"].astype(bool))
        for i in range(len(_numbers(st["rule"].body))):
            found = scene.sides(st["rule"], i)
            if found is not None:
                params.append((name, i))
                masks.append(found[2] != found[3])
    if not params:
        return out
    reach = np.stack(masks).astype(np.float32)
    for first in firsts:
        (e1,) = first.edits
        # what the second edit may mend: aimed failures still wrong, and correct rows
        # the first edit broke (a weight's sign flipped, then its rule's threshold moved)
        left = ((scene.target | scene.correct) & (first.decision != scene.truth)
                ).astype(np.float32)
        counts = reach @ left
        order = [params[j] for j in np.argsort(-counts, kind="stable")[:PAIR_SECOND + 3]
                 if counts[j] > 0 and (params[j][0] != e1.name or (
                     isinstance(e1, (SetWeight, SetThreshold))
                     and params[j] != (e1.name, getattr(e1, "index", None))))][:PAIR_SECOND]
        S1, st1 = scene.apply(scene.S, e1.name, e1, first.decision)
        saved = scene.direct[e1.name]
        scene.direct[e1.name] = st1
        try:
            for c in _sweeps(scene, S1, order):
                if c.gain > first.gain:
                    out.append(_Cand((e1, *c.edits), "pair", c.gain, c.decision))
        finally:
            scene.direct[e1.name] = saved
    return out


def _sweeps(scene, S, params):
    for name, i in params:
        if i is None:
            found = scene.sweep_weight(S, name)
            if found:
                yield _Cand((found[0],), "weight", found[1], found[2])
            if scene.direct[name]["weight"] != 0:
                found = scene.disable(S, name)
                yield _Cand((found[0],), "disable", found[1], found[2])
        else:
            found = scene.sweep_number(S, name, i)
            if found:
                yield _Cand((found[0],), "threshold", found[1], found[2])
