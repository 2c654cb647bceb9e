"""The Python builder makes the same AST as the parser."""

import pytest

import greybox.rules as gr


def build_credit():
    b = gr.Builder()
    age = b.input("age", "int 0..120")
    income = b.input("income", "real[0, 1000000]")
    debt = b.input("debt_ratio", "real[0, 10]")
    employment = b.input("employment", ["employed", "self_employed", "unemployed", "retired"])
    years = b.input("years at address", float)
    reliable = b.neural("reliable", bool, network="applicant_net", args=[age, income, debt])
    approve = b.output("approve", bool)
    b.rule("low_income_high_debt", (income < gr.learnable(20000)) & (debt > gr.learnable(0.6)),
           ~approve, weight=2.0)
    b.rule("stable", (employment == "employed") & (debt < 0.4), approve, weight=1.0, fixed=True)
    b.rule("trusted", reliable & (years > 3), approve)
    b.constraint("minors", (age < 18).implies(~approve))
    b.constraint("prudence", gr.implies(income < 5000, ~approve), weight=0.5)
    return b.build()


def test_builder_equals_parsed_file(credit):
    assert build_credit() == credit


def test_builder_flattens_chains_like_the_parser():
    b = gr.Builder()
    x, y, z = (b.input(n, bool) for n in "xyz")
    n = b.input("n", "int 0..9")
    b.output("o", bool)
    b.rule("r", x & y & z | ~x, "o")
    b.constraint("c", (n + 1 - 2 * n > 3) & n.isin([1, 2]))
    built = b.build()
    parsed = gr.parse("input x: bool input y: bool input z: bool input n: int 0..9 output o: bool "
                      "rule r: x and y and z or not x -> o "
                      "constraint c: n + 1 - 2 * n > 3 and n in {1, 2}")
    assert built == parsed


def test_builder_accepts_text_bodies_and_heads():
    b = gr.Builder()
    b.input("x", "real")
    b.output("g", ["lo", "hi"])
    b.rule("r", "x > ~2.5", "g = hi")
    kb = b.build()
    assert gr.to_text(kb.rules["r"]) == "rule r: x > ~2.5 -> g = hi"


def test_terms_refuse_python_truthiness():
    b = gr.Builder()
    x = b.input("x", "real")
    with pytest.raises(gr.RuleError, match="use & | ~"):
        _ = (0 < x < 1)
    with pytest.raises(gr.RuleError, match="use & | ~"):
        bool(x > 1)


def test_builder_validates_on_build():
    b = gr.Builder()
    b.output("o", bool)
    b.rule("r", b.var("ghost") > 1, "o")
    with pytest.raises(gr.RuleError, match="undeclared name 'ghost'"):
        b.build()


@pytest.mark.parametrize("bad", [object(), {"a": 1}])
def test_builder_bad_types(bad):
    with pytest.raises(gr.RuleError, match="not a type"):
        gr.Builder().input("x", bad)


def test_builder_from_existing_kb(credit):
    b = gr.Builder(credit)
    b.rule("extra", b["age"] > 65, "not approve")
    kb = b.build()
    assert list(kb.rules)[-1] == "extra" and len(kb.rules) == 4


def test_a_learnable_term_used_twice_is_two_parameters_each_read():
    """A learnable() Term in two rules (or twice in one) is written ~2.0 in each place,
    so it is two numbers: the model gave one AST node one parameter per rule but every
    copy read the last rule's (the first rule's threshold was dead)."""
    import numpy as np

    import greybox as gb

    b = gr.Builder()
    x, z = b.input("x", "real"), b.input("z", "real")
    y = b.output("y", "bool")
    t = gr.learnable(2.0)
    b.rule("r1", (x > t) & (z > t), y)
    b.rule("r2", x < t, ~y)
    model = gb.GreyBox(b.build(), semantics="product")
    assert [k for k in model.state_dict() if ".thresholds." in k] == [
        "rules.r1.thresholds.0", "rules.r1.thresholds.1", "rules.r2.thresholds.0"]
    model.loss({"x": np.array([1.5, 2.5]), "z": np.array([2.2, 1.9])},
               {"y": np.array([1.0, 0.0])}).backward()
    for name in ("r1", "r2"):
        assert all(p.grad is not None and p.grad.item() != 0
                   for p in model.rules[name].thresholds)
