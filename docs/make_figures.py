"""Make the pictures of the explanation guides (docs/img/), from the bundled data.

Run:  python docs/make_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from torch import nn  # noqa: E402

import greybox as gb  # noqa: E402

HERE = Path(__file__).resolve().parent
IMG = HERE / "img"
sys.path.insert(0, str(HERE.parent / "examples"))


def cancer() -> None:
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, (data.target == 0).to_numpy()
    torch.manual_seed(0)
    model = gb.GreyBox(gb.rules.load(HERE.parent / "examples" / "breast_cancer.rules"),
                       semantics="product",
                       residual=nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)))
    model.fit(X, {"malignant": y}, epochs=5, progress=False)
    ex = gb.explain.explain(model, X.iloc[[3, 40]])
    ex.plot(3).savefig(IMG / "cancer_explanation.png", dpi=110)    # rows by index label
    (IMG / "cancer_decision_graph.svg").write_text(ex.to_svg(3))
    (IMG / "cancer_explanation.txt").write_text(str(ex) + "\n\n" + str(ex.reason(3)) + "\n"
                                                 + str(ex.counterfactual(3)) + "\n")


def digits() -> None:
    from digits_addition import addition_rules, digit_network, load_pools, make_examples

    (tx, ty), (vx, vy) = load_pools(0)
    data, sums = make_examples(tx, ty, 1, 3000, 0)
    torch.manual_seed(0)
    model = gb.GreyBox(addition_rules(1), {"digit": digit_network()})
    model.fit(data, {"total": sums}, epochs=5, progress=False)
    test, _ = make_examples(vx, vy, 1, 2, 1)
    ex = gb.explain.explain(model, test)
    ex.plot(0).savefig(IMG / "digits_explanation.png", dpi=110)
    (IMG / "digits_explanation.txt").write_text(str(ex) + "\n\n" + str(ex.reason(0)) + "\n"
                                                 + str(ex.counterfactual(0)) + "\n")


if __name__ == "__main__":
    IMG.mkdir(exist_ok=True)
    cancer()
    digits()
    print("wrote", ", ".join(sorted(p.name for p in IMG.iterdir())))
