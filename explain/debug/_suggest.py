"""Repair suggestions: small rule edits that fix failing predictions, exact and certified.

How :func:`suggest` searches (``Debugger.suggest``):

1. **The decision taken apart.** One run of the model's decision function
   (``greybox.semantics.crisp.crisp_evaluation``, what ``predict`` runs) gives every rule's body on every
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

import html
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from greybox.errors import DataError, GreyboxError, ModelError
from greybox.rules import ast as A
from greybox.rules import check, entails, expr_to_text, parse_formula, plan, timeout_seconds

from ._edits import (
    AddStatement,
    Disable,
    Edit,
    Remove,
    SetThreshold,
    SetWeight,
    _find,
    _numbers,
    parse_edit,
)

__all__ = ["PAIR_FIRST", "PAIR_SECOND", "Suggestion", "Suggestions", "measure", "suggest"]

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


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, repr=False)
class Suggestion:
    """One suggested repair: its edits and what they do, as ``Debugger.what_if`` reports it.

    Attributes
    ----------
    edits : tuple of Edit
        Apply them with ``dbg.what_if(*s.edits)``; each edit's ``to_spec()`` is the form the
        web debugger sends.
    fixed, broken : tuple
        Row labels of the debugger's data whose prediction the edits make right / wrong,
        against the original model (the debugger's earlier edits included, as ``what_if``
        reports them).
    accuracy_before, accuracy_after : float
        On the debugger's data: the original model's, and with the edits so far plus these.
    validation : dict or None
        With ``validation=(data, targets)``: ``fixed``, ``broken`` (row labels of those
        rows), ``accuracy_before`` and ``accuracy_after`` there.
    checks : tuple of str
        What was certified, one short sentence each.
    kind : str
        ``"weight"``, ``"threshold"``, ``"disable"``, ``"remove"``, ``"bias"``, ``"pair"``
        or what the caller of :func:`measure` named it (``"rule"`` for a learned rule).
    """

    edits: tuple[Edit, ...]
    fixed: tuple
    broken: tuple
    accuracy_before: float
    accuracy_after: float
    validation: dict | None = None
    checks: tuple[str, ...] = ()
    kind: str = ""
    #: the ranking key (smaller first); not part of equality
    _key: tuple = field(default=(), compare=False)

    @property
    def net(self) -> int:
        """Rows fixed minus rows broken on the debugger's data."""
        return len(self.fixed) - len(self.broken)

    def describe(self) -> str:
        """The edits, in words."""
        return "; ".join(e.describe() for e in self.edits)

    def __str__(self) -> str:
        text = (f"{self.describe()}: +{len(self.fixed)} fixed, -{len(self.broken)} broken, "
                f"accuracy {self.accuracy_before:.3f} -> {self.accuracy_after:.3f}")
        v = self.validation
        if v is not None:
            text += (f" (held out: +{len(v['fixed'])} -{len(v['broken'])}, "
                     f"{v['accuracy_before']:.3f} -> {v['accuracy_after']:.3f})")
        return text

    def __repr__(self) -> str:
        return f"Suggestion({self.kind}: {self.describe()}; +{len(self.fixed)} -{len(self.broken)})"

    def to_frame(self) -> pd.DataFrame:
        """One line per row the edits change the correctness of: ``data`` (``"data"`` or
        ``"validation"``), ``row`` and ``effect`` (``"fixed"`` or ``"broken"``)."""
        rows = [("data", r, "fixed") for r in self.fixed]
        rows += [("data", r, "broken") for r in self.broken]
        if self.validation is not None:
            rows += [("validation", r, "fixed") for r in self.validation["fixed"]]
            rows += [("validation", r, "broken") for r in self.validation["broken"]]
        return pd.DataFrame(rows, columns=["data", "row", "effect"])

    def to_dict(self) -> dict:
        """A JSON-ready summary: the edits as :meth:`Edit.to_spec` mappings, the rows as
        lists, the figures and the checks."""
        out = {"kind": self.kind, "describe": self.describe(),
               "edits": [e.to_spec() for e in self.edits],
               "fixed": [_label(r) for r in self.fixed],
               "broken": [_label(r) for r in self.broken],
               "net": self.net, "accuracy_before": self.accuracy_before,
               "accuracy_after": self.accuracy_after, "checks": list(self.checks),
               "validation": None}
        if self.validation is not None:
            v = self.validation
            out["validation"] = {"fixed": [_label(r) for r in v["fixed"]],
                                 "broken": [_label(r) for r in v["broken"]],
                                 "accuracy_before": v["accuracy_before"],
                                 "accuracy_after": v["accuracy_after"]}
        return out

    def _repr_html_(self) -> str:
        checks = "".join(f"<li>{html.escape(c)}</li>" for c in self.checks)
        return (f"<div><b>{html.escape(self.kind)}</b>: {html.escape(str(self))}"
                f"<ul>{checks}</ul></div>")


