"""Recursive definitions: least-fixpoint meaning by bounded unrolling, stratified negation,
refusals, the text round trip, and crisp evaluation against networkx."""

from __future__ import annotations

import random

import networkx as nx
import pytest

import greybox.rules as gr

REACH = """
set node: NODES
input edge(x in node, y in node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
"""


def _reach_kb(n: int, extra: str = "") -> gr.KnowledgeBase:
    return gr.parse(REACH.replace("NODES", "{" + ", ".join(f"n{i}" for i in range(n)) + "}")
                    + extra)


def _graphs(n: int, count: int, seed: int) -> list[nx.DiGraph]:
    """Random directed graphs over ``n`` nodes, self-loops allowed, often disconnected."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        p = rng.choice([0.1, 0.25, 0.5])
        g.add_edges_from((i, j) for i in range(n) for j in range(n) if rng.random() < p)
        out.append(g)
    return out


def _edges(n: int, graphs: list[nx.DiGraph]) -> dict[str, list[bool]]:
    return {f"edge(n{i}, n{j})": [g.has_edge(i, j) for g in graphs]
            for i in range(n) for j in range(n)}


@pytest.mark.parametrize("n", range(1, 8))
def test_reach_is_networkx_transitive_closure(n):
    # 50 random graphs in all (sizes 1..7), with self-loops and disconnected parts
    graphs = _graphs(n, 8 if n > 1 else 2, seed=n)
    kb = _reach_kb(n)
    values = gr.evaluate(kb, _edges(n, graphs)).values
    for k, g in enumerate(graphs):
        closure = nx.transitive_closure(g, reflexive=False)
        got = {(i, j) for i in range(n) for j in range(n)
               if values[f"reach(n{i}, n{j})"].iloc[k]}
        assert got == set(closure.edges), (n, k, sorted(g.edges))


def test_mutual_recursion_even_and_odd_walks():
    n = 5
    text = REACH.replace("NODES", "{" + ", ".join(f"n{i}" for i in range(n)) + "}").split(
        "define")[0] + """
