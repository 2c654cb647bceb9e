"""greybox.rules.induce against the well-kept rule learners, in one run.

    pip install imodels wittgenstein six   # the peers; NOT greybox dependencies
    # check first that they neither pull torchvision nor replace torch:
    #   pip install --dry-run imodels wittgenstein
    python benchmarks/bench_induce.py [--splits 5] [--sizes 3 5 10] [--data synthetic ...]

Peers: imodels' RuleFitClassifier, FIGSClassifier and GreedyRuleListClassifier, and
wittgenstein's RIPPER, each with its default settings but its size (and RuleFit's
``cv=False``: the least L1 regularisation whose rule count meets ``max_rules``, rather
than the one that cross-validates best among those; the cross-validated default took most
of a 20-minute run).

Data: breast cancer, wine, iris (scikit-learn's bundled copies) and a synthetic set with
two planted rules, ``(x0 > 0.6 and x1 <= 0.4) or x2 > 0.8``, and 10% of the labels
flipped. Each data set is split 5 times (70% train, 30% held out, stratified, seeds 0-4);
the table shows the mean held-out accuracy.

Rule counts, the same way for everybody, at most the size of the column:

* greybox: the learned rules (``learned_1``, ...), not the bias rule (body ``true``), just
  as a rule list's default class is not counted; one rule set for all classes (softmax);
* RuleFit: its terms with a non-zero coefficient (rules and linear terms);
* FIGS: the leaves of all its trees (splits + trees);
* greedy rule list, RIPPER: the rules of the list / set.

Each peer is fitted with the largest size setting whose count is at most the column's
size. RuleFit, the greedy rule list and RIPPER are binary only: on wine and iris they run
one-vs-rest (one model per class, the class of highest probability wins) and their count is
the sum over the classes' models. FIGS and greybox are multi-class themselves.

Planted-rule recovery (synthetic set): for each planted conjunction, the Jaccard similarity
(on the held-out rows) of the rows it holds on and the rows of the best-matching rule
concluding the positive class (1.0 = the same rows); shown for greybox and RuleFit, whose
rules are conjunctions one can evaluate alone. "clean" is the held-out accuracy against
the labels before noise, for everybody.

Not part of the test suite. One thread.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import greybox.rules as gr  # noqa: E402

warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------- data


def synthetic(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(0, 1, size=(n, 6)).round(3), columns=[f"x{i}" for i in range(6)])
    planted = [((X["x0"] > 0.6) & (X["x1"] <= 0.4)).to_numpy(), (X["x2"] > 0.8).to_numpy()]
    clean = planted[0] | planted[1]
    noisy = clean ^ (rng.random(n) < 0.10)
    return X, pd.Series(noisy.astype(int), name="target"), clean.astype(int)


def datasets():
    out = {}
    for name, loader in (("breast cancer", load_breast_cancer), ("wine", load_wine),
                         ("iris", load_iris)):
        d = loader(as_frame=True)
        out[name] = (d.data, d.target.rename("target"), None)
    out["synthetic"] = synthetic()
    return out


PLANTED = [lambda X: ((X["x0"] > 0.6) & (X["x1"] <= 0.4)).to_numpy(),
           lambda X: (X["x2"] > 0.8).to_numpy()]


# ------------------------------------------------------------------------ learners


def fit_greybox(X, y, size):
    kb = gr.induce(X, y, max_rules=size)
    learned = [r for name, r in kb.rules.items() if not name.startswith("learned_bias")]

    def predict(Xt):
        return gr.evaluate(kb, Xt).decisions["target"].to_numpy().astype(int)

    def positive_rules(Xt):
        cols = {c: Xt[c].to_numpy() for c in Xt.columns}
        return [np.asarray(gr.engine.crisp_truth(kb, r.body, cols, len(Xt)), bool) for r in learned
                if r.head.value is True or getattr(r.head.value, "value", None) == 1]

    return predict, len(learned), positive_rules


def _ovr(make, X, y, count):
    """One binary model per class; the class of highest probability wins."""
    classes = np.unique(y)
    if len(classes) == 2:
        m = make(X, (y == classes[1]).astype(int))
        return (lambda Xt: classes[(m.proba(Xt) > 0.5).astype(int)]), count(m), m
    models = [make(X, (y == c).astype(int)) for c in classes]

    def predict(Xt):
        return classes[np.argmax(np.column_stack([m.proba(Xt) for m in models]), axis=1)]

    return predict, sum(count(m) for m in models), None


class _Imodel:
    def __init__(self, est, X, y):
        self.est = est.fit(X.to_numpy(), y.to_numpy() if hasattr(y, "to_numpy") else y,
                           feature_names=list(X.columns))

    def proba(self, Xt):
        return self.est.predict_proba(Xt.to_numpy())[:, 1]


class _Ripper:
    def __init__(self, size, X, y):
        import wittgenstein as lw

        self.est = lw.RIPPER(max_rules=size, random_state=0)
        self.est.fit(X, np.asarray(y), pos_class=1)

    def proba(self, Xt):
        return np.asarray(self.est.predict_proba(Xt))[:, 1]


def _rulefit_terms(m):
    r = m.est._get_rules()
    return int((r["coef"] != 0).sum())


def _grl_rules(m):
    return sum(1 for r in m.est.rules_ if "col" in r)


def _ripper_rules(m):
    return len(m.est.ruleset_.rules)


def fit_largest(fit, size, start=1):
    """The peer fitted with the largest size setting whose count is at most ``size``:
    from ``start`` (a guess) upwards while the count fits, downwards while it does not."""
    setting = max(1, min(start, size))
    best = None
    while 1 <= setting <= size:
        predict, count, model = fit(setting)
        if count <= size:
            best = (predict, count, model)
            setting += 1
        elif best is not None:
            break
        else:
            setting -= 1
            if setting < 1:
                return predict, count, model
    return best


def peers(X, y, size):
    from imodels import FIGSClassifier, GreedyRuleListClassifier, RuleFitClassifier

    def rulefit(s):
        return _ovr(lambda A, b: _Imodel(RuleFitClassifier(max_rules=s, cv=False, random_state=0), A, b),
                    X, y, _rulefit_terms)

    def figs(s):
        est = FIGSClassifier(max_rules=max(s - 1, 1), random_state=0)
        est.fit(X.to_numpy(), y.to_numpy(), feature_names=list(X.columns))
        leaves = est.complexity_ + len(est.trees_)
        return (lambda Xt: est.predict(Xt.to_numpy())), leaves, None

    def grl(s):
        return _ovr(lambda A, b: _Imodel(GreedyRuleListClassifier(max_depth=s), A, b),
                    X, y, _grl_rules)

    def ripper(s):
        return _ovr(lambda A, b: _Ripper(s, A, b), X, y, _ripper_rules)

    k = len(np.unique(y))
    ovr = 1 if k == 2 else k  # one-vs-rest: one model per class
    out = {}
    for name, fit, start in (("RuleFit", rulefit, size // ovr), ("FIGS", figs, size),
                             ("GreedyRuleList", grl, size // ovr),
                             ("RIPPER", ripper, size // ovr)):
        t = time.perf_counter()
        out[name] = (*fit_largest(fit, size, start), time.perf_counter() - t)
    return out


def _rulefit_positive_rules(model, Xt):
    if model is None:
        return []
    r = model.est._get_rules()
    r = r[(r["coef"] > 0) & (r["type"] == "rule")]
    return [Xt.eval(rule).to_numpy() for rule in r["rule"]]


def _jaccard(a, b):
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0


def recovery(rule_masks, Xt):
    if not rule_masks:
        return 0.0
    return float(np.mean([max(_jaccard(p(Xt), m) for m in rule_masks) for p in PLANTED]))


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--data", nargs="+", default=None,
                    choices=["breast cancer", "wine", "iris", "synthetic"],
                    help="only these data sets (default: all four)")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    names = ["greybox", "RuleFit", "FIGS", "GreedyRuleList", "RIPPER"]
    rows = []
    seconds = {k: 0.0 for k in names}
    for dname, (X, y, clean) in datasets().items():
        if args.data is not None and dname not in args.data:
            continue
        for size in args.sizes:
            acc = {k: [] for k in names}
            count = {k: [] for k in names}
            clean_acc = {k: [] for k in names}
            rec = {"greybox": [], "RuleFit": []}
            for split in range(args.splits):
                idx = np.arange(len(X))
                tr, te = train_test_split(idx, test_size=0.3, random_state=split, stratify=y)
                Xtr, Xte = X.iloc[tr].reset_index(drop=True), X.iloc[te].reset_index(drop=True)
                ytr, yte = y.iloc[tr].reset_index(drop=True), y.iloc[te].to_numpy()
                t = time.perf_counter()
                predict, n_rules, positive = fit_greybox(Xtr, ytr, size)
                p = predict(Xte)
                seconds["greybox"] += time.perf_counter() - t
                acc["greybox"].append((p == yte).mean())
                count["greybox"].append(n_rules)
                if clean is not None:
                    clean_acc["greybox"].append((p == clean[te]).mean())
                    rec["greybox"].append(recovery(positive(Xte), Xte))
                for k, (pred, n_rules, model, fit_s) in peers(Xtr, ytr, size).items():
                    t = time.perf_counter()
                    p = np.asarray(pred(Xte)).astype(int)
                    seconds[k] += time.perf_counter() - t + fit_s
                    acc[k].append((p == yte).mean())
                    count[k].append(n_rules)
                    if clean is not None:
                        clean_acc[k].append((p == clean[te]).mean())
                        if k == "RuleFit":
                            rec[k].append(recovery(_rulefit_positive_rules(model, Xte), Xte))
            row = {"data": dname, "size": size}
            for k in names:
                row[k] = np.mean(acc[k])
                row[f"{k} rules"] = np.mean(count[k])
                if clean is not None:
                    row[f"{k} clean"] = np.mean(clean_acc[k])
            best_peer = max(row[k] for k in names[1:])
            row["ratio"] = row["greybox"] / best_peer
            if clean is not None:
                row["recovery greybox"] = np.mean(rec["greybox"])
                row["recovery RuleFit"] = np.mean(rec["RuleFit"])
            rows.append(row)
            print(_line(row, names), flush=True)
    print()
    print("held-out accuracy, mean of", args.splits, "splits (mean rule count in brackets);",
          "ratio = greybox / best peer")
    print(_table(rows, names))
    syn = [r for r in rows if r["data"] == "synthetic"]
    if syn:
        print("\nsynthetic set: accuracy against the labels before noise, and planted-rule "
              "recovery (mean best Jaccard)")
        for r in syn:
            print(f"  size {r['size']:>2}: clean " + "  ".join(
                f"{k} {r[k + ' clean']:.3f}" for k in names)
                + f"  | recovery greybox {r['recovery greybox']:.2f}"
                  f"  RuleFit {r['recovery RuleFit']:.2f}")
    print("\nfit+predict seconds, all runs:", "  ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


def _line(row, names):
    return f"{row['data']:>13} size {row['size']:>2}: " + "  ".join(
        f"{k} {row[k]:.3f} ({row[k + ' rules']:.1f})" for k in names)


def _table(rows, names):
    head = f"{'data':>13} {'size':>4} " + " ".join(f"{k:>16}" for k in names) + "  ratio"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = " ".join(f"{r[k]:>8.3f} ({r[k + ' rules']:>4.1f})" for k in names)
        lines.append(f"{r['data']:>13} {r['size']:>4} {cells}  {r['ratio']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
