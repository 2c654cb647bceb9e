"""How each grounding pushed a concept (issue 13): ``greybox.explain.pushes`` against the
gradient of each grounding's loss term written out by hand, the pushes adding up to the
gradient of the whole training loss, golden text, renderings and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox.errors import ModelError

PEOPLE = ["anna", "bob", "carl", "dora", "emil"]
RULES = """
set person
input friends(person, person): bool
input features(person): tensor[3]
neural smokes(person): bool = net(features(person))
output cancer(person): bool
rule causes(p in person) weight 1.5: smokes(p) -> cancer(p)
constraint fs(p in person, q in person) weight 0.4:
    p != q -> (friends(p, q) and smokes(p) -> smokes(q))
"""
FRIENDS = np.array([[0, 1, 1, 0, 0],
                    [1, 0, 0, 1, 0],
                    [1, 0, 0, 0, 0],
                    [0, 1, 0, 0, 1],
                    [0, 0, 0, 1, 0]], bool)


def _world(semantics: str = "product", seed: int = 0):
    kb = gb.rules.parse(RULES, sets={"person": PEOPLE})
    torch.manual_seed(seed)
    model = gb.GreyBox(kb, {"net": nn.Linear(3, 1)}, semantics=semantics)
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, len(PEOPLE), 3)).astype(np.float32)   # two worlds
    data = {**kb.families["friends"].split(np.stack([FRIENDS, FRIENDS.T & ~FRIENDS])),
            **kb.families["features"].split(features)}
    labels = {**kb.families["smokes"].split(np.array([[1, np.nan, 0, np.nan, np.nan]] * 2)),
              **kb.families["cancer"].split(np.array([[np.nan, 1, 1, 0, np.nan]] * 2))}
    return kb, model, data, labels, features


def _by_hand(model, features, friends, row: int):
    """Each person's logit as a leaf, and each grounding's loss term and each labelled
    cancer's loss written out under the product t-norm."""
    with torch.no_grad():
        z = model.network("net")(torch.from_numpy(features[row]))[:, 0]
    z = z.clone().requires_grad_()
    s = torch.sigmoid(z)
    w = model.rule_weight("causes(anna)")
    terms = {}
    for i, p in enumerate(PEOPLE):
        for j, q in enumerate(PEOPLE):
            if i != j:
                truth = 1 - float(friends[i, j]) * s[i] * (1 - s[j])
                terms[f"fs({p}, {q})"] = 0.4 * (1 - truth)
    bias = model.decisions_bias("cancer(anna)")
    cancer = {p: torch.sigmoid(bias + w * s[i]) for i, p in enumerate(PEOPLE)}
    return z, terms, cancer


@pytest.mark.parametrize("who", ["anna", "bob", "dora"])
def test_each_push_is_the_gradient_of_its_own_term_and_they_add_up(who):
    kb, model, data, labels, features = _world()
    got = gb.explain.pushes(model, data, f"smokes({who})", targets=labels, row=1)
    z, terms, cancer = _by_hand(model, features, FRIENDS.T & ~FRIENDS, row=1)
    i = PEOPLE.index(who)
    constraints = got.terms[got.terms.kind == "constraint"].set_index("grounding")
    assert set(constraints.index) == {f"fs({who}, {q})" for q in PEOPLE if q != who} | \
        {f"fs({p}, {who})" for p in PEOPLE if p != who}
    for name, row in constraints.iterrows():
        (g,) = torch.autograd.grad(terms[name], z, retain_graph=True)
        assert row.push == pytest.approx(-float(g[i]), abs=1e-7), name
    # the rule: the push of cancer(who)'s label back through causes(who)
    y = {"bob": 1.0, "dora": 0.0}.get(who)
    rule = got.terms[got.terms.kind == "rule"].set_index("grounding")
    assert list(rule.index) == [f"causes({who})"]
    if y is None:
        assert rule.push.iloc[0] == 0.0
    else:
        bce = nn.functional.binary_cross_entropy(cancer[who], torch.tensor(y))
        (g,) = torch.autograd.grad(bce, z, retain_graph=True)
        assert rule.push.iloc[0] == pytest.approx(-float(g[i]), rel=1e-5, abs=1e-8)
        assert rule.via.iloc[0] == f"cancer({who})"
    # they add up to the gradient of the whole training loss of the row
    trace = model(model.batch(data).take(torch.tensor([1])))
    loss = model.loss(None, {k: np.asarray(v)[1:] for k, v in labels.items()}, trace=trace)
    (g,) = torch.autograd.grad(loss, trace.logits[f"smokes({who})"])
    assert got.total == pytest.approx(-float(g[0]), rel=1e-5, abs=1e-8)
    assert got.terms.push.sum() == pytest.approx(got.total, rel=1e-5, abs=1e-8)
    assert abs(got.gap) < 1e-7


