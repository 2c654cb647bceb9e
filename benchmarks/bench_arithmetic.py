"""Exact inference of non-linear integer arithmetic (issue 23, item 2): a sum of products.

``define t = sum(d[2i] * d[2i + 1] for i in 0..m-1)`` over 2m network digits ``int 0..5``
(6^(2m) joint values): greybox makes each product and each partial sum a variable of its
own, so the tables grow polynomially in m. The reference is a hand-written exact model of
the same thing: each product's distribution from its two digits, then the sum's by
convolution, product after product (float64). Both give P(t >= 9m) for 32 rows; the
answers are checked equal in the same run and the table prints the time per forward pass
(CPU time of the one thread) and the ratio greybox / hand-written.

Run:  python benchmarks/bench_arithmetic.py [--products 4 8 12 16] [--rows 32] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import greybox as gb


class _Ident(nn.Module):
    def forward(self, x):
        return x


def _model(m: int):
    return gb.GreyBox(f"""
        set s: 0..{2 * m - 1}
        input logit[s]: tensor[6]
        neural d[i in s]: int 0..5 = net(logit[i])
        define t: int 0..{25 * m} = sum(d[2 * i] * d[2 * i + 1] for i in 0..{m - 1})
        output o: bool
        rule r: t >= {9 * m} -> o
    """, {"net": _Ident()}, semantics="probabilistic")


def _by_hand(logits: torch.Tensor, m: int) -> torch.Tensor:
    p = torch.softmax(logits.double(), -1)
    values = torch.arange(6)
    table = (values.view(-1, 1) * values.view(1, -1)).flatten()   # the 36 products
    dist = torch.zeros(logits.shape[0], 25 * m + 1, dtype=torch.float64)
    dist[:, 0] = 1.0
    for i in range(m):
        pair = (p[:, 2 * i, :, None] * p[:, 2 * i + 1, None, :]).flatten(1)
        prod = torch.zeros(logits.shape[0], 26, dtype=torch.float64).index_add(1, table, pair)
        dist = torch.nn.functional.conv1d(
            dist[None], prod.flip(1)[:, None], padding=25, groups=logits.shape[0])[0, :, :25 * m + 1]
    return dist[:, 9 * m:].sum(1)


def _timed(fn, repeat: int) -> tuple[float, object]:
    out = fn()
    start = time.thread_time()
    for _ in range(repeat):
        out = fn()
    return (time.thread_time() - start) / repeat, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'products':>8} {'digits':>6} {'joint values':>12} {'greybox s':>10} "
          f"{'by hand s':>10} {'ratio':>7}")
    for m in args.products:
        model = _model(m)
        logits = torch.randn(args.rows, 2 * m, 6, generator=torch.Generator().manual_seed(m))
        with torch.no_grad():
            mine, got = _timed(lambda model=model, x=logits: model({"logit": x}).bodies["r"],
                               args.repeat)
            ref, want = _timed(lambda x=logits, m=m: _by_hand(x, m), args.repeat)
        assert torch.allclose(got.double(), want, atol=1e-5), (got, want)
        print(f"{m:>8} {2 * m:>6} {'6^' + str(2 * m):>12} {mine:>10.3f} {ref:>10.4f} "
              f"{mine / ref:>7.0f}")


if __name__ == "__main__":
    main()
