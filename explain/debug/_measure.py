"""Measuring candidate repairs as ``Debugger.what_if`` would (the same rebuild and
``predict``), and certifying them with Z3 (hard constraints consistent, ``keep``
properties entailed)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from greybox.errors import DataError, GreyboxError, ModelError
from greybox.rules import ast as A
from greybox.rules import check, entails, parse_formula
from greybox.rules.engine import expr_to_text, timeout_seconds

from ._edits import Disable, Edit, Remove, SetThreshold, SetWeight, _find, _numbers, parse_edit
from ._show import _py
from ._suggestions import Suggestion, Suggestions
from ._targets import _decode_targets

__all__ = ["measure"]


class _Measure:
    """What :func:`measure` reuses across candidates: the target rows, the original
    model's validation predictions, the certificates of hard constraints already made."""

    def __init__(self, dbg, *, validation, keep, timeout, rows=None):
        self.dbg = dbg
        self.timeout = timeout_seconds(timeout, what="timeout (seconds for each Z3 check)")
        if isinstance(keep, str):   # one property, not its characters
            keep = [keep]
        if keep is None or not isinstance(keep, Iterable):
            raise DataError(f"keep= is a list of properties (rule-language formulas such as "
                            f"'age < 18 -> not approve'), got {keep!r}")
        now = dbg._now
        self.now_correct = now["correct"].to_numpy()
        self.before_correct = dbg._before["correct"].to_numpy()
        self.index = dbg.batch.index
        if rows is None:
            self.target = ~self.now_correct
        else:
            self.target = np.zeros(len(self.index), bool)
            self.target[[self.index.get_loc(r) for r in rows]] = True
        kb = dbg.model.kb
        self.keep = tuple(_keep_formula(k, kb) for k in keep)
        self.val = None
        if validation is not None:
            self.val = _validation_set(dbg, validation)
        self.constraint_checks: dict = {}
        self.current_errors = None

    # -- predict
    def run(self, edits: tuple[Edit, ...], kind: str):
        """The Suggestion for ``edits``, or the reason it is dropped (a str)."""
        dbg = self.dbg
        try:
            model = dbg._rebuild(dbg._edits + list(edits))
        except GreyboxError as err:
            return f"invalid: {str(err).splitlines()[0]}"
        # predict's chunks of at most 65,536 rows (each row is decided on its own)
        pred = dbg._predict(model, confidence=False,
                            batch_size=max(4096, min(dbg.batch.n, 65536)))
        correct = pred["correct"].to_numpy()
        checks = self.certify(model)
        if isinstance(checks, str):
            return checks
        fixed = tuple(self.index[~self.before_correct & correct])
        broken = tuple(self.index[self.before_correct & ~correct])
        aimed = int((self.target & ~self.now_correct & correct).sum()) \
            - int((self.now_correct & ~correct).sum())
        net_now = int((~self.now_correct & correct).sum()) - int((self.now_correct
                                                                  & ~correct).sum())
        validation, val_net = None, 0
        if self.val is not None:
            vbatch, vtarget, vbefore = self.val
            vcorrect = _correct_on(model, dbg.output, vbatch, vtarget)
            vfixed = tuple(vbatch.index[~vbefore & vcorrect])
            vbroken = tuple(vbatch.index[vbefore & ~vcorrect])
            validation = {"fixed": vfixed, "broken": vbroken,
                          "accuracy_before": float(vbefore.mean()) if len(vbefore) else math.nan,
                          "accuracy_after": float(vcorrect.mean()) if len(vcorrect) else math.nan}
            val_net = len(vfixed) - len(vbroken)
        n = len(correct)
        key = (-val_net, -aimed, -net_now, len(edits), _cost(edits, dbg))
        return Suggestion(tuple(edits), fixed, broken,
                          float(self.before_correct.mean()) if n else math.nan,
                          float(correct.mean()) if n else math.nan, validation, checks, kind,
                          key)

    def keeps(self, edits) -> bool:
        """Whether ``edits`` pass the certification (without predicting)."""
        dbg = self.dbg
        try:
            model = dbg._rebuild(dbg._edits + list(edits))
        except GreyboxError:
            return False
        return not isinstance(self.certify(model), str)

    # -- certify
    def certify(self, model):
        """The checks ``model``'s rules pass (a tuple of sentences), or why they fail."""
        kb = model.to_kb()
        checks = []
        hard = [c for c in kb.constraints.values() if c.hard]
        if hard:
            key = tuple(sorted(f"{c.name}: {expr_to_text(c.formula)}" for c in hard))
            found = self.constraint_checks.get(key)
            if found is None:
                found = self.constraint_checks[key] = self._constraints(kb)
            ok, text = found
            if not ok:
                return text
            checks.append(text)
        else:
            checks.append("no hard constraint to keep satisfiable")
        bias = model.bias_table()
        residual = getattr(model, "residual", None) is not None and \
            len(getattr(model, "residual", {}) or {}) > 0
        for text, formula in self.keep:
            shown = f"`{text}`" if "`" not in text else f"'{text}'"
            try:
                result = entails(kb, formula, bias=bias, timeout=self.timeout)
            except GreyboxError as err:
                return f"keep {shown}: not decided ({str(err).splitlines()[0]})"
            if not result.holds:
                return f"keep {shown}: not entailed (Z3 found a counterexample)"
            aside = ", rules and biases, residual aside" if residual else ""
            checks.append(f"keeps {shown} (Z3 entails{aside})")
        return tuple(checks)

    def _constraints(self, kb):
        names = ("contradiction", "infeasible-input")
        report = check(kb, analyses=names, timeout=self.timeout)
        stopped = [f for f in report.findings if f.severity == "info"]
        errors = {f.message for f in report.errors}
        if self.current_errors is None:
            base = check(self.dbg.model.to_kb(), analyses=names, timeout=self.timeout)
            self.current_errors = {f.message for f in base.errors}
        new = errors - self.current_errors
        if new:
            return False, f"hard constraints: {sorted(new)[0]}"
        if stopped:
            return False, f"hard constraints not certified: {stopped[0].message}"
        if errors:
            return True, "hard constraints: no new contradiction (Z3; the model already had one)"
        return True, "hard constraints consistent, a decision for every input (Z3)"


