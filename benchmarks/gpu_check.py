"""GPU check: train, explain, reason and debug on a device, and move models across devices.

On ``--device cuda`` (default when CUDA is available) and on the CPU, in the same run:

1. digits addition at N = 15 digits per number (the example's CNN, exact inference):
   seconds per training epoch, sum and digit accuracy;
2. the breast-cancer rules with a residual MLP (``GreyBoxClassifier``'s set-up):
   training seconds, held-out accuracy;
3. on the trained models, on the device: ``explain`` (integrated gradients + parameter
   attributions), ``reason`` and ``counterfactual`` (input level through the residual),
   the ``Debugger`` (failures, blame, a what-if edit), seconds each;
4. a checkpoint saved on the device and loaded on the CPU (``map_location``): the same
   predictions, and an explanation there.

It prints one table: seconds on the device, on the CPU, and the ratio. ``--device cpu``
runs the device column on the CPU too (the test suite does that with ``--quick``, which
shrinks the data and epochs so the whole script takes seconds).

Run:  python benchmarks/gpu_check.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
from digits_addition import addition_rules, digit_network, load_pools, make_examples  # noqa: E402

import greybox as gb  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def digits(device: str, n: int, examples: int, epochs: int) -> dict:
    (tx, ty), (vx, vy) = load_pools(0)
    data, sums = make_examples(tx, ty, n, examples, 0)
    test, test_sums = make_examples(vx, vy, n, 200, 1)
    torch.manual_seed(0)
    net = digit_network()
    model = gb.GreyBox(addition_rules(n), {"digit": net}).to(device)
    hist, _ = _timed(lambda: model.fit(data, {"total": sums}, epochs=epochs, lr=1e-3,
                                       progress=False))
    pred = model.predict(test)["total"].to_numpy()
    net.eval()
    with torch.no_grad():
        digit_acc = float((net(vx.to(device)).argmax(1).cpu().numpy() == vy).mean())
    return {"epoch s": float(np.mean([e["seconds"] for e in hist.epochs])),
            "sum acc": float((pred == test_sums).mean()), "digit acc": digit_acc,
            "model": model, "test": test}


def cancer(device: str, epochs: int) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    rules = gb.rules.load(HERE.parent / "examples" / "breast_cancer.rules")
    data = load_breast_cancer(as_frame=True)
    X, y = data.data[list(rules.inputs)], (data.target == 0).to_numpy()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    torch.manual_seed(0)
    residual = nn.Sequential(nn.Linear(len(rules.inputs), 16), nn.ReLU(), nn.Linear(16, 1))
    model = gb.GreyBox(rules, semantics="product", residual=residual).to(device)
    _, seconds = _timed(lambda: model.fit(X_tr, {"malignant": y_tr}, epochs=epochs,
                                          progress=False))
    acc = float((model.predict(X_te)["malignant"].to_numpy() == y_te).mean())
    return {"train s": seconds, "acc": acc, "model": model, "X": X_te, "y": y_te}


def analyses(dig: dict, can: dict) -> dict:
    out = {}
    rows = {k: v[:16] for k, v in dig["test"].items()}
    _, out["explain digits s"] = _timed(lambda: gb.explain.explain(dig["model"], rows))
    m, X, y = can["model"], can["X"], can["y"]
    _, out["explain cancer s"] = _timed(lambda: gb.explain.explain(m, X.head(16)))
    _, out["reason s"] = _timed(lambda: [gb.explain.reason(m, X.iloc[[i]]) for i in range(5)])
    _, out["counterfactual s"] = _timed(lambda: [gb.explain.counterfactual(m, X.iloc[[i]])
                                                 for i in range(5)])

    def debug():
        dbg = gb.explain.Debugger(m, X, y)
        failures = dbg.failures()
        if len(failures):
            dbg.blame(failures.index[0])
        dbg.what_if(gb.explain.SetWeight(next(iter(m.kb.rules)), 0.0))

    _, out["debugger s"] = _timed(debug)
    return out


def round_trip(can: dict) -> bool:
    """Saved on the device, loaded on the CPU: the same predictions, and an explanation."""
    m, X = can["model"], can["X"]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cancer.pt"
        m.save(path)
        back = gb.load(path, residual=nn.Sequential(
            nn.Linear(len(m.kb.inputs), 16), nn.ReLU(), nn.Linear(16, 1)), map_location="cpu")
    same = (back.predict(X)["malignant"].to_numpy() == m.predict(X)["malignant"].to_numpy())
    gb.explain.explain(back, X.head(4))
    gb.explain.counterfactual(back, X.head(1))
    return bool(same.all()) and back.device.type == "cpu"


def run(device: str, quick: bool) -> pd.DataFrame:
    n, examples, epochs = (2, 200, 1) if quick else (15, 3000, 3)
    rows = {}
    for where in dict.fromkeys([device, "cpu"]):
        dig = digits(where, n, examples, epochs)
        can = cancer(where, 2 if quick else 30)
        figures = {f"digits N={n} epoch s": dig["epoch s"], "digits sum acc": dig["sum acc"],
                   "digits digit acc": dig["digit acc"], "cancer train s": can["train s"],
                   "cancer acc": can["acc"], **analyses(dig, can)}
        if where == device:
            figures["saved on device, loaded on cpu"] = float(round_trip(can))
        rows[where] = figures
    table = pd.DataFrame(rows)
    if device != "cpu":
        table["cpu / device"] = table["cpu"] / table[device]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1) if args.device == "cpu" else None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; run with --device cpu")
    table = run(args.device, args.quick)
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(table)


if __name__ == "__main__":
    main()
