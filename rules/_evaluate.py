"""Crisp (plain boolean) evaluation of a knowledge base, vectorised with numpy.

:func:`evaluate` reads a table of values (labels) and returns an :class:`Evaluation`;
:func:`evaluate_codes` is the same evaluation on columns already read as codes (the
convention of :mod:`._domain`), the entry the model's decision function and the formal
layer use: no label is written or read between them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import pandas as pd

from greybox.errors import DataError, RuleError, listed

from . import _ast as A
from ._columns import (
    _needed_columns,
    _type_text,
    align_labels,
    decode_bools,
    first_row,
    missing_values,
    prepare_columns,
    read_column,
    read_masked,
    show_value,
)
from ._compile import compile_expr
from ._decisions import (
    _NO_RULES,
    MAX_ASSIGNMENTS,
    _split_rules,
    additive_value,
    candidates,
    kb_cached,
    plan,
)
from ._domain import domain
from ._env import _compiled_bodies, _compiled_defines, _compiled_truth, _Env
from ._evaluation import Evaluation
from ._exact import ScoreScale
from ._kb import KnowledgeBase
from ._missing import definite, missing_key, not_false

__all__ = ["Evaluation", "crisp_truth", "evaluate", "evaluate_codes", "prepare_columns",
           # the engine's names that lived here before the split (rules/__init__ and
           # rules/_boost import them from here); their homes are _columns and _compile
           "align_labels", "compile_expr", "decode_bools", "first_row", "missing_values",
           "read_column", "read_masked", "show_value"]


def _bias_number(name, b, n):
    """A bias: one finite number, or one finite number per row (shape (n,))."""
    if isinstance(b, (bool, np.bool_)):
        raise RuleError(f"bias of {name!r} must be a number, got {b!r}")
    try:
        arr = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise RuleError(f"bias of {name!r} must be a number or one number per row, got "
                        f"{type(b).__name__}") from None
    if arr.ndim == 0:
        if not np.isfinite(arr):
            raise RuleError(f"bias of {name!r} must be finite, got {float(arr)!r}")
        return float(arr)
    if arr.shape != (n,):
        raise RuleError(f"bias of {name!r}: expected one number or shape ({n},), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise RuleError(f"bias of {name!r} must be finite, got {float(arr[pos])!r} at row {pos}")
    return arr


def _in_domain(t, value) -> bool:
    if isinstance(t, A.IntType):
        return (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
                and t.lo <= value <= t.hi)
    return isinstance(value, str) and value in t.values


def _bias_table(kb, bias, n=None) -> dict:
    """Per decided variable, value -> bias. Sparse: an int or enum variable holds only the
    values the caller names (every other value's bias is 0); a bool, {True: b, False: 0}."""
    out = {}
    bias = dict(bias or {})
    for name, b in bias.items():
        var = kb.variables.get(name)
        if var is None or var.role != "decided":
            raise RuleError(f"bias given for {name!r}, which is not decided by rules "
                            f"(decided: {listed(kb.decided) or 'none'})")
        t = var.type
        if isinstance(t, A.BoolType) or name in kb.additive:
            if isinstance(b, Mapping) or isinstance(b, bool):
                what = "bool" if isinstance(t, A.BoolType) else "additive"
                raise RuleError(f"bias of {what} {name!r} must be one number")
            out[name] = {True: _bias_number(name, b, n), False: 0.0}
        else:
            if not isinstance(b, Mapping):
                raise RuleError(f"bias of {name!r} must map its values to numbers")
            unknown = [k for k in b if not _in_domain(t, k)]
            if unknown:
                raise RuleError(f"bias of {name!r} names {unknown[0]!r}, not a value of "
                                f"{_type_text(t)}")
            out[name] = {int(v) if isinstance(t, A.IntType) else v: _bias_number(name, x, n)
                         for v, x in b.items()}
    return out


def evaluate(kb: KnowledgeBase, data, *, bias: Mapping | None = None) -> Evaluation:
    """Evaluate the rules crisply on every row of ``data``.

    Parameters
    ----------
    kb : KnowledgeBase
    data : DataFrame or mapping of column name -> values
        One column per input (and per neural variable the rules read: crisp evaluation
        takes the networks' predictions as data). A mapping of scalars is one row.
    bias : mapping, optional
        Per decided variable: a number for a bool (added to the score of True), or a
        mapping value -> number for an int or enum. Default 0. Each number may also be an
        array with one number per row (a grey-box model's residual network uses this).

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        A missing column, NaN, a wrong dtype or a value outside the declared domain; the
        message names the column and the first offending row.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... input income: real[0, 1000000]
    ... input age: int 0..120
    ... output approve: bool
    ... rule earns weight 2.0: income > 30000 -> approve
    ... rule young: age < 25 -> not approve
    ... constraint minors: age < 18 -> not approve
    ... ''')
    >>> ev = gr.evaluate(kb, {"income": [50000, 50000, 10000], "age": [40, 16, 20]})
    >>> ev.decisions["approve"].tolist(), ev.changed.tolist()
    ([True, False, False], [False, True, False])
    >>> ev.contributions.loc[1].tolist()
    [2.0, -1.0]
    """
    if not isinstance(kb, KnowledgeBase):
        raise TypeError(f"evaluate needs a KnowledgeBase, got {type(kb).__name__}")
    columns, index, raw = prepare_columns(kb, data)
    return _Run(kb, columns, index, bias, raw=raw).result()


def evaluate_codes(kb: KnowledgeBase, columns: Mapping[str, np.ndarray], *, n: int,
                   index: pd.Index | None = None, bias: Mapping | None = None) -> Evaluation:
    """:func:`evaluate` on columns already read as codes: the engine's entry for callers
    that hold codes (a grey-box model's decision function, the formal explanations'
    replays), with no value written as a label or read back in between.

    Parameters
    ----------
    kb : KnowledgeBase
    columns : mapping of variable name -> array
        Per input and neural variable the rules read (others are read when asked for),
        its codes on the ``n`` rows as :func:`read_column` returns them: float64 for a
        real or an int (object arrays of Python ints beyond ±2**53), bool for a bool,
        int64 indices for an enum. An optional input also has its missing cells under
        ``missing_key(name)`` (bool), its values there any placeholder of its type.
        The codes are trusted: they are not checked against the types.
    n : int
        The number of rows.
    index : pandas.Index, optional
        The rows' labels, for messages (default ``0..n-1``).
    bias : mapping, optional
        As :func:`evaluate`'s.

    Returns
    -------
    Evaluation
        Its :meth:`Evaluation.code` reads the decisions as codes; its tables of values
        are written on first use.

    Examples
    --------
    >>> import numpy as np
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input kind: {a, b}  input x: int 0..9  output o: bool  "
    ...               "rule r: kind == b and x > 3 -> o")
    >>> ev = gr.engine.evaluate_codes(kb, {"kind": np.array([1, 1, 0]),
    ...                             "x": np.array([5.0, 2.0, 5.0])}, n=3)
    >>> ev.code("o").tolist()
    [True, False, False]
    """
    if not isinstance(kb, KnowledgeBase):
        raise TypeError(f"evaluate_codes needs a KnowledgeBase, got {type(kb).__name__}")
    for name in _needed_columns(kb):
        if name not in columns:
            v = kb.variables[name]
            extra = (f" (predicted by network {v.network!r}; crisp evaluation needs its values)"
                     if v.role == "neural" else "")
            raise DataError(f"missing column {name!r}{extra}")
    return _Run(kb, columns, pd.RangeIndex(n) if index is None else index, bias).result()


def crisp_truth(kb: KnowledgeBase, formula, columns: Mapping[str, np.ndarray], n: int, *,
                index: pd.Index | None = None) -> np.ndarray:
    """Per row, whether ``formula`` holds on checked input columns, exactly as
    :func:`evaluate` decides it (rationals where float64 may round).

    ``columns`` are arrays as :func:`read_column` returns them (float64 numbers, bools,
    enum codes; an enum's labels are read as its codes, a label it lacks is a
    :class:`~greybox.errors.DataError`), one per input the formula reads (through its
    defines too). The model's
    smooth semantics read the comparisons of observed inputs from here where float64
    arithmetic could round them, so that a trace agrees with ``predict``.

    Examples
    --------
    >>> import numpy as np
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: real  input y: real  output o: bool  rule r: x + y > 0.3 -> o")
    >>> columns = {"x": np.array([0.1, 0.1]), "y": np.array([0.2, 0.19])}
    >>> gr.engine.crisp_truth(kb, kb.rules["r"].body, columns, 2).tolist()   # 0.1 + 0.2 > 0.3
    [True, False]
    """
    index = pd.RangeIndex(n) if index is None else index
    env = _Env(kb, _enum_labels_as_codes(kb, columns, index), _compiled_defines(kb), n, index)
    return np.broadcast_to(_compiled_truth(kb, formula)(env), (n,)).astype(bool)


def _enum_labels_as_codes(kb: KnowledgeBase, columns: Mapping, index: pd.Index) -> dict:
    """``columns`` with an enum's labels (text, categorical, objects) read as its codes;
    numbers are taken as codes. A label the enum does not have is a DataError naming the
    variable, the first such row and the expected forms."""
    out = dict(columns)
    for name, values in columns.items():
        v = kb.variables.get(name)
        if v is None or not isinstance(v.type, A.EnumType):
            continue
        arr = np.asarray(values)
        if arr.dtype.kind in "iufb":
            continue
        codes = domain(v.type).indices(arr)
        bad = codes < 0
        if v.optional and missing_key(name) in columns:   # a missing cell: any placeholder
            bad &= ~np.asarray(columns[missing_key(name)], dtype=bool)
            codes = np.maximum(codes, 0)
        if bad.any():
            where, pos = first_row(bad, index)
            raise DataError(f"column {name!r}, {where}: expected one of the labels "
                            f"{', '.join(map(str, v.type.values))} or their codes 0.."
                            f"{len(v.type.values) - 1} (ints), got {show_value(arr[pos])}")
        out[name] = codes
    return out


class _Run:
    """One crisp evaluation: the rows' values, the compiled formulas and, per decided
    variable, its partial scores, filled in component by component (dependency order).

    Scores are exact (see ScoreScale). Per (decided variable, value), :attr:`layout`
    holds its bias, the rules whose bodies read no decision of the same component (the
    same for every assignment) and the "dynamic" rest."""

    def __init__(self, kb: KnowledgeBase, columns: Mapping, index: pd.Index, bias, *,
                 raw=None):
        self.kb, self.index = kb, index
        self.n = n = len(index)
        self.defines = _compiled_defines(kb)
        self.env = _Env(kb, dict(columns), self.defines, n, index, raw=raw)
        self.biases = _bias_table(kb, bias, n)
        self.plan = plan(kb)
        self.bodies: dict[str, np.ndarray] = {}  # rule bodies in the top environment
        self.batched = False   # whether the bodies computable together were tried
        self.held = None       # those bodies, (rules, n), when they were
        self.weights = kb_cached(kb, "signed weights", lambda kb: {
            r.name: _signed(r, r.head.value) for r in kb.rules.values()})
        self.layout: dict[tuple, tuple] = {}
        self.partial: dict[tuple, object] = {}
        self.scored: dict[str, list] = {}
        self.scales: dict[str, ScoreScale] = {}
        self.preferred: dict[str, np.ndarray] = {}
        self.infeasible = np.zeros(n, bool)
        for c in self.plan.fixed_constraints:
            self.infeasible |= ~self.truth(not_false(kb, c.formula), self.env)

    def __getstate__(self) -> dict:
        """Picklable (an :class:`Evaluation` is): the compiled defines (closures) are left
        out, compiled again on load."""
        state = dict(self.__dict__)
        del state["defines"]
        state["env"] = env = copy.copy(self.env)
        env.defines = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.defines = self.env.defines = _compiled_defines(self.kb)

    def truth(self, e, where) -> np.ndarray:
        """Per row, whether formula ``e`` holds in environment ``where``."""
        out = _compiled_truth(self.kb, e)(where)
        if getattr(out, "shape", None) == (self.n,) and out.dtype == bool:
            out = out.view()   # read-only, as a broadcast view is: callers never write
            out.flags.writeable = False
            return out
        return np.broadcast_to(out, (self.n,)).astype(bool, copy=False)

    def body(self, r) -> np.ndarray:
        found = self.bodies.get(r.name)
        if found is None and not self.batched:
            self.batched = True
            self._batch_bodies()
            found = self.bodies.get(r.name)
        if found is None:
            found = self.bodies[r.name] = self.truth(definite(self.kb, r.body), self.env)
        return found

    def _batch_bodies(self) -> None:
        """On a few rows, the bodies that are conjunctions of comparisons with constants
        all at once (a numpy call per operator, not per comparison)."""
        rows, together = _compiled_bodies(self.kb)
        held = None if together is None or self.n > _BATCH_ROWS else together(self.env)
        if held is not None:
            self.held = held
            self.bodies.update(zip(rows, held))   # (rows: name -> 0, 1, ... in order)

    def stack(self, rules) -> np.ndarray:
        """The bodies of ``rules`` (at least one) in the top environment, as one
        (len(rules), n) bool array."""
        self.body(rules[0])
        if self.held is not None:
            rows = _compiled_bodies(self.kb)[0]
            at = [rows.get(r.name) for r in rules]
            if None not in at:
                return self.held[at]
        return np.stack([np.broadcast_to(self.body(r), (self.n,)) for r in rules])

    def _values(self, comp) -> tuple[dict, list]:
        """The values each variable of ``comp`` is decided among, and the joint
        assignments tried, in tie-breaking order."""
        kb = self.kb
        if comp.enumerated:
            return ({v: domain(kb.variables[v].type).values for v in comp.variables},
                    comp.assignments(kb))
        (v,) = comp.variables  # decided alone: the argmax lies among a few candidate values
        values_of = {v: candidates(kb, v, self.biases.get(v, {}))}
        return values_of, [(x,) for x in values_of[v]]

    def _lay_out(self, comp, values_of: dict) -> None:
        """Fill :attr:`layout` and :attr:`scored` for ``comp``'s variables."""
        split = _split_rules(self.kb, comp)
        for v in comp.variables:
            self.scored[v] = [x for x in values_of[v] if not (isinstance(x, bool) and not x)]
            for x in self.scored[v]:
                static, dynamic = split.get((v, x), _NO_RULES)
                self.layout[v, x] = (self.biases.get(v, {}).get(x), static, dynamic)

    def decide(self, comp) -> None:
        """Decide component ``comp`` on every row: its variables' values join the
        environment, their preferred values (hard constraints ignored) are kept."""
        kb = self.kb
        if comp.variables[0] in kb.additive:   # decided alone: nothing reads or ties it
            self._add(comp)
            return
        values_of, assignments = self._values(comp)
        self._lay_out(comp, values_of)
        terms = ([b for v in comp.variables for b in self.biases.get(v, {}).values()]
                 + [self.weights[r.name] for r in comp.rules])
        scale = _scale(self.kb, terms)
        code_of = {v: dict(zip(values_of[v], _codes(kb, v, values_of[v]).tolist()))
                   for v in comp.variables}
        common = dict(comp=comp, assignments=assignments, code_of=code_of, layout=self.layout,
                      weights=self.weights, truth=self.truth, body=self.body, stack=self.stack,
                      env=self.env, defines=self.defines)
        choice, choice_free, have, unsure, part = _argmax(scale=scale, **common)
        if unsure is not None and unsure.any():  # float scores too close: redo exactly
            rows = np.flatnonzero(unsure)
            exact = _argmax(scale=ScoreScale(terms, exact=True), rows=rows, **common)
            choice[rows], choice_free[rows], have[rows] = exact[:3]
        self.partial.update(part)
        for v in comp.variables:
            self.scales[v] = scale
        if comp.constraints:
            none = ~have
            self.infeasible |= none
            choice = np.where(none, choice_free, choice)
        else:
            choice = choice_free
        for j, v in enumerate(comp.variables):
            codes = _codes(kb, v, [a[j] for a in assignments])
            self.env.values[v] = codes[choice]
            self.preferred[v] = codes[choice_free]

    def _add(self, comp) -> None:
        """An additive variable: its score, exactly, then its value (see
        :func:`~greybox.rules._decisions.additive_value`)."""
        (v,) = comp.variables
        b = self.biases.get(v, {}).get(True)
        scale = ScoreScale(([] if b is None else [b]) + [self.weights[r.name]
                                                          for r in comp.rules], exact=True)
        total = scale.fresh(0 if b is None else scale.of(b), self.n)
        for r in comp.rules:
            scale.add_where(total, scale.of(self.weights[r.name]), self.body(r))
        self.layout[v, True] = (b, list(comp.rules), [])
        self.partial[v, True] = total
        self.scored[v] = [True]
        self.scales[v] = scale
        value = additive_value(kb_type(self.kb, v), scale.to_float(total, self.n))
        self.env.values[v] = value
        self.preferred[v] = value

    def scores(self) -> dict:
        """Every decided variable's final scores (bool: of True; else one per value
        shown), with every decision known."""
        self.all_bodies()
        n, scores = self.n, {}
        for name in self.kb.decided:
            t = self.kb.variables[name].type
            scale = self.scales[name]
            additive = name in self.kb.additive
            if isinstance(t, A.BoolType) or additive:
                shown = [True]
            elif domain(t).size <= MAX_ASSIGNMENTS:
                shown = domain(t).values
            else:  # every value left out scores 0
                shown = self.scored[name]
            for value in shown:
                label = name if isinstance(t, A.BoolType) or additive else f"{name}={value}"
                if (name, value) not in self.partial:
                    scores[label] = np.broadcast_to(0.0, (n,))
                    continue
                s = self.partial[name, value]
                for r in self.layout[name, value][2]:
                    s = _plus(scale, s, self.weights[r.name], self.bodies[r.name], n)
                scores[label] = scale.to_float(s, n)
        return scores

    def result(self) -> Evaluation:
        """Every component decided, every rule body and defined variable computed (a
        define leaving its type is an error here, not on first reading); the scores,
        violations and tables of values are left to the :class:`Evaluation` to make on
        first use."""
        for comp in self.plan.components:
            self.decide(comp)
        self.all_bodies()
        for name in self.kb.defined:
            self.env[name]
        return Evaluation(self)

    def all_bodies(self) -> dict[str, np.ndarray]:
        """Every rule's body in the top environment."""
        if len(self.bodies) < len(self.kb.rules):   # (it holds rule bodies only)
            for r in self.kb.rules.values():
                self.body(r)
        return self.bodies

    def violations(self) -> dict[str, np.ndarray]:
        """Per constraint, where the final decisions violate it."""
        return {c.name: ~self.truth(not_false(self.kb, c.formula), self.env)
                for c in self.kb.constraints.values()}


#: up to this many rows, the rule bodies that can are computed together (:meth:`_Run.body`)
_BATCH_ROWS = 1024


def _argmax(*, comp, assignments, code_of, layout, weights, truth, body, stack, env, defines,
            scale, rows=None):
    """A component's decision per row: the index of the best feasible assignment, of the
    best one ignoring hard constraints, whether any is feasible, the rows where float
    scores were too close to compare (None when exact), and the scores (without the
    dynamic rules) per (variable, value). ``rows``: only these rows."""
    kb, n = env.kb, env.n
    m = n if rows is None else len(rows)
    partial = {}
    for v in comp.variables:
        for x in code_of[v]:
            if (v, x) in layout:
                partial[v, x] = _static_score(scale, layout[v, x], weights, body, stack, rows, m)
    best_free = best = scale.full(0, m)
    have = np.zeros(m, bool)
    choice = np.zeros(m, np.int64)
    choice_free = np.zeros(m, np.int64)
    unsure = None if scale.mode != "float" else np.zeros(m, bool)
    for k, a in enumerate(assignments):
        sub = _Env(kb, {v: code_of[v][x] for v, x in zip(comp.variables, a)}, defines, n,
                   env.index, parent=env, fresh=comp.tainted)
        objective = 0
        for v, x in zip(comp.variables, a):
            if (v, x) not in partial:
                continue
            objective = objective + partial[v, x]
            for r in layout[v, x][2]:
                objective = _plus(scale, objective, weights[r.name],
                                  _sel(truth(definite(kb, r.body), sub), rows), m)
        objective = scale.full(objective, m)
        if k == 0:
            best_free = objective
        else:
            if unsure is not None:
                unsure |= scale.close(objective, best_free)
            better_free = objective > best_free
            best_free = np.where(better_free, objective, best_free)
            choice_free[better_free] = k
        if comp.constraints:
            feasible = np.ones(m, bool)
            for c in comp.constraints:
                feasible &= _sel(truth(not_false(kb, c.formula), sub), rows)
            if unsure is not None:
                unsure |= feasible & have & scale.close(objective, best)
            better = feasible & (~have | (objective > best))
            best = np.where(better, objective, best)
            have |= feasible
            choice[better] = k
    return choice, choice_free, have, unsure, partial


def _static_score(scale: ScoreScale, laid, weights, body, stack, rows, m: int):
    """A value's score from its bias and the rules that read no decision of its own
    component, in the scale's units. With int64 grains (exact whatever the order of the
    additions) the rules' weights are added as one product of the weights with their
    bodies (``stack``: as one array); otherwise one rule after another. ``rows``: only
    these rows (all: None)."""
    b, static, _ = laid
    total = 0 if b is None else scale.of(_sel(b, rows))
    if not static:
        return total
    if scale.mode == "int64" and len(static) > 1:
        # each weight is a term of the scale: a whole number of grains, scaled exactly
        grains = np.ldexp(np.array([weights[r.name] for r in static], dtype=np.float64),
                          -scale.grain).astype(np.int64)
        bodies = stack(static)
        bodies = bodies if rows is None else bodies[:, rows]
        return grains @ bodies.astype(np.int64) + total
    total = scale.fresh(total, m)   # an array of ours, added to in place
    for r in static:
        scale.add_where(total, scale.of(weights[r.name]), _sel(body(r), rows))
    return total


def _sel(a, rows):
    """``a``'s values at ``rows`` (all: None); a scalar as it is."""
    return a if rows is None or np.ndim(a) == 0 else np.asarray(a)[rows]


def _scale(kb, terms: list) -> ScoreScale:
    """``ScoreScale(terms)``, kept per knowledge base where every term is one number (a
    model's learned weights and biases change between fits, not between calls)."""
    if not all(issubclass(k, (int, float)) and not issubclass(k, bool)
               for k in set(map(type, terms))):
        return ScoreScale(terms)
    made = kb_cached(kb, "score scales", lambda kb: {})
    key = tuple(terms)
    found = made.get(key)
    if found is None:
        if len(made) >= 256:   # weights that keep changing (training): no growing store
            made.clear()
        found = made[key] = ScoreScale(key)
    return found


def _plus(scale: ScoreScale, total, weight: float, body: np.ndarray, n: int) -> np.ndarray:
    """``total + weight * [body]`` as a new array of grains (``total`` is left alone)."""
    out = scale.fresh(total, n)
    scale.add_where(out, scale.of(weight), body)
    return out


def kb_type(kb, name: str):
    return kb.variables[name].type


def _signed(rule: A.Rule, value) -> float:
    return -rule.weight if rule.head.value is False else rule.weight


def _codes(kb, name: str, values) -> np.ndarray:
    """Values of a decided variable as their codes (see :class:`~greybox.rules.ast.Domain`)."""
    return domain(kb.variables[name].type).codes(values)
