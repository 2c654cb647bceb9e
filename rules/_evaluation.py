"""The result of a crisp evaluation: :class:`Evaluation`."""

from __future__ import annotations

import html
from functools import cached_property

import numpy as np
import pandas as pd

from ._compile import compile_expr
from ._domain import domain
from ._env import _Env
from ._exact import compile_truth
from ._kb import KnowledgeBase, parse_formula
from ._missing import definite
from ._proofs import prove

__all__ = ["Evaluation"]


class Evaluation:
    """The crisp evaluation of a knowledge base on a table of rows.

    The evaluation computes on codes (see :class:`~greybox.rules.ast.Domain`); the tables
    of values below are written on first use, and :meth:`code` reads any variable's codes
    without them.

    Attributes
    ----------
    kb : KnowledgeBase
    index : pandas.Index
        The rows, as in the data.
    bodies : DataFrame
        Per rule, whether its body holds (bool).
    scores : DataFrame
        Per decided variable, ``bias + sum(weight * [body])``: one column for a bool
        (the score of True), one ``NAME=VALUE`` column per value otherwise.
    preferred : DataFrame
        The decisions the scores alone give (before hard constraints).
    decisions : DataFrame
        The decisions after hard constraints (what a model returns).
    values : DataFrame
        The defined variables.
    violations : DataFrame
        Per constraint (hard and soft), True where the final decisions violate it.
    infeasible : Series
        True where no decision satisfies the hard constraints (``decisions`` then holds the
        preferred values and ``violations`` shows which constraints fail).
    """

    def __init__(self, run):
        #: the evaluation run (its environment, scores and rule bodies), read on demand
        self._run = run
        self.kb: KnowledgeBase = run.kb
        #: the number of rows
        self.n: int = run.n
        #: per row, whether no decision satisfies the hard constraints (bool array)
        self.infeasible_rows: np.ndarray = run.infeasible
        self._sealed = True

    def __setattr__(self, name: str, value) -> None:
        """Read-only once made (as the frozen record it was): its tables are written on
        first use, never by the caller."""
        if self.__dict__.get("_sealed", False):
            raise AttributeError(f"an Evaluation is read-only: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<Evaluation of {self.n} row{'s' * (self.n != 1)}>"

    @property
    def _env(self) -> _Env:
        return self._run.env

    @property
    def _weights(self) -> dict:
        return self._run.weights

    def code(self, name: str) -> np.ndarray:
        """Per row, the code of variable ``name`` (decided: the final decision; defined,
        input or neural: its value) -- an enum's index, an int's or a real's value (float64;
        a big int's Python ints), a bool -- as the evaluation computed it.

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input age: int 0..120  output grade: {low, high}  "
        ...               "rule r: age >= 18 -> grade = high")
        >>> gr.evaluate(kb, {"age": [10, 30]}).code("grade").tolist()
        [0, 1]
        """
        return np.broadcast_to(self._env[name], (self.n,))

    def preferred_code(self, name: str) -> np.ndarray:
        """Per row, the code of decided variable ``name`` the scores alone give."""
        return self._run.preferred[name]

    @cached_property
    def index(self) -> pd.Index:
        return self._run.index

    @cached_property
    def decisions(self) -> pd.DataFrame:
        return self._table(self.kb.decided, self.code)

    @cached_property
    def preferred(self) -> pd.DataFrame:
        return self._table(self.kb.decided, self.preferred_code)

    @cached_property
    def values(self) -> pd.DataFrame:
        return self._table(self.kb.defined, self.code)

    @cached_property
    def infeasible(self) -> pd.Series:
        return pd.Series(self.infeasible_rows, index=self.index, name="infeasible")

    def _table(self, names, codes) -> pd.DataFrame:
        return pd.DataFrame({v: domain(self.kb.variables[v].type).series(
            codes(v), index=self.index, name=v) for v in names}, index=self.index)

    # the per-rule tables are built on first use: a caller who wants only the decisions
    # does not pay for them
    @cached_property
    def bodies(self) -> pd.DataFrame:
        bodies = self._run.all_bodies()
        return _frame({r: bodies[r] for r in self.kb.rules}, self.index, bool)

    @cached_property
    def scores(self) -> pd.DataFrame:
        return _frame(self._run.scores(), self.index, np.float64)

    @cached_property
    def violations(self) -> pd.DataFrame:
        return _frame(self._run.violations(), self.index, bool)

    def holds(self, formula) -> pd.Series:
        """Per row, whether ``formula`` (rule text or AST) holds, given the final decisions
        (where it reads a missing value of an optional input: whether it is known true,
        see the rule language's missing values).

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input age: int 0..120  output ok: bool  rule r: age >= 18 -> ok")
        >>> gr.evaluate(kb, {"age": [10, 30]}).holds("ok <-> age > 20").tolist()
        [True, True]
        """
        expr = definite(self.kb, parse_formula(formula, self.kb))
        value = np.broadcast_to(compile_truth(expr, self.kb)(self._env), (len(self.index),))
        return pd.Series(value.astype(bool), index=self.index)

    def value(self, expression) -> np.ndarray:
        """Per row, the float64 value of an arithmetic ``expression`` (rule text or AST),
        given the final decisions (enum values as their codes).

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input x: real  input y: real  output o: bool  rule r: x > 1 -> o")
        >>> gr.evaluate(kb, {"x": [1.0, 2.0], "y": [3.0, 4.0]}).value("x + 2 * y").tolist()
        [7.0, 10.0]
        """
        from ._parser import parse_fragment

        expr = parse_fragment(expression, "expr", filename="<expression>") \
            if isinstance(expression, str) else expression
        value = compile_expr(expr, self.kb)(self._env)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (len(self.index),))

    @cached_property
    def contributions(self) -> pd.DataFrame:
        """Per rule, its signed push on its head's score: ``weight * [body]``, negative
        for ``not x`` heads. Per decided variable they add up to score minus bias."""
        w = np.array([self._weights[r] for r in self.bodies.columns], dtype=np.float64)
        return pd.DataFrame(self.bodies.to_numpy() * w + 0.0, index=self.index,
                            columns=self.bodies.columns)

    @property
    def changed(self) -> pd.Series:
        """True where hard constraints changed the preferred decision."""
        if self.decisions.shape[1] == 0:
            return pd.Series(False, index=self.index)
        return (self.decisions != self.preferred).any(axis=1) & ~self.infeasible

    def fired(self, row) -> list[str]:
        """Names of the rules whose body holds in row ``row`` (a position)."""
        body = self.bodies.iloc[row]
        return [r for r in body.index if body[r]]

    def proof(self, name: str, row: int = 0):
        """A shortest proof of bool fact ``name`` in row ``row`` (a position): the facts
        of the row that make it true and the derivation that uses them, fewest facts
        first (for reachability, a shortest path). See :class:`~greybox.rules.Proof`.

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse('''
        ... set node: {a, b, c, d}
        ... input edge(node, node): bool
        ... define reach(x in node, y in node): bool =
        ...     edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
        ... ''')
        >>> path = {("a", "b"), ("b", "c"), ("c", "d"), ("b", "d")}
        >>> ev = gr.evaluate(kb, {f"edge({x}, {y})": [(x, y) in path]
        ...                       for x in "abcd" for y in "abcd"})
        >>> print(ev.proof("reach(a, d)"))
        reach(a, d) holds in row 0, proved by 2 facts: edge(a, b), edge(b, d)
        reach(a, d) because edge(a, b) and reach(b, d)
          reach(b, d) because edge(b, d)
        """
        return prove(self, name, row)

    def to_frame(self) -> pd.DataFrame:
        """One wide table: decisions, scores, bodies, contributions, violations."""
        parts = {
            "decision": self.decisions,
            "preferred": self.preferred,
            "score": self.scores,
            "value": self.values,
            "body": self.bodies,
            "contribution": self.contributions,
            "violated": self.violations,
        }
        frames = [f.add_prefix(f"{k}.") for k, f in parts.items() if f.shape[1]]
        frames.append(self.infeasible.rename("infeasible").to_frame())
        return pd.concat(frames, axis=1)

    def summary(self) -> str:
        n = len(self.index)
        lines = [f"crisp evaluation of {n} row{'s' * (n != 1)}"]
        for name in self.decisions.columns:
            if name in self.kb.additive:   # a number per row: its spread, not its counts
                col = self.decisions[name].astype(np.float64)
                if n:
                    lines.append(f"  {name}: mean {col.mean():.4g}, min {col.min():.4g}, "
                                 f"max {col.max():.4g}")
                continue
            counts = self.decisions[name].value_counts(sort=False)
            shown = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
            lines.append(f"  {name}: {shown}")
        if n:
            lines.append(f"  changed by hard constraints: {int(self.changed.sum())}")
            lines.append(f"  infeasible (no decision satisfies the hard constraints): "
                         f"{int(self.infeasible.sum())}")
            rates = self.bodies.mean(axis=0) if self.bodies.shape[1] else pd.Series(dtype=float)
            if len(rates):
                lines.append("  rules fired: " + ", ".join(
                    f"{r} {100 * p:.0f}%" for r, p in rates.items()))
            soft = [c.name for c in self.kb.constraints.values() if not c.hard]
            for c in soft:
                lines.append(f"  soft constraint {c} violated in "
                             f"{int(self.violations[c].sum())} rows")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return (f"<pre>{html.escape(self.summary())}</pre>"
                + self.to_frame().head(20)._repr_html_())


def _frame(columns: dict, index, dtype) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame(index=index)
    return pd.DataFrame({k: np.asarray(v, dtype=dtype) for k, v in columns.items()},
                        index=index)
