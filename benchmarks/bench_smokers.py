"""Smokers, friends and cancer: greybox against LTNtorch on the same worlds and labels.

The worlds, labels and network of ``examples/smokers.py`` (two groups of people, a friendship
graph, smoking that spreads among friends, cancer that mostly follows it, weak per-person
measurements plus a one-hot identity; half of the ``smokes`` and half of the ``cancer``
labels known). Each system learns in its own idiom from the same knowledge:

- greybox: ``smoking_causes`` is a rule (``cancer``'s score is a bias plus a learned weight
  times ``smokes``), ``friends_smoke`` a soft constraint over every pair; one fit on the
  world, as in the example.
- LTNtorch (Badreddine et al., 2022; the library's own smokers notebook): ``Smokes`` and
  ``Cancer`` are predicates (the example's network, one each), ``Friends`` a predicate that
  looks the graph up; the known labels are facts; the knowledge is
  ``forall x, y: Friends(x, y) and Smokes(x) -> Smokes(y)`` and
  ``forall x: Smokes(x) -> Cancer(x)``, aggregated with SatAgg (product t-norm,
  Reichenbach implication, pMeanError quantifiers with p = 2), loss ``1 - SatAgg``.
- the network alone: the same network trained on the labels only, no rules.

Every system gets the same epochs of full-batch Adam with the same learning rate on one
thread; accuracy is on the held-out labels, averaged over the worlds; time is CPU seconds of
training and prediction per world, with its ratio to LTNtorch's.

Needs LTNtorch, which is not a greybox dependency. It requires only numpy and torch; install
it without letting pip touch the installed torch:

    pip install --no-deps ltntorch      # 1.0.2 tested

Run:  python benchmarks/bench_smokers.py [--worlds 10] [--people 24] [--epochs 300]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import smokers  # noqa: E402  (the example's data and models)


def ltn_run(world: smokers.World, *, epochs: int, lr: float = 0.02, seed: int = 0):
    """LTNtorch on one world: ``(smokes prediction, cancer prediction)``."""
    import ltn

    n = len(world.names)
    x = torch.from_numpy(world.features)
    friends = torch.from_numpy(world.friends.astype(np.float32))
    ids = torch.arange(n, dtype=torch.float32)[:, None]

    class Net(torch.nn.Module):
        """The example's network, a truth degree in (0, 1) as LTN predicates return."""

        def __init__(self, seed):
            super().__init__()
            self.net = smokers.smoke_net(world, seed)

        def forward(self, i):
            return torch.sigmoid(self.net(x[i[:, 0].long()]))[:, 0]

    Smokes = ltn.Predicate(Net(seed))
    Cancer = ltn.Predicate(Net(seed + 1))
    Friends = ltn.Predicate(func=lambda a, b: friends[a[:, 0].long(), b[:, 0].long()])
    Not = ltn.Connective(ltn.fuzzy_ops.NotStandard())
    And = ltn.Connective(ltn.fuzzy_ops.AndProd())
    Implies = ltn.Connective(ltn.fuzzy_ops.ImpliesReichenbach())
    Forall = ltn.Quantifier(ltn.fuzzy_ops.AggregPMeanError(p=2), quantifier="f")
    sat_agg = ltn.fuzzy_ops.SatAgg()

    def people(mask):
        return ltn.Variable("x", ids[torch.from_numpy(mask)])

    smoker, non_smoker = people(world.smokes_known & world.smokes), people(
        world.smokes_known & ~world.smokes)
    sick, healthy = people(world.cancer_known & world.cancer), people(
        world.cancer_known & ~world.cancer)
    p, q = ltn.Variable("p", ids), ltn.Variable("q", ids)
    params = [*Smokes.parameters(), *Cancer.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        axioms = [Forall(smoker, Smokes(smoker)), Forall(non_smoker, Not(Smokes(non_smoker))),
                  Forall(sick, Cancer(sick)), Forall(healthy, Not(Cancer(healthy))),
                  Forall([p, q], Implies(And(Friends(p, q), Smokes(p)), Smokes(q))),
                  Forall(p, Implies(Smokes(p), Cancer(p)))]
        loss = 1.0 - sat_agg(*[a for a in axioms if a.value.numel()])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        everyone = ltn.Variable("x", ids)
        return (Smokes(everyone).value > 0.5).numpy(), (Cancer(everyone).value > 0.5).numpy()


def timed(fn, world, seed):
    """``(smokes accuracy, cancer accuracy, CPU seconds)`` of ``fn(world, seed)``."""
    start = time.process_time()
    smokes, cancer = fn(world, seed)
    seconds = time.process_time() - start
    return (*smokers.held_out_accuracy(world, smokes, cancer), seconds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=10)
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--semantics", default="product")
    args = parser.parse_args(argv)
    try:
        import ltn  # noqa: F401
    except ImportError:
        sys.exit("bench_smokers needs LTNtorch: pip install --no-deps ltntorch")
    torch.set_num_threads(1)
    worlds = [smokers.make_world(args.people, seed) for seed in range(args.worlds)]
    systems = {
        "LTNtorch": lambda w, s: ltn_run(w, epochs=args.epochs, seed=s),
        f"greybox ({args.semantics})": lambda w, s: smokers.predictions(
            smokers.train_greybox(w, semantics=args.semantics, epochs=args.epochs, seed=s), w),
        "network alone": lambda w, s: smokers.network_alone(w, epochs=args.epochs, seed=s),
    }
    results = {name: np.array([timed(fn, w, s) for s, w in enumerate(worlds)])
               for name, fn in systems.items()}
    print(f"{args.worlds} worlds of {args.people} people, {args.epochs} epochs, one thread; "
          f"held-out accuracy (mean ± std over worlds), CPU seconds per world")
    print(f"{'system':<22}{'smokes acc':>16}{'cancer acc':>16}{'seconds':>10}{'/ LTN':>8}")
    reference = results["LTNtorch"][:, 2].mean()
    for name, a in results.items():
        print(f"{name:<22}{a[:, 0].mean():>9.3f} ± {a[:, 0].std():.3f}"
              f"{a[:, 1].mean():>9.3f} ± {a[:, 1].std():.3f}"
              f"{a[:, 2].mean():>10.2f}{a[:, 2].mean() / reference:>8.2f}")


if __name__ == "__main__":
    main()
