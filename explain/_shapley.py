"""Rule attribution by ablation: Shapley values with the rules as the players."""

from __future__ import annotations

import pandas as pd
import torch
from captum.attr import ShapleyValueSampling

from greybox.functional import probability_of

__all__ = ["rule_shapley"]


def rule_shapley(model, batch, output: str, target: torch.Tensor, *,
                 n_samples: int = 25) -> pd.DataFrame:
    """Shapley value of each rule for the probability of each row's decision.

    A coalition keeps its rules and gives the others weight 0 (per row, through the
    model's rule mask); Captum's :class:`~captum.attr.ShapleyValueSampling` samples
    orderings. The values of a row add up to ``P(decision | all rules) − P(decision | no
    rule)``: hard constraints, the residual and non-additive effects are all accounted for.
    """
    names = list(model.kb.rules)
    if not names:
        return pd.DataFrame(columns=["row", "rule", "shapley"])

    def forward(mask: torch.Tensor) -> torch.Tensor:
        with model.rule_mask(mask):
            trace = model(batch, crisp=False)
        return probability_of(trace.values[output], target)

    mask = torch.ones(batch.n, len(names), device=model.device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            values = ShapleyValueSampling(forward).attribute(
                mask, baselines=torch.zeros_like(mask), n_samples=n_samples,
                perturbations_per_eval=1)
    finally:
        model.train(was)
    rows = [{"row": i, "rule": r, "shapley": float(values[i, j])}
            for i in range(batch.n) for j, r in enumerate(names)]
    return pd.DataFrame(rows)
