"""Readable rules learned from data: :func:`induce`, an additive weighted rule set.

greybox decides an output by ``score(v) = bias + sum(weight * [body])`` over the rules
concluding ``v`` (a bool: the score of True, True when > 0; an int or enum: the highest
score, ties to the value declared first). :func:`induce` learns exactly that form, so the
knowledge base it returns predicts what the learner measured:

* **boosting with conjunctions as weak learners** (as SLIPPER and RuleFit do): each round
  takes the softmax (two classes: logistic) loss's negative gradient per row as the gain
  of :func:`~greybox.rules._induce.search_conjunctions`, for every class and both signs,
  and adds the conjunction whose Newton step lowers the loss most,
  ``(sum g)^2 / (sum h + l2)`` over the rows it holds on;
* **totally corrective**: after each new rule every weight and the bias are refitted
  jointly (L-BFGS on the loss plus ``l2/2 * sum(w^2)``; the bias is not penalised);
* each search's conjunctions compete with themselves less one condition; one that
  implies, or is implied by, a rule already learned for the same class is passed over;
* **shrinkage**: the next round's gradient is taken ``_SHRINK`` (a fifth) of the way from
  the previous weights to the refitted ones; the final weights are refitted in full;
* **short thresholds** (a minimum description length): each candidate's thresholds are
  written with fewer significant digits (``x > 0.8``, not ``x > 0.802``) unless the longer
  one lowers the Newton step's loss by more than ``DIGIT_COST`` (``log(10)`` nats, what a
  decimal digit costs to state) per digit, at most ``log10`` of the column's distinct
  values per threshold, so a few noisy labels next to a boundary do not move it
  (:func:`~greybox.rules._induce.shorter_thresholds`);
* the rule language has no bias statement, so the bias is written as a rule whose body
  is ``true`` (``rule learned_bias weight 0.37 fixed: true -> malignant``, as the
  debugger's export writes a learned bias; ``fit`` goes on learning the model's own bias);
  it is not counted in ``max_rules`` (a rule list's default class is not counted either);
* weights are rounded to three significant digits *before* the training predictions are
  computed, exactly (rational arithmetic where float64 could not tell a tie), so those
  predictions are what ``GreyBox(kb).predict`` and ``evaluate`` compute.

This module imports neither torch nor the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from greybox.errors import DataError

from . import _ast as A
from ._induce import Conjunction, search_conjunctions, shorter_thresholds
from ._targets import _aligned_targets, _name_ok, _start_from_data, _start_from_kb, _Target

__all__ = ["induce"]

#: the L2 penalty on rule weights (in units of the summed loss)
DEFAULT_L2 = 1.0
#: the loss decrease a new rule must buy per parameter (its weight and each threshold)
DEFAULT_PENALTY = 0.0
#: conjunctions taken from each search to compare by their Newton step
_CANDIDATES = 6
#: the learning rate: the next round's gradient is taken at a point this far from the
#: previous weights towards the refitted ones (a shrinkage, as in gradient boosting; the
#: final weights are refitted in full). Under label noise it keeps one rule's step from
#: deciding the next searches, which then chase the noise less.
_SHRINK = 0.2
#: the loss (nats, summed over the rows) a threshold's significant digit must buy: a
#: decimal digit's description length. A threshold is written shorter (``x > 0.8``, not
#: ``x > 0.802``) unless the longer one lowers the loss by more than this per digit.
DIGIT_COST = math.log(10)


def _drop_one(frame: pd.DataFrame, conj: Conjunction, gain, cols: dict) -> list[Conjunction]:
    """``conj`` with each one of its conditions left out (a search's conjunction often
    carries a condition that fits noise; the Newton step then decides which is better)."""
    from ._induce import _Column, _formula

    out = []
    if len(conj.conditions) < 2:
        return out
    for i in range(len(conj.conditions)):
        conds = conj.conditions[:i] + conj.conditions[i + 1:]
        m = np.ones(len(frame), bool)
        for c in conds:
            if c.column not in cols:
                cols[c.column] = _Column(c.column, frame[c.column])
            m &= cols[c.column].holds(c)
        out.append(Conjunction(conds, _formula(conds), m, int(m.sum()), float(gain[m].sum())))
    return out


@dataclass(frozen=True)
class _Learned:
    """What the learner found: rules (class, conjunction), weights, biases, predictions."""

    target: _Target
    conjunctions: tuple[Conjunction, ...]
    classes: tuple[int, ...]  # the class each rule's weight is added to
    weights: tuple[float, ...]
    bias: tuple[float, ...]  # per class (class 0's is 0)
    predictions: np.ndarray  # class index per training row, exactly as greybox decides
    scores: np.ndarray  # (n, K) float64


def _implies(a, b) -> bool:
    """Condition ``a`` implies condition ``b`` (same column, logically)."""
    if a.column != b.column:
        return False
    if a.operator in ("<=", ">") and a.operator == b.operator:
        return a.value <= b.value if a.operator == "<=" else a.value >= b.value
    if a.operator == b.operator:
        return a.value == b.value
    return a.operator == "==" and b.operator == "!=" and a.value != b.value


def _nested(a: Conjunction, b: Conjunction) -> bool:
    """One conjunction implies the other, whatever the data (``check`` would report the
    rules of one head as subsumed)."""
    def implies(x, y):
        return all(any(_implies(p, q) for p in x.conditions) for q in y.conditions)

    return implies(a, b) or implies(b, a)


# -------------------------------------------------------------------------- loss


def _softmax(f: np.ndarray) -> np.ndarray:
    z = f - f.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _refit(f0, onehot, masks, classes, free_bias, theta0, l2):
    """All biases and rule weights jointly: L-BFGS on the softmax loss + l2/2 * |w|^2."""
    from scipy.optimize import minimize

    n, k = f0.shape
    nb = len(free_bias)
    m = np.column_stack(masks).astype(np.float64) if masks else np.zeros((n, 0))
    cls = np.asarray(classes, dtype=np.int64)

    def scores(theta):
        f = f0.copy()
        f[:, free_bias] += theta[:nb]
        if m.shape[1]:
            contrib = m * theta[nb:]
            for c in range(k):
                sel = cls == c
                if sel.any():
                    f[:, c] += contrib[:, sel].sum(axis=1)
        return f

    def loss(theta):
        f = scores(theta)
        z = f - f.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        w = theta[nb:]
        value = -(logp * onehot).sum() + 0.5 * l2 * (w @ w)
        g = p - onehot
        grad = np.concatenate([g[:, free_bias].sum(axis=0),
                               (m * g[:, cls]).sum(axis=0) + l2 * w])
        return value, grad

    res = minimize(loss, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 500, "gtol": 1e-8})
    return res.x


def _round(w: float) -> float:
    """Three significant digits: a weight a person reads."""
    if w == 0 or not math.isfinite(w):
        return 0.0
    return float(f"{w:.3g}")


def _exact_argmax(f0_exact, masks, classes, weights, bias, free_bias, k) -> tuple:
    """The class greybox decides on every row, and the float scores: highest score, ties
    to the first class; float64 where it is sure, rationals where two scores are close."""
    n = f0_exact.shape[0]
    f = np.array(f0_exact, dtype=np.float64)
    for c, b in zip(free_bias, bias):
        f[:, c] += b
    for m, c, w in zip(masks, classes, weights):
        f[:, c] += np.where(m, w, 0.0)
    order = np.sort(f, axis=1)
    close = (order[:, -1] - order[:, -2]) <= 1e-9 * (1 + np.abs(order[:, -1])) if k > 1 else \
        np.zeros(n, bool)
    pred = np.argmax(f, axis=1)
    for i in np.flatnonzero(close):
        exact = [Fraction(0)] * k
        for c in range(k):
            exact[c] = Fraction(f0_exact[i, c])
        for c, b in zip(free_bias, bias):
            exact[c] += Fraction(b)
        for m, c, w in zip(masks, classes, weights):
            if m[i]:
                exact[c] += Fraction(w)
        best = max(exact)
        pred[i] = exact.index(best)
    return pred, f


def _learn(frame: pd.DataFrame, target: _Target, *, f0: np.ndarray | None = None,
           max_rules: int = 10, max_conditions: int = 3, l2: float = DEFAULT_L2,
           min_support: int | None = None, columns: Sequence[str] | None = None,
           beam: int | None = None, penalty: float | None = None,
           digit_cost: float = DIGIT_COST) -> _Learned:
    n, k = len(frame), target.k
    if penalty is None:
        penalty = DEFAULT_PENALTY
    onehot = np.zeros((n, k))
    onehot[np.arange(n), target.codes] = 1.0
    f0 = np.zeros((n, k)) if f0 is None else np.asarray(f0, dtype=np.float64)
    # two classes: one score (class 1 against a class 0 held at 0) -- the logistic loss
    free = [1] if k == 2 else list(range(1, k))
    targets_of_rules = [1] if k == 2 else list(range(k))
    if min_support is None:
        min_support = max(2, n // 20)
    extra = {} if beam is None else {"beam": beam}
    masks: list[np.ndarray] = []
    conjs: list[Conjunction] = []
    classes: list[int] = []
    theta = np.zeros(len(free))
    theta = _refit(f0, onehot, masks, classes, free, theta, l2)
    seen: set[bytes] = set()
    cols: dict = {}
    search = {"max_conditions": max_conditions, "top": _CANDIDATES,
              "min_support": min_support, "columns": columns, **extra}
    for _round_no in range(max_rules):
        p = _softmax(_scores(f0, theta, masks, classes, free))
        best = _best_rule(frame, onehot, p, targets_of_rules, search=search, l2=l2,
                          digit_cost=digit_cost, seen=seen, kept=list(zip(classes, conjs)),
                          cols=cols)
        if best is None or best[0] <= 1e-9:
            break
        _gain, conj, c = best
        seen.add(conj.mask.tobytes())
        before = _loss(_scores(f0, theta, masks, classes, free), onehot)
        new_theta = _refit(f0, onehot, [*masks, conj.mask], [*classes, c], free,
                           np.append(theta, 0.0), l2)
        after = _loss(_scores(f0, new_theta, [*masks, conj.mask], [*classes, c], free), onehot)
        if before - after < penalty * (1 + len(conj.conditions)):
            break  # the rule does not pay for its parameters (weight and thresholds)
        conjs.append(conj)
        masks.append(conj.mask)
        classes.append(c)
        old = np.append(theta, 0.0)
        theta = old + _SHRINK * (new_theta - old)  # the next gradient: part of the step
    if masks and _SHRINK != 1.0:
        theta = _refit(f0, onehot, masks, classes, free, theta, l2)
    nb = len(free)
    bias = tuple(_round(b) for b in theta[:nb])
    weights = tuple(_round(w) for w in theta[nb:])
    keep = [i for i, w in enumerate(weights) if w != 0]
    conjs = [conjs[i] for i in keep]
    masks = [masks[i] for i in keep]
    classes = [classes[i] for i in keep]
    weights = tuple(weights[i] for i in keep)
    pred, scores = _exact_argmax(f0, masks, classes, weights, bias, free, k)
    return _Learned(target, tuple(conjs), tuple(classes), weights, bias, pred, scores)


def _best_rule(frame: pd.DataFrame, onehot, p, targets, *, search: dict, l2: float,
               digit_cost: float, seen: set, kept: list, cols: dict):
    """The candidate rule of largest gain this round, ``(gain, conjunction, class)``, or
    None: for every class of ``targets`` and both signs of its gradient, the conjunctions
    found, each with one condition dropped, thresholds shortened, none already ``seen`` or
    nested in a ``kept`` rule (``(class, conjunction)``) of its class."""
    best = None
    for c in targets:
        g = onehot[:, c] - p[:, c]
        h = p[:, c] * (1 - p[:, c])
        for sign in (1.0, -1.0):
            for found in search_conjunctions(frame, sign * g, **search):
                for conj in [found, *_drop_one(frame, found, sign * g, cols)]:
                    if digit_cost > 0:
                        conj = shorter_thresholds(conj, frame, sign * g, h, l2=l2,
                                                  min_support=search["min_support"],
                                                  digit_cost=digit_cost, columns=cols)
                    key = conj.mask.tobytes()
                    if key in seen or conj.score <= 0 or any(
                            cc == c and _nested(conj, old) for cc, old in kept):
                        continue
                    gain = conj.score ** 2 / (h[conj.mask].sum() + l2)
                    if best is None or gain > best[0]:
                        best = (gain, conj, c)
    return best


def _loss(f, onehot) -> float:
    z = f - f.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(logp * onehot).sum())


def _scores(f0, theta, masks, classes, free):
    f = f0.copy()
    nb = len(free)
    f[:, free] += theta[:nb]
    for m, c, w in zip(masks, classes, theta[nb:]):
        f[:, c] += np.where(m, w, 0.0)
    return f


# ------------------------------------------------------------------------ induce


def _fresh(base: str, taken: set) -> str:
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _rules(learned: _Learned, taken: set) -> list[A.Rule]:
    """The learned rules as statements: a bool or two-valued output's negative weight is
    written as a positive weight for the other value (the same score difference)."""
    t = learned.target
    out: list[A.Rule] = []
    two = t.k == 2
    free = [1] if two else list(range(1, t.k))

    def rule(base, body, cls, w, fixed=False):
        if two and w < 0:
            cls, w = 0, -w
        return A.Rule(_fresh(base, taken), body, t.head(cls), weight=w, fixed=fixed)

    for c, b in zip(free, learned.bias):
        if b != 0:  # fixed, as the debugger's export writes a bias: the model's own bias
            base = "learned_bias" if two else f"learned_bias_{_value_name(t, c)}"
            out.append(rule(base, A.BoolConst(True), c, b, fixed=True))  # learns on
    for i, (conj, c, w) in enumerate(zip(learned.conjunctions, learned.classes,
                                         learned.weights), start=1):
        out.append(rule(f"learned_{i}", conj.formula, c, w))
    return out


def _value_name(t: _Target, c: int) -> str:
    v = str(t.classes[c]) if not isinstance(t.type, A.EnumType) else t.type.values[c]
    return v if A.is_plain_name(f"x_{v}") else str(c)


def induce(data: pd.DataFrame, targets, *, kb=None, max_rules: int = 10,
           max_conditions: int = 3, output: str | None = None, l2: float = DEFAULT_L2,
           min_support: int | None = None):
    """A knowledge base of readable weighted rules learned from ``data`` and ``targets``.

    The rules are an additive weighted rule set -- exactly greybox's decision, ``bias +
    sum(weight * [body])`` -- learned by boosting conjunctions of conditions on the
    columns (``x <= t``, ``x > t`` with ``t`` a short decimal between two data values,
    ``flag`` / ``not flag``, ``colour == red`` / ``colour != red``), each new rule followed by
    a joint refit of every weight (see the module docstring). The result builds a model
    directly: ``GreyBox(induce(X, y)).predict(X)`` is the learner's own training decision.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per example; numeric, bool and categorical / string columns.
    targets : array-like or pandas.Series
        One class per row. From scratch: bool (or 0/1) targets give a ``bool`` output, whole
        numbers ``lo..hi`` with every value present an ``int lo..hi`` output, anything else
        an enum of the classes' names. The output is named after a Series' name, else
        ``target``.
    kb : KnowledgeBase, optional
        Learn rules *added* to this knowledge base: its declarations and rules are kept, the
        new rules start from the scores its rules already give (crisp evaluation, bias 0)
        and use only the columns it declares as inputs; their names do not clash with its
        names.
    max_rules : int, default 10
        Most learned rules, not counting the bias rule (its body is ``true``).
    max_conditions : int, default 3
        Most conditions in one rule's body.
    output : str, optional
        With ``kb``: which decided variable the targets label (default: a Series' name when
        it is one, else the knowledge base's only output).
    l2 : float, default 1.0
        L2 penalty on the rule weights (a larger one gives smaller, steadier weights).
    min_support : int, optional
        Fewest training rows a rule's body must hold on, and leave out (default: 5% of the
        rows, at least 2).

    Returns
    -------
    KnowledgeBase
        From scratch: an ``input`` per column (float and int columns ``real`` -- unbounded,
        so rows outside the training range are still predicted -- bool ``bool``, others an
        enum of their values), the output, and the rules ``learned_bias``, ``learned_1``, ...

    Raises
    ------
    DataError
        A missing or infinite value (naming the column and row), a column name that cannot
        be a variable, targets of another length, one class only, a target outside the
        output's values.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import greybox.rules as gr
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"age": rng.integers(18, 90, 400), "smoker": rng.random(400) < 0.3})
    >>> y = pd.Series((X["age"] > 60) & X["smoker"], name="risk")
    >>> kb = gr.induce(X, y, max_rules=1)
    >>> print(gr.to_text(kb))
    input age: real
    input smoker: bool
    output risk: bool
    rule learned_bias weight 4.08 fixed: true -> not risk
    rule learned_1 weight 5.92: age > 60 and smoker -> risk
    <BLANKLINE>
    >>> bool((gr.evaluate(kb, X).decisions["risk"] == y).all())
    True
    """
    from ._kb import KnowledgeBase

    learned, statements, _frame_used = _prepare_and_learn(
        data, targets, kb=kb, max_rules=max_rules, max_conditions=max_conditions,
        output=output, l2=l2, min_support=min_support)
    return KnowledgeBase(statements)


def _prepare_and_learn(data, targets, *, kb=None, max_rules=10, max_conditions=3,
                       output=None, l2=DEFAULT_L2, min_support=None, beam=None,
                       digit_cost=DIGIT_COST):
    """``(learned, statements, frame)``: the learner's result (with its exact training
    predictions) and the knowledge base's statements."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if max_rules < 0 or max_conditions < 1:
        raise DataError(f"max_rules must be >= 0 and max_conditions >= 1, got {max_rules} "
                         f"and {max_conditions}")
    y = _aligned_targets(data, targets)
    for col in data.columns:
        _name_ok(col, "column")
    if kb is None:
        target, frame, f0, columns, head, taken = _start_from_data(data, y)
    else:
        target, frame, f0, columns, head, taken = _start_from_kb(kb, data, y, output)
    learned = _learn(frame, target, f0=f0, max_rules=max_rules,
                     max_conditions=max_conditions, l2=l2, min_support=min_support,
                     columns=columns, beam=beam, digit_cost=digit_cost)
    return learned, [*head, *_rules(learned, taken)], frame


