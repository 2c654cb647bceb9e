"""Formal results on a recursive model (reachability): Z3 and MILP reasons and
counterfactuals, each replayed through ``predict``."""

from __future__ import annotations

import itertools

import pytest

import greybox as gb

N = 4
TEXT = f"""
set node: {{{', '.join(f'n{i}' for i in range(N))}}}
input edge(x in node, y in node): bool
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
output connected: bool
rule r weight 3: reach(n0, n3) -> connected
"""
ON = {(0, 1), (1, 2), (2, 3), (2, 0), (3, 3), (1, 0)}
ROW = {f"edge(n{i}, n{j})": [(i, j) in ON] for i in range(N) for j in range(N)}


@pytest.fixture(scope="module")
def model():
    return gb.GreyBox(TEXT, semantics="product")


@pytest.mark.parametrize("backend", ["z3", "milp"])
def test_a_reason_is_a_path_and_survives_every_completion(model, backend):
    assert model.predict(ROW)["connected"].item()
    reason = gb.explain.reason(model, ROW, backend=backend, level="input")
    kept = set(reason.facts) if hasattr(reason, "facts") else None
    assert "edge(n0, n1)" in str(reason) and "edge(n2, n3)" in str(reason)
    assert "@" not in str(reason)
    # every completion of the other edges keeps the decision (16 edges: the 3 of the
    # path fixed, the others over all values would be 2^13; sample the ones on the path's
    # cycle and the rest off, then all on)
    path = {"edge(n0, n1)", "edge(n1, n2)", "edge(n2, n3)"}
    if kept is not None:
        assert set(kept) == path
    others = [k for k in ROW if k not in path]
    for bits in itertools.product([False, True], repeat=4):
        row = {k: [True] for k in path}
        row.update({k: [bits[i % 4]] for i, k in enumerate(others)})
        assert model.predict(row)["connected"].item()


@pytest.mark.parametrize("backend", ["z3", "milp"])
def test_a_counterfactual_cuts_the_path_and_replays(model, backend):
    cf = gb.explain.counterfactual(model, ROW, backend=backend, level="input")
    assert cf.new_decision is False or cf.new_decision == False  # noqa: E712
    assert model.predict(cf.row_after)["connected"].item() == cf.new_decision
    assert len(cf.changes.fact) == 1
    assert "@" not in str(cf)


def test_the_trace_and_the_explanation_leave_the_hidden_layers_out(model):
    trace = model(ROW)
    assert "reach(n0, n3)" in trace.values
    assert not any("@" in name for name in trace.values)
    assert not any("@" in column for column in trace.to_frame().columns)
    text = str(gb.explain.explain(model, ROW))
    assert "concept: reach(n0, n3) = True" in text and "@" not in text


def test_the_crisp_trace_leaves_the_hidden_layers_out(model):
    trace = model.crisp()(ROW)
    assert trace.values["reach(n0, n3)"].tolist() == [1.0]
    assert not any("@" in name for name in trace.values)
    assert not any("@" in column for column in trace.to_frame().columns)


def test_the_learned_and_replaced_models_keep_the_recursion(model):
    learned = model.to_kb()
    assert learned == model.kb and learned.recursion == model.kb.recursion
    assert not any("@" in name for name in learned.defined)
    assert "@" not in gb.rules.to_text(learned)
    again = model.replace()
    assert again.kb.recursion == model.kb.recursion
    assert not any("@" in column for column in again(ROW).to_frame().columns)
    assert again.predict(ROW)["connected"].tolist() == model.predict(ROW)["connected"].tolist()


def test_a_propositional_recursion_survives_to_kb_and_replace():
    mutual = gb.GreyBox("input e: bool\ninput f: bool\ninput g: bool\n"
                        "define p: bool = e or (f and q)\ndefine q: bool = g and p\n"
                        "output y: bool\nrule r weight 1.5: q -> y\n", semantics="product")
    learned = mutual.to_kb()
    assert learned.recursion == mutual.kb.recursion and learned.defined == ("p", "q")
    assert "@" not in gb.rules.to_text(learned)
    rows = {"e": [True, False], "f": [True, True], "g": [True, True]}
    assert list(gb.rules.evaluate(learned, rows).values.columns) == ["p", "q"]
    frame = mutual.replace()(rows).to_frame()
    assert not any("@" in column for column in frame.columns)
