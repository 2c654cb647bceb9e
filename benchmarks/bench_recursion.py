"""Reachability over n nodes, written recursively: sizes of the grounding and of its
unrolling, and the time to parse, evaluate crisp (100 random graphs) and prove a chain
with Z3.

    python benchmarks/bench_recursion.py [n ...]      (default: 10 20)
"""

from __future__ import annotations

import random
import sys
import time

import greybox.rules as gr


def _kb(n: int) -> gr.KnowledgeBase:
    nodes = ", ".join(f"n{i}" for i in range(n))
    return gr.parse(f"""
set node: {{{nodes}}}
input edge(x in node, y in node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
""")


def main(sizes: list[int]) -> None:
    print(f"{'n':>4} {'defines':>8} {'layers':>8} {'reads':>9} {'parse s':>8} "
          f"{'crisp s':>8} {'z3 s':>7}")
    for n in sizes:
        t = time.perf_counter()
        kb = _kb(n)
        parse = time.perf_counter() - t
        rng = random.Random(n)
        data = {f"edge(n{i}, n{j})": [rng.random() < 1.5 / n for _ in range(100)]
                for i in range(n) for j in range(n)}
        t = time.perf_counter()
        _ = gr.evaluate(kb, data).values   # the tables are computed when read
        crisp = time.perf_counter() - t
        chain = " and ".join(f"edge(n{i}, n{i + 1})" for i in range(n - 1))
        t = time.perf_counter()
        assert gr.entails(kb, f"{chain} -> reach(n0, n{n - 1})")
        z3 = time.perf_counter() - t
        reads = sum(sum(1 for x in gr.ast.walk(v.expr) if isinstance(x, gr.ast.Var))
                    for v in kb.variables.values() if v.role == "defined")
        print(f"{n:>4} {len(kb.defined):>8} {len(kb.recursion.layers):>8} {reads:>9,} "
              f"{parse:>8.2f} {crisp:>8.2f} {z3:>7.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 20])
