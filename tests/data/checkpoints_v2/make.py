"""Writes the checkpoints of tests/model/test_checkpoint_compat.py (run once, with the code of
the day they stand for): ``python tests/data/checkpoints_v2/make.py``.

Each model is saved as NAME.pt beside NAME.csv, its input rows with the model's
predictions (columns ``pred_<output>``), and NAME.keys, its state-dict keys in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import greybox as gb

HERE = Path(__file__).parent


def _propositional():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": np.round(rng.uniform(0, 10, 40), 2),
                       "c": rng.choice(["red", "green", "blue"], 40),
                       "b": rng.integers(0, 2, 40).astype(bool)})
    y = (df.x > 4) & (df.c != "red") | df.b
    model = gb.GreyBox("""
input x: real
input c: {red, green, blue}
input b: bool
output y: bool
rule big weight 2.0: x > ~5.0 -> y
rule red weight 1.5: c == red -> not y
rule both: b and x < ~3.0 -> y
constraint soft_c weight 0.5: x > ~8.0 -> y
""", semantics="product", residual=nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)))
    model.fit(df, y.to_numpy(), epochs=3, progress=False, seed=0)
    return model, df


def _relational():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    df = pd.DataFrame({f"v[{i}]": np.round(rng.uniform(0, 3, 30), 2) for i in range(3)})
    model = gb.GreyBox("""
set i: 0..2
input v[i]: real
output hi[i]: bool
rule r[k in i] weight 1.5: v[k] > ~1.5 -> hi[k]
rule s[k in i]: v[k] < ~0.5 -> not hi[k]
""", semantics="godel")
    targets = {f"hi[{i}]": (df[f"v[{i}]"] > 1.2).to_numpy() for i in range(3)}
    model.fit(df, targets, epochs=3, progress=False, seed=0)
    return model, df


def _neural():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"a": np.round(rng.normal(0, 1, 30), 3),
                       "b": np.round(rng.normal(0, 1, 30), 3)})
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3))
    model = gb.GreyBox("""
input a: real
input b: real
neural level: {low, mid, high} = grade(a, b)
output ok: bool
rule good weight 2: level == high -> ok
rule bad: level == low and a < ~0.0 -> not ok
""", {"grade": net}, semantics="probabilistic", scale_inputs=True)
    model.fit(df, (df.a + df.b > 0).to_numpy(), epochs=40, progress=False, seed=0, lr=0.05)
    return model, df


def _regression():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": np.round(rng.uniform(0, 10, 40), 2), "z": rng.integers(0, 11, 40),
                       "hot": rng.integers(0, 2, 40).astype(bool)})
    y = 100 + 25.5 * (df.x > 5) - 3 * (df.z < 5) + 0.25 * df.hot
    model = gb.GreyBox("""
input x: real[0, 10]
input z: int 0..10
input hot: bool
output y: real
rule big weight 25.5: x > ~5 -> y
rule small weight 3: z < 5 -> not y
rule warm weight 0.25: hot -> y
""", semantics="product")
    model.fit(df, {"y": y.to_numpy()}, epochs=5, progress=False, seed=0)
    return model, df


MODELS = {"propositional": _propositional, "relational": _relational, "neural": _neural,
          "regression": _regression}


def main() -> None:
    torch.set_num_threads(1)
    for name, build in MODELS.items():
        model, df = build()
        model.save(HERE / f"{name}.pt")
        pred = model.predict(df)
        out = df.copy()
        for col in pred.columns:
            out[f"pred_{col}"] = pred[col].to_numpy()
        out.to_csv(HERE / f"{name}.csv", index=False)
        (HERE / f"{name}.keys").write_text("\n".join(model.state_dict()) + "\n")


if __name__ == "__main__":
    main()
