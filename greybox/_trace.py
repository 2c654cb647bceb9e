"""The trace: everything a grey-box model computed for a batch, batch first."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from greybox.errors import listed
from greybox.rules import ast as A

__all__ = ["Trace"]


class LazyValues(Mapping):
    """A read-only mapping whose entries are computed on first access."""

    def __init__(self, ready: dict, pending: Mapping, compute: Callable | None = None, *,
                 order=None):
        """``pending`` maps each key to a function of no argument computing it, or, given
        ``compute(key)``, is any collection of keys (no function object per key).
        Iteration follows ``order`` when given (else the ready keys, then the pending)."""
        self._ready, self._compute, self._order = dict(ready), compute, order
        self._pending = dict(pending) if compute is None else dict.fromkeys(pending)

    def __getitem__(self, key):
        if key not in self._ready:
            if key not in self._pending:
                raise KeyError(key)
            make = self._pending.pop(key)
            self._ready[key] = make() if self._compute is None else self._compute(key)
        return self._ready[key]

    def __iter__(self) -> Iterator[str]:
        if self._order is not None:
            yield from self._order
            return
        yield from self._ready
        yield from list(self._pending)

    def __len__(self) -> int:
        return len(self._ready) + len(self._pending)

    def __contains__(self, key) -> bool:
        return key in self._ready or key in self._pending

    def __repr__(self) -> str:
        return f"<{len(self)} values: {listed(self)}>"


@dataclass(frozen=True, eq=False)
class Trace:
    """What a :class:`~greybox.GreyBox` computed for a batch of ``n`` rows.

    Every tensor has the batch first.

    Attributes
    ----------
    semantics : str
        ``"probabilistic"``, ``"product"``, ``"godel"``, ``"lukasiewicz"`` or ``"crisp"``.
    values : Mapping[str, Tensor]
        Per variable: a bool's probability or truth degree, shape (n,); a finite
        variable's distribution over its values, shape (n, K); a real variable's value,
        shape (n,). Inputs (and what is computed from inputs alone) hold their values:
        numbers (n,), enums one-hot (n, K). Under fuzzy semantics an integer ``define``
        over network outputs is its expected value (n,); in a crisp trace every integer
        input and ``define`` holds its value (n,), float64 beyond 2**24. Entries that
        cost inference are computed on first access. Tensor inputs and sums too large to
        enumerate (see the models guide) are left out.
    logits : dict[str, Tensor]
        Each neural variable's raw network output.
    bodies, contributions : dict[str, Tensor]
        Per rule, its body's truth (n,) and its signed push ``weight * truth`` on its
        head's score (negative for ``not x`` heads).
    scores : dict[str, Tensor]
        Per decided variable: ``bias + sum(contributions)`` (+ residual), (n,) for a bool
        (the score of True) or (n, K).
    constraints : dict[str, Tensor]
        Per constraint (hard and soft), its truth (n,) given the final values (computed
        on first access).
    infeasible : Tensor
        (n,) bool: no assignment satisfies the hard constraints in these rows.
    """

    semantics: str
    n: int
    kb: object = field(repr=False)
    values: Mapping[str, torch.Tensor]
    logits: dict[str, torch.Tensor]
    bodies: dict[str, torch.Tensor]
    contributions: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]
    constraints: Mapping[str, torch.Tensor]
    infeasible: torch.Tensor
    _log_prob: Callable = field(repr=False)
    _decide: Callable = field(repr=False)
    #: ``(names, targets (n, M)) -> (n, M)`` at once, where a semantics can (None: one by
    #: one)
    _log_probs: Callable | None = field(default=None, repr=False)

    def log_prob(self, name: str, target: torch.Tensor) -> torch.Tensor:
        """Per row, the log probability (or log truth degree) that ``name`` takes the value
        with index ``target`` (long, (n,); for a bool 0/1)."""
        return self._log_prob(name, target)

    def log_probs(self, names: tuple[str, ...], target: torch.Tensor) -> torch.Tensor:
        """:meth:`log_prob` of many bool variables at once (the members of a family):
        ``target`` (n, M) holds 0/1 per row and variable; the result is (n, M), column
        ``j`` equal to ``log_prob(names[j], target[:, j])``."""
        if self._log_probs is not None:
            found = self._log_probs(names, target)
            if found is not None:
                return found
        return torch.stack([self._log_prob(name, target[:, j])
                            for j, name in enumerate(names)], 1)

    def decisions(self) -> dict[str, torch.Tensor]:
        """The most probable value of every output, as value indices (long, (n,)); real
        outputs as values. Hard constraints hold in them."""
        return self._decide()

    def to_frame(self) -> pd.DataFrame:
        """One row per example: bool values, each value of finite variables, real values,
        rule bodies and contributions, scores (columns prefixed ``value.``, ``body.``...)."""
        cols: dict[str, np.ndarray] = {}
        for name in self.values:
            t = self.values[name].detach().cpu()
            var = self.kb.variables[name]
            if t.dim() == 2:
                labels = A.domain_values(var.type)
                for k, lab in enumerate(labels):
                    cols[f"value.{name}={lab}"] = t[:, k].numpy()
            else:
                cols[f"value.{name}"] = t.expand(self.n).numpy()
        for prefix, part in (("body", self.bodies), ("contribution", self.contributions)):
            for k, t in part.items():
                cols[f"{prefix}.{k}"] = t.detach().cpu().expand(self.n).numpy()
        for k, t in self.scores.items():
            t = t.detach().cpu()
            if t.dim() == 2:
                labels = A.domain_values(self.kb.variables[k].type)
                for j, lab in enumerate(labels):
                    cols[f"score.{k}={lab}"] = t[:, j].numpy()
            else:
                cols[f"score.{k}"] = t.expand(self.n).numpy()
        cols["infeasible"] = self.infeasible.cpu().numpy()
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        return (f"Trace({self.semantics}, n={self.n}, values: {listed(self.values)}; "
                f"rules: {listed(self.bodies) or 'none'})")

    def __str__(self) -> str:
        """A paragraph per row (the first 5): each output's value with its probability or
        score, then the rules whose bodies hold, with their contributions."""
        lines = [f"trace under {self.semantics} semantics, {self.n} row(s)"]
        shown = min(self.n, 5)
        for i in range(shown):
            parts = []
            for name in self.kb.outputs:
                if name not in self.values:
                    continue
                v = self.values[name].detach().cpu()
                v = v if v.dim() == 0 else v.expand(self.n, *v.shape[1:])[i]
                var = self.kb.variables[name]
                if v.dim() == 1 and A.is_finite_type(var.type):
                    k = int(v.argmax())
                    parts.append(f"{name}={A.domain_values(var.type)[k]} (p={float(v[k]):.2f})")
                elif isinstance(var.type, A.BoolType):
                    parts.append(f"{name}={float(v) > 0.5} (p={max(float(v), 1 - float(v)):.2f})")
                else:
                    parts.append(f"{name}={float(v):.4g}")
            lines.append(f"row {i}: " + ", ".join(parts))
            fired = [(r, float(self.contributions[r].detach().cpu().expand(self.n)[i]))
                     for r in self.bodies
                     if float(self.bodies[r].detach().cpu().expand(self.n)[i]) > 0.5]
            if fired:
                lines.append("  rules: " + ", ".join(f"{r} {c:+.3f}" for r, c in fired))
        if self.n > shown:
            lines.append(f"... {self.n - shown} more row(s)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>" + self.to_frame().head(20)._repr_html_()
