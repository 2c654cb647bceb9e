"""The concept graph, dependency queries and DOT export."""

import networkx as nx
import pytest

import greybox.rules as gr


def test_graph_layers(credit):
    g = credit.graph
    assert g.nodes["age"]["kind"] == "input"
    assert g.nodes["reliable"]["kind"] == "neural"
    assert g.nodes["rule:trusted"]["kind"] == "rule"
    assert g.nodes["constraint:minors"]["kind"] == "constraint"
    assert set(g.predecessors("reliable")) == {"age", "income", "debt_ratio"}
    assert set(g.predecessors("approve")) == {"rule:low_income_high_debt", "rule:stable",
                                              "rule:trusted", "constraint:minors",
                                              "constraint:prudence"}
    assert g.edges["rule:low_income_high_debt", "approve"]["value"] is False
    assert nx.is_directed_acyclic_graph(g)
    with pytest.raises(nx.NetworkXError):
        g.add_node("x")  # frozen


def test_dependency_queries(credit, addition):
    assert {"age", "income", "debt_ratio", "reliable", "rule:trusted"} <= credit.depends_on("approve")
    assert credit.affects("reliable") == {"rule:trusted", "approve"}
    assert addition.depends_on("total") == {"d1", "d2", "img1", "img2"}
    assert [r.name for r in credit.rules_for("approve")] == ["low_income_high_debt", "stable", "trusted"]
    with pytest.raises(gr.RuleError, match="not a variable"):
        credit.depends_on("nope")


def test_topological_order(addition):
    order = addition.topological_order()
    assert order.index("d1") < order.index("total") and order.index("img1") < order.index("d1")


def test_dot_export(credit):
    dot = credit.to_dot()
    assert dot.startswith("digraph greybox {") and dot.rstrip().endswith("}")
    assert '"years at address" -> "rule:trusted";' in dot
    assert '"rule:low_income_high_debt" -> "approve" [style=dashed, label="not"];' in dot
    assert '"approve" [label="approve: bool", shape=ellipse, peripheries=2];' in dot
    assert dot.count("->") == credit.graph.number_of_edges()
