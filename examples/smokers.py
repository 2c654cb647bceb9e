"""Smokers, friends and cancer: relational rules over a friendship graph.

The Logic Tensor Networks example (Badreddine et al., 2022), on generated data: a world of
people in two groups, a friendship graph (dense inside a group, sparse across), smoking that
runs in friendship circles, cancer that mostly follows smoking, and per-person measurements
that only weakly say who smokes. Half of the people have a known ``smokes`` label and an
independent half a known ``cancer`` label; the task is the other half of each.

The rules say two things about everyone, labelled or not::

    rule smoking_causes(p in person) weight 2.0: smokes(p) -> cancer(p)
    constraint friends_smoke(p in person, q in person) weight 0.1:
        p != q -> (friends(p, q) and smokes(p) -> smokes(q))

Grounded on a world of 24 people, that is 24 rules and 552 soft constraints over 24
``smokes`` variables predicted by one network (called once for all of them). As in LTN,
where every person is a constant with a learned embedding, the network reads a person's
identity (a one-hot code) next to the measurements, so that it can keep a value per person:
the learning is transductive, inside one world. The labels teach the labelled people; the
rules carry what they know to the friends of a labelled smoker and to anyone whose cancer
is known.

Compared, on the same worlds and labels: the network alone (the same network trained on the
``smokes`` labels, and a second one on the ``cancer`` labels), greybox with the cancer rule
only, and greybox with both rules. ``benchmarks/bench_smokers.py`` adds LTNtorch.

Run:  python examples/smokers.py [--worlds 5] [--people 24] [--epochs 300]
                                 [--semantics product]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import greybox as gb

#: 48 first names, one per person (the first half in group A, the rest in group B)
NAMES = ("anna bob carl dora emil fay gus hana ivan jill kurt lena mario nina otto pia quinn "
         "rosa sven tina ugo vera walt xena yann zoe abel bea cole dina eli flo gil hugo ida "
         "jon kai lia max ned ola pam ray sue tom una vic wen").split()

RULES = """\
set person
input friends(person, person): bool
input features(person): tensor
neural smokes(person): bool = smoke_net(features(person))
output cancer(person): bool
rule smoking_causes(p in person) weight 2.0: smokes(p) -> cancer(p)
"""
#: "friends of smokers smoke", over every ordered pair of people
FRIENDS_SMOKE = """\
constraint friends_smoke(p in person, q in person) weight 0.1:
    p != q -> (friends(p, q) and smokes(p) -> smokes(q))
