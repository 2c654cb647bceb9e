"""A tour of greybox.rules on real data: scikit-learn's breast-cancer set, no download.

Loads clinical rules, lints them with Z3, evaluates them crisply on all 569 patients,
proves two properties (one holds, one is refuted with a counterexample the crisp
evaluation reproduces), and shows how each rule pushed one decision.

Run:  python examples/rules_tour.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

import greybox.rules as gr

HERE = Path(__file__).resolve().parent


def main() -> None:
    kb = gr.load(HERE / "breast_cancer.rules")
    print(f"Loaded {kb!r}\n")

    print("== Z3 lint (greybox check) ==")
    print(gr.check(kb), "\n")

    data = load_breast_cancer(as_frame=True)
    frame = data.frame
    malignant = (frame["target"] == 0).to_numpy()  # sklearn: 0 = malignant, 1 = benign

    print("== Crisp evaluation on", len(frame), "patients ==")
    ev = gr.evaluate(kb, frame)
    print(ev, "\n")
    predicted = ev.decisions["malignant"].to_numpy()
    accuracy = float(np.mean(predicted == malignant))
    tp = int(np.sum(predicted & malignant))
    print(f"rules alone: accuracy {accuracy:.3f}, malignant found {tp}/{int(malignant.sum())}, "
          f"false alarms {int(np.sum(predicted & ~malignant))}\n")

    print("== Properties of the rules, for every possible patient (Z3) ==")
    for prop in ["`worst area` < 700 and `worst concave points` < 0.12 and `mean radius` <= 17 "
                 "and `mean concavity` < 0.05 -> not malignant",
                 "`mean radius` > 20 -> malignant"]:
        result = gr.entails(kb, prop)
        print(result)
        if not result.holds:
            print("  (crisp evaluation reproduces the counterexample:", result.confirmed, ")")
    print()

    row = int(np.flatnonzero(predicted != malignant)[0])
    print(f"== Why patient {row} was misclassified ==")
    truth = "malignant" if malignant[row] else "benign"
    print(f"decision: malignant={bool(predicted[row])} (truth: {truth}), "
          f"score {ev.scores['malignant'].iloc[row]:+.2f}")
    contributions = ev.contributions.iloc[row]
    for rule, value in contributions[contributions != 0].sort_values().items():
        print(f"  rule {rule:<16} {value:+.2f}   {gr.to_text(kb.rules[rule])}")


if __name__ == "__main__":
    main()
