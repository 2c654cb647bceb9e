"""Clinical rules plus a small network, trained from very few labels.

scikit-learn's breast-cancer data (569 patients, 30 measurements, no download). The rules
in ``breast_cancer.rules`` say what a pathologist looks for (large, irregular, concave
nuclei suggest malignancy), with ``~`` thresholds that training may move; a small residual
network over all 30 measurements learns what the rules miss, starting from zero so that
the model starts as the rules. We train from 10, 20, 50 and all labelled patients and
compare, on the same splits, with a plain MLP and a logistic regression that see the same
labels.

Run:  python examples/breast_cancer.py [--repeats R]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import greybox as gb

HERE = Path(__file__).resolve().parent
BUDGETS = (10, 20, 50, None)   # None: every training label


#: Knowledge that holds for every patient, labelled or not: soft constraints, so that
#: unlabelled patients teach the model too (a semantic loss on what the rules say).
KNOWLEDGE = """
constraint clearly_malignant weight 1.0:
    `worst area` > 1000 and `worst concave points` > 0.16 -> malignant
constraint clearly_benign weight 1.0:
    `worst area` < 600 and `worst concave points` < 0.1 -> not malignant
"""


def rules_with_all_columns(columns) -> gb.rules.KnowledgeBase:
    """The clinical rules and knowledge, plus an ``input`` for every other column (the
    residual network reads all of them)."""
    kb = gb.rules.load(HERE / "breast_cancer.rules")
    extra = [f"input {gb.rules.to_text(gb.rules.Var(c))}: real" for c in columns
             if c not in kb.variables]
    return gb.rules.parse(gb.rules.to_text(kb) + KNOWLEDGE + "\n".join(extra) + "\n",
                          filename="breast_cancer.rules")


def greybox_model(kb, n_features: int, seed: int) -> gb.GreyBox:
    torch.manual_seed(seed)
    residual = nn.Sequential(nn.Linear(n_features, 8), nn.Tanh(), nn.Linear(8, 1))
    nn.init.zeros_(residual[2].weight)   # start as the rules alone
    nn.init.zeros_(residual[2].bias)
    return gb.GreyBox(kb, semantics="product", residual=residual)


def choose_labels(y: np.ndarray, budget: int | None, rng) -> np.ndarray:
    """Positions of ``budget`` labelled rows, at least two of each class."""
    if budget is None or budget >= len(y):
        return np.arange(len(y))
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    k_pos = max(2, round(budget * len(pos) / len(y)))
    picked = np.concatenate([rng.choice(pos, k_pos, replace=False),
                             rng.choice(neg, budget - k_pos, replace=False)])
    return np.sort(picked)


def run(repeats: int = 5, progress: bool = False) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    X = data.data
    y = (data.target == 0).to_numpy()        # scikit-learn: 0 = malignant
    kb = rules_with_all_columns(X.columns)
    rows = []
    for seed in range(repeats):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y,
                                                  random_state=seed)
        rules_only = gb.GreyBox(kb, semantics="product").crisp()
        rows.append({"seed": seed, "labels": "none", "method": "rules alone",
                     "accuracy": float((rules_only.predict(X_te)["malignant"] == y_te).mean())})
        rng = np.random.default_rng(seed)
        for budget in BUDGETS:
            idx = choose_labels(y_tr, budget, rng)
            Xl, yl = X_tr.iloc[idx], y_tr[idx]
            label = "all" if budget is None else str(budget)

            # every training patient takes part; only the chosen ones carry a label
            labels = np.full(len(y_tr), np.nan)
            labels[idx] = yl
            model = greybox_model(kb, len(X.columns), seed)
            model.fit(X_tr, {"malignant": labels}, epochs=20, batch_size=32, lr=0.01,
                      weight_decay=1e-3, seed=seed, progress=progress)
            acc = float((model.predict(X_te)["malignant"].to_numpy() == y_te).mean())
            rows.append({"seed": seed, "labels": label, "method": "greybox: rules + residual",
                         "accuracy": acc})

            mlp = make_pipeline(StandardScaler(), MLPClassifier(
                hidden_layer_sizes=(8,), max_iter=2000, random_state=seed))
            mlp.fit(Xl, yl)
            rows.append({"seed": seed, "labels": label, "method": "MLP",
                         "accuracy": float(mlp.score(X_te, y_te))})
            logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            logreg.fit(Xl, yl)
            rows.append({"seed": seed, "labels": label, "method": "logistic regression",
                         "accuracy": float(logreg.score(X_te, y_te))})
    return pd.DataFrame(rows)


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy (and its spread over the repeats) per method and label budget."""
    order = ["none", "10", "20", "50", "all"]
    agg = results.groupby(["method", "labels"])["accuracy"].agg(["mean", "std"])
    cells = agg.apply(lambda r: f"{r['mean']:.3f} ± {0 if np.isnan(r['std']) else r['std']:.3f}",
                      axis=1).unstack("labels")
    cols = [c for c in order if c in cells.columns]
    methods = ["rules alone", "greybox: rules + residual", "MLP", "logistic regression"]
    return cells.reindex(index=methods, columns=cols).fillna("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="train/test splits")
    args = parser.parse_args()
    results = run(args.repeats)
    print(f"Test accuracy on 30% held-out patients, mean ± std over {args.repeats} splits; "
          "columns: labelled training patients\n")
    print(table(results).to_string())


if __name__ == "__main__":
    main()
