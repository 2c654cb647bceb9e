"""Z3 analyses on planted problems with known answers, and entails."""

import pytest

import greybox.rules as gr
from greybox.rules.analyses import REGISTRY

HEAD = """input age: int 0..120
input income: real[0, 100000]
input kind: {a, b, c}
output approve: bool
output grade: {lo, hi}
"""

# analysis name -> (planted rules, expected (severity, subjects) findings of that analysis)
PLANTED = {
    "contradiction": (
        "constraint c1: age > 50\nconstraint c2: income > 10\nconstraint c3: age < 40\n",
        [("error", ("c1", "c3"))],
    ),
    "infeasible-input": (
        "constraint c1: age > 60 -> approve\nconstraint c2: income > 500 -> not approve\n",
        [("error", ("c1", "c2"))],
    ),
    "define-out-of-domain": (
        "define twice: int 0..200 = 2 * age\nrule r: twice > 10 -> approve\n",
        [("error", ("twice",))],
    ),
    "dead-rule": (
        "rule r1: age > 100 and age < 50 -> approve\nrule r2: kind == a and kind == b -> grade = hi\n"
        "rule r3: age > 10 -> approve\n",
        [("warning", ("r1",)), ("warning", ("r2",))],
    ),
    "subsumed-rule": (
        "rule wide: age > 18 -> approve\nrule narrow: age > 30 and income > 5 -> approve\n"
        "rule same1: kind in {a, b} -> grade = hi\nrule same2: kind != c -> grade = hi\n"
        "rule other: age > 30 -> not approve\n",
        [("warning", ("narrow", "wide")), ("warning", ("same1", "same2"))],
    ),
    "opposite-rules": (
        "rule yes: income > 500 -> approve\nrule no: age < 25 -> not approve\n"
        "rule never: income < 100 -> not approve\n",
        [("info", ("yes", "no"))],  # yes and never cannot fire together
    ),
    "too-large-decision": (
        "".join(f"output t{i}: bool\n" for i in range(17))
        + "constraint big: " + " or ".join(f"t{i}" for i in range(17)) + "\n",
        [("error", ("big",))],
    ),
    "uncovered": (
        "rule yes: income > 500 -> approve\nrule no: income <= 500 -> not approve\n"
        "rule hi: age > 60 -> grade = hi\n",
        [("info", ("grade",))],
    ),
}


def test_every_analysis_has_a_planted_case():
    assert set(PLANTED) == {a.name for a in REGISTRY}


@pytest.mark.parametrize("analysis", REGISTRY, ids=lambda a: a.name)
def test_analysis_conformance(analysis):
    """Each analysis finds exactly its planted problems, with a description and valid
    severities, and finds nothing on a clean knowledge base."""
    assert analysis.name and analysis.description
    rules, expected = PLANTED[analysis.name]
    kb = gr.parse(HEAD + rules)
    report = gr.check(kb)
    mine = [(f.severity, f.subjects) for f in report.findings if f.check == analysis.name]
    assert sorted(mine) == sorted(expected)
    for f in report.findings:
        assert f.severity in ("error", "warning", "info") and f.message
    clean = gr.parse(HEAD + "rule yes: income > 500 -> approve\n"
                     "rule no: income <= 500 -> not approve\n"
                     "rule hi: age > 60 -> grade = hi\nrule lo: age <= 60 -> grade = lo\n")
    assert not [f for f in gr.check(clean).findings if f.check == analysis.name]


def test_witnesses_are_real():
    kb = gr.parse(HEAD + PLANTED["opposite-rules"][0])
    report = gr.check(kb, analyses=["opposite-rules"])
    for f in report.findings:
        ev = gr.evaluate(kb, f.witness)
        assert all(ev.bodies[r].iloc[0] for r in f.subjects)
    kb = gr.parse(HEAD + PLANTED["infeasible-input"][0])
    (f,) = gr.check(kb, analyses=["infeasible-input"]).findings
    assert gr.evaluate(kb, f.witness).infeasible.iloc[0]
    kb = gr.parse(HEAD + PLANTED["uncovered"][0])
    (f,) = gr.check(kb, analyses=["uncovered"]).findings
    assert not gr.evaluate(kb, f.witness).bodies["hi"].iloc[0]


def test_report_rendering():
    kb = gr.parse(HEAD + PLANTED["dead-rule"][0] + PLANTED["contradiction"][0])
    report = gr.check(kb)
    assert not report.ok and len(report.errors) == 1 and len(report.warnings) == 2
    assert [f.severity for f in report.findings] == sorted(
        [f.severity for f in report.findings], key=["error", "warning", "info"].index)
    frame = report.to_frame()
    assert list(frame.columns) == ["severity", "check", "message", "subjects", "witness"]
    assert len(frame) == len(report.findings)
    import json

    assert json.loads(report.to_json())["errors"] == 1
    assert "1 error(s), 2 warning(s)" in str(report)