"""

N_MEASURES = 4   # measurements per person that weakly indicate smoking


@dataclass(frozen=True)
class World:
    """One generated world: people, the truth about them and what is known of it."""

    names: tuple[str, ...]
    group: np.ndarray          # (n,) 0 = group A, 1 = group B
    friends: np.ndarray        # (n, n) bool, symmetric, no one is their own friend
    features: np.ndarray       # (n, 4 + n) float32: measurements, then a one-hot identity
    smokes: np.ndarray         # (n,) bool, the truth
    cancer: np.ndarray         # (n,) bool, the truth
    smokes_known: np.ndarray   # (n,) bool: whose smokes label training sees
    cancer_known: np.ndarray   # (n,) bool: whose cancer label training sees


def make_world(n_people: int = 24, seed: int = 0, *, signal: float = 0.5) -> World:
    """A world of ``n_people`` (two groups of half each). Friendships: probability 0.3
    inside a group, 0.02 across. Smoking starts with 3 people of group A and 1 of group B,
    and spreads along friendships twice (each friend of a new smoker takes it up with
    probability 0.5); cancer follows smoking with probability 0.75, and strikes 5 % of
    non-smokers. Each person's 4 measurements are ``signal * smokes + N(0, 1)``."""
    if not 4 <= n_people <= len(NAMES):
        raise ValueError(f"n_people must be in 4..{len(NAMES)}, got {n_people}")
    rng = np.random.default_rng(seed)
    n = n_people
    group = (np.arange(n) >= n // 2).astype(int)
    same = group[:, None] == group[None, :]
    upper = np.triu(rng.random((n, n)) < np.where(same, 0.3, 0.02), k=1)
    friends = upper | upper.T
    smokes = np.zeros(n, bool)
    smokes[rng.choice(np.flatnonzero(group == 0), 3, replace=False)] = True
    smokes[rng.choice(np.flatnonzero(group == 1), 1, replace=False)] = True
    frontier = smokes.copy()
    for _ in range(2):
        exposed = friends[frontier].any(axis=0) & ~smokes
        frontier = exposed & (rng.random(n) < 0.5)
        smokes |= frontier
    cancer = rng.random(n) < np.where(smokes, 0.75, 0.05)
    measures = signal * smokes[:, None] + rng.normal(size=(n, N_MEASURES))
    features = np.concatenate([measures, np.eye(n)], axis=1).astype(np.float32)
    smokes_known = np.zeros(n, bool)
    smokes_known[rng.permutation(n)[: n // 2]] = True
    cancer_known = np.zeros(n, bool)
    cancer_known[rng.permutation(n)[: n // 2]] = True
    return World(tuple(NAMES[:n]), group, friends, features, smokes, cancer, smokes_known,
                 cancer_known)


def knowledge(world: World, *, friends_smoke: bool = True) -> gb.rules.KnowledgeBase:
    """The rules grounded on the world's people."""
    return gb.rules.parse(RULES + (FRIENDS_SMOKE if friends_smoke else ""),
                          sets={"person": list(world.names)})


def columns(kb: gb.rules.KnowledgeBase, world: World) -> dict:
    """The world as one row: a column per member (``friends(anna, bob)``,
    ``features(anna)``)."""
    return {**kb.families["friends"].split(world.friends[None]),
            **kb.families["features"].split(world.features[None])}


def labels(kb: gb.rules.KnowledgeBase, world: World) -> dict:
    """The known labels, NaN where unknown: ``smokes(anna)``, ``cancer(bob)``..."""
    smokes = np.where(world.smokes_known, world.smokes, np.nan)
    cancer = np.where(world.cancer_known, world.cancer, np.nan)
    return {**kb.families["smokes"].split(smokes[None]),
            **kb.families["cancer"].split(cancer[None])}


def smoke_net(world: World, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(world.features.shape[1], 16), nn.Tanh(), nn.Linear(16, 1))


def train_greybox(world: World, *, friends_smoke: bool = True, semantics: str = "product",
                  epochs: int = 300, lr: float = 0.02, seed: int = 0) -> gb.GreyBox:
    """greybox, trained on the world's known labels and the rules."""
    kb = knowledge(world, friends_smoke=friends_smoke)
    model = gb.GreyBox(kb, {"smoke_net": smoke_net(world, seed)}, semantics=semantics)
    model.fit(columns(kb, world), labels(kb, world), epochs=epochs, lr=lr, seed=seed,
              progress=False)
    return model


def predictions(model: gb.GreyBox, world: World) -> tuple[np.ndarray, np.ndarray]:
    """Each person's decided ``smokes`` (the network's most probable value) and ``cancer``
    (what :meth:`~greybox.GreyBox.predict` decides from the rules)."""
    kb, data = model.kb, columns(model.kb, world)
    with torch.no_grad():
        trace = model.eval()(data)
    smokes = np.array([float(trace.values[m][0]) > 0.5
                       for m in kb.families["smokes"].members.values()])
    decided = model.predict(data)
    cancer = np.array([bool(decided[m].iloc[0]) for m in kb.families["cancer"].members.values()])
    return smokes, cancer


def network_alone(world: World, *, epochs: int = 300, lr: float = 0.02,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same network, no rules: one trained on the known ``smokes`` labels, another on
    the known ``cancer`` labels (Adam, full batch, as greybox's fit on one world)."""
    x = torch.from_numpy(world.features)
    preds = []
    for truth, known in ((world.smokes, world.smokes_known), (world.cancer, world.cancer_known)):
        net = smoke_net(world, seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        y = torch.tensor(truth[known], dtype=torch.float32)
        for _ in range(epochs):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x[known])[:, 0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            preds.append((net(x)[:, 0] > 0).numpy())
    return preds[0], preds[1]


def held_out_accuracy(world: World, smokes: np.ndarray, cancer: np.ndarray) -> tuple[float,
                                                                                         float]:
    """Accuracy on the labels training did not see."""
    s, c = ~world.smokes_known, ~world.cancer_known
    return float((smokes[s] == world.smokes[s]).mean()), float((cancer[c] == world.cancer[c]).mean())


METHODS = ("network alone", "greybox: cancer rule", "greybox: both rules")


def run(method: str, world: World, *, semantics: str, epochs: int, seed: int = 0):
    """``(smokes accuracy, cancer accuracy, seconds)`` of one method on one world."""
    start = time.process_time()
    if method == "network alone":
        smokes, cancer = network_alone(world, epochs=epochs, seed=seed)
    else:
        model = train_greybox(world, friends_smoke=method.endswith("both rules"),
                              semantics=semantics, epochs=epochs, seed=seed)
        smokes, cancer = predictions(model, world)
    seconds = time.process_time() - start
    return (*held_out_accuracy(world, smokes, cancer), seconds)


def table(results: dict[str, list[tuple[float, float, float]]]) -> str:
    """Mean ± standard deviation over worlds, one line per method."""
    lines = [f"{'method':<26}{'smokes acc':>16}{'cancer acc':>16}{'seconds':>10}"]
    for method, rows in results.items():
        a = np.array(rows)
        lines.append(f"{method:<26}{a[:, 0].mean():>9.3f} ± {a[:, 0].std():.3f}"
                     f"{a[:, 1].mean():>9.3f} ± {a[:, 1].std():.3f}{a[:, 2].mean():>10.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=5, help="worlds (seeds) to average over")
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--semantics", default="product",
                        choices=["product", "lukasiewicz", "godel", "probabilistic"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    worlds = [make_world(args.people, seed) for seed in range(args.worlds)]
    w = worlds[0]
    print(f"{args.worlds} worlds of {args.people} people; world 0: "
          f"{int(w.friends.sum()) // 2} friendships, {int(w.smokes.sum())} smokers, "
          f"{int(w.cancer.sum())} with cancer; {int(w.smokes_known.sum())} smokes and "
          f"{int(w.cancer_known.sum())} cancer labels known")
    print(f"held-out accuracy, {args.semantics} semantics, {args.epochs} epochs "
          f"(mean ± std over worlds; CPU seconds per world, one thread)")
    results = {m: [run(m, world, semantics=args.semantics, epochs=args.epochs, seed=i)
                   for i, world in enumerate(worlds)] for m in METHODS}
    print(table(results))


if __name__ == "__main__":
    main()
