"""Relational rules against what they replace, ratios measured in the same run.

1. Digit addition written once with families and ``sum`` (``addition_program``) against the
   generated propositional rules (``addition_rules``) at N = 1, 2, 4, 15: time to build the
   model from text, and time per training step (batch 64, the example's network, one torch
   thread). Grounded, both are the same model, so the step ratio should be ~1.
2. A soft relational constraint with many groundings -- "friends of smokers smoke",
   ``constraint fs(p in person, q in person): p != q -> (friends(p, q) and smokes(p) ->
   smokes(q))`` over P people, P*(P-1) groundings -- under the product t-norm: greybox's
   loss + backward per step against the same loss written by hand as one vectorised torch
   expression (the LTN way).
3. A rule family, ``rule spread(p in person, q in person): p != q and friends(p, q) and
   smokes(p) -> cancer(q)`` plus ``own(p)``, deciding P outputs, labels on each: greybox's
   loss + backward against the same scores and cross-entropy written as one einsum.

Run:  python benchmarks/bench_relational.py [--quick]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import greybox as gb
import greybox.rules as gr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from digits_addition import (  # noqa: E402
    addition_program,
    addition_rules,
    digit_network,
    family_columns,
    load_pools,
    make_examples,
)


def _best(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def addition(ns, steps: int, repeat: int) -> None:
    (x, y), _ = load_pools(0)
    print("## digit addition: families + sum vs generated rules (batch 64)\n")
    print("| N | build generated ms | build relational ms | step generated ms | "
          "step relational ms | step ratio |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        _addition_row(n, x, y, steps, repeat)
    print()


def _addition_row(n: int, x, y, steps: int, repeat: int) -> None:
    torch.manual_seed(0)
    net = digit_network()
    data, sums = make_examples(x, y, n, 64, 0)
    build_w = _best(lambda: gb.GreyBox(addition_rules(n), {"digit": net}), repeat)
    build_r = _best(lambda: gb.GreyBox(addition_program(n), {"digit": net}), repeat)
    written = gb.GreyBox(addition_rules(n), {"digit": net})
    relational = gb.GreyBox(addition_program(n), {"digit": net})
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # steps leave the network as it is

    def steps_of(model, d):
        def run():
            for _ in range(steps):
                opt.zero_grad()
                model.loss(d, {"total": sums}).backward()
                opt.step()
        return run

    t_w = _best(steps_of(written, data), repeat) / steps
    t_r = _best(steps_of(relational, family_columns(data, n)), repeat) / steps
    print(f"| {n} | {build_w * 1e3:.1f} | {build_r * 1e3:.1f} | {t_w * 1e3:.2f} | "
          f"{t_r * 1e3:.2f} | {t_r / t_w:.2f}x |")


SMOKERS = """\
set person
input friends(person, person): bool
input features(person): tensor[4]
neural smokes(person): bool = smoke_net(features(person))
constraint fs(p in person, q in person) weight 1.0: p != q -> (friends(p, q) and smokes(p) -> smokes(q))
"""


def friends_smoke(people: list[int], rows: int, repeat: int) -> None:
    print(f"## soft constraint over P*(P-1) groundings, product t-norm ({rows} worlds per "
          "batch)\n")
    print("| P | groundings | build s | greybox step ms | hand-written step ms | ratio |")
    print("|---|---|---|---|---|---|")
    for p in people:
        _smokers_row(p, rows, repeat)
    print()


def _smokers_row(p: int, rows: int, repeat: int) -> None:
    names = [f"p{i}" for i in range(p)]
    t = time.perf_counter()
    kb = gr.parse(SMOKERS, sets={"person": names})
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    model = gb.GreyBox(kb, {"smoke_net": net}, semantics="product")
    build = time.perf_counter() - t
    rng = np.random.default_rng(0)
    feats = torch.tensor(rng.normal(size=(rows, p, 4)), dtype=torch.float32)
    friends = rng.random((rows, p, p)) < 0.1
    data = {**kb.families["features"].split(feats),
            **{k: v for k, v in kb.families["friends"].split(friends).items()}}
    batch = model.batch(data)
    off_diagonal = ~torch.eye(p, dtype=torch.bool)
    fr = torch.tensor(friends, dtype=torch.float32)

    def greybox_step():
        net.zero_grad()
        model.loss(batch).backward()

    def hand_step():
        net.zero_grad()
        s = torch.sigmoid(net(feats.reshape(-1, 4)).reshape(rows, p))
        body = fr * s[:, :, None]                      # friends(p, q) and smokes(p)
        holds = 1 - body + body * s[:, None, :]        # -> smokes(q), product t-norm
        loss = (1 - holds)[:, off_diagonal].mean(0).sum()  # 1 - truth, mean over rows
        loss.backward()

    t_g = _best(greybox_step, repeat)
    t_h = _best(hand_step, repeat)
    print(f"| {p} | {p * (p - 1):,} | {build:.2f} | {t_g * 1e3:.1f} | {t_h * 1e3:.2f} | "
          f"{t_g / t_h:.0f}x |")


RULES = """\
set person
input friends(person, person): bool
input features(person): tensor[4]
neural smokes(person): bool = smoke_net(features(person))
output cancer(person): bool
rule spread(p in person, q in person) weight 0.5: p != q and friends(p, q) and smokes(p) -> cancer(q)
rule own(p in person) weight 2.0: smokes(p) -> cancer(p)
"""


def rule_family(people: list[int], rows: int, repeat: int) -> None:
    print(f"## a rule family over P*(P-1) groundings deciding P outputs, product t-norm "
          f"({rows} worlds per batch, labels on every output)\n")
    print("| P | rule groundings | greybox step ms | hand-written step ms | ratio |")
    print("|---|---|---|---|---|")
    for p in people:
        _rule_row(p, rows, repeat)
    print()


def _rule_row(p: int, rows: int, repeat: int) -> None:
    kb = gr.parse(RULES, sets={"person": [f"p{i}" for i in range(p)]})
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    model = gb.GreyBox(kb, {"smoke_net": net}, semantics="product")
    rng = np.random.default_rng(0)
    feats = torch.tensor(rng.normal(size=(rows, p, 4)), dtype=torch.float32)
    friends = rng.random((rows, p, p)) < 0.1
    labels = rng.random((rows, p)) < 0.3
    batch = model.batch({"features": feats, "friends": friends})
    targets = model._targets({f"cancer(p{i})": labels[:, i] for i in range(p)}, rows)
    fr = torch.tensor(friends, dtype=torch.float32) * (1 - torch.eye(p))
    y = torch.tensor(labels, dtype=torch.float32)
    names = list(kb.rules)
    w_spread = torch.stack([model.rule_weight(n) for n in names if n.startswith("spread")])
    w_own = torch.stack([model.rule_weight(n) for n in names if n.startswith("own")])
    bias = torch.stack([model.decisions_bias(f"cancer(p{i})") for i in range(p)])
    pairs = [(i, j) for i in range(p) for j in range(p) if i != j]
    w = torch.zeros(p, p)
    w_index = torch.tensor([i * p + j for i, j in pairs])

    def greybox_step():
        net.zero_grad()
        model.loss(batch, targets).backward()

    def hand_step():
        net.zero_grad()
        s = torch.sigmoid(net(feats.reshape(-1, 4)).reshape(rows, p))
        weights = w.flatten().index_put((w_index,), w_spread).reshape(p, p)
        score = bias + torch.einsum("rpq,pq,rp->rq", fr, weights, s) + w_own * s
        loss = nn.functional.binary_cross_entropy_with_logits(score, y, reduction="none")
        loss.mean(0).sum().backward()

    check = model.loss(batch, targets).item()
    s0 = torch.sigmoid(net(feats.reshape(-1, 4)).reshape(rows, p))
    weights0 = w.flatten().index_put((w_index,), w_spread).reshape(p, p)
    score0 = bias + torch.einsum("rpq,pq,rp->rq", fr, weights0, s0) + w_own * s0
    ref = nn.functional.binary_cross_entropy_with_logits(score0, y, reduction="none")
    assert abs(ref.mean(0).sum().item() - check) < 1e-3 * max(1.0, abs(check)), (ref, check)
    t_g = _best(greybox_step, repeat)
    t_h = _best(hand_step, repeat)
    print(f"| {p} | {len(pairs):,} | {t_g * 1e3:.1f} | {t_h * 1e3:.2f} | {t_g / t_h:.0f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        addition([1, 2], steps=2, repeat=1)
        friends_smoke([5, 10], rows=8, repeat=1)
        rule_family([5, 10], rows=8, repeat=1)
    else:
        addition([1, 2, 4, 15], steps=10, repeat=3)
        friends_smoke([10, 30, 100], rows=32, repeat=3)
        rule_family([10, 30, 100], rows=32, repeat=3)


if __name__ == "__main__":
    main()
