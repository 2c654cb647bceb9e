"""A sommelier's rules for three cultivars, trained from 15 labelled wines or more.

scikit-learn's wine data (178 wines from one region of Italy, three cultivars, 13 chemical
measurements, no download). The rules in ``wine.rules`` describe each cultivar in a few
readable lines (Barolo: rich in proline, strong and full of flavanoids; Grignolino: pale
and light; Barbera: thin in flavanoids, with a brownish hue), with ``~`` thresholds that
training may move; a small residual network over all 13 measurements learns what the
rules miss, starting from zero so that the model starts as the rules. The decision is an
enum (``cultivar``). We train from 15, 30 and all labelled training wines and compare, on
the same splits, with a plain MLP and a logistic regression that see the same labels.
``fit(select="kfold")`` keeps the rules as written unless training wins on held-out
labels (a sign test over 5-fold cross-validation of the labelled wines), so that a few
labels do not end below the rules.

Run:  python examples/wine.py [--repeats R]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from breast_cancer import (  # the same comparison; examples/ is the script's path
    compare,
    comparison,
)
from sklearn.datasets import load_wine
from torch import nn

import greybox as gb

HERE = Path(__file__).resolve().parent
BUDGETS = (15, 30, None)   # None: every training label
#: scikit-learn's classes 0, 1, 2 (59, 71 and 48 wines)
CULTIVARS = np.array(["barolo", "grignolino", "barbera"])


def load() -> tuple[pd.DataFrame, np.ndarray]:
    """The 13 measurements and each wine's cultivar by name."""
    data = load_wine(as_frame=True)
    return data.data, CULTIVARS[data.target.to_numpy()]


def rules_with_all_columns(columns) -> gb.rules.KnowledgeBase:
    """The rules of ``wine.rules``, plus an ``input`` for every other column (the residual
    network reads all of them)."""
    kb = gb.rules.load(HERE / "wine.rules")
    extra = [f"input {gb.rules.to_text(gb.rules.ast.Var(c))}: real" for c in columns
             if c not in kb.variables]
    return gb.rules.parse(gb.rules.to_text(kb) + "\n".join(extra) + "\n",
                          filename="wine.rules")


def greybox_model(kb, n_features: int, seed: int) -> gb.GreyBox:
    torch.manual_seed(seed)
    residual = nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, 3))
    nn.init.zeros_(residual[2].weight)   # start as the rules alone
    nn.init.zeros_(residual[2].bias)
    return gb.GreyBox(kb, semantics="product", residual=residual)


def choose_labels(y: np.ndarray, budget: int | None, rng) -> np.ndarray:
    """Positions of ``budget`` labelled rows, each cultivar in proportion (at least two
    of each)."""
    if budget is None or budget >= len(y):
        return np.arange(len(y))
    classes = np.unique(y)
    counts = {c: max(2, round(budget * float((y == c).mean()))) for c in classes}
    counts[classes[np.argmax([counts[c] for c in classes])]] += budget - sum(counts.values())
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), counts[c], replace=False)
                             for c in classes])
    return np.sort(picked)


def train(kb, X_train, y_train, idx: np.ndarray, seed: int, *, epochs: int = 30,
          progress: bool = False, select: str | None = "kfold"
          ) -> tuple[gb.GreyBox, gb.History]:
    """The grey-box model, trained: every training wine takes part; only those at
    positions ``idx`` carry a label. ``select="kfold"``: trained only if training wins
    on held-out labels, else the rules as written."""
    labels = np.full(len(y_train), None, dtype=object)
    labels[idx] = y_train[idx]
    model = greybox_model(kb, X_train.shape[1], seed)
    history = model.fit(X_train, {"cultivar": labels}, epochs=epochs, batch_size=16, lr=0.01,
              weight_decay=1e-3, seed=seed, progress=progress, select=select)
    return model, history


def run(repeats: int = 10, progress: bool = False) -> pd.DataFrame:
    X, y = load()
    return compare(X, y, "cultivar", budgets=BUDGETS, repeats=repeats,
                   rules=rules_with_all_columns, train=train, choose_labels=choose_labels,
                   progress=progress)


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy (and its spread over the repeats) per method and label budget;
    for the grey-box model, also its worst split against the rules alone, and the splits
    on which ``select="kfold"`` trained."""
    order = ["none", "15", "30", "all"]
    return comparison(results, [c for c in order if c in set(results["labels"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="train/test splits")
    args = parser.parse_args()
    results = run(args.repeats)
    print(f"Test accuracy on 30% held-out wines, mean ± std over {args.repeats} splits; "
          "columns: labelled training wines\n")
    print(table(results).to_string())


if __name__ == "__main__":
    main()
