"""Parsing speed of rule text, against Lark's own parse of the same text in the same run.

An ordinary rule file of ``--rules`` rules (comparisons of real inputs, an enum test, sums
with a constant factor, learned ``~`` thresholds, weights; about 64 bytes a rule) is read
three ways:

* ``lark tree``: Lark's LALR parser on greybox's grammar building its own parse tree, no
  transformer (the reference: what the grammar costs in Lark);
* ``statements``: ``greybox.rules`` turning the text into AST statements (the pre-scan of
  nesting, the fast hand-written parser of ordinary files, Lark for the rest), with the
  cyclic garbage collector paused as ``gr.parse`` runs it: the part of ``gr.parse`` that
  parses;
* ``gr.parse``: the whole ``KnowledgeBase`` (the above, then validation: names, types,
  domains, cycles, on one walk of each expression).

Printed: CPU seconds (``time.process_time``, best of ``--repeat``: the machine may be
shared), MB/s, and the ratio to ``lark tree`` (how much greybox adds). Goal: >= 1 MB/s for
``gr.parse``: 1.10 MB/s (0.59 s, 0.24 of Lark's time), median of 3 runs on the shared 2-core
machine (0.68 MB/s, 0.36 of Lark's, before issue 26's one-walk validation and collector
fix). Then the time to refuse a 100,000-term ``->`` chain (refused from the text, before
parsing).

Run:  python benchmarks/bench_parse.py [--rules 10000] [--repeat 3]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources

import numpy as np
from lark import Lark

import greybox.rules as gr
from greybox.rules import _parser
from greybox.rules._parser import paused_gc


def make_text(n_rules: int, seed: int = 0) -> str:
    """An ordinary rule file: 20 real inputs, an enum, an int, two outputs, and
    ``n_rules`` rules of three shapes."""
    rng = np.random.default_rng(seed)
    lines = [f"input f{i}: real" for i in range(20)]
    lines += ["input kind: {a, b, c, d}", "input n: int 0..100", "output approve: bool",
              "output level: {low, mid, high}"]
    for k in range(n_rules):
        i, j = rng.choice(20, 2, replace=False)
        t, u = rng.uniform(0.1, 0.9, 2).round(3)
        w = round(float(rng.uniform(0.5, 2.0)), 2)
        if k % 3 == 0:
            lines.append(f"rule r{k} weight {w}: f{i} > {t} and kind == {'abcd'[k % 4]} "
                         "-> approve")
        elif k % 3 == 1:
            lines.append(f"rule r{k}: f{i} + 2 * f{j} <= {u} or n >= {k % 90} -> not approve")
        else:
            lines.append(f"rule r{k} weight {w}: not (f{i} < {t}) and f{j} > ~{u} -> "
                         "level = mid")
    return "\n".join(lines) + "\n"


def parse_statements_as_gr_parse(text: str) -> list:
    with paused_gc():
        return _parser.parse_statements(text)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    text = make_text(args.rules)
    mb = len(text.encode()) / 1e6
    grammar = resources.files("greybox.rules").joinpath("grammar.lark").read_text("utf-8")
    lark = Lark(grammar, parser="lalr", start=["start", "expr", "type", "head"],
                maybe_placeholders=True)
    _parser._parser()   # built once, outside the timings
    rows = [("lark tree (reference)", best(lambda: lark.parse(text, start="start"),
                                           args.repeat)),
            ("statements (parse_statements)",
             best(lambda: parse_statements_as_gr_parse(text), args.repeat)),
            ("gr.parse (KnowledgeBase)", best(lambda: gr.parse(text), args.repeat))]
    ref = rows[0][1]
    print(f"{args.rules:,} rules, {mb:.3f} MB; CPU seconds, best of {args.repeat}")
    print(f"{'stage':<32} {'s':>8} {'MB/s':>7} {'/ lark':>7}")
    for name, s in rows:
        print(f"{name:<32} {s:>8.3f} {mb / s:>7.2f} {s / ref:>7.2f}")
    print(f"goal: gr.parse >= 1 MB/s: {'met' if mb / rows[2][1] >= 1 else 'NOT met'}")

    chain = "input p: bool\nconstraint c: " + " -> ".join(["p"] * 100_000) + "\n"

    def refuse():
        try:
            gr.parse(chain)
        except gr.RuleSyntaxError:
            return
        raise AssertionError("a 100,000-term chain was accepted")

    s = best(refuse, args.repeat)
    print(f"\na 100,000-term '->' chain ({len(chain) / 1e6:.2f} MB) refused in {s * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
