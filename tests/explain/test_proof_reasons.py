"""Formal reasons for recursive decisions (issue 23): a Z3 reason for ``reach(x, y)`` on a
model whose edges are inputs is a path where reach holds -- a set of edges that hold, each
needed, chained from x to y -- and a cut where it does not (with every other edge present,
x still reaches nothing of y); the crisp proof of the same fact is a path no longer than
the reason's."""

import numpy as np
import pytest
import torch

import greybox as gb

RULES = """
set node
input edge(node, node): bool
output reach(node, node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
"""


def _closure(adj: np.ndarray) -> np.ndarray:
    reach = adj.copy()
    for _ in range(len(adj)):
        reach = reach | ((reach.astype(int) @ adj.astype(int)) > 0)
    return reach


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_a_reason_for_reach_is_a_path_and_for_its_absence_a_cut(seed):
    nodes = ["a", "b", "c", "d"]
    n = len(nodes)
    rng = np.random.default_rng(seed)
    adj = rng.random((n, n)) < 0.3
    np.fill_diagonal(adj, False)
    reach = _closure(adj)
    kb = gb.rules.parse(RULES, sets={"node": nodes})
    model = gb.GreyBox(kb, {})
    row = {f"edge({x}, {y})": [bool(adj[i, j])] for i, x in enumerate(nodes)
           for j, y in enumerate(nodes)}
    ev = gb.rules.evaluate(kb, row)
    true = [(i, j) for i in range(n) for j in range(n) if i != j and reach[i, j]]
    false = [(i, j) for i in range(n) for j in range(n) if i != j and not reach[i, j]]
    assert true and false
    picks = [true[k] for k in rng.permutation(len(true))[:2]] + \
        [false[k] for k in rng.permutation(len(false))[:2]]
    for i, j in picks:
        name = f"reach({nodes[i]}, {nodes[j]})"
        facts = gb.explain.reason(model, row, output=name).facts
        assert all(f.startswith("edge(") for f in facts)
        pairs = {tuple(nodes.index(v) for v in f[5:-1].split(", ")): v for f, v in facts.items()}
        if reach[i, j]:
            assert all(pairs.values())                    # edges that hold
            sub = np.zeros_like(adj)
            for a, b in pairs:
                sub[a, b] = True
            assert _closure(sub)[i, j]                    # they connect x to y
            for a, b in pairs:                            # and each is needed: a simple path
                less = sub.copy()
                less[a, b] = False
                assert not _closure(less)[i, j]
            proof = ev.proof(name)
            assert proof.holds and len(proof.facts) <= len(pairs)
        else:
            assert not any(pairs.values())                # absent edges
            full = np.ones_like(adj)
            for a, b in pairs:
                full[a, b] = False
            assert not _closure(full)[i, j]               # that cut every path
            assert not ev.proof(name).holds


class _EdgeTable(torch.nn.Module):
    """Edges read from one-hot node codes: logit +4 on the chain a -> b -> c, -4 elsewhere."""

    def __init__(self, chain):
        super().__init__()
        table = torch.full((4, 4), -4.0)
        for i, j in chain:
            table[i, j] = 4.0
        self.register_buffer("table", table)

    def forward(self, a, b):
        return self.table[a.argmax(-1), b.argmax(-1)][..., None]


def test_an_explanation_names_the_path_that_proves_a_recursive_concept():
    kb = gb.rules.parse("""
set node: {a, b, c, d}
input code(node): tensor[4]
neural edge(x in node, y in node): bool = edge_net(code(x), code(y))
output reach(node, node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: z != x and z != y and edge(x, z) and reach(z, y))
""")
    model = gb.GreyBox(kb, {"edge_net": _EdgeTable([(0, 1), (1, 2)])},
                       semantics="probabilistic")
    data = kb.families["code"].split(np.eye(4, dtype=np.float32)[None])
    ex = gb.explain.explain(model, data, output="reach(a, c)", parameters=False)
    proofs = ex.concepts.set_index("concept")["proof"]
    assert proofs["reach(a, c)"] == \
        "reach(a, c) = True because edge(a, b) (p=0.98) and edge(b, c) (p=0.98)"
    other = gb.explain.explain(model, data, output="reach(d, c)", parameters=False)
    assert other.concepts.set_index("concept")["proof"]["reach(d, c)"] == ""   # false