def test_unknown_analysis_name():
    with pytest.raises(gr.RuleError, match="unknown analysis 'nope'"):
        gr.check(gr.parse(HEAD), analyses=["nope"])


def test_example_files_are_clean(credit, addition):
    assert gr.check(credit).ok
    assert gr.check(addition).ok


# ------------------------------------------------------------------------ entails


def test_entails_proves_through_constraints(credit):
    result = gr.entails(credit, "age < 18 -> not approve")
    assert result.holds and bool(result) and result.counterexample is None
    assert str(result) == "proved: age < 18 -> not approve"


def test_entails_refutes_with_a_confirmed_counterexample(credit):
    result = gr.entails(credit, "income > 100000 -> approve")
    assert not result.holds and result.confirmed
    row = result.counterexample
    assert row["income"].iloc[0] > 100000
    ev = gr.evaluate(credit, row)
    assert not ev.decisions["approve"].iloc[0]


def test_entails_uses_weights_and_bias():
    kb = gr.parse("input x: real[0, 10]\noutput y: bool\n"
                  "rule up weight 2: x > 5 -> y\nrule down weight 1: x > 8 -> not y\n")
    assert gr.entails(kb, "x > 5 -> y").holds
    assert not gr.entails(kb, "x > 5 -> y", bias={"y": -1.5}).holds
    assert gr.entails(kb, "x <= 5 -> not y").holds


def test_entails_on_finite_outputs_and_defines(addition):
    assert gr.entails(addition, "d1 == 9 and d2 == 9 -> total == 18").holds
    result = gr.entails(addition, "total < 18")
    assert not result.holds
    assert result.counterexample[["d1", "d2"]].iloc[0].tolist() == [9, 9]


def test_entails_with_joint_constraint_decisions():
    kb = gr.parse("""input x: real[0, 1]
output a: bool
output b: bool
rule ra weight 3: x > 0.5 -> a
rule rb weight 1: x > 0.5 -> b
constraint excl: not (a and b)
""")
    assert gr.entails(kb, "x > 0.5 -> a and not b").holds
    assert not gr.entails(kb, "b").holds


def test_entails_rejects_bad_properties(credit):
    with pytest.raises(gr.RuleError, match="undeclared name 'salary'"):
        gr.entails(credit, "salary > 3 -> approve")
    with pytest.raises(gr.RuleSyntaxError, match="<formula>:1:"):
        gr.entails(credit, "age < -> approve")


def test_to_z3_covers_every_construct():
    kb = gr.parse(HEAD + "define s: real[-10, 300000] = 2 * income - age + -3\n"
                  "rule r: not (kind in {a, b}) or (s > 1 <-> approve) and true -> grade = lo\n")
    term = gr.to_z3(kb, kb.rules["r"].body)
    assert "Or" in str(term) and "income" in str(term)
    assert gr.to_z3(kb) is not None


def test_witness_keeps_int_values_whole():
    kb = gr.parse("input age: int 0..120\ninput income: real[0, 100]\noutput ok: bool\n"
                  "rule r: income > 5 -> ok\n")
    (f,) = gr.check(kb, analyses=["uncovered"]).findings
    assert isinstance(f.to_dict()["witness"]["age"], int)
    assert "age=" in str(f) and "age=0.0" not in str(f)


@pytest.mark.parametrize("text, sets, dead", [
    ("set c: 0..3\ninput x[c]: bool\noutput y: bool\nrule r2 weight 3: (exists i in 5..4: x[i]) -> not y\n",
     None, ["r2"]),
    ("set p\ninput x(p): bool\noutput y: bool\nrule r: (exists q in p: x(q)) -> y\n", {"p": []}, ["r"]),
    ("set p\ninput x(p): bool\noutput y(p): bool\n"
     "rule r(a in p): (exists b in p: b != a and x(b)) -> y(a)\n"
     "rule s[i in 0..1, j in 0..1]: i != j and x(anna) -> y(anna)\n", {"p": ["anna"]},
     ["r(anna)"]),
], ids=["empty range", "empty set", "family"])
def test_a_rule_grounded_to_false_is_reported_dead(text, sets, dead):
    """Red-team item 12: a rule whose grounded body is false was dropped, so check said
    nothing (as it says for `rule r: false -> y`). A family member that an index comparison
    rules out (s[0, 0]) still says nothing."""
    kb = gr.parse(text, sets=sets)
    if "rule s" in text:
        assert [r for r in kb.rules if r.startswith("s")] == ["s[0, 1]", "s[1, 0]"]
    assert [r for r in kb.rules if str(kb.rules[r].body) == "false"] == dead
    found = [f.subjects for f in gr.check(kb, analyses=["dead-rule"]).findings]
    assert found == [(name,) for name in dead]