def measure(dbg, candidates: Iterable, *, validation=None, keep: Sequence = (),
            kind: str = "edit", rows=None, timeout: float = 10.0) -> Suggestions:
    """Measure candidate repairs as ``Debugger.what_if`` would, and certify them.

    Each candidate (a tuple of edits, or one edit) is applied to a copy of the debugger's
    model on top of its edits so far -- the debugger itself does not change -- and every row
    is predicted again by the model's own ``predict``: ``dbg.what_if(*s.edits)`` then
    reports exactly ``s.fixed`` and ``s.broken``. Z3 then certifies the edited rules: the
    hard constraints stay consistent and leave a decision for every input
    (:func:`greybox.rules.check`'s ``contradiction`` and ``infeasible-input`` analyses;
    a contradiction the model already had is not held against an edit), and every formula
    of ``keep`` stays entailed (:func:`greybox.rules.entails` with the model's biases).
    A candidate that is invalid or fails a check is dropped, with the reason.

    Parameters
    ----------
    dbg : Debugger
    candidates : iterable of tuple of Edit (or of mappings ``parse_edit`` reads)
    validation : (data, targets), optional
        Held-out rows: each suggestion says what it fixes and breaks there too.
    keep : sequence of str or formula
        Properties every suggestion must keep entailed.
    kind : str
        The kind each suggestion is labelled with.
    rows : sequence of row labels, optional
        The failures aimed at (for the ranking); default every current failure.
    timeout : float
        Seconds for each Z3 check.

    Returns
    -------
    Suggestions
        Ranked as :meth:`Debugger.suggest` ranks them.

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> from greybox.explain import Debugger, SetThreshold
    >>> model = gb.GreyBox("input x: real  output y: bool  rule r: x > 5 -> y",
    ...                    semantics="product")
    >>> x = np.arange(10.0)
    >>> dbg = Debugger(model, {"x": x}, x > 6)
    >>> s = measure(dbg, [(SetThreshold("r", 0, 6.0),)])[0]
    >>> s.fixed, s.broken
    ((6,), ())
    """
    start = time.perf_counter()
    m = _Measure(dbg, validation=validation, keep=keep, timeout=timeout,
                 rows=None if rows is None else _rows(dbg, rows))
    out, dropped, count = [], [], 0
    for c in candidates:
        edits = (c,) if isinstance(c, (Edit, dict)) or not isinstance(c, Iterable) \
            else tuple(c)
        edits = tuple(parse_edit(e) for e in edits)
        count += 1
        s = m.run(edits, kind)
        if isinstance(s, str):
            dropped.append(("; ".join(e.describe() for e in edits), s))
        else:
            out.append(s)
    out.sort(key=lambda s: s._key)
    return Suggestions(tuple(out), tuple(dbg.batch.index[m.target]), count, count,
                       tuple(dropped), time.perf_counter() - start)


