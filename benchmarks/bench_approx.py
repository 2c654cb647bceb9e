"""The approximate probabilistic route (issue 23, item 4) against exact inference, where
exact inference still runs, and against Monte Carlo sampling where it does not.

For each program and setting, ``rows`` rows of network outputs: exact and approximate
``log P`` of the label (``GreyBox(..., inference="exact" | "approximate")``), the mean and
largest absolute error in ``log P`` and in ``P``, and the time of one forward pass and
``log_prob`` (exact, approximate, their ratio). Programs:

* ``sudoku4``: the 4x4 validity of examples/sudoku.py (12 ``all_different`` units, each
  exact by the subset programme, combined as if independent), cells' logits at random
  scales ``s * N(0, 1)``, and a network sure (logit margin 6 or 12) of a valid grid;
* ``clique12``: ``forall i, j in 0..11: i != j -> (s[i] and t[j] -> s[j])`` over 12
  people (a smokers-like dense clique), split into blocks of at most 2**8 joint values
  (exact inference runs it whole; the split is forced to measure its error);
* ``cnf16``: random CNFs of 24 clauses over 16 people, split likewise;
* ``sudoku9``: the 9x9 validity (exact inference refuses); the approximation against a
  Monte Carlo estimate (``--samples`` worlds drawn from the networks, the fraction valid,
  with its standard error) on networks sure of a valid grid (logit margin 8) but for a
  few cells (margin 2);
* ``reach n``: reachability ``reach(n0, n_last)`` over ``n`` nodes whose ``n**2`` edges are
  neural bools (probabilities uniform in [0.05, 0.95], edges into the target at 0.03):
  the recursive define's unrolled layers, estimated by the Monte Carlo block
  (greybox/semantics/_sampled.py, ``SAMPLES`` worlds; its standard error in the row's
  name). At 4 and 5 nodes exact inference runs and the sampled block is forced (the
  component limit at 1); at 6 and 7 nodes exact inference refuses, and the reference is a
  Monte Carlo estimate (``--samples`` worlds of the edges, reachability by boolean matrix
  products).

Run:  python benchmarks/bench_approx.py [--rows 16] [--samples 20000]
      (one thread; about a minute). Not part of the test suite.
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
from greybox.semantics import _approx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import sudoku  # noqa: E402
import sudoku9  # noqa: E402


class _Logits(nn.Module):
    def forward(self, x):
        return x


def _timed(model, data, target):
    start = time.perf_counter()
    out = model(data).log_prob("valid" if "valid" in model.kb.variables else "ok", target)
    return out.detach().double(), time.perf_counter() - start


def _compare(name, text, data, n, split=None):
    """One row of the table: exact against approximate on ``data``."""
    target = torch.ones(n)
    exact, te = _timed(gb.GreyBox(text, {"digit_net" if "digit" in text else "net":
                                         _Logits() if "digit" in text else nn.Flatten(0)}),
                       data, target)
    saved = _approx.COMPONENT_LIMIT, _approx.BLOCK_LIMIT
    if split:    # every component split into blocks of at most ``split`` joint values
        _approx.COMPONENT_LIMIT, _approx.BLOCK_LIMIT = 1, split
    try:
        model = gb.GreyBox(text, {"digit_net" if "digit" in text else "net":
                                  _Logits() if "digit" in text else nn.Flatten(0)},
                           inference="approximate")
        approx, ta = _timed(model, data, target)
    finally:
        _approx.COMPONENT_LIMIT, _approx.BLOCK_LIMIT = saved
    err, perr = (approx - exact).abs(), (approx.exp() - exact.exp()).abs()
    print(f"| {name} | {exact.mean():.3f} | {approx.mean():.3f} | {err.mean():.3f} | "
          f"{err.max():.3f} | {perr.mean():.2e} | {perr.max():.2e} | {1000 * te:.1f} | "
          f"{1000 * ta:.1f} | {ta / te:.2f} |")


def _sudoku4(rows: int, rng) -> None:
    text = sudoku.VALIDITY.replace("tensor[64]", "tensor[4]")
    grids = sudoku.solutions()[rng.integers(0, 288, size=rows)]
    settings = [(f"sudoku4, logits {s:g} * N(0,1)",
                 torch.as_tensor(rng.normal(size=(rows, 16, 4)) * s, dtype=torch.float32))
                for s in (0.0, 1.0, 3.0)]
    settings += [(f"sudoku4, sure of a valid grid (margin {m})",
                  nn.functional.one_hot(torch.as_tensor(grids - 1), 4).float() * m)
                 for m in (6, 12)]
    for name, x in settings:
        _compare(name, text, {f"img[{c}]": x[:, c] for c in range(16)}, rows)


def _people(rows: int, rng) -> None:
    head = "set k: 0..29\ninput f[k]: tensor[1]\nneural s[i in k]: bool = net(f[i])\n"
    clique = ("neural t[i in k]: bool = net(f[i])\noutput ok: bool\ndefine ok: bool = "
              "forall i in 0..11, j in 0..11: i != j -> (s[i] and t[j] -> s[j])\n")
    x = torch.as_tensor(rng.normal(size=(rows, 30)) * 1.5, dtype=torch.float32)
    data = {f"f[{i}]": x[:, i:i + 1] for i in range(30)}
    _compare("clique12 (smokers-like), blocks of 2^8", head + clique, data, rows, 256)
    for seed in range(3):
        r = np.random.default_rng(seed)
        clauses = [" or ".join(("not " if r.random() < 0.5 else "") + f"s[{p}]"
                               for p in r.choice(16, size=r.integers(2, 4), replace=False))
                   for _ in range(24)]
        text = head + "output ok: bool\ndefine ok: bool = " + " and ".join(
            f"({c})" for c in clauses)
        _compare(f"cnf16 #{seed}, blocks of 2^8", text, data, rows, 256)


def _sudoku9(rows: int, samples: int, rng) -> None:
    """9x9 validity: approximate against Monte Carlo on networks sure of a valid grid but
    for ``doubt`` cells at a logit margin of 2."""
    text = sudoku9.VALIDITY.replace("tensor[64]", "tensor[9]")
    model = gb.GreyBox(text, {"digit_net": _Logits()}, inference="approximate")
    for doubt in (0, 4, 12):
        grids = np.stack([sudoku9.random_grid(rng) for _ in range(rows)])
        x = nn.functional.one_hot(torch.as_tensor(grids - 1), 9).float() * 8.0
        for i in range(rows):
            x[i, rng.choice(81, size=doubt, replace=False)] *= 0.25
        start = time.perf_counter()
        approx = model({f"img[{c}]": x[:, c] for c in range(81)}).log_prob(
            "valid", torch.ones(rows)).detach().double().exp()
        ta = time.perf_counter() - start
        p = torch.softmax(x.double(), 2)
        draws = torch.distributions.Categorical(p).sample((samples,)) + 1   # (S, rows, 81)
        units = torch.as_tensor(sudoku9.UNITS)
        ok = ((torch.sort(draws[..., units], -1).values
               == torch.arange(1, 10)).all(-1).all(-1)).double()       # (S, rows)
        mc, se = ok.mean(0), ok.std(0) / samples ** 0.5
        print(f"| sudoku9, sure (margin 8) but {doubt} cells (margin 2) | MC {mc.mean():.4f} "
              f"(se {se.mean():.4f}) | {approx.mean():.4f} | | | "
              f"{(approx - mc).abs().mean():.2e} | {(approx - mc).abs().max():.2e} | "
              f"exact refuses | {1000 * ta:.1f} | |")


def _reach_text(n: int) -> str:
    return (f"set node: {{{', '.join(f'n{i}' for i in range(n))}}}\n"
            "input feat(node, node): tensor\n"
            "neural edge(x in node, y in node): bool = net(feat(x, y))\n"
            "define reach(x in node, y in node): bool =\n"
            "    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))\n"
            f"output goal: bool\nrule r: reach(n0, n{n - 1}) -> goal\n")


def _reach_p(model, x, n):
    start = time.perf_counter()
    with torch.no_grad():
        out = model({f"feat(n{i}, n{j})": x[:, i * n + j].reshape(-1, 1)
                     for i in range(n) for j in range(n)}).bodies["r"].double()
    return out, time.perf_counter() - start


def _reach(rows: int, samples: int, rng) -> None:
    """Reachability: the Monte Carlo block against exact inference (4, 5 nodes, forced) or
    a Monte Carlo reference (6, 7 nodes)."""
    from greybox.semantics import _sampled
    for n in (4, 5, 6, 7):
        p = rng.uniform(0.05, 0.95, size=(rows, n * n))
        p[:, [i * n + n - 1 for i in range(n)]] = 0.03
        x = torch.logit(torch.as_tensor(p, dtype=torch.float32))
        text = _reach_text(n)
        if n <= 5:
            exact, te = _reach_p(gb.GreyBox(text, {"net": _Logits()}), x, n)
            saved, _approx.COMPONENT_LIMIT = _approx.COMPONENT_LIMIT, 1
        else:
            adj = rng.random((samples, rows, n, n)) < p.reshape(1, rows, n, n)
            reach = adj.copy()
            for _ in range(n):
                reach |= np.einsum("srij,srjk->srik", adj.astype(np.int32),
                                   reach.astype(np.int32)) > 0
            exact = torch.as_tensor(reach[:, :, 0, n - 1].mean(0))
            te, saved = None, _approx.COMPONENT_LIMIT
        try:
            approx, ta = _reach_p(gb.GreyBox(text, {"net": _Logits()},
                                             inference="approximate"), x, n)
        finally:
            _approx.COMPONENT_LIMIT = saved
        se = (approx * (1 - approx) / _sampled.SAMPLES).sqrt().mean()
        err = (approx.clamp(min=1e-12).log() - exact.clamp(min=1e-12).log()).abs()
        perr = (approx - exact).abs()
        ref = "exact" if te is not None else f"MC of {samples} worlds"
        times = (f"{1000 * te:.1f} | {1000 * ta:.1f} | {ta / te:.2f}" if te is not None
                 else f"exact refuses | {1000 * ta:.1f} |")
        print(f"| reach {n} (sampled, {_sampled.SAMPLES} worlds, se {se:.4f}; vs {ref}) | "
              f"{exact.log().mean():.3f} | {approx.log().mean():.3f} | {err.mean():.3f} | "
              f"{err.max():.3f} | {perr.mean():.2e} | {perr.max():.2e} | {times} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| program | exact log P | approx. log P | mean abs err (log P) | max | "
          "mean abs err (P) | max | exact ms | approx. ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    _sudoku4(args.rows, rng)
    _people(args.rows, rng)
    _sudoku9(args.rows, args.samples, rng)
    _reach(args.rows, args.samples, rng)


if __name__ == "__main__":
    main()
