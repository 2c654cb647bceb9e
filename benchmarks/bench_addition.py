"""Digits addition: greybox against a hand-written exact model, and scaling in N.

1. N = 1 (a + b): greybox against the same model written by hand in PyTorch (same network
   and initial weights, same batches in the same order, same optimiser and epochs): time
   per epoch as a ratio (target <= 1.25) and sum accuracy (target: within 1 point).
2. Scaling: N = 1, 2, 3, 4, 8, 15 digits per number, several seeds each: time per epoch,
   sum accuracy, digit accuracy (the network never sees a digit label) and how many seeds
   failed to learn (digit accuracy below 50%).

Run:  python benchmarks/bench_addition.py [--epochs 5] [--seeds 3] [--examples 3000]
      [--digits 1 2 3 4 8 15]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digits", type=int, nargs="+", default=[1, 2, 3, 4, 8, 15])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    compare(args.epochs, args.examples, 0, args.repeat)
    scaling(args.digits, args.epochs, args.examples, args.seeds)


if __name__ == "__main__":
    main()