def _keep_formula(k, kb) -> tuple[str, object]:
    formula = parse_formula(k, kb)
    return (k if isinstance(k, str) else expr_to_text(formula)), formula


def _validation_set(dbg, validation):
    """(batch, decoded targets, the original model's correctness) of validation rows."""
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise DataError(f"validation= is (data, targets), held-out rows and their correct "
                        f"answers; got {type(validation).__name__}")
    data, targets = validation
    base = dbg._base
    batch = base.batch(data)
    if isinstance(targets, dict):
        if list(targets) != [dbg.output]:
            raise DataError(f"validation targets name {list(targets)}; expected {dbg.output!r}")
        targets = targets[dbg.output]
    y = _decode_targets(base.kb.variables[dbg.output], targets, batch.index)
    return batch, y, _correct_on(base, dbg.output, batch, y)


def _correct_on(model, output, batch, target) -> np.ndarray:
    pred = model.predict(batch, on_infeasible="flag")
    return (pred[output].to_numpy() == target) & ~pred["infeasible"].to_numpy()


def _cost(edits, dbg) -> float:
    """How large a change ``edits`` make (ties between equal repairs: the smaller wins):
    a weight or number's relative change, 1 for a rule switched off or removed, 2 for
    rule text."""
    kb = dbg.model.kb
    total = 0.0
    for e in edits:
        if isinstance(e, SetWeight) and e.name in kb.rules:
            old = kb.rules[e.name].weight
            total += abs(e.weight - old) / max(abs(old), 1e-9)
        elif isinstance(e, SetThreshold):
            try:
                _, s = _find(list(kb.statements), e.name)
                nums = _numbers(s.body if isinstance(s, A.Rule) else s.formula)
                old = float(nums[e.index].value)
            except (GreyboxError, IndexError):
                old = 0.0
            total += abs(e.value - old) / max(abs(old), 1.0)
        elif isinstance(e, (Disable, Remove)):
            total += 1.0
        else:
            total += 2.0
    return total


def _rows(dbg, rows) -> list:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        rows = [rows]
    if isinstance(rows, pd.DataFrame):
        rows = rows.index
    rows = list(rows)
    index = dbg.batch.index
    for r in rows:
        try:
            hash(r)
        except TypeError:
            raise DataError(f"rows= holds {r!r}, which is not a row label (rows are labels of "
                            "the data's index, e.g. dbg.failures().index)") from None
    unknown = [r for r in rows if r not in index]
    if unknown:
        shown = ", ".join(repr(_py(r)) for r in unknown[:5])
        raise DataError(f"rows= names {len(unknown)} row label(s) not in the debugger's data: "
                        f"{shown} (rows are labels of the data's index, e.g. "
                        "dbg.failures().index)")
    if not rows:
        raise DataError("rows= is empty: name the failing rows to fix (default: every failure)")
    return list(dict.fromkeys(rows))


def at_least_one(name: str, value, what: str) -> None:
    """``value`` is a whole number >= 1, or a ModelError names ``name`` and ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ModelError(f"{name} must be a whole number >= 1 ({what}), got {value!r}")
