"""Digits addition: greybox against a hand-written exact model, and scaling in N.

1. Steps (issue 12): time per training step of greybox (probabilistic semantics, the sum
   of two N-digit numbers as in examples/digits_addition.py) against a hand-written exact
   carry model of the same thing (column sums of the digit distributions with carries,
   log-likelihood of the sum; checked equal to greybox's ``log_prob`` in the same run),
   both with the same 64-128-10 MLP and initial weights, the same batches and Adam, at
   N = 1, 2, 3, 4, 8, 15 and batch 2 and 64, one thread. The network alone (the same loop
   with a trivial loss) gives each step's overhead outside the network's forward/backward.
   Target: greybox / hand-written <= 1.25.
2. Throughput at N = 15 on 100,000 sums: ``predict`` and ``log_prob`` of greybox against
   the same hand-written code (target <= 1.5).
Times in 1 and 2 are the CPU time of the one thread (``time.thread_time``), so that other
processes sharing the machine do not blur the ratios.
3. Accuracy at N = 1 (the CNN, whole epochs): time per epoch and sum accuracy against the
   hand-written model (target: time <= 1.25x, accuracy within 1 point).
4. Scaling: N = 1, 2, 3, 4, 8, 15 digits per number, several seeds each: time per epoch,
   sum accuracy, digit accuracy (the network never sees a digit label) and how many seeds
   failed to learn (digit accuracy below 50%).
5. Big integers (``--big [N ...]``, issue 23): one epoch at N = 30, 50, 100 (sums beyond
   2**53, exact Python ints) against the hand-written carry model on the example's CNN,
   with the network alone's time; the goal is under a minute per epoch of 3,000 sums.

Run:  python benchmarks/bench_addition.py [--quick] [--parts steps throughput accuracy scaling big]
      [--big 30 50 100]
      [--digits 1 2 3 4 8 15] [--batches 2 64] [--steps 300] [--sums 100000]
      [--epochs 5] [--seeds 3] [--examples 3000]
``--quick`` is a smoke test (few steps, small sizes; its ratios are rough).
Not part of the test suite. DeepProbLog is not installed here; the figures quoted for it
in the project notes were measured separately on this kind of machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from digits_addition import (  # noqa: E402
    addition_rules,
    digit_network,
    load_pools,
    make_examples,
    run,
)

import greybox as gb  # noqa: E402


def hand_written(data, sums, test_data, test_sums, *, epochs, batch_size, lr, seed):
    """Exact a + b by hand: P(sum = s) = sum_a P(a) P(s - a), one einsum per batch."""
    torch.manual_seed(seed)
    net = digit_network()
    a, b = data["a0_img"], data["b0_img"]
    y = torch.as_tensor(sums)
    pairs = torch.zeros(10, 10, 19)
    for i in range(10):
        for j in range(10):
            pairs[i, j, i + j] = 1.0
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch_size):
            rows = perm[start:start + batch_size]
            logits = net(torch.cat([a[rows], b[rows]]))
            pa, pb = torch.softmax(logits, 1).split(len(rows))
            p_sum = torch.einsum("ba,bc,act->bt", pa, pb, pairs)
            loss = -torch.log(p_sum.gather(1, y[rows].view(-1, 1)).clamp_min(1e-30)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    net.eval()
    with torch.no_grad():
        ta, tb = test_data["a0_img"], test_data["b0_img"]
        pa, pb = torch.softmax(net(ta), 1), torch.softmax(net(tb), 1)
        pred = torch.einsum("ba,bc,act->bt", pa, pb, pairs).argmax(1).numpy()
    return float(np.mean(times)), float((pred == test_sums).mean())


def compare(epochs: int, examples: int, seed: int, repeat: int) -> None:
    (tx, ty), (vx, vy) = load_pools(seed)
    data, sums = make_examples(tx, ty, 1, examples, seed)
    test_data, test_sums = make_examples(vx, vy, 1, 1000, seed + 1)
    ours_t, theirs_t, ours_acc, theirs_acc = [], [], [], []
    for _ in range(repeat):
        t, acc = hand_written(data, sums, test_data, test_sums, epochs=epochs,
                              batch_size=32, lr=1e-3, seed=seed)
        theirs_t.append(t)
        theirs_acc.append(acc)
        torch.manual_seed(seed)
        model = gb.GreyBox(addition_rules(1), {"digit": digit_network()})
        history = model.fit(data, {"total": sums}, epochs=epochs, batch_size=32, lr=1e-3,
                            seed=seed, progress=False)
        ours_t.append(float(np.mean([e["seconds"] for e in history.epochs])))
        pred = model.predict(test_data)["total"].to_numpy()
        ours_acc.append(float((pred == test_sums).mean()))
    t_ref, t_gb = min(theirs_t), min(ours_t)
    print(f"N=1, {examples} sums, batch 32, {epochs} epochs, best of {repeat} runs")
    print(f"{'':34} {'s/epoch':>8} {'sum acc':>8} {'ratio':>6}")
    print(f"{'hand-written exact (reference)':34} {t_ref:8.3f} {theirs_acc[0]:8.3f} {1.0:6.2f}")
    print(f"{'greybox (probabilistic)':34} {t_gb:8.3f} {ours_acc[0]:8.3f} {t_gb / t_ref:6.2f}"
          f"   (target <= 1.25; accuracy gap {100 * (ours_acc[0] - theirs_acc[0]):+.1f} points)")
    print()


def scaling(digits, epochs: int, examples: int, seeds: int) -> None:
    print(f"Scaling: {examples} sums per epoch, {epochs} epochs, {seeds} seeds; test: 1,000 "
          "unseen sums, 597 unseen digit images")
    print(f"{'N':>3} {'s/epoch':>8} {'sum acc':>8} {'digit acc':>10} {'failed seeds':>13}")
    for n in digits:
        results = [run(n, epochs, examples, seed, progress=False) for seed in range(seeds)]
        t = np.mean([r["seconds_per_epoch"] for r in results])
        s = np.mean([r["sum_accuracy"] for r in results])
        d = np.mean([r["digit_accuracy"] for r in results])
        failed = sum(r["digit_accuracy"] < 0.5 for r in results)
        print(f"{n:3d} {t:8.2f} {s:8.3f} {d:10.3f} {failed:>9d}/{seeds}", flush=True)




# ---------------------------------------------------------------------------------------
# 1-2. Time per training step and throughput against a hand-written exact carry model
# ---------------------------------------------------------------------------------------

def mlp() -> nn.Module:
    """The 64-128-10 MLP of the step benchmark (a small network: the inference around it
    is what is measured)."""
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


class CarryModel:
    """The sum of two ``n``-digit numbers, exactly, by hand: the distribution of each
    column's digit sum ``P(a_k + b_k = s)`` (one einsum for all columns), then the
    carries column by column from the least significant (a 2x2 transition per column
    given the sum's digit there), normalised at each column; the sum's top digit is the
    last carry."""

    def __init__(self, n: int):
        self.n = n
        pairs = torch.zeros(10, 10, 19)
        for i in range(10):
            for j in range(10):
                pairs[i, j, i + j] = 1.0
        self.pairs = pairs
        # places of the digits, most significant first (the order of the data's columns)
        # (beyond 18 digits int64 overflows: such sums go through log_prob_big)
        self.places = torch.tensor([10 ** (n - 1 - k) for k in range(n)], dtype=torch.long) \
            if n <= 18 else None
        # index of P(a + b + c = t + 10 c') in a column's 19 sums: t + 10 c' - c
        c = torch.tensor([0, 1]).view(2, 1)
        c_next = torch.tensor([0, 1]).view(1, 2)
        self.shift = (10 * c_next - c).reshape(4)              # (c, c') flattened

    def images(self, data: dict, rows=None) -> torch.Tensor:
        cols = [f"{side}{k}_img" for side in "ab" for k in range(self.n)]
        xs = [data[c] if rows is None else data[c][rows] for c in cols]
        return torch.cat(xs)

    def log_prob(self, logits: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        """log P(a + b = sums) per row, from the digit logits (2n*B, 10) in the data's
        column order (a0..a{n-1}, b0..b{n-1}, most significant first)."""
        n = self.n
        p = torch.softmax(logits, 1).view(2, n, -1, 10)
        col = torch.einsum("kbi,kbj,ijs->kbs", p[0], p[1], self.pairs)    # (n, B, 19)
        digit = torch.div(sums.view(1, -1), self.places.view(-1, 1),
                          rounding_mode="floor") % 10                    # (n, B)
        top = torch.div(sums, 10 ** n, rounding_mode="floor")            # last carry
        idx = digit.unsqueeze(-1) + self.shift                            # (n, B, 4)
        ok = (idx >= 0) & (idx <= 18)
        trans = (col.gather(2, idx.clamp(0, 18)) * ok).view(n, -1, 2, 2)  # (n, B, c, c')
        alpha = torch.zeros(sums.shape[0], 2)
        alpha[:, 0] = 1.0
        log_z = torch.zeros(sums.shape[0])
        for k in range(n - 1, -1, -1):                                   # least significant first
            alpha = torch.einsum("bc,bcd->bd", alpha, trans[k])
            z = alpha.sum(1, keepdim=True)
            alpha = alpha / z
            log_z = log_z + torch.log(z.squeeze(1))
        ok_top = top <= 1
        last = alpha.gather(1, top.clamp(0, 1).view(-1, 1)).squeeze(1) * ok_top
        return torch.log(last) + log_z

    def log_prob_big(self, logits: torch.Tensor, sums) -> torch.Tensor:
        """:meth:`log_prob` of sums given as Python ints (any size: the sum's digits read
        from its decimal text), the carries as there."""
        n = self.n
        p = torch.softmax(logits, 1).view(2, n, -1, 10)
        col = torch.einsum("kbi,kbj,ijs->kbs", p[0], p[1], self.pairs)    # (n, B, 19)
        text = [str(int(s)).zfill(n + 1) for s in sums]
        digit = torch.tensor([[int(c) for c in t[-n:]] for t in text]).T     # (n, B)
        top = torch.tensor([int(t[:-n]) if len(t) <= n + 2 else 9 for t in text])
        idx = digit.unsqueeze(-1) + self.shift
        ok = (idx >= 0) & (idx <= 18)
        trans = (col.gather(2, idx.clamp(0, 18)) * ok).view(n, -1, 2, 2)
        alpha = torch.zeros(len(text), 2)
        alpha[:, 0] = 1.0
        log_z = torch.zeros(len(text))
        for k in range(n - 1, -1, -1):
            alpha = torch.einsum("bc,bcd->bd", alpha, trans[k])
            z = alpha.sum(1, keepdim=True)
            alpha = alpha / z
            log_z = log_z + torch.log(z.squeeze(1))
        last = alpha.gather(1, top.clamp(0, 1).view(-1, 1)).squeeze(1) * (top <= 1)
        return torch.log(last) + log_z

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """The sum of the most probable digits."""
        d = logits.argmax(1).view(2, self.n, -1)
        return (d * self.places.view(1, -1, 1)).sum((0, 1))


def _step_data(n: int, count: int, seed: int):
    (tx, ty), _ = load_pools(seed)
    data, sums = make_examples(tx, ty, n, count, seed)
    return data, torch.as_tensor(sums)


#: CPU time of this thread: with one thread, what the work costs, unaffected by other
#: processes taking turns on the machine's cores (wall time is not)
clock = time.thread_time


def _epochs_hand(net, model: CarryModel, data, sums, *, batch, epochs, seed,
                 alone: bool) -> float:
    """Best seconds per epoch of a plain loop over shuffled mini-batches (as greybox's fit
    does): the hand-written exact loss, or (``alone``) a trivial loss on the logits: the
    network's own forward and backward."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    best = float("inf")
    for _ in range(epochs):
        t0 = clock()
        perm = torch.randperm(len(sums), generator=gen)
        for start in range(0, len(sums), batch):
            rows = perm[start:start + batch]
            logits = net(model.images(data, rows))
            if alone:
                loss = -torch.log_softmax(logits, 1)[:, 0].mean()
            else:
                loss = -model.log_prob(logits, sums[rows]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        best = min(best, clock() - t0)
    return best


def _epochs_greybox(net, n: int, data, sums, *, batch, epochs, seed) -> float:
    """Best seconds per epoch of ``fit`` (one epoch per call, so its set-up, the data
    turned into tensors once, is counted too)."""
    model = gb.GreyBox(addition_rules(n), {"digit": net})
    best = float("inf")
    for _ in range(epochs):
        t0 = clock()
        model.fit(data, {"total": sums.numpy()}, epochs=1, batch_size=batch, lr=1e-3,
                  seed=seed, progress=False)
        best = min(best, clock() - t0)
    return best


def _check_equal(n: int, net, data, sums) -> float:
    """Max relative difference of the sum's probability, greybox against hand-written."""
    model = gb.GreyBox(addition_rules(n), {"digit": net}).eval()   # (no dropout)
    cm = CarryModel(n)
    with torch.no_grad():
        ours = model(data).log_prob("total", sums)
        theirs = cm.log_prob(net(cm.images(data)), sums)
    return float((ours.double() - theirs.double()).exp().sub(1).abs().max())


def steps(digits, batches, n_steps: int, repeat: int, seed: int = 0) -> None:
    print(f"Time per training step (CPU time of the one thread), {n_steps} steps per epoch, "
          f"best of {repeat} epochs x 2 runs; 64-128-10 MLP, Adam, 1 thread")
    print("  check: the sum's probability, greybox vs hand-written, max relative difference")
    print(f"{'N':>3} {'batch':>5} {'greybox':>9} {'hand':>9} {'ratio':>6} {'net alone':>9} "
          f"{'overhead us/step':>17} {'check':>8}")
    print(f"{'':>3} {'':>5} {'ms/step':>9} {'ms/step':>9} {'':>6} {'ms/step':>9} "
          f"{'greybox':>8} {'hand':>8} {'':>8}")
    ratios = []
    for n in digits:
        for b in batches:
            data, sums = _step_data(n, b * n_steps, seed)
            torch.manual_seed(seed)
            init = mlp().state_dict()

            def fresh(init=init):
                net = mlp()
                net.load_state_dict(init)
                return net

            diff = _check_equal(n, fresh(), {k: v[:64] for k, v in data.items()}, sums[:64])
            cm = CarryModel(n)
            t_gb, t_hand, t_net = [], [], []
            for _ in range(2):   # interleaved, so drifts in machine speed hit all three
                t_hand.append(_epochs_hand(fresh(), cm, data, sums, batch=b, epochs=repeat,
                                           seed=seed, alone=False))
                t_gb.append(_epochs_greybox(fresh(), n, data, sums, batch=b, epochs=repeat,
                                            seed=seed))
                t_net.append(_epochs_hand(fresh(), cm, data, sums, batch=b, epochs=repeat,
                                          seed=seed, alone=True))
            g, h, a = (min(t) / n_steps * 1e3 for t in (t_gb, t_hand, t_net))
            ratios.append(g / h)
            print(f"{n:3d} {b:5d} {g:9.3f} {h:9.3f} {g / h:6.2f} {a:9.3f} "
                  f"{(g - a) * 1e3:8.0f} {(h - a) * 1e3:8.0f} {diff:8.1e}", flush=True)
    print(f"worst ratio {max(ratios):.2f} (target <= 1.25)\n")


def throughput(n: int, count: int, seed: int = 0, repeat: int = 2) -> None:
    (_, _), (vx, vy) = load_pools(seed)
    data, sums = make_examples(vx, vy, n, count, seed + 1)
    sums_t = torch.as_tensor(sums)
    torch.manual_seed(seed)
    net = mlp()
    model = gb.GreyBox(addition_rules(n), {"digit": net}).eval()
    cm = CarryModel(n)

    def best(fn):
        times, out = [], None
        for _ in range(repeat):
            t0 = clock()
            out = fn()
            times.append(clock() - t0)
        return min(times), out

    with torch.no_grad():
        t_hp, hp = best(lambda: cm.predict(net(cm.images(data))))
        t_gp, gp = best(lambda: model.predict(data)["total"].to_numpy())
        t_hl, hl = best(lambda: cm.log_prob(net(cm.images(data)), sums_t))
        t_gl, gl = best(lambda: model(data).log_prob("total", sums_t))
    same = bool((hp.numpy() == gp).all())
    diff = float((gl.double() - hl.double()).exp().sub(1).abs().max())
    print(f"Throughput on {count:,} sums of two {n}-digit numbers (64-128-10 MLP, 1 thread, "
          f"CPU time, best of {repeat})")
    print(f"{'':10} {'greybox s':>10} {'hand s':>8} {'ratio':>6}  check")
    print(f"{'predict':10} {t_gp:10.3f} {t_hp:8.3f} {t_gp / t_hp:6.2f}  "
          f"same sums: {same}")
    print(f"{'log_prob':10} {t_gl:10.3f} {t_hl:8.3f} {t_gl / t_hl:6.2f}  "
          f"max relative difference {diff:.1e}")
    print("(target <= 1.5)\n")


def big(digits, examples: int, seed: int = 0) -> None:
    """Exact sums of big numbers (issue 23, item 3): one epoch of ``examples`` sums at
    N = 30, 50, 100 digits, the example's CNN and Adam, batch 32, one thread (CPU time):
    greybox's ``fit`` against the hand-written carry model on the same network, initial
    weights and data (sums as exact Python ints), and the network alone (a trivial
    loss); ``check``: greybox's log_prob against the hand-written one on 64 sums."""
    print(f"Big integers: one epoch of {examples} sums, batch 32, the example's CNN, Adam, "
          "1 thread, CPU time")
    print(f"{'N':>4} {'greybox s':>10} {'hand s':>8} {'ratio':>6} {'net alone s':>12} "
          f"{'check':>8}")
    (tx, ty), _ = load_pools(seed)
    for n in digits:
        data, sums = make_examples(tx, ty, n, examples, seed)
        sums = np.array([int(s) for s in sums], dtype=object)
        torch.manual_seed(seed)
        init = digit_network(dropout=0).state_dict()

        def fresh(init=init):
            net = digit_network(dropout=0)
            net.load_state_dict(init)
            return net

        cm = CarryModel(n)
        model = gb.GreyBox(addition_rules(n), {"digit": fresh()}).eval()
        few = {k: v[:64] for k, v in data.items()}
        with torch.no_grad():
            ours = model(few).log_prob("total", model._targets(
                {"total": sums[:64]}, 64).values["total"])
            theirs = cm.log_prob_big(model.network("digit")(cm.images(few)), sums[:64])
        diff = float((ours.double() - theirs.double()).exp().sub(1).abs().max())
        times = {}
        warm = fresh()            # warm-up: a step of each loss (first calls allocate)
        for loss in (cm.log_prob_big(warm(cm.images(data, torch.arange(32))), sums[:32]),
                     gb.GreyBox(addition_rules(n), {"digit": warm})(
                         {k: v[:32] for k, v in data.items()}).log_prob(
                         "total", model._targets({"total": sums[:32]}, 32).values["total"])):
            loss.mean().backward()
        for what in ("alone", "greybox", "hand", "alone"):
            net = fresh()
            t0 = clock()
            if what == "greybox":
                gb.GreyBox(addition_rules(n), {"digit": net}).fit(
                    data, {"total": sums}, epochs=1, batch_size=32, lr=1e-3, seed=seed,
                    progress=False)
            else:
                opt = torch.optim.Adam(net.parameters(), lr=1e-3)
                perm = torch.randperm(examples, generator=torch.Generator().manual_seed(seed))
                for start in range(0, examples, 32):
                    rows = perm[start:start + 32]
                    logits = net(cm.images(data, rows))
                    loss = (-torch.log_softmax(logits, 1)[:, 0].mean() if what == "alone"
                            else -cm.log_prob_big(logits, sums[rows.numpy()]).mean())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            times[what] = min(times.get(what, float("inf")), clock() - t0)
        g, h, a = times["greybox"], times["hand"], times["alone"]
        print(f"{n:4d} {g:10.2f} {h:8.2f} {g / h:6.2f} {a:12.2f} {diff:8.1e}", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: few steps and small sizes (rough ratios)")
    parser.add_argument("--parts", nargs="+", default=["steps", "throughput", "accuracy",
                                                       "scaling"],
                        choices=["steps", "throughput", "accuracy", "scaling", "big"])
    parser.add_argument("--big", type=int, nargs="*", default=None,
                        help="the big-integer part alone at these N (default 30 50 100)")
    parser.add_argument("--digits", type=int, nargs="+", default=[1, 2, 3, 4, 8, 15])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 64])
    sizes = {  # name: (default, --quick)
        "steps": (300, 20), "step_epochs": (3, 2), "sums": (100_000, 2000),
        "epochs": (5, 1), "seeds": (3, 1), "examples": (3000, 200), "repeat": (3, 1)}
    helps = {"steps": "training steps per epoch", "step_epochs": "epochs per step timing",
             "sums": "sums for the throughput", "epochs": "epochs of the accuracy runs",
             "seeds": "seeds of the scaling runs", "examples": "sums per epoch",
             "repeat": "repeats of the N=1 accuracy comparison"}
    for name in sizes:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                            help=f"{helps[name]} (default {sizes[name][0]}, --quick "
                                 f"{sizes[name][1]})")
    args = parser.parse_args()
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    torch.set_num_threads(1)
    if args.big is not None:
        args.parts = ["big"]
    if "big" in args.parts:
        big(args.big or [30, 50, 100], args.examples)
    if "steps" in args.parts:
        steps(args.digits, args.batches, args.steps, args.step_epochs)
    if "throughput" in args.parts:
        throughput(15, args.sums)
    if "accuracy" in args.parts:
        compare(args.epochs, args.examples, 0, args.repeat)
    if "scaling" in args.parts:
        scaling(args.digits, args.epochs, args.examples, args.seeds)


if __name__ == "__main__":
    main()
