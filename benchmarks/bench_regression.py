"""GreyBoxRegressor against a linear model and EBM on scikit-learn's diabetes data, in one run.

    pip install interpret-core      # EBM, the peer; NOT a greybox dependency (skipped if absent)
    python benchmarks/bench_regression.py [--splits 3] [--epochs 60]

Data: ``load_diabetes`` (442 patients, 10 measurements, disease progression a year later;
the raw units, ``scaled=False``), split ``--splits`` times into 75% train and 25% held out
(seeds 0, 1, ...). Every model sees the same splits; the table shows the held-out MAE,
RMSE and R² (mean over the splits) and the mean fit time, with each one's ratio to the
linear regression of the same run.

Models:

* ``greybox rules``: six readable rules that add to (or take from) the progression, their
  weights and ``~`` thresholds learned (``RULES`` below), ``weight_decay=0.05`` pulling the
  thresholds toward the written values (learned freely they overfit: train R² 0.54, held
  out 0.21 on split 0);
* ``greybox rules + residual``: the same rules plus a small MLP for what they miss;
* ``greybox residual only``: no rules, the MLP over the ten columns (the network alone);
* ``linear regression`` and ``ridge`` (scikit-learn, all ten columns);
* ``EBM``: interpret's ExplainableBoostingRegressor with its defaults (``random_state``
  fixed).

Not part of the test suite. One thread (``torch.set_num_threads(1)``).

Measured (3 splits, 60 epochs, a shared 2-core machine; fit times are wall clock)::

                              MAE   RMSE    R2   fit s
    greybox rules            45.8   58.1  0.344    6.6
    greybox rules + residual 45.8   58.1  0.344   10.3
    greybox residual only    43.7   55.2  0.408    5.0
    linear regression        43.7   54.8  0.415    0.05
    ridge                    43.8   54.9  0.415    0.002
    EBM                      44.2   55.9  0.392  375.6

Six step rules come within 5% of the linear model's MAE; they fit the training rows
about as well as it does (R² 0.54) and generalise less, so the residual finds little left
to learn there.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import train_test_split

import greybox as gb

RULES = """
input bmi: real
input bp: real
input s5: real
input s3: real
output progression: real
rule heavy: bmi > ~27 -> progression
rule obese: bmi > ~32 -> progression
rule pressure: bp > ~100 -> progression
rule triglycerides: s5 > ~4.8 -> progression
rule high_triglycerides: s5 > ~5.2 -> progression
rule good_hdl: s3 > ~55 -> not progression
"""


def _models(epochs: int) -> dict:
    out = {
        "greybox rules": lambda: gb.GreyBoxRegressor(rules=RULES, epochs=epochs,
                                                     weight_decay=0.05),
        "greybox rules + residual": lambda: gb.GreyBoxRegressor(
            rules=RULES, residual="mlp", hidden=8, epochs=epochs, weight_decay=0.05),
        "greybox residual only": lambda: gb.GreyBoxRegressor(
            residual="mlp", hidden=8, epochs=epochs, weight_decay=1e-3),
        "linear regression": LinearRegression,
        "ridge": lambda: Ridge(alpha=1.0),
    }
    try:
        from interpret.glassbox import ExplainableBoostingRegressor
    except ImportError:
        print("EBM skipped: interpret is not installed (pip install interpret-core)")
    else:
        out["EBM"] = lambda: ExplainableBoostingRegressor(random_state=0, n_jobs=1)
    return out


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    rows = []
    for name, make in _models(args.epochs).items():
        figures = []
        for seed in range(args.splits):
            Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed)
            model = make()
            t0 = time.perf_counter()
            model.fit(Xtr, ytr)
            seconds = time.perf_counter() - t0
            err = np.asarray(model.predict(Xte), dtype=np.float64) - yte.to_numpy()
            sst = ((yte - yte.mean()) ** 2).sum()
            figures.append((np.abs(err).mean(), np.sqrt((err ** 2).mean()),
                            1 - (err ** 2).sum() / sst, seconds))
        mae, rmse, r2, secs = np.mean(figures, axis=0)
        rows.append({"model": name, "MAE": mae, "RMSE": rmse, "R2": r2, "fit s": secs})
    table = pd.DataFrame(rows).set_index("model")
    ref = table.loc["linear regression"]
    table["MAE / linear"] = table["MAE"] / ref["MAE"]
    table["fit s / linear"] = table["fit s"] / ref["fit s"]
    print(f"load_diabetes, {args.splits} splits (75/25, seeds 0-{args.splits - 1}), "
          f"greybox {args.epochs} epochs, held-out means")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return table


if __name__ == "__main__":
    main()
