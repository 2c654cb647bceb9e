"""Clinical rules plus a small network, trained from very few labels.

scikit-learn's breast-cancer data (569 patients, 30 measurements, no download). The rules
in ``breast_cancer.rules`` say what a pathologist looks for (large, irregular, concave
nuclei suggest malignancy), with ``~`` thresholds that training may move; a small residual
network over all 30 measurements learns what the rules miss, starting from zero so that
the model starts as the rules. We train from 10, 20, 50 and all labelled patients and
compare, on the same splits, with a plain MLP and a logistic regression that see the same
labels. ``fit(select="kfold")`` keeps the rules as written unless training wins on
held-out labels (it must fix significantly more than it breaks: a sign test over 5-fold
cross-validation of the labelled patients), so that ten or twenty labels, too few to
improve on a pathologist's thresholds, do not end below them.

Run:  python examples/breast_cancer.py [--repeats R]
      python examples/breast_cancer.py --save model.pt [--labels K]   # for the debugger:
      # trains on split 0 with K labels, writes model.pt and the held-out patients.csv
      # next to it; then: greybox debug model.pt patients.csv --target malignant
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
#: the grey-box rows of the comparison: fit(select="kfold"), and fit that always trains
SELECTED, PLAIN = "greybox, select='kfold'", "greybox, plain fit"


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
    extra = [f"input {gb.rules.to_text(gb.rules.ast.Var(c))}: real" for c in columns
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


def train(kb, X_train, y_train, idx: np.ndarray, seed: int, *, epochs: int = 20,
          progress: bool = False, select: str | None = "kfold"
          ) -> tuple[gb.GreyBox, gb.History]:
    """The grey-box model, trained: every training patient takes part; only those at
    positions ``idx`` carry a label. ``select="kfold"``: trained only if training wins
    on held-out labels, else the rules as written."""
    labels = np.full(len(y_train), np.nan)
    labels[idx] = y_train[idx]
    model = greybox_model(kb, X_train.shape[1], seed)
    history = model.fit(X_train, {"malignant": labels}, epochs=epochs, batch_size=32, lr=0.01,
              weight_decay=1e-3, seed=seed, progress=progress, select=select)
    return model, history


def save_for_debugging(path, *, budget: int | None = 10, seed: int = 0,
                       epochs: int = 20) -> tuple[Path, Path]:
    """Train on split ``seed`` with ``budget`` labels and write the model to ``path`` and
    the held-out patients, with their ``malignant`` column, to ``patients.csv`` beside it:
    what ``greybox debug`` takes. Returns both paths. (Trained without selection: a model
    that learned something, failures included, to debug.)"""
    data = load_breast_cancer(as_frame=True)
    y = (data.target == 0).to_numpy()
    X_tr, X_te, y_tr, y_te = train_test_split(data.data, y, test_size=0.3, stratify=y,
                                              random_state=seed)
    idx = choose_labels(y_tr, budget, np.random.default_rng(seed))
    model, _ = train(rules_with_all_columns(X_tr.columns), X_tr, y_tr, idx, seed,
                     epochs=epochs, select=None)
    path = Path(path)
    model.save(path)
    csv = path.with_name("patients.csv")
    X_te.assign(malignant=y_te).to_csv(csv, index=False)
    return path, csv


def run(repeats: int = 5, progress: bool = False) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    y = (data.target == 0).to_numpy()        # scikit-learn: 0 = malignant
    return compare(data.data, y, "malignant", budgets=BUDGETS, repeats=repeats,
                   rules=rules_with_all_columns, train=train, choose_labels=choose_labels,
                   progress=progress)


def compare(X: pd.DataFrame, y: np.ndarray, output: str, *, budgets, repeats: int, rules,
            train, choose_labels, progress: bool = False) -> pd.DataFrame:
    """One row per split, label budget and method (rules alone, the grey-box model with
    and without ``select="kfold"``, an MLP, a logistic regression): test accuracy on 30%
    held-out rows. ``rules(columns)``, ``train(kb, X_train, y_train, idx, seed, ...)`` and
    ``choose_labels(y, budget, rng)`` are the example's own (wine.py uses it too)."""
    kb = rules(X.columns)
    rows = []
    for seed in range(repeats):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y,
                                                  random_state=seed)
        rules_only = gb.GreyBox(kb, semantics="product").crisp()
        rows.append({"seed": seed, "labels": "none", "method": "rules alone",
                     "accuracy": float((rules_only.predict(X_te)[output] == y_te).mean())})
        rng = np.random.default_rng(seed)
        for budget in budgets:
            idx = choose_labels(y_tr, budget, rng)
            Xl, yl = X_tr.iloc[idx], y_tr[idx]
            label = "all" if budget is None else str(budget)

            for method, select in ((SELECTED, "kfold"), (PLAIN, None)):
                if select is None and rows[-1]["trained"]:
                    # selection trained: its model is the plain run's (fit guarantees it)
                    rows.append({**rows[-1], "method": method})
                    continue
                model, history = train(kb, X_tr, y_tr, idx, seed, progress=progress,
                                       select=select)
                acc = float((model.predict(X_te)[output].to_numpy() == y_te).mean())
                rows.append({"seed": seed, "labels": label, "method": method,
                             "accuracy": acc, "trained": history.selected_epochs != 0})

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
    """Mean test accuracy (and its spread over the repeats) per method and label budget;
    for the grey-box model, also its worst split against the rules alone, and the splits
    on which ``select="kfold"`` trained."""
    order = ["none", "10", "20", "50", "all"]
    return comparison(results, [c for c in order if c in set(results["labels"])])


def comparison(results: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """:func:`table` for the label budgets ``columns`` (shared with ``wine.py``)."""
    agg = results.groupby(["method", "labels"])["accuracy"].agg(["mean", "std"])
    cells = agg.apply(lambda r: f"{r['mean']:.3f} ± {0 if np.isnan(r['std']) else r['std']:.3f}",
                      axis=1).unstack("labels")
    methods = ["rules alone", SELECTED, PLAIN, "MLP", "logistic regression"]
    out = cells.reindex(index=methods, columns=columns).fillna("")
    by = results.set_index(["method", "labels", "seed"]).sort_index()
    rules = by.loc[("rules alone", "none"), "accuracy"]
    for method in (SELECTED, PLAIN):
        out.loc[f"worst split - rules: {method.split(', ')[1]}"] = [
            "" if c == "none" else
            f"{float((by.loc[(method, c), 'accuracy'] - rules).min()):+.3f}" for c in columns]
    out.loc["splits where select trained"] = [
        "" if c == "none" else
        f"{int(by.loc[(SELECTED, c), 'trained'].sum())} of {len(by.loc[(SELECTED, c)])}"
        for c in columns]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="train/test splits")
    parser.add_argument("--save", metavar="MODEL.pt",
                        help="instead: train once (split 0) and save the model, with the "
                        "held-out patients in patients.csv beside it, for greybox debug")
    parser.add_argument("--labels", type=int, default=10,
                        help="labelled training patients for --save (default 10)")
    args = parser.parse_args()
    if args.save:
        model, csv = save_for_debugging(args.save, budget=args.labels)
        print(f"wrote {model} and {csv}; explore its failures with:\n"
              f"  greybox debug {model} {csv} --target malignant")
        return
    results = run(args.repeats)
    print(f"Test accuracy on 30% held-out patients, mean ± std over {args.repeats} splits; "
          "columns: labelled training patients\n")
    print(table(results).to_string())


if __name__ == "__main__":
    main()