def test_without_labels_the_pushes_add_up_to_the_soft_constraint_loss():
    kb, model, data, labels, features = _world()
    got = gb.explain.pushes(model, data, "smokes(anna)")
    z, terms, _ = _by_hand(model, features, FRIENDS, row=0)
    (g,) = torch.autograd.grad(sum(terms.values()), z)
    assert set(got.terms.kind) == {"constraint", "rule"}
    assert got.terms[got.terms.kind == "rule"].push.eq(0).all()   # no label on cancer
    assert got.terms.push.sum() == pytest.approx(-float(g[0]), rel=1e-5)
    assert got.total == pytest.approx(-float(g[0]), rel=1e-5)


@pytest.mark.parametrize("semantics", ["godel", "lukasiewicz", "probabilistic"])
def test_the_pushes_add_up_under_every_semantics(semantics):
    kb, model, data, labels, _ = _world(semantics, seed=1)
    for who in ("anna", "bob"):
        got = gb.explain.pushes(model, data, f"smokes({who})", targets=labels)
        assert got.total != 0
        assert abs(got.gap) <= 1e-6 * max(1.0, abs(got.total)), (semantics, who)


def test_an_output_is_pushed_through_its_score():
    """A soft constraint on an output pushes its score; its label pulls ``y - p``."""
    kb = gb.rules.parse(RULES + """
constraint cc(p in person, q in person) weight 0.7:
    p != q -> (friends(p, q) and cancer(p) -> cancer(q))
""", sets={"person": PEOPLE})
    _, model0, data, labels, _ = _world()
    model = gb.GreyBox(kb, {"net": model0.network("net")}, semantics="product")
    got = gb.explain.pushes(model, data, "cancer(bob)", targets=labels)
    assert got.wrt == "score"
    assert set(got.terms.kind) == {"constraint", "label"}
    label = got.terms[got.terms.kind == "label"]
    assert label.push.iloc[0] == pytest.approx(1.0 - got.probability)
    assert abs(got.gap) < 1e-7
    # by hand: cancer(q)'s score as a leaf
    trace = model(model.batch(data).take(torch.tensor([0])))
    scores = torch.stack([trace.scores[f"cancer({p})"][0] for p in PEOPLE]).detach()
    scores.requires_grad_()
    c = torch.sigmoid(scores)
    total = sum(0.7 * float(FRIENDS[i, j]) * c[i] * (1 - c[j])
                for i in range(5) for j in range(5) if i != j)
    (g,) = torch.autograd.grad(total, scores)
    pushed = got.terms[got.terms.kind == "constraint"].push.sum()
    assert pushed == pytest.approx(-float(g[1]), rel=1e-5)