@dataclass(frozen=True, repr=False)
class Suggestions:
    """Ranked repair suggestions (a sequence of :class:`Suggestion`).

    Attributes
    ----------
    suggestions : tuple of Suggestion
        Best first: most held-out rows fixed minus broken (with ``validation``), then most
        target failures fixed minus rows broken, then fewer edits, then the smaller change.
    rows : tuple
        The failing rows aimed at.
    candidates : int
        Candidate edits the search scored.
    measured : int
        Candidates run through ``predict`` and certified.
    dropped : tuple of (str, str)
        Candidates left out by a check: (edits, why).
    seconds : float
    notes : tuple of str
        What was not searched, and why.
    """

    suggestions: tuple[Suggestion, ...]
    rows: tuple = ()
    candidates: int = 0
    measured: int = 0
    dropped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.suggestions)

    def __iter__(self):
        return iter(self.suggestions)

    def __getitem__(self, i):
        return self.suggestions[i]

    def to_frame(self) -> pd.DataFrame:
        """One row per suggestion: rank, kind, edits, fixed, broken, net, accuracy_after
        and, with validation, ``val_fixed``, ``val_broken``, ``val_net``,
        ``val_accuracy_after``."""
        rows = []
        for i, s in enumerate(self.suggestions, 1):
            row = {"rank": i, "kind": s.kind, "edits": s.describe(), "fixed": len(s.fixed),
                   "broken": len(s.broken), "net": s.net, "accuracy_after": s.accuracy_after}
            if s.validation is not None:
                v = s.validation
                row.update(val_fixed=len(v["fixed"]), val_broken=len(v["broken"]),
                           val_net=len(v["fixed"]) - len(v["broken"]),
                           val_accuracy_after=v["accuracy_after"])
            rows.append(row)
        columns = ["rank", "kind", "edits", "fixed", "broken", "net", "accuracy_after"]
        if any(s.validation is not None for s in self.suggestions):
            columns += ["val_fixed", "val_broken", "val_net", "val_accuracy_after"]
        return pd.DataFrame(rows, columns=columns)

    def __str__(self) -> str:
        head = (f"{len(self)} suggestion(s) for {len(self.rows)} failing row(s) "
                f"({self.candidates} candidates scored, {self.measured} checked by predict, "
                f"{len(self.dropped)} dropped by a check; {self.seconds:.2f} s)")
        lines = [head]
        val = any(s.validation is not None for s in self.suggestions)
        if self.suggestions:
            lines.append(f"{'#':>3}  {'kind':<9} {'fixed':>5} {'broken':>6} {'acc':>6}"
                         + (f" {'held-out':>9}" if val else "") + "  edits")
        for i, s in enumerate(self.suggestions, 1):
            extra = ""
            if val:
                v = s.validation
                pair = f"+{len(v['fixed'])}/-{len(v['broken'])}"
                extra = f" {pair:>9}"
            edits = s.describe()
            if len(edits) > 70:
                edits = edits[:67] + "..."
            lines.append(f"{i:>3}  {s.kind:<9} {len(s.fixed):>5} {len(s.broken):>6} "
                         f"{s.accuracy_after:>6.3f}{extra}  {edits}")
        for edits, why in self.dropped[:3]:
            lines.append(f"  dropped: {edits if len(edits) <= 60 else edits[:57] + '...'}: {why}")
        if len(self.dropped) > 3:
            lines.append(f"  ... and {len(self.dropped) - 3} more dropped (see .dropped)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        best = f"; best: {self.suggestions[0].describe()}" if self.suggestions else ""
        return (f"Suggestions({len(self)} for {len(self.rows)} failing row(s), "
                f"{len(self.dropped)} dropped{best})")

    def _repr_html_(self) -> str:
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return (f"<div><b>{html.escape(repr(self))}</b>{self.to_frame()._repr_html_()}"
                f"{notes}</div>")


# --------------------------------------------------------------------------- measuring


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
    from ._targets import _decode_targets

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
        shown = ", ".join(repr(_plain(r)) for r in unknown[:5])
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


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _label(value):
    """A row label as JSON holds it: numbers, strings, bools and None as they are, any
    other label (a timestamp, a tuple) as its text."""
    value = _plain(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


# --------------------------------------------------------------------------- the search


@dataclass
class _Cand:
    edits: tuple
    kind: str
    gain: int            # estimated: (aimed fixes - broken) * (2n + 1) + (all fixes - broken)
    decision: np.ndarray | None = None   # estimated decisions (codes) after the edits
    state: dict | None = None            # the rule's new state (direct rules), for pairs
    sweep: _Sweep | None = None          # a one-number edit's sweep (for ``keep``)


class _Scene:
    """The current decision of every row, taken apart (step 1 of the module docstring)."""

    def __init__(self, dbg, target: np.ndarray):
        from greybox.semantics.crisp import crisp_evaluation, crisp_scores, evaluate_with

        model = dbg.model.eval()
        self.dbg = dbg
        self.kb = kb = model.to_kb()
        self.output = out = dbg.output
        batch = dbg.batch
        with torch.no_grad():
            ev, logits = crisp_evaluation(model, batch)
            self.bias = model.bias_table(batch)
        self.ev = ev
        self._evaluate = lambda k: evaluate_with(model, k, batch, logits, bias=self.bias)
        var = kb.variables[out]
        self.values = list(A.domain_values(var.type))
        self.n = n = batch.n
        self.correct = dbg._now["correct"].to_numpy()
        self.target = target
        # the codes of the targets among the values
        pos = {v: i for i, v in enumerate(self.values)}
        self.truth = np.array([pos.get(_plain(t), -2) for t in dbg.target], dtype=np.int64)
        # gain of each row if its decision is right / wrong (aimed fixes first, then all)
        big = 2 * n + 1   # |all fixes - broken| <= n: the aimed count is round(gain / big)
        self.gain_right = np.where(self.correct, 0, np.where(target, big + 1, 1)).astype(np.int64)
        self.gain_wrong = np.where(self.correct, -big - 1, 0).astype(np.int64)
        with torch.no_grad():
            self.S = crisp_scores(model, batch, ev, logits, out)
        self.comp = next(c for c in plan(kb).components if out in c.variables)
        self._sides: dict = {}
        self.direct = {}
        for r in kb.rules.values():
            if r.head.name != out or self.comp.reads_itself(r):
                continue
            head = r.head.value
            col = 1 if isinstance(head, bool) else self.values.index(
                head.value if isinstance(head, A.Num) else head.name)
            sign = -1.0 if head is False else 1.0
            body = ev.bodies[r.name].to_numpy()
            self.direct[r.name] = {"rule": r, "col": col, "sign": sign, "weight": r.weight,
                                   "body": body}

    # -- decisions
    def gain(self, d: np.ndarray) -> int:
        right = d == self.truth
        return int(np.where(right, self.gain_right, self.gain_wrong).sum())

    def row_gain(self, d: np.ndarray) -> np.ndarray:
        return np.where(d == self.truth, self.gain_right, self.gain_wrong)

    def without(self, S, name):
        """(score of the rule's value without the rule, best other score, its value)."""
        st = self.direct[name]
        col = st["col"]
        x = S[:, col] - st["sign"] * st["weight"] * st["body"]
        if S.shape[1] == 2:   # a bool: the other value
            best = S[:, 1 - col]
            return x, best, np.where(np.isfinite(best), 1 - col, -1)
        others = S.copy()
        others[:, col] = -np.inf
        arg = np.argmax(others, axis=1)
        best = others[np.arange(self.n), arg]
        arg = np.where(np.isfinite(best), arg, -1)
        return x, best, arg

    def pick(self, x, best, arg, col):
        """The decision when the rule's value scores ``x``."""
        wins = (x > best) | ((x == best) & (col < arg))
        d = np.where(np.isfinite(x) & (wins | (arg < 0)), col, arg)
        return d

    def decisions(self, S):
        best = S.max(axis=1)
        d = np.argmax(S, axis=1)
        return np.where(np.isfinite(best), d, -1)

    # -- sweeps over one rule's weight / one of its numbers (exact)
    def sweep_weight(self, S, name):
        st = self.direct[name]
        x, best, arg = self.without(S, name)
        col, sign = st["col"], st["sign"]
        fires = st["body"].astype(bool)
        feasible = np.isfinite(x)     # the rule's value allowed by the hard constraints
        alone = arg < 0               # ... and the only one allowed
        # a firing row's decision: the rule's value above the breakpoint (below it for a
        # "not" head), the best other value on the other side
        up = np.where(alone, col, arg) if sign < 0 else np.full(self.n, col)
        down = np.full(self.n, col) if sign < 0 else np.where(alone, col, arg)
        lo_d = np.where(feasible, down, arg)
        hi_d = np.where(feasible, up, arg)
        with np.errstate(invalid="ignore"):
            point = sign * (best - x)
        moving = fires & feasible & ~alone & (lo_d != hi_d)
        still = self.pick(x + sign * st["weight"] * fires, best, arg, col)
        still = np.where(feasible, still, arg)
        gain = self.row_gain(still)
        found = _best_interval(point[moving], self.row_gain(lo_d)[moving],
                               self.row_gain(hi_d)[moving], gain[~moving].sum(),
                               st["weight"], closed=None, flip=True,
                               now_gain=gain[moving].sum())
        if found is None:
            return None
        w, total, sweep = found
        if w == 0:
            return None   # switching the rule off: Disable says it
        d = self.pick(x + sign * w * fires, best, arg, col)
        d = np.where(feasible, d, arg)
        return SetWeight(name, w), total, d, {"weight": w}, sweep

    def sides(self, rule, index):
        """(the other side's value per row, "other OP t", the body with the comparison
        forced true, forced false, the number) of a rule's ``index``-th number; None
        when it is not a side of an order comparison. Cached per rule body."""
        key = (id(rule.body), index)
        if key in self._sides:
            return self._sides[key][1]
        num = _numbers(rule.body)[index]
        found = _compare_of(rule.body, num)
        out = None
        if found is not None and any(self.ev.kb.variables[n].optional
                                     for n in A.variables(found[0])
                                     if n in self.ev.kb.variables):
            found = None   # unknown where a value is missing: no sweep over its rows
        if found is not None:
            compare, on_left = found
            other = compare.right if on_left else compare.left
            op = _mirror(compare.op) if on_left else compare.op   # as "other OP t"
            ev = self.ev
            try:
                e = np.asarray(ev.value(other), dtype=np.float64)
            except (GreyboxError, KeyError, TypeError):
                e = None
            if e is not None:
                out = (e, op, ev.holds(_force(rule.body, compare, True)).to_numpy(),
                       ev.holds(_force(rule.body, compare, False)).to_numpy(), num, other)
        self._sides[key] = (rule.body, out)   # the body is kept: its id is not reused
        return out

    def sweep_number(self, S, name, index):
        st = self.direct[name]
        found = self.sides(st["rule"], index)
        if found is None:
            return None
        e, op, body_t, body_f, num, other = found
        x, best, arg = self.without(S, name)
        sw = st["sign"] * st["weight"]
        d_on = self.pick(x + sw, best, arg, col := st["col"])
        d_off = self.pick(x, best, arg, col)
        d_t = np.where(body_t, d_on, d_off)
        d_f = np.where(body_f, d_on, d_off)
        # "e > t" and "e >= t" hold below the breakpoint t = e; "e < t", "e <= t" above it
        low_true = op in (">", ">=")
        lo_d, hi_d = (d_t, d_f) if low_true else (d_f, d_t)
        moving = (lo_d != hi_d) & np.isfinite(e)
        current = float(num.value)
        cur_d = np.where(_holds(e, op, current), d_t, d_f)
        # which end of an interval between breakpoints keeps the same rows: "e >= t" and
        # "e < t" the upper one, "e > t" and "e <= t" the lower one
        closed = "hi" if op in (">=", "<") else "lo" if op in (">", "<=") else None
        gain = self.row_gain(cur_d)
        found = _best_interval(e[moving], self.row_gain(lo_d)[moving],
                               self.row_gain(hi_d)[moving], gain[~moving].sum(), current,
                               closed=closed, integral=_integral(self.kb, other),
                               now_gain=gain[moving].sum())
        if found is None:
            return None
        t, total, sweep = found
        d = np.where(_holds(e, op, t), d_t, d_f)
        return SetThreshold(name, index, t), total, d, {"number": (index, t)}, sweep

    def sweep_bias(self, S, col):
        """The best shift of the score of value ``col`` on every row (a bias change),
        as the weight of a rule that always fires."""
        key = "\0bias"
        self.direct[key] = {"rule": None, "col": col, "sign": 1.0, "weight": 0.0,
                            "body": np.ones(self.n)}
        try:
            return self.sweep_weight(S, key)
        finally:
            del self.direct[key]

    def disable(self, S, name):
        x, best, arg = self.without(S, name)
        d = self.pick(x, best, arg, self.direct[name]["col"])
        return Disable(name), self.gain(d), d, {"weight": 0.0}

    def apply(self, S, name, edit, d):
        """The score table and the rule's state after ``edit`` of direct rule ``name``."""
        st = dict(self.direct[name])
        rule = st["rule"]
        if isinstance(edit, SetWeight):
            st["weight"] = edit.weight
        elif isinstance(edit, Disable):
            st["weight"] = 0.0
        elif isinstance(edit, SetThreshold):
            target = _numbers(rule.body)[edit.index]
            value = A.Num(float(edit.value), target.learnable, span=target.span)
            body = A.rewrite(rule.body, lambda node: value if node is target else None)
            rule = st["rule"] = _replace_body(rule, body)
            st["body"] = self.ev.holds(body).to_numpy()
        old = self.direct[name]
        S2 = S.copy()
        col = st["col"]
        S2[:, col] = S[:, col] - old["sign"] * old["weight"] * old["body"] \
            + st["sign"] * st["weight"] * st["body"]
        return S2, st

    # -- by evaluation (rules elsewhere, constraints)
    def evaluate(self, edits) -> np.ndarray | None:
        dbg = self.dbg
        try:
            kb = dbg._edited_kb(dbg._edits + list(edits))
            ev = self._evaluate(kb)
        except GreyboxError:
            return None
        dec = ev.decisions[self.output]
        pos = {v: i for i, v in enumerate(self.values)}
        d = np.array([pos[_plain(v)] for v in dec], dtype=np.int64)
        return np.where(ev.infeasible.to_numpy(), -1, d)


def _replace_body(rule, body):
    import dataclasses

    return dataclasses.replace(rule, body=body)


def _holds(e, op, t):
    return {"<": np.less, "<=": np.less_equal, ">": np.greater,
            ">=": np.greater_equal}[op](e, t)


def _mirror(op: str) -> str:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)


def _compare_of(body, num):
    """The comparison ``num`` is a direct side of, and whether it is its left side; None
    when it is inside arithmetic, a set or an equality."""
    for node in A.walk(body):
        if isinstance(node, A.Compare) and node.op in ("<", "<=", ">", ">="):
            if node.left is num:
                return node, True
            if node.right is num:
                return node, False
    return None


def _force(body, compare, truth: bool):
    const = A.BoolConst(truth)
    return A.rewrite(body, lambda node: const if node is compare else None)


def _integral(kb, expr) -> bool:
    """Whether ``expr`` only takes whole values (an int variable, a count)."""
    if isinstance(expr, A.Var):
        v = kb.variables.get(expr.name)
        return v is not None and isinstance(v.type, A.IntType)
    return isinstance(expr, A.Count)


@dataclass
class _Sweep:
    """The gain of every interval between one number's sorted breakpoints ``uniq``:
    ``totals[k]`` for the values in (uniq[k-1], uniq[k]); ``now``: the current value's."""

    uniq: np.ndarray
    totals: np.ndarray
    now: int
    current: float
    closed: str | None
    integral: bool
    flip: bool
    now_total: int   # the gain at the current value

    def value(self, k: int) -> float:
        """A readable value in interval ``k``."""
        uniq = self.uniq
        lo = uniq[k - 1] if k > 0 else None
        hi = uniq[k] if k < len(uniq) else None
        c = self.current
        if self.flip and c and (lo is None or lo < -c) and (hi is None or -c < hi):
            return float(-c)   # a weight of the other sign: the readable fix
        return _readable(lo, hi, c, self.closed, self.integral,
                         spread=float(uniq[-1] - uniq[0]))

    def best(self, limit: int | None = None) -> int | None:
        """The best interval (nearest the current value among equals), only up to
        interval ``limit`` (inclusive) on its side of the current one; None when none
        beats the current value."""
        totals = self.totals
        ks = np.arange(len(totals))
        if limit is not None:
            lo, hi = sorted((self.now, limit))
            ks = ks[(ks >= lo) & (ks <= hi)]
        if not len(ks):
            return None
        top = totals[ks].max()
        if top <= self.now_total or top <= 0:
            return None
        return int(min(ks[totals[ks] == top], key=lambda k: abs(k - self.now)))


def _best_interval(points, lo_gain, hi_gain, fixed_gain, current, *, closed,
                   integral=False, flip=False, now_gain=None):
    """The value maximising the total gain over rows that change at their breakpoint
    ``points`` (``lo_gain`` below it, ``hi_gain`` above it), plus ``fixed_gain`` of the rows
    that do not change; None when no value beats ``current`` (whose rows gain
    ``now_gain``: a row exactly at its breakpoint decides as ``predict`` does). Returns
    (value, total, the sweep)."""
    if not len(points):
        return None
    order = np.argsort(points, kind="stable")
    p = points[order]
    delta = (hi_gain - lo_gain)[order]
    base = int(lo_gain.sum()) + int(fixed_gain)
    ends = np.flatnonzero(np.r_[p[1:] != p[:-1], True])   # last index of each group
    uniq = p[ends]
    totals = np.r_[base, base + np.cumsum(delta)[ends]]   # interval k: (uniq[k-1], uniq[k])
    now = int(np.searchsorted(uniq, current, side="left" if closed == "hi" else "right"))
    now_total = int(totals[now]) if now_gain is None else int(now_gain) + int(fixed_gain)
    sweep = _Sweep(uniq, totals, now, float(current), closed, integral, flip, now_total)
    k = sweep.best()
    if k is None:
        return None
    return sweep.value(k), int(totals[k]), sweep


def _readable(lo, hi, current, closed, integral, spread) -> float:
    """The shortest decimal inside (lo, hi) (``closed``: that end allowed too), the one
    nearest the middle among equally short ones; beyond the last breakpoint (``lo`` or
    ``hi`` None), within a margin of it."""
    if lo is None or hi is None:
        edge = hi if lo is None else lo
        pad = max(abs(spread) * 0.25, abs(edge) * 0.5, 1e-6)
        lo, hi = (edge - 2 * pad, edge) if lo is None else (edge, edge + 2 * pad)
        closed = ("hi" if closed == "hi" else None) if lo == edge - 2 * pad and hi == edge \
            else ("lo" if closed == "lo" else None)
    allow_lo, allow_hi = closed == "lo", closed == "hi"
    if integral:   # whole values: the closed end is the readable one
        if allow_hi and float(hi).is_integer():
            return float(hi)
        if allow_lo and float(lo).is_integer():
            return float(lo)
    middle = (lo + hi) / 2
    for digits in range(-15, 18):
        step = 10.0 ** -digits
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if last - first > 1000:
            continue
        found = []
        for k in range(first, last + 1):
            value = round(k * step, max(digits, 0))
            if lo < value < hi or (allow_lo and value == lo) or (allow_hi and value == hi):
                found.append(float(value))
        if found:
            return min(found, key=lambda v: abs(v - middle))
    return float(middle)


def suggest(dbg, rows=None, *, validation=None, keep: Sequence = (), max_edits: int = 2,
            top: int = 10, timeout: float = 10.0, n_jobs: int | None = None) -> Suggestions:
    """Ranked, certified edits that fix failing predictions (see ``Debugger.suggest``)."""
    start = time.perf_counter()
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
    firsts = [c for c in cands if len(c.edits) == 1][:MARGIN]
    seen, effects = set(), set()
    out, dropped, measured = [], [], 0
    from .._parallel import Ahead

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
    out.sort(key=lambda s: s._key)
    out = _distinct(out)
    return Suggestions(tuple(out[:top]), tuple(dbg.batch.index[target]), len(cands),
                       measured, tuple(dropped), time.perf_counter() - start, tuple(notes))


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
        # v wins where rest + w * slope beats the best other value
        x, best, arg = scene.without(S0, members[0])
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
            continue
        w, total, sweep = found
        d = np.where(feasible, scene.pick(x + w * slope, best, arg, col), arg)
        out.append(_Cand((SetWeight(name, w),), "weight", total, d, None, sweep))
    return out


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
    from greybox.rules import closure

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
