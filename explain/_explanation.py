"""The result of :func:`greybox.explain.explain` and its renderings."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import torch

__all__ = ["Explanation"]


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything behind a batch of decisions, one row per example.

    Attributes
    ----------
    output : str
        The output explained.
    decision : DataFrame
        Per row: ``value``, ``probability``, and for decided outputs ``score``, ``bias``,
        ``residual`` (when there is a residual network), ``preferred`` (what the scores
        alone give) and ``changed_by_constraints``; ``infeasible``.
    rules : DataFrame
        Per row and rule: ``head``, ``weight``, ``truth`` of the body, ``contribution``
        (``weight * truth``, negative for ``not x`` heads), ``fired``; sorted by the size of
        the contribution. For a decided output, the contributions of its rules add up to
        ``score - bias - residual``.
    concepts : DataFrame
        Per row and neural or derived variable: its most probable ``value``, that value's
        ``probability``, and for derived ones a ``proof``: the most probable assignments of
        the network-predicted variables it rests on.
    attributions : dict[str, Tensor]
        Captum attributions, batch first: per neural concept (to its network's inputs),
        ``"residual:OUTPUT"`` (the residual network, to the standardised table inputs) and
        the output itself (through rules and residual, to the numeric table inputs, with
        the inputs' means as baseline).
    deltas : dict[str, Tensor or None]
        Convergence deltas (completeness gaps) of those attributions, where the method has
        one.
    methods : dict[str, str]
        The method used for each attribution (or why a concept could not be attributed,
        e.g. a network that indexes with its input has no gradient to follow).
    parameters, top_parameters, completeness : DataFrame
        Parameter attributions (integrated gradients over the parameters, from a baseline
        where they are 0, ``~`` thresholds keeping their values by default):
        per parameter tensor; the top individual entries (``entry`` such as
        ``networks.digit.1.weight[3, 0, 1, 2]``); and per row the sum of attributions, the
        output change from the baseline and the gap between them.
    """

    output: str
    semantics: str
    index: pd.Index
    decision: pd.DataFrame
    rules: pd.DataFrame
    concepts: pd.DataFrame
    attributions: dict
    deltas: dict
    methods: dict
    parameters: pd.DataFrame
    top_parameters: pd.DataFrame
    completeness: pd.DataFrame
    _model: object = field(repr=False)
    _batch: object = field(repr=False)
    _values: dict = field(repr=False)

    def __len__(self) -> int:
        return len(self.decision)

    def _locate(self, row) -> tuple[int, object]:
        """``(position, label)`` of a row named by its label in the data's index (``None``:
        the first row)."""
        from .formal._row import row_position

        pos = row_position(self.index, row)
        return pos, self.index[pos]

    def missing(self, row=None) -> list[str]:
        """The optional inputs missing in one row (``row``: its label; default the first):
        facts of the decision as much as any value -- a condition that reads them is
        neither true nor false, so the rules over them did not fire.

        Examples
        --------
        >>> import greybox as gb
        >>> model = gb.GreyBox("input x: optional real  output y: bool  rule r: x > 1 -> y",
        ...                    semantics="product")
        >>> ex = gb.explain.explain(model, {"x": [None]}, parameters=False)
        >>> ex.missing(), ex.row_text().splitlines()[1]
        (['x'], '  facts: x is missing')
        """
        from greybox.rules.engine import missing_key

        pos, _ = self._locate(row)
        kb = self._model.kb
        return [n for n in kb.inputs if kb.variables[n].optional
                and missing_key(n) in self._batch.columns
                and bool(self._batch.columns[missing_key(n)][pos])]

    # ------------------------------------------------------------------ text
    def row_text(self, row=None) -> str:
        """A readable paragraph on one row (``row``: its label in the data's index;
        default the first)."""
        pos, label = self._locate(row)
        d = self.decision.iloc[pos]
        lines = []
        prob = f" (p={d['probability']:.2f})" if "probability" in d and pd.notna(
            d.get("probability")) else ""
        value = d["value"]
        if isinstance(value, float):   # a regression output's number, readable
            value = f"{value:.6g}"
        lines.append(f"row {label}: {self.output} = {value}{prob}")
        missing = self.missing(label)
        if missing:
            lines.append("  facts: " + ", ".join(f"{n} is missing" for n in missing))
        if "score" in d:
            res = f" + residual {d['residual']:+.3f}" if "residual" in d else ""
            rules_total = d["score"] - d["bias"] - (d["residual"] if "residual" in d else 0)
            lines.append(f"  score {d['score']:+.3f} = bias {d['bias']:+.3f} + rules "
                         f"{rules_total:+.3f}{res}")
            if d.get("changed_by_constraints"):
                lines.append(f"  hard constraints changed it from {d['preferred']}")
        if d.get("infeasible"):
            lines.append("  no decision satisfies the hard constraints in this row")
        rules = self.rules[self.rules.row == label]
        if len(rules):
            show_head = len(set(rules["head"])) > 1
            shown = [f"{r.rule}{f' ({r.head})' if show_head else ''} {r.contribution:+.3f}"
                     f"{' (fired)' if r.fired else ''}"
                     for r in rules.itertuples() if abs(r.contribution) > 1e-9][:6]
            lines.append("  rules: " + (", ".join(shown) if shown else "none fired"))
        concepts = self.concepts[self.concepts.row == label]
        for c in concepts.itertuples():
            p = f" (p={c.probability:.2f})" if pd.notna(c.probability) else ""
            text = c.proof if c.proof else f"{c.concept} = {c.value}{p}"
            lines.append(f"  concept: {text}")
        if len(self.top_parameters):
            top = self.top_parameters[self.top_parameters.row == label].head(3)
            lines.append("  parameters that carried it: " + ", ".join(
                f"{t.entry} {t.attribution:+.3g}" for t in top.itertuples()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n".join(self.row_text(label) for label in self.index)

    def __repr__(self) -> str:
        return f"Explanation({self.output!r}, {len(self)} rows, semantics={self.semantics!r})"

    # ---------------------------------------------------------------- tables
    def to_frame(self) -> pd.DataFrame:
        """A tidy table: one line per (row, part, name) with ``value`` and ``amount``
        (probability for decisions and concepts, contribution for rules, attribution for
        parameters)."""
        parts = []
        d = self.decision
        parts.append(pd.DataFrame({"row": d.index, "part": "decision", "name": self.output,
                                   "value": d["value"].astype(object),
                                   "amount": d.get("probability", np.nan)}))
        if len(self.rules):
            r = self.rules
            parts.append(pd.DataFrame({"row": r.row, "part": "rule", "name": r.rule,
                                       "value": r.truth.astype(object),
                                       "amount": r.contribution}))
        if len(self.concepts):
            c = self.concepts
            parts.append(pd.DataFrame({"row": c.row, "part": "concept", "name": c.concept,
                                       "value": c.value.astype(object),
                                       "amount": c.probability}))
        if len(self.parameters):
            p = self.parameters
            parts.append(pd.DataFrame({"row": p.row, "part": "parameter", "name": p.parameter,
                                       "value": None, "amount": p.attribution}))
        gaps = [(label, n) for label in self.index for n in self.missing(label)]
        if gaps:   # the optional inputs missing in each row: facts of its decision
            parts.append(pd.DataFrame({"row": [g[0] for g in gaps], "part": "missing",
                                       "name": [g[1] for g in gaps], "value": None,
                                       "amount": np.nan}))
        return pd.concat(parts, ignore_index=True)

    def _repr_html_(self) -> str:
        body = "".join(f"<pre>{html.escape(self.row_text(label))}</pre>"
                       for label in self.index)
        return (f"<div><b>Explanation of {html.escape(self.output)}</b>{body}"
                + self.rules.head(30)._repr_html_() + "</div>")

    # --------------------------------------------------------------- graphs
    def graph(self, row=None) -> nx.DiGraph:
        """The concept graph of one decision (``row``: its label): the knowledge base's
        graph with each variable's value and each rule's truth and contribution as node
        attributes."""
        kb = self._model.kb
        g = nx.DiGraph(kb.graph)
        pos, label = self._locate(row)
        missing = set(self.missing(label))
        concepts = self.concepts[self.concepts.row == label].set_index("concept")
        for node in g.nodes:
            attrs = g.nodes[node]
            if node.startswith("rule:"):
                r = self.rules[(self.rules.row == label) & (self.rules.rule == node[5:])]
                if len(r):
                    attrs["truth"] = float(r.truth.iloc[0])
                    attrs["contribution"] = float(r.contribution.iloc[0])
                    attrs["label"] = f"{node[5:]}\ntruth {attrs['truth']:.2f}\n" \
                                     f"{attrs['contribution']:+.2f}"
            elif node == self.output:
                attrs["value"] = self.decision["value"].iloc[pos]
                attrs["label"] = f"{node} = {attrs['value']}"
            elif node in concepts.index:
                attrs["value"] = concepts.loc[node, "value"]
                attrs["label"] = f"{node} = {attrs['value']}"
            elif node in missing:
                attrs["value"] = None
                attrs["label"] = f"{node} is missing"
            elif node in self._batch.columns:
                v = self._batch.columns[node][pos]
                attrs["value"] = v.item() if hasattr(v, "item") else v
                attrs["label"] = f"{node} = {attrs['value']:.4g}" if isinstance(
                    attrs["value"], float) else f"{node} = {attrs['value']}"
            attrs.setdefault("label", node)
        return g

    def to_dot(self, row=None) -> str:
        """The concept graph of one decision in Graphviz DOT, values on the nodes."""
        g = self.graph(row)

        def q(s):
            return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

        lines = ["digraph decision {", "  rankdir=LR;"]
        for node, attrs in g.nodes(data=True):
            shape = "box" if node.startswith("rule:") else "ellipse"
            color = ""
            if "contribution" in attrs:
                color = ', color="darkgreen"' if attrs["contribution"] > 0 else \
                    (', color="firebrick"' if attrs["contribution"] < 0 else ', color="gray"')
            lines.append(f"  {q(node)} [label={q(attrs['label'])}, shape={shape}{color}];")
        for a, b in g.edges:
            lines.append(f"  {q(a)} -> {q(b)};")
        lines.append("}")
        return "\n".join(lines)

    def to_svg(self, row=None) -> str:
        """The concept graph of one decision as SVG (drawn with matplotlib)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        g = self.graph(row)
        layers = {}
        for node in nx.topological_sort(g):
            preds = list(g.predecessors(node))
            layers[node] = 0 if not preds else 1 + max(layers[p] for p in preds)
        for node, layer in layers.items():
            g.nodes[node]["layer"] = layer
        pos = nx.multipartite_layout(g, subset_key="layer")
        fig, ax = plt.subplots(figsize=(2.2 * (max(layers.values()) + 1), 1 + 0.6 * len(g)))
        colors = []
        for _, attrs in g.nodes(data=True):
            c = attrs.get("contribution")
            colors.append("#9ad29a" if c and c > 0 else "#f2a3a3" if c and c < 0 else "#dde6f2")
        nx.draw_networkx(g, pos, ax=ax, labels={n: a["label"] for n, a in g.nodes(data=True)},
                         node_color=colors, node_size=2600, font_size=7, arrows=True)
        ax.set_axis_off()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    # ------------------------------------------------------------------ plots
    def plot(self, row=None):
        """A contribution waterfall (bias, rules, residual -> score) and the input
        attributions of the row: heatmaps for image inputs, bars for table inputs.
        Returns the matplotlib Figure."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        panels = [k for k, v in self.attributions.items() if v.dim() >= 2]
        fig, axes = plt.subplots(1, 1 + len(panels), figsize=(5 + 3.2 * len(panels), 3.6),
                                 squeeze=False)
        ax = axes[0, 0]
        pos, label = self._locate(row)
        d = self.decision.iloc[pos]
        if "score" not in d:   # a computed output: its distribution
            self._plot_distribution(ax, pos)
            for ax, key in zip(axes[0, 1:], panels):
                self._plot_attribution(ax, key, pos)
            fig.tight_layout()
            return fig
        rules = self.rules[(self.rules.row == label) & (self.rules.contribution.abs() > 1e-3)]
        steps = []
        if "bias" in d:
            steps.append(("bias", float(d["bias"])))
        steps += [(r.rule, float(r.contribution)) for r in rules.itertuples()]
        if "residual" in d:
            steps.append(("residual", float(d["residual"])))
        level = 0.0
        for k, (_, amount) in enumerate(steps):
            ax.bar(k, amount, bottom=level, color="#4c9a4c" if amount >= 0 else "#c44e4e")
            level += amount
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(steps)), [s[0] for s in steps], rotation=45, ha="right",
                      fontsize=8)
        ax.set_title(f"{self.output} = {d['value']}: score {level:+.2f}", fontsize=9)
        for ax, key in zip(axes[0, 1:], panels):
            self._plot_attribution(ax, key, pos)
        fig.tight_layout()
        return fig

    def _plot_distribution(self, ax, row: int) -> None:
        from greybox.rules import ast as A

        t = self._model.kb.variables[self.output].type
        p = self._values.get(self.output)
        value = self.decision["value"].iloc[row]
        if p is None or p.dim() != 2:
            ax.text(0.5, 0.5, f"{self.output} = {value}", ha="center")
            ax.set_axis_off()
            return
        probs = p[row].cpu()
        labels = list(A.domain_values(t))
        top = probs.topk(min(8, probs.numel())).indices.sort().values.tolist()
        ax.bar(range(len(top)), probs[top].numpy(),
               color=["#4c9a4c" if labels[i] == value else "#9db7d5" for i in top])
        ax.set_xticks(range(len(top)), [str(labels[i]) for i in top], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{self.output} = {value}: its distribution", fontsize=9)

    def _plot_attribution(self, ax, key: str, row: int) -> None:
        a = self.attributions[key][row].detach().cpu()
        shape = self._image_shape(key)
        if shape is not None and a.numel() == int(np.prod(shape)):
            a = a.reshape(shape)
        if a.dim() >= 2:
            while a.dim() > 2:
                a = a.sum(0)
            lim = float(a.abs().max()) or 1.0
            ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_axis_off()
        else:
            names = self._attribution_names(key, a.numel())
            ax.barh(range(a.numel()), a.numpy(),
                    color=["#4c9a4c" if x >= 0 else "#c44e4e" for x in a.tolist()])
            ax.set_yticks(range(a.numel()), names, fontsize=7)
        ax.set_title(f"attribution: {key}", fontsize=9)

    def _image_shape(self, key: str):
        """The 2-D shape to draw a concept's attribution in: the declared shape of its
        tensor input (``tensor[8, 8]``), or a square when it has a square number of
        values."""
        kb = self._model.kb
        var = kb.variables.get(key)
        if var is None or var.role != "neural" or len(var.args) != 1:
            return None
        t = kb.variables[var.args[0]].type
        if getattr(t, "shape", None) and len(t.shape) >= 2:
            return tuple(t.shape)
        size = int(np.prod(t.shape)) if getattr(t, "shape", None) else None
        side = int(round(size ** 0.5)) if size else 0
        return (side, side) if side and side * side == size else None

    def _attribution_names(self, key: str, size: int) -> list[str]:
        model = self._model
        if key == self.output:
            return _numeric_inputs(model.kb)
        if key.startswith("residual:") and size == len(model.feature_names):
            return list(model.feature_names)
        from greybox.rules import ast as A

        var = model.kb.variables.get(key)
        if var is not None and var.role == "neural":   # a network over table inputs
            names = []
            for a in var.args:
                t = model.kb.variables[a].type
                if isinstance(t, A.TensorType):
                    break
                names += [f"{a}={v}" for v in t.values] if isinstance(t, A.EnumType) else [a]
            else:
                if len(names) == size:
                    return names
        return [str(i) for i in range(size)]

    # ----------------------------------------------------------- formal reasons
    def reason(self, row=None, *, level: str = "auto", max_relus: int = 64,
               backend: str = "auto", timeout: float = 10.0, n_jobs: int | None = None,
               target=None):
        """A subset-minimal set of facts that guarantees this row's decision (what
        ``predict`` returns; for a regression output, whether its number meets
        ``target``); a list of rows: a list of reasons (``n_jobs``: through joblib); see
        :func:`greybox.explain.reason`."""
        from .formal import reason

        return reason(self._model, self._batch, row, self.output, level=level,
                      max_relus=max_relus, backend=backend, timeout=timeout, n_jobs=n_jobs,
                      target=target)

    def counterfactual(self, row=None, *, minimize: str = "count", immutable=(),
                       level: str = "auto", max_relus: int = 64, backend: str = "auto",
                       timeout: float = 10.0, n_jobs: int | None = None, **wishes):
        """A minimal change of the row's facts that changes its decision (what ``predict``
        returns); ``wishes``: ``target``, ``allowed``, ``increase_only``,
        ``decrease_only``, ``cost``; a list of rows: a list of counterfactuals
        (``n_jobs``: through joblib); see :func:`greybox.explain.counterfactual`."""
        from .formal import counterfactual

        return counterfactual(self._model, self._batch, row, self.output, minimize=minimize,
                              immutable=immutable, level=level, max_relus=max_relus,
                              backend=backend, timeout=timeout, n_jobs=n_jobs, **wishes)

    def counterfactuals(self, row=None, *, n: int = 5, minimize: str = "count",
                        immutable=(), level: str = "auto", max_relus: int = 64,
                        backend: str = "auto", timeout: float = 30.0,
                        n_jobs: int | None = None, **wishes):
        """Up to ``n`` diverse counterfactuals of the row (no two change the same facts);
        a list of rows: one such sequence per row (``n_jobs``: through joblib); see
        :func:`greybox.explain.counterfactuals`."""
        from .formal import counterfactuals

        return counterfactuals(self._model, self._batch, row, self.output, n=n,
                               minimize=minimize, immutable=immutable, level=level,
                               max_relus=max_relus, backend=backend, timeout=timeout,
                               n_jobs=n_jobs, **wishes)

    def pushes(self, concept: str, *, targets=None, row=None):
        """How each grounding of a soft constraint or rule that reads ``concept`` (a
        neural concept or output, bool, enum or int, e.g. ``smokes(anna)``) pushes it in
        training, on one row
        (``row``: its label; default the first); see :func:`greybox.explain.pushes`."""
        from ._pushes import pushes

        return pushes(self._model, self._batch, concept, targets=targets, row=row)

    def shapley(self, *, n_samples: int = 25) -> pd.DataFrame:
        """Rule attribution by ablation: Shapley values of the rules (rules are the players,
        a rule left out has weight 0) for the probability of each row's decision, by
        Captum's Shapley value sampling. Unlike contributions, these account for hard
        constraints and non-additive interactions."""
        from ._shapley import rule_shapley

        target = torch.as_tensor([_index_of(self._model.kb, self.output, v)
                                  for v in self.decision["value"]])
        return labelled(rule_shapley(self._model, self._batch, self.output, target,
                                     n_samples=n_samples), self.index)


def labelled(frame: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """``frame`` with its ``row`` column (positions) replaced by the rows' index labels."""
    if "row" not in frame.columns or not len(frame):
        return frame
    frame = frame.copy()
    frame["row"] = pd.Series(list(index[frame["row"].to_numpy().astype(int)]),
                             index=frame.index, dtype=object if not
                             pd.api.types.is_integer_dtype(index) else None)
    return frame


def _numeric_inputs(kb) -> list[str]:
    """The table inputs that are numbers (real or int): what an output's attributions
    are over."""
    from greybox.rules import ast as A

    return [n for n in kb.inputs
            if isinstance(kb.variables[n].type, (A.RealType, A.IntType))]


def _index_of(kb, name, value) -> int:
    from greybox.rules import ast as A

    return A.domain(kb.variables[name].type).index(value)
