"""Recursive defines under every semantics of the model: ``predict``'s truths against a
brute-force reference (all worlds of independent edge probabilities for the exact
probabilistic semantics; fixpoint iteration for the fuzzy ones; networkx for crisp)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

import greybox as gb

N = 4
PAIRS = [(i, j) for i in range(N) for j in range(N)]
TEXT = f"""
set node: {{{', '.join(f'n{i}' for i in range(N))}}}
input feat(node, node): tensor
neural edge(x in node, y in node): bool = enet(feat(x, y))
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
output goal: bool
rule r: reach(n0, n3) -> goal
"""


class _Logit(torch.nn.Module):
    """The feature is the edge's logit."""

    def forward(self, x):
        return x


@pytest.fixture(scope="module")
def probs() -> np.ndarray:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, size=(3, len(PAIRS)))
    p[0, [3, 7, 11]] = 0.02        # n0 -> n3, n1 -> n3, n2 -> n3 nearly absent in row 0
    return p


def _feats(p: np.ndarray) -> dict:
    logit = torch.logit(torch.tensor(p, dtype=torch.float32))
    return {f"feat(n{i}, n{j})": logit[:, k].reshape(-1, 1) for k, (i, j) in enumerate(PAIRS)}


def _truth(p, semantics):
    model = gb.GreyBox(TEXT, {"enet": _Logit()}, semantics=semantics)
    return model(_feats(p)).bodies["r"].detach().double().numpy()


def _iterate(p_row, tnorm, conorm, steps):
    edge = dict(zip(PAIRS, p_row))
    reach = dict.fromkeys(PAIRS, 0.0)
    for _ in range(steps):
        reach = {(x, y): conorm([edge[x, y]] + [tnorm(edge[x, z], reach[z, y])
                                                for z in range(N)]) for x, y in PAIRS}
    return reach[0, N - 1]


def test_probabilistic_is_the_distribution_semantics(probs):
    worlds = np.array(list(itertools.product([False, True], repeat=len(PAIRS))))
    reached = np.empty(len(worlds), bool)
    for w, world in enumerate(worlds):
        g = nx.DiGraph()
        g.add_nodes_from(range(N))
        g.add_edges_from(pair for pair, on in zip(PAIRS, world) if on)
        reached[w] = nx.has_path(g, 0, N - 1)
    weight = np.prod(np.where(worlds[None], probs[:, None, :], 1 - probs[:, None, :]), axis=2)
    want = (weight * reached[None]).sum(axis=1)
    assert _truth(probs, "probabilistic") == pytest.approx(want, abs=1e-6)


def test_godel_is_the_exact_fixpoint_the_widest_path(probs):
    # the least fixpoint under min/max: the best path's weakest edge
    want = []
    for row in probs:
        edge = dict(zip(PAIRS, row))
        paths = nx.all_simple_paths(nx.complete_graph(N, nx.DiGraph), 0, N - 1)
        want.append(max(min(edge[a, b] for a, b in zip(path, path[1:])) for path in paths))
    assert _truth(probs, "godel") == pytest.approx(want, abs=1e-6)
    assert want == pytest.approx([_iterate(r, min, max, 50) for r in probs], abs=1e-12)


def test_product_is_fixpoint_iteration_truncated_at_the_cycle_size(probs):
    def prob_or(values):
        return 1 - np.prod([1 - v for v in values])

    want = [_iterate(r, lambda a, b: a * b, prob_or, N) for r in probs]
    assert _truth(probs, "product") == pytest.approx(want, abs=1e-5)


def test_crisp_is_reachability_over_the_edges_the_network_says(probs):
    model = gb.GreyBox(TEXT, {"enet": _Logit()}).crisp()
    got = model(_feats(probs)).bodies["r"].numpy()
    want = []
    for row in probs:
        g = nx.DiGraph()
        g.add_nodes_from(range(N))
        g.add_edges_from(pair for pair, p in zip(PAIRS, row) if p > 0.5)
        want.append(float(nx.has_path(g, 0, N - 1)))
    assert got.tolist() == want
