"""Repair suggestions as results: one suggestion (its edits and what they fix and break,
as ``Debugger.what_if`` reports them) and a ranked list of them."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from ._edits import Edit
from ._show import _py

__all__ = ["Suggestion", "Suggestions"]


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


def _label(value):
    """A row label as JSON holds it: numbers, strings, bools and None as they are, any
    other label (a timestamp, a tuple) as its text."""
    value = _py(value)
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