GOLDEN = """\
pushes on smokes(anna), row 0 (product semantics): p(True) = 0.62, logit +0.50
  training pushes the logit -0.225 in all (toward False)
  causes (rule): 1 of 1 groundings push, -0.253 in all
    causes(anna)  truth 0.62      -0.253 toward False  57% (via cancer(anna))
  fs (soft constraint): 4 of 8 groundings push, +0.0282 in all
    fs(carl, anna)  truth 0.67     +0.0828 toward True   19%
    fs(anna, bob)   truth 0.54     -0.0687 toward False  16%
    fs(bob, anna)   truth 0.90     +0.0253 toward True    6%
    fs(anna, carl)  truth 0.93     -0.0112 toward False   3%
  the pushes add up to the total (gap below 1e-06)"""


def _fixed():
    """A model whose network reads a person's logit from its first feature."""
    kb = gb.rules.parse(RULES, sets={"person": PEOPLE})
    net = nn.Linear(3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        net.bias.zero_()
    model = gb.GreyBox(kb, {"net": net}, semantics="product")
    features = np.zeros((1, 5, 3), np.float32)
    features[0, :, 0] = [0.5, -1.0, 2.0, 0.0, 1.0]
    data = {**kb.families["friends"].split(FRIENDS[None]),
            **kb.families["features"].split(features)}
    labels = {"cancer(anna)": [False], "cancer(bob)": [True]}
    return model, data, labels


def test_pushes_render_as_golden_text():
    model, data, labels = _fixed()
    got = gb.explain.pushes(model, data, "smokes(anna)", targets=labels)
    assert str(got) == GOLDEN


def test_pushes_render_three_ways_and_are_reached_from_an_explanation():
    model, data, labels = _fixed()
    ex = gb.explain.explain(model, data, output="cancer(anna)", parameters=False)
    got = ex.pushes("smokes(anna)", targets=labels)
    assert str(got) == GOLDEN
    frame = got.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["template", "grounding", "kind", "truth", "push", "toward",
                                   "share", "via"]
    assert frame.share.sum() == pytest.approx(1.0)
    html = got._repr_html_()
    assert "pushes on smokes(anna)" in html and "<table" in html


@pytest.mark.parametrize("concept, message", [
    ("smokes(ana)", r"not a variable of the model; did you mean 'smokes\(anna\)'"),
    ("friends(anna, bob)", r"neural concepts and outputs decided by rules; 'friends\(anna, "
                           r"bob\)' is an input variable of type bool"),
])
def test_what_cannot_be_pushed_is_refused(concept, message):
    model, data, labels = _fixed()
    with pytest.raises(ModelError, match=message):
        gb.explain.pushes(model, data, concept)


def test_an_output_tied_by_hard_constraints_is_refused():
    model = gb.GreyBox("""
input x: bool
output a: bool
output b: bool
rule ra: x -> a
rule rb: x -> b
constraint one: not (a and b)
""", semantics="product")
    with pytest.raises(ModelError, match="decided jointly"):
        gb.explain.pushes(model, {"x": [True]}, "a")


def test_a_row_is_named_by_its_label():
    model, data, labels = _fixed()
    with pytest.raises(ModelError, match="row 'w2' is not a row label"):
        gb.explain.pushes(model, data, "smokes(anna)", row="w2")


def test_a_path_not_itemised_is_the_gap():
    """A label on a definition over the concept reaches it along no grounding: the pushes
    do not add up, and the text says so."""
    torch.manual_seed(0)
    model = gb.GreyBox("""
input f: tensor[2]
neural s: bool = net(f)
define d: bool = not s
constraint keep weight 0.5: s
""", {"net": nn.Linear(2, 1)}, semantics="product")
    data = {"f": np.ones((1, 2), np.float32)}
    got = gb.explain.pushes(model, data, "s", targets={"d": [True]})
    assert list(got.terms.grounding) == ["keep"]
    p = got.probability
    assert got.terms.push.iloc[0] == pytest.approx(0.5 * p * (1 - p), rel=1e-5)
    assert got.gap == pytest.approx(-p, rel=1e-4)   # d's label: -log(1 - p), pushes down
    assert "paths not itemised" in str(got)


def test_the_entity_debugger_shows_the_pushes_behind_an_entity():
    model, data, _ = _fixed()
    cancer = np.array([[False, True, True, False, True]])
    dbg = gb.explain.EntityDebugger(model, data, {"cancer": cancer})
    got = dbg.pushes(0, "anna")
    want = gb.explain.pushes(model, data, "smokes(anna)",
                             targets=model.kb.families["cancer"].split(cancer))
    assert got.concept == "smokes(anna)"
    pd.testing.assert_frame_equal(got.terms, want.terms)
    assert got.terms.set_index("grounding").loc["causes(anna)", "via"] == "cancer(anna)"
    with pytest.raises(gb.DataError, match="not an entity"):
        dbg.pushes(0, "zoe")


ENUM_PEOPLE = ["anna", "bob", "carl"]
ENUM_RULES = """
set person
input friends(person, person): bool
input features(person): tensor[3]
neural level(person): {low, mid, high} = net(features(person))
neural n(person): int 1..3 = net(features(person))
output cancer(person): bool
output grade(person): {a, b, c}
rule causes(p in person) weight 1.5: level(p) == high -> cancer(p)
rule g(p in person) weight 0.8: level(p) != low -> grade(p) = c
rule gn(p in person) weight 0.3: n(p) >= 2 -> grade(p) = b
constraint fs(p in person, q in person) weight 0.4:
    p != q -> (friends(p, q) and level(p) == high -> level(q) in {mid, high})
constraint gg(p in person, q in person) weight 0.6:
    p != q -> (friends(p, q) and grade(p) == c -> grade(q) != a)
"""
ENUM_LABELS = {"level(anna)": ["mid"], "cancer(bob)": [True], "grade(bob)": ["a"],
               "grade(anna)": ["c"], "n(carl)": [3]}


def _enum_world(semantics: str = "product"):
    kb = gb.rules.parse(ENUM_RULES, sets={"person": ENUM_PEOPLE})
    torch.manual_seed(0)
    model = gb.GreyBox(kb, {"net": nn.Linear(3, 3)}, semantics=semantics)
    rng = np.random.default_rng(0)
    friends = rng.random((1, 3, 3)) < 0.6
    features = rng.normal(size=(1, 3, 3)).astype(np.float32)
    data = {**kb.families["friends"].split(friends),
            **kb.families["features"].split(features)}
    return model, data, friends[0], features[0]


def test_an_enum_concept_is_pushed_on_each_value_logit():
    """pushes refused every concept but bools. An enum's network has one logit per value:
    each grounding's push on each logit is the gradient of its own loss term written out
    by hand, a grounding's pushes add up to 0 over the values (a softmax), and all add up,
    value by value, to the gradient of the row's whole loss."""
    model, data, friends, features = _enum_world()
    got = gb.explain.pushes(model, data, "level(bob)", targets=ENUM_LABELS)
    assert list(got.terms.columns) == ["template", "grounding", "kind", "value", "truth",
                                       "push", "toward", "share", "via"]
    assert got.wrt == "logits" and list(got.by_value.index) == ["low", "mid", "high"]
    with torch.no_grad():
        z = model.network("net")(torch.from_numpy(features))
    z = z.clone().requires_grad_()
    p = torch.softmax(z, 1)     # rows: people; columns: low, mid, high
    i = ENUM_PEOPLE.index("bob")
    constraints = got.terms[got.terms.kind == "constraint"]
    assert set(constraints.grounding) == {f"fs(bob, {q})" for q in ("anna", "carl")} | \
        {f"fs({q}, bob)" for q in ("anna", "carl")}
    for name, lines in constraints.groupby("grounding"):
        a, b = (ENUM_PEOPLE.index(x) for x in name[3:-1].split(", "))
        truth = 1 - float(friends[a, b]) * p[a, 2] * (1 - (p[b, 1] + p[b, 2]))
        (g,) = torch.autograd.grad(0.4 * (1 - truth), z, retain_graph=True)
        assert lines.set_index("value").push.to_dict() == pytest.approx(
            {"low": -float(g[i, 0]), "mid": -float(g[i, 1]), "high": -float(g[i, 2])},
            abs=1e-7), name
        assert lines.push.sum() == pytest.approx(0.0, abs=1e-7)
    # the rule g(bob) -> grade(bob) = c: grade(bob)'s label a pulls its score of c down
    # by p(c), and that comes back through the body level(bob) != low
    rule = got.terms[got.terms.grounding == "g(bob)"].set_index("value")
    assert rule.via.iloc[0] == "grade(bob)"
    trace = model(model.batch(data))
    loss = model.loss(None, ENUM_LABELS, trace=trace)
    (g,) = torch.autograd.grad(loss, trace.logits["level(bob)"])
    assert got.by_value.total.to_numpy() == pytest.approx(-g[0].numpy(), abs=1e-6)
    pushed = got.terms.groupby("value").push.sum()
    assert pushed.reindex(["low", "mid", "high"]).to_numpy() == pytest.approx(
        -g[0].numpy(), abs=1e-6)
    assert (got.by_value.gap.abs() < 1e-6).all() and abs(got.gap) < 1e-6
    assert got.total == got.by_value.total.abs().max() or \
        got.total == -got.by_value.total.abs().max()
    assert got.probability == pytest.approx(float(p[i].max().detach()))


@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz", "probabilistic"])
@pytest.mark.parametrize("concept", ["level(anna)", "level(bob)", "n(carl)", "grade(bob)",
                                     "grade(carl)"])
def test_enum_and_int_pushes_add_up_under_every_semantics(semantics, concept):
    model, data, _, _ = _enum_world(semantics)
    got = gb.explain.pushes(model, data, concept, targets=ENUM_LABELS)
    assert len(got.by_value) == 3
    if concept != "grade(carl)":   # unlabelled, read by one soft grounding (0 under Łuk.)
        assert (got.by_value.total != 0).any()
    assert (got.by_value.gap.abs() <= 1e-6 * np.maximum(1.0, got.by_value.total.abs())).all()
    if concept.startswith("level"):    # a network's logits: the total is autograd's
        trace = model(model.batch(data))
        (g,) = torch.autograd.grad(model.loss(None, ENUM_LABELS, trace=trace),
                                   trace.logits[concept])
        assert got.by_value.total.to_numpy() == pytest.approx(-g[0].numpy(), abs=1e-6)


def test_an_enum_output_is_pushed_through_its_scores_and_renders():
    """A decided enum output: its label pulls ``1[y] - p`` on each value's score; the text
    lists each grounding's push per value."""
    model, data, _, _ = _enum_world()
    got = gb.explain.pushes(model, data, "grade(bob)", targets=ENUM_LABELS)
    assert got.wrt == "scores"
    label = got.terms[got.terms.kind == "label"].set_index("value")
    assert label.grounding.iloc[0] == "grade(bob) = a"
    p = got.by_value.probability
    assert label.push.to_dict() == pytest.approx({"a": 1 - p["a"], "b": -p["b"],
                                                 "c": -p["c"]})
    text = str(got)
    assert text.startswith("pushes on grade(bob), row 0 (product semantics): p = a ")
    assert "  label grade(bob) = a: a +" in text
    assert "the pushes add up to the total of each value" in text
    assert "<table" in got._repr_html_()


def test_a_real_concept_is_refused_with_what_to_use():
    model = gb.GreyBox("input f: tensor[2]\nneural r: real = net(f)\noutput y: bool\n"
                       "rule big: r > 1 -> y\n", {"net": nn.Linear(2, 1)},
                       semantics="product")
    with pytest.raises(ModelError, match=r"'r' is real: it has no logit .* torch.autograd"):
        gb.explain.pushes(model, {"f": np.ones((1, 2), np.float32)}, "r")
