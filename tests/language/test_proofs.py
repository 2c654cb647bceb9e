"""Proofs of bool facts (issue 23: explanations name the path that proves a fact):
``Evaluation.proof`` against networkx's shortest paths on random graphs, mutual recursion
against a search over (node, parity), stratified negation and comparisons as facts,
renderings and refusals."""

import networkx as nx
import numpy as np
import pytest

import greybox.rules as gr

REACH = """
set node
input edge(node, node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
"""


def _graph(n: int, p: float, seed: int) -> nx.DiGraph:
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    g.add_nodes_from(f"v{i}" for i in range(n))
    g.add_edges_from((f"v{i}", f"v{j}") for i in range(n) for j in range(n)
                     if rng.random() < p)
    return g


def _edges(g: nx.DiGraph, rows: int = 1) -> dict:
    return {f"edge({x}, {y})": [g.has_edge(x, y)] * rows for x in g for y in g}


def _shortest(g: nx.DiGraph, x: str, y: str) -> int | None:
    """Edges on a shortest path of at least one edge from x to y (a cycle when x == y)."""
    best = None
    for z in g.successors(x):
        if nx.has_path(g, z, y):
            d = 1 + nx.shortest_path_length(g, z, y)
            best = d if best is None else min(best, d)
    return best


def _path_of(facts: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for fact in facts:
        assert fact.startswith("edge(") and fact.endswith(")"), fact
        x, y = fact[5:-1].split(", ")
        pairs.append((x, y))
    return pairs


@pytest.mark.parametrize("seed", range(6))
def test_a_proof_of_reach_is_a_shortest_path_of_edges_that_hold(seed):
    n = 5 + seed % 3
    g = _graph(n, 0.22, seed)
    kb = gr.parse(REACH, sets={"node": list(g)})
    ev = gr.evaluate(kb, _edges(g))
    for x in g:
        for y in g:
            name = f"reach({x}, {y})"
            proof = ev.proof(name)
            length = _shortest(g, x, y)
            assert proof.holds == (length is not None) == bool(ev.code(name)[0]), name
            if not proof.holds:
                assert proof.facts == () and proof.steps == ()
                continue
            path = _path_of(proof.facts)
            assert all(g.has_edge(a, b) for a, b in path)              # facts of the row
            assert path[0][0] == x and path[-1][1] == y                 # from x to y
            assert all(a[1] == b[0] for a, b in zip(path, path[1:]))    # a chain
            assert len(path) == length                                  # a shortest one
            assert proof.depth == length and len(proof.steps) == length
            assert proof.steps[0].fact == name


def test_the_proof_in_a_later_row_reads_that_row():
    kb = gr.parse(REACH, sets={"node": ["a", "b", "c"]})
    rows = {f"edge({x}, {y})": [False, False] for x in "abc" for y in "abc"}
    rows["edge(a, b)"] = [True, True]
    rows["edge(b, c)"] = [False, True]
    ev = gr.evaluate(kb, rows)
    assert not ev.proof("reach(a, c)", 0).holds
    proof = ev.proof("reach(a, c)", 1)
    assert proof.row == 1 and proof.facts == ("edge(a, b)", "edge(b, c)")
    assert ev.proof("reach(a, c)", -1) == proof


def test_mutual_recursion_proves_an_odd_walk_of_fewest_edges():
    kb = gr.parse("""
set node
input edge(node, node): bool
define odd(x in node, y in node): bool = edge(x, y) or (exists z in node: edge(x, z) and even(z, y))
define even(x in node, y in node): bool = exists z in node: edge(x, z) and odd(z, y)
""", sets={"node": [f"v{i}" for i in range(6)]})
    for seed in range(3):
        g = _graph(6, 0.2, 10 + seed)
        ev = gr.evaluate(kb, _edges(g))
        for x in g:
            for y in g:
                # shortest walk of odd length: BFS over (node, parity of edges so far)
                layered = nx.DiGraph()
                layered.add_edges_from(((a, k), (b, 1 - k)) for a, b in g.edges for k in (0, 1))
                want = (nx.shortest_path_length(layered, (x, 0), (y, 1))
                        if (x, 0) in layered and (y, 1) in layered
                        and nx.has_path(layered, (x, 0), (y, 1)) else None)
                proof = ev.proof(f"odd({x}, {y})")
                assert proof.holds == (want is not None)
                if proof.holds:   # a walk may use an edge twice: read it from the steps
                    path = _path_of(tuple(s.because[0] for s in proof.steps))
                    assert set(path) == set(_path_of(proof.facts))
                    assert len(path) == proof.depth == want and want % 2 == 1
                    assert path[0][0] == x and path[-1][1] == y
                    assert all(a[1] == b[0] for a, b in zip(path, path[1:]))


def test_negation_of_a_lower_stratum_and_comparisons_are_facts_of_the_row():
    kb = gr.parse("""
set node: {a, b, c}
input edge(node, node): bool
input blocked(node): bool
input cost(node): int 0..9
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
define open_route(x in node, y in node): bool = reach(x, y) and not blocked(y) and cost(y) < 5
define cut(x in node, y in node): bool = not reach(x, y)
""")
    rows = {f"edge({x}, {y})": [(x, y) in {("a", "b"), ("b", "c")}] for x in "abc" for y in "abc"}
    rows |= {"blocked(a)": [True], "blocked(b)": [False], "blocked(c)": [False],
             "cost(a)": [0], "cost(b)": [7], "cost(c)": [3]}
    ev = gr.evaluate(kb, rows)
    proof = ev.proof("open_route(a, c)")
    assert proof.facts == ("edge(a, b)", "edge(b, c)", "not blocked(c)", "`cost(c)` < 5")
    assert [s.fact for s in proof.steps] == ["open_route(a, c)", "reach(a, c)", "reach(b, c)"]
    assert proof.steps[0].because == ("reach(a, c)", "not blocked(c)", "`cost(c)` < 5")
    assert not ev.proof("open_route(a, b)").holds            # cost(b) = 7
    assert ev.proof("cut(c, a)").facts == ("not reach(c, a)",)  # a negation is read, not proved


def test_a_fact_of_the_row_is_its_own_proof_and_a_false_one_has_none():
    kb = gr.parse(REACH, sets={"node": ["a", "b"]})
    ev = gr.evaluate(kb, {"edge(a, b)": [True], "edge(b, a)": [False], "edge(a, a)": [False],
                          "edge(b, b)": [False]})
    own = ev.proof("edge(a, b)")
    assert own.holds and own.facts == ("edge(a, b)",) and own.steps == () and own.depth == 0
    none = ev.proof("reach(b, a)")
    assert not none.holds and none.depth == 0
    assert str(none) == "reach(b, a) does not hold in row 0: nothing to prove"


def test_renderings():
    kb = gr.parse(REACH, sets={"node": ["a", "b", "c"]})
    path = {("a", "b"), ("b", "c")}
    ev = gr.evaluate(kb, {f"edge({x}, {y})": [(x, y) in path] for x in "abc" for y in "abc"})
    proof = ev.proof("reach(a, c)")
    assert str(proof) == ("reach(a, c) holds in row 0, proved by 2 facts: edge(a, b), edge(b, c)\n"
                          "reach(a, c) because edge(a, b) and reach(b, c)\n"
                          "  reach(b, c) because edge(b, c)")
    frame = proof.to_frame()
    assert list(frame.columns) == ["fact", "because", "depth"]
    assert frame["because"].tolist() == ["edge(a, b) and reach(b, c)", "edge(b, c)"]
    assert "reach(b, c) because edge(b, c)" in proof._repr_html_()
    assert isinstance(proof, gr.Proof)


@pytest.mark.parametrize("name, row, match", [
    ("reach(a, z)", 0, "unknown variable 'reach\\(a, z\\)'"),
    ("reach(a, b)@1", 0, "unknown variable"),
    ("approve", 0, "'approve' is decided by rules"),
    ("level", 0, "'level' is not a bool"),
    ("reach(a, b)", 2, "row must be a position in 0..0, got 2"),
    ("reach(a, b)", True, "row must be a position"),
])
def test_refusals_name_the_problem(name, row, match):
    kb = gr.parse(REACH.replace("set node", "set node: {a, b}") + """
input level: int 0..3
output approve: bool
rule r: level > 1 -> approve
""")
    ev = gr.evaluate(kb, {**{f"edge({x}, {y})": [True] for x in "ab" for y in "ab"},
                          "level": [2]})
    with pytest.raises(gr.RuleError, match=match):
        ev.proof(name, row)
