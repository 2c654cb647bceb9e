"""Golden text: the exact ``str`` of each result object on a small fixed model, and every
result object renders three ways (``__str__``, ``to_frame``, ``_repr_html_``).

Other golden texts live beside their subject: a trace (tests/model/test_model.py), a row of an
explanation, a reason, a counterfactual and a refutation (tests/explain/test_explain.py).
"""

import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox.explain import Disable, Remove, SetWeight
from greybox.explain.debug import measure

RULES = """
input age: int 0..120
input income: real[0, 100000]
output approve: bool
rule earns weight 2: income > ~30000 -> approve
rule young: age < 25 -> not approve
constraint minors: age < 18 -> not approve
"""


@pytest.fixture
def model():
    return gb.GreyBox(RULES, semantics="product")


@pytest.fixture
def data():
    return pd.DataFrame({"age": [40, 15, 22, 50],
                         "income": [50000.0, 60000.0, 35000.0, 20000.0]},
                        index=["ann", "bob", "cy", "dee"])


@pytest.fixture
def debugger(model, data):
    targets = pd.Series([True, False, True, True], index=data.index)
    return gb.explain.Debugger(model, data, targets)


@pytest.fixture
def concept_model():
    """A Linear/ReLU concept over an input declared without bounds (its training range
    bounds the proofs)."""
    torch.manual_seed(0)
    m = gb.GreyBox("""
        input x: real
        input age: int 0..120
        neural high: bool = net(x)
        output approve: bool
        rule r weight 2: high -> approve
        constraint minors: age < 18 -> not approve
    """, {"net": nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))},
        semantics="product")
    return m.calibrate(pd.DataFrame({"x": [-1.0, 0.5, 2.0], "age": [20, 30, 40]}))


def test_an_explanation_renders_as_golden_text(model, data):
    ex = gb.explain.explain(model, data.loc[["ann", "cy"]])
    assert str(ex) == (
        "row ann: approve = True (p=0.88)\n"
        "  score +2.000 = bias +0.000 + rules +2.000\n"
        "  rules: earns (approve) +2.000 (fired)\n"
        "  parameters that carried it: rules.earns.weight +0.381\n"
        "row cy: approve = True (p=0.73)\n"
        "  score +1.000 = bias +0.000 + rules +1.000\n"
        "  rules: earns (approve) +2.000 (fired), young (not approve) -1.000 (fired)\n"
        "  parameters that carried it: rules.earns.weight +0.42, rules.young.weight -0.239")


def test_a_what_if_renders_as_golden_text(debugger):
    assert str(debugger.what_if(Disable("young"))) == (
        "what if: disable young\n"
        "  accuracy 0.750 -> 0.750; 0 failures fixed, 0 correct predictions broken, "
        "0 predictions changed")
    assert str(debugger.what_if(SetWeight("young", 0.5), Remove("minors"))) == (
        "what if: disable young; set the weight of young to 0.5; remove minors\n"
        "  accuracy 0.750 -> 0.500; 0 failures fixed, 1 correct predictions broken, "
        "1 predictions changed\n"
        "  broken: rows bob")


def test_a_blame_renders_as_golden_text(debugger):
    assert str(debugger.blame("dee")) == (
        "row dee: predicted False, expected True\n"
        "  verdict: most likely: bias/residual\n"
        "  parameters: rules.earns.weight -0.00899")


def test_a_verification_with_assumptions_renders_as_golden_text(concept_model):
    v = gb.explain.verify(concept_model, "age < 18 -> not approve", level="input",
                          backend="milp")
    assert str(v) == ("proved: age < 18 -> not approve\n"
                      "  for inputs within the training range (x in [-1, 2])")
    assert "for inputs within the training range (x in [-1, 2])" in v._repr_html_()


def test_a_crisp_evaluation_renders_as_golden_text(data):
    assert str(gb.rules.evaluate(gb.rules.parse(RULES), data)) == (
        "crisp evaluation of 4 rows\n"
        "  approve: True: 2, False: 2\n"
        "  changed by hard constraints: 1\n"
        "  infeasible (no decision satisfies the hard constraints): 0\n"
        "  rules fired: earns 75%, young 50%")


def _results(model, data, debugger):
    ex = gb.explain.explain(model, data.loc[["ann"]], parameters=False)
    return {
        "Trace": model(model.batch(data)),
        "Evaluation": gb.rules.evaluate(model.to_kb(), data),
        "CheckReport": gb.rules.check(model.kb),
        "Entailment": gb.rules.entails(model.kb, "age < 18 -> not approve"),
        "Explanation": ex,
        "Reason": gb.explain.reason(model, data, "bob"),
        "Counterfactual": gb.explain.counterfactual(model, data, "ann"),
        "Counterfactuals": gb.explain.counterfactuals(model, data, "ann", n=2),
        "Verification": gb.explain.verify(model, "income > 40000 -> approve"),
        "WhatIf": debugger.what_if(Disable("young")),
        "Blame": debugger.blame("dee"),
        "Suggestions": debugger.suggest(top=2),
        "Suggestion": measure(debugger, [(Disable("young"),)])[0],
    }


def test_every_result_object_renders_three_ways(model, data, debugger):
    for name, result in _results(model, data, debugger).items():
        assert type(result).__name__ == name
        assert isinstance(str(result), str) and str(result), name
        assert isinstance(result.to_frame(), pd.DataFrame), name
        assert isinstance(result._repr_html_(), str) and result._repr_html_(), name


def test_a_blame_of_a_correct_row_blames_nothing(debugger):
    # bob is predicted right (False): before, young's push toward the right answer was
    # reported as "pushed +1.00 toward the wrong answer"
    b = debugger.blame("bob")
    assert b.correct and b.training is None and not len(b.concepts)
    assert str(b) == (
        "row bob: predicted False, expected False (correct)\n"
        "  verdict: predicted correctly: nothing to blame\n"
        "  rules pushing away from it: earns +2.000")
    assert dict(zip(b.rules.rule, b.rules.toward_wrong)) == {"earns": 2.0, "young": -1.0}