define odd(x in node, y in node): bool = edge(x, y) or (exists z in node: edge(x, z) and even(z, y))
define even(x in node, y in node): bool = exists z in node: edge(x, z) and odd(z, y)
"""
    kb = gr.parse(text)
    graphs = _graphs(n, 12, seed=99)
    values = gr.evaluate(kb, _edges(n, graphs)).values
    for k, g in enumerate(graphs):
        # walks by parity: a product graph of (node, parity)
        pg = nx.DiGraph()
        pg.add_edges_from(((i, p), (j, 1 - p)) for i, j in g.edges for p in (0, 1))
        for i in range(n):
            first = list(pg.successors((i, 0))) if (i, 0) in pg else []
            reached = set(first).union(*(nx.descendants(pg, s) for s in first))
            for j in range(n):
                assert bool(values[f"odd(n{i}, n{j})"].iloc[k]) == ((j, 1) in reached)
                assert bool(values[f"even(n{i}, n{j})"].iloc[k]) == ((j, 0) in reached)


def test_stratified_negation_reads_a_lower_stratum():
    kb = _reach_kb(3, "define unreachable(x in node, y in node): bool = not reach(x, y)\n")
    edges = {k: [False] for k in _edges(3, [nx.DiGraph()])}
    edges["edge(n0, n1)"] = [True]
    values = gr.evaluate(kb, edges).values
    assert values["reach(n0, n1)"].tolist() == [True]
    assert values["unreachable(n0, n1)"].tolist() == [False]
    assert values["unreachable(n1, n0)"].tolist() == [True]


def test_a_propositional_cycle_is_its_least_fixpoint():
    kb = gr.parse("input x: bool\ninput y: bool\ndefine p: bool = x or q\n"
                  "define q: bool = p or (y and q)\ndefine r: bool = r\n")
    values = gr.evaluate(kb, {"x": [True, False, False], "y": [False, True, False]}).values
    assert values["p"].tolist() == [True, False, False]   # false until proved
    assert values["q"].tolist() == [True, False, False]
    assert values["r"].tolist() == [False] * 3
    assert gr.parse(gr.to_text(kb)) == kb
    assert "define q: bool = p or y and q" in gr.to_text(kb)


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("set pos: {a, b, c}\ninput move(x in pos, y in pos): bool\n"
         "define win(x in pos): bool =\n    exists y in pos: move(x, y) and not win(y)\n",
         r"recursion through negation: 'win\(a\)' reads 'win\(a\)' under 'not', on the cycle "
         r"win -> win; .*stratified negation \(all 3 groundings of define win", (4, 41)),
        ("input x: bool\ndefine p: bool = x or q\ndefine q: bool = x and not p\n",
         "'q' reads 'p' under 'not', on the cycle q -> p -> q", (3, 28)),
        ("input x: bool\ndefine p: bool = (p -> x) or x\n",
         "'p' reads 'p' under an '->' antecedent", (2, 19)),
        ("input x: bool\ndefine p: bool = (p <-> x)\n", "'p' reads 'p' under '<->'", (2, 19)),
        ("input x: bool\ndefine p: bool = count(p, x) >= 1\n", "under 'count'", (2, 24)),
    ],
)
def test_recursion_through_negation_is_refused_where_it_occurs(text, message, where):
    with pytest.raises(gr.RuleError, match=message) as info:
        gr.parse(text, filename="g.rules")
    assert len(info.value.diagnostics) == 1
    loc = info.value.location
    assert (loc.filename, loc.line, loc.column) == ("g.rules", *where)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input x: int 0..3\ndefine p: int 0..3 = min(p, x)\n", "cycle among definitions: p -> p"),
        ("input x: bool\noutput y: bool\ndefine p: bool = x or y\nrule r: p -> y\n",
         "cycle among definitions: y -> p -> y"),
        ("input x: bool\nneural n: bool = net(p)\ndefine p: bool = x or n\n",
         "cycle among definitions: n -> p -> n"),
    ],
)
def test_cycles_through_numbers_rules_and_networks_stay_errors(text, message):
    with pytest.raises(gr.RuleError, match=message):
        gr.parse(text)


def test_layers_stay_out_of_the_users_view():
    kb = _reach_kb(3, "output any: bool\nrule r: reach(n0, n2) -> any\n")
    assert len(kb.recursion.layers) == 3 * 3 * 2     # 3 cycles of 3 atoms, 2 layers each
    assert all("@" in name and name in kb.variables for name in kb.recursion.layers)
    assert not set(kb.defined) & kb.recursion.layers
    edges = {k: [True] for k in _edges(3, [nx.DiGraph()])}
    ev = gr.evaluate(kb, edges)
    assert list(ev.values.columns) == list(kb.defined)
    assert list(ev.decisions.columns) == ["any"]
    text = gr.to_text(kb)
    assert "@" not in text and "reach(z, y)" in text
    assert gr.parse(text) == kb


def test_an_unrolling_too_large_is_refused_by_name():
    with pytest.raises(gr.RuleError, match=r"unrolling the recursive definitions makes "
                       r"[\d,]+ instances, more than 1,000,000 .*through 'reach\(n0, n0\)'"):
        _reach_kb(40)


def test_the_builder_and_pickle_keep_the_recursion():
    import pickle

    kb = _reach_kb(3)
    again = pickle.loads(pickle.dumps(kb))
    assert again == kb and again.recursion.layers == kb.recursion.layers
    b = gr.Builder()
    x = b.input("x", "bool")
    b.define("p", "bool", x | b.var("p"))
    built = b.build()
    assert "define p: bool = x or p" in gr.to_text(built)
    assert gr.evaluate(built, {"x": [True, False]}).values["p"].tolist() == [True, False]


def test_crisp_fixpoint_iteration_gives_the_unrolled_answer():
    # evaluate iterates each component to its fixpoint (stopping early); the unrolled
    # definitions, which every other backend reads, give the same values
    graphs = _graphs(5, 12, seed=3)
    kb = _reach_kb(5)
    ev = gr.evaluate(kb, _edges(5, graphs))
    for name in kb.recursion.original:
        assert ev.holds(kb.variables[name].expr).tolist() == ev.values[name].tolist(), name
    last = ev.holds(gr.ast.Var("reach(n0, n4)@4")).tolist()
    assert last == ev.values["reach(n0, n4)"].tolist()


def test_a_recursion_over_decisions_is_computed_with_each_decision():
    kb = gr.parse("input x: bool\ninput e: bool\noutput y: bool\noutput z: bool\n"
                  "rule r: x -> y\ndefine p: bool = y or (e and q)\n"
                  "define q: bool = p and e\nrule s weight 2: q -> z\n")
    ev = gr.evaluate(kb, {"x": [True, True, False], "e": [True, False, True]})
    assert ev.values["q"].tolist() == [True, False, False]
    assert ev.decisions["z"].tolist() == [True, False, False]


def test_entails_proves_reachability_and_refutes_self_support():
    kb = gr.parse(REACH.replace("NODES", "{a, b, c, d}").replace(
        "edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))",
        "link(x, y) or (exists z in node: link(x, z) and reach(z, y))") +
        "define link(x in node, y in node): bool = edge(x, y) or edge(y, x)\n")
    assert gr.entails(kb, "edge(a, b) and edge(c, b) and edge(d, c) -> reach(a, d)")
    assert gr.entails(kb, "reach(a, d) <-> reach(d, a)")              # symmetric closure
    # least fixpoint: with no link into a, nothing reaches it (a cycle does not prove itself)
    alone = " and ".join(f"not edge(a, {y}) and not edge({y}, a)" for y in "abcd")
    assert gr.entails(kb, f"{alone} -> not reach(b, a) and not reach(a, a)")
    refuted = gr.entails(kb, "edge(a, b) -> reach(a, c)")
    assert not refuted and refuted.confirmed
    row = refuted.counterexample
    assert not any("@" in c for c in row.columns) and not row["reach(a, c)"].iloc[0]


def test_layers_come_before_the_first_definition_and_never_clash_with_a_name():
    kb = gr.parse("input x: bool\noutput p: bool\ndefine q: bool = x and p\n"
                  "define p: bool = x or q\n")
    names = list(kb.variables)
    assert names.index("q@1") < names.index("q") and names.index("p@1") < names.index("q")
    assert gr.evaluate(kb, {"x": [True, False]}).values["q"].tolist() == [True, False]
    with pytest.raises(gr.RuleError, match=r"'p@1' is declared, but it is the name of a "
                       r"layer of recursive define 'p'") as info:
        gr.parse("input x: bool\ninput `p@1`: bool\ndefine p: bool = x or q\n"
                 "define q: bool = p\n")
    assert info.value.location.line == 2


MUTUAL = """input e: bool
input f: bool
input g: bool
define p: bool = e or (f and q)
define q: bool = g and p
output y: bool
rule r weight 1.5: q -> y
"""


def test_a_knowledge_base_rebuilt_from_the_statements_keeps_the_recursion():
    kb = gr.parse(MUTUAL)
    assert not any("@" in getattr(s, "name", "") for s in kb.statements)
    again = gr.KnowledgeBase(kb.statements)
    built = gr.Builder(kb).build()
    for other in (again, built):
        assert other == kb and other.recursion == kb.recursion
        assert other.defined == ("p", "q") and gr.to_text(other) == gr.to_text(kb)
    rows = {"e": [True, False, False], "f": [True, True, False], "g": [True, True, True]}
    ev = gr.evaluate(built, rows)
    assert list(ev.values.columns) == ["p", "q"]
    assert ev.values["q"].tolist() == [True, False, False]
    assert gr.Builder(gr.parse("input x: bool  define p: bool = x or p")).build() != \
        gr.parse("input x: bool  define p: bool = x")   # true equality: the recursion counts


def test_the_graph_shows_the_recursive_defines_as_written():
    kb = gr.parse(MUTUAL)
    assert not any("@" in node for node in kb.graph) and "@" not in kb.to_dot()
    assert kb.graph.has_edge("q", "p") and kb.graph.has_edge("p", "q")
    assert kb.depends_on("y") == {"e", "f", "g", "p", "q", "rule:r"}
    reach = _reach_kb(3)
    assert reach.graph.has_edge("reach(n0, n2)", "reach(n0, n2)")   # reads itself
    assert len(reach.graph) == len(reach.variables) - len(reach.recursion.layers) == 18
    assert repr(reach).startswith("KnowledgeBase(18 variables")


def test_kb_layers_names_the_hidden_layers_and_is_empty_without_recursion():
    kb = gr.parse("input e: bool\ninput f: bool\ndefine p: bool = e or (f and q)\n"
                  "define q: bool = f and p\n")
    assert kb.layers == kb.recursion.layers and kb.layers
    assert all("@" in n and n in kb.variables and n not in kb.defined for n in kb.layers)
    assert gr.parse("input e: bool\ndefine p: bool = e\n").layers == frozenset()
