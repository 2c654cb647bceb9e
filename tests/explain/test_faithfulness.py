"""Faithfulness: every formal result is a statement about the function ``predict`` computes,
checked here by running ``predict`` on random small models of every semantics, with and
without a residual network and a neural concept.

- a counterfactual applied to its row changes ``predict``;
- a reason survives 1,000 sampled completions of the inputs it does not name;
- a property ``verify`` proves is never contradicted by sampled rows; a counterexample it
  returns is one ``predict`` agrees with;
- ``predict_proba``'s most probable value is ``predict``'s decision;
- the debugger's fixed/broken diff of a rule edit is the difference of two ``predict``
  calls (the model before, and the model with the edited rules).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb

SEMANTICS = ["probabilistic", "product", "godel", "lukasiewicz"]
ENUM = ["a", "b", "c"]


def _model(seed: int, semantics: str, *, residual: bool, neural: bool, output: str):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t = [round(float(v), 2) for v in rng.uniform(1, 9, 6)]
    w = [round(float(v), 2) for v in rng.uniform(0.5, 3, 6)]
    lines = ["input x: real[0, 10]", "input y: real", "input k: int 0..5",
             f"input c: {{{', '.join(ENUM)}}}"]
    if neural:
        lines.append("neural z: bool = znet(x, y)")
    if output == "bool":
        lines.append("output out: bool")
        heads = ["out", "not out", "out", "not out", "out", "not out"]
    else:
        lines.append("output out: {lo, mid, hi}")
        heads = ["out = hi", "out = lo", "out = mid", "out = lo", "out = hi", "out = mid"]
    bodies = [f"x > ~{t[0]}", f"x < ~{t[1]} and k >= 2", f"y > ~{t[2]} or c == b",
              f"k < 3 and y < ~{t[3]}", "z" if neural else f"c == a and x > ~{t[4]}",
              f"x + y > ~{t[5] * 2}"]
    for i, (b, h) in enumerate(zip(bodies, heads)):
        lines.append(f"rule r{i} weight {w[i]}: {b} -> {h}")
    networks = {}
    if neural:
        networks["znet"] = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    res = None
    if residual:
        n_out = 1 if output == "bool" else 3
        res = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, n_out))
    model = gb.GreyBox("\n".join(lines), networks, semantics=semantics, residual=res)
    model.calibrate(_rows(rng, 200))
    with torch.no_grad():   # as if trained: thresholds and biases moved off the rule file
        for name, p in model.named_parameters():
            if ".thresholds." in name:
                p.add_(float(rng.normal(0, 0.3)))
            elif name.startswith("decisions."):
                p.add_(torch.as_tensor(rng.normal(0, 0.5, tuple(p.shape)), dtype=p.dtype))
    return model


def _rows(rng, n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.round(rng.uniform(0, 10, n), 2),
                         "y": np.round(rng.uniform(-2, 12, n), 2),
                         "k": rng.integers(0, 6, n),
                         "c": pd.Categorical(rng.choice(ENUM, n), categories=ENUM)})


CASES = [(seed, sem, residual, neural, out)
         for seed, (sem, residual, neural, out) in enumerate(
             (s, r, nn_, o) for s in SEMANTICS for r in (False, True) for nn_ in (False, True)
             for o in ("bool", "enum"))
         if seed % 2 == 0 or (residual and neural)]


def _apply(row: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    new = row.copy()
    for c in changes.itertuples():
        if c.fact == "c":
            new[c.fact] = pd.Categorical([c.after], categories=ENUM)
        else:
            new[c.fact] = c.after
    return new


@pytest.mark.parametrize("seed,semantics,residual,neural,output", CASES)
def test_counterfactuals_and_reasons_are_statements_about_predict(seed, semantics, residual,
                                                                   neural, output):
    model = _model(seed, semantics, residual=residual, neural=neural, output=output)
    rng = np.random.default_rng(1000 + seed)
    data = _rows(rng, 3)
    pred = model.predict(data)["out"]
    proba = model.predict_proba(data)
    assert list(proba.idxmax(axis=1)) == list(pred)
    for i in range(len(data)):
        row = data.iloc[[i]]
        decision = pred.iloc[i]
        try:
            cf = gb.explain.counterfactual(model, row)
        except gb.ModelError as err:
            assert "no change" in str(err)
        else:
            assert cf.verified
            assert cf.level == ("input" if residual or neural else "concept")
            assert model.predict(_apply(row, cf.changes))["out"].iloc[0] != decision
        r = gb.explain.reason(model, row)
        assert r.verified and r.decision == decision
        samples = _rows(rng, 1000)
        for name, value in r.facts.items():
            samples[name] = pd.Categorical([value] * len(samples), categories=ENUM) \
                if name == "c" else value
        assert (model.predict(samples)["out"] == decision).all(), (r, samples)


@pytest.mark.parametrize("seed,semantics,residual,neural,output",
                         [c for c in CASES if c[4] == "bool"][:6])
def test_verify_is_never_contradicted_by_predict(seed, semantics, residual, neural, output):
    model = _model(seed, semantics, residual=residual, neural=neural, output=output)
    rng = np.random.default_rng(2000 + seed)
    samples = _rows(rng, 1000)
    for prop in ("x > 9.5 -> out", "k < 1 and x < 1 -> not out"):
        result = gb.explain.verify(model, prop, level="input")
        pred = model.predict(samples)["out"].to_numpy()
        if prop.startswith("x > 9.5"):
            violated = (samples.x > 9.5).to_numpy() & ~pred
        else:
            violated = ((samples.k < 1) & (samples.x < 1)).to_numpy() & pred
        if result.holds:
            assert not violated.any(), prop
        else:
            assert result.confirmed, prop
            cx = result.counterexample[["x", "y", "k", "c"]].copy()
            cx["c"] = pd.Categorical(cx["c"].astype(str), categories=ENUM)
            got = model.predict(cx)["out"].iloc[0]
            assert bool(got) == (not prop.startswith("x")), (prop, cx)


@pytest.mark.parametrize("seed,semantics,residual,neural,output", CASES[::3])
def test_the_debuggers_diff_is_the_difference_of_two_predict_calls(seed, semantics, residual,
                                                                  neural, output):
    model = _model(seed, semantics, residual=residual, neural=neural, output=output)
    rng = np.random.default_rng(3000 + seed)
    data = _rows(rng, 300)
    before = model.predict(data)["out"]
    # targets: the model's own decisions with a quarter of them changed
    target = before.astype(str).to_numpy().copy()
    flip = rng.random(len(data)) < 0.25
    options = ["False", "True"] if output == "bool" else ["lo", "mid", "hi"]
    target[flip] = rng.choice(options, int(flip.sum()))
    target = (target == "True") if output == "bool" else target
    dbg = gb.explain.Debugger(model, data, target)
    edit = gb.explain.SetWeight("r0", 0.0)
    diff = dbg.what_if(edit)
    edited = model.replace(kb=gb.rules.KnowledgeBase(edit.apply(list(model.to_kb().statements))))
    after = edited.predict(data)["out"]
    right_before = before.to_numpy() == target
    right_after = after.to_numpy() == target
    assert set(diff.fixed.index) == set(data.index[~right_before & right_after])
    assert set(diff.broken.index) == set(data.index[right_before & ~right_after])
    assert diff.changed == int((before.to_numpy() != after.to_numpy()).sum())


def test_a_row_only_the_residual_decides_is_named_by_its_label_with_the_reason():
    kb = """
    input x: real
    input y: real[0, 10]
    output out: bool
    rule r weight 1: x > ~5 -> out
    """
    residual = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        residual[2].bias.fill_(50.0)          # the residual says True whatever the inputs
    model = gb.GreyBox(kb, semantics="product", residual=residual)
    model.calibrate(pd.DataFrame({"x": [0.0, 10.0, 3.5], "y": [1.0, 2.0, 9.0]}))
    row = pd.DataFrame({"x": [1.0], "y": [3.0]}, index=["patient-7"])
    assert model.predict(row)["out"].tolist() == [True]
    with pytest.raises(gb.ModelError, match=r"row 'patient-7'.*residual network alone "
                                            r"decides this"):
        gb.explain.counterfactual(model, row)
    r = gb.explain.reason(model, row)
    assert r.facts == {} and r.level == "input" and r.row == "patient-7"
    assert r.assumptions == ("for inputs within the training range (x in [0, 10])",)
    assert "training range" in str(r)


def test_counterfactual_values_are_rounded_to_the_datas_precision_on_the_decided_side():
    kb = """
    input radius: real
    output big: bool
    rule r weight 2: radius > ~16.5958 -> big
    """
    model = gb.GreyBox(kb, semantics="product", residual=nn.Sequential(
        nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)))
    with torch.no_grad():
        model.decisions["big"].bias.fill_(-1.0)
        model.residual["big"][2].weight.zero_()
        model.residual["big"][2].bias.zero_()
    rng = np.random.default_rng(0)
    model.calibrate(pd.DataFrame({"radius": np.round(rng.uniform(8, 28, 100), 2)}))
    row = pd.DataFrame({"radius": [14.27]})
    cf = gb.explain.counterfactual(model, row)
    (after,) = cf.changes["after"]
    assert cf.verified and after > 16.5958 and after == round(after, 2)
    assert after - 16.5958 < 0.02                       # the next value at 0.01 precision
    assert model.predict(pd.DataFrame({"radius": [after]}))["big"].tolist() == [True]


def test_verify_says_when_it_ranged_over_the_training_range():
    model = _model(1, "product", residual=True, neural=False, output="bool")
    result = gb.explain.verify(model, "x > 9.5 -> out")
    assert isinstance(result, gb.rules.Entailment)
    lo, hi, from_data = model.input_range("y")
    assert from_data
    assert result.assumptions == (f"for inputs within the training range (y in [{lo:.6g}, "
                                  f"{hi:.6g}])",)
    assert "training range" in str(result)


@pytest.mark.parametrize("name", sorted(gb.explain.formal.BACKENDS))
def test_every_backend_answers_the_protocol(name):
    """One conformance test for the backends of greybox.explain.formal.BACKENDS, on a
    model whose answers are known: out = (x > 5) or flag, through a residual of zeros."""
    backend = gb.explain.formal.BACKENDS[name]
    res = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        for p in res.parameters():
            p.zero_()
    model = gb.GreyBox("""
        input x: real[0, 10]
        input y: real[0, 10]
        input flag: bool
        output out: bool
        rule big weight 2: x > 5 -> out
        rule flagged weight 2: flag -> out
    """, semantics="product", residual=res)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(-1.0)
    row = pd.DataFrame({"x": [2.0], "y": [7.0], "flag": [False]})
    batch = model.batch(row)
    p = backend.problem(model, batch, 0, "out", level="input", max_relus=64, timeout=20.0)
    assert p.decision is False and set(p.facts) == {"x", "y", "flag"}
    assert p.differs(dict(p.facts)) is None                  # all facts held: no change
    assert p.differs({"x": 2.0, "flag": False}) is None      # y does not matter
    witness = p.differs({"x": 2.0, "y": 7.0})                # flag free: flag = True flips
    assert witness is not None and witness["flag"] is True
    assert model.predict(pd.DataFrame({k: [witness[k]] for k in ("x", "y", "flag")}))[
        "out"].tolist() == [True]
    after = p.closest(minimize="count", immutable=(), spreads={"x": 1.0, "y": 1.0})
    assert after is not None and sum(after[k] != p.facts[k] for k in p.facts) == 1
    kb = model.to_kb()
    holds, _ = backend.refute(model, gb.rules.parse_formula("x > 6 -> out", kb),
                              level="input", max_relus=64, timeout=20.0)
    assert holds is None
    cx, _ = backend.refute(model, gb.rules.parse_formula("out", kb), level="input",
                           max_relus=64, timeout=20.0)
    assert cx is not None
    assert model.predict(cx[["x", "y", "flag"]])["out"].tolist() == [False]


# --------------------------------------------- regressions found by review (each failed)


def _tied_model(seed: int, semantics: str):
    """Two outputs tied by a hard constraint, a bool input, an int output, a residual."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t = [round(float(v), 2) for v in rng.uniform(2, 8, 3)]
    kb = f"""
    input x: real[0, 10]
    input y: real
    input flag: bool
    output out: bool
    output level: int 0..3
    rule a weight 1.5: x > ~{t[0]} -> out
    rule b weight 1.0: flag and y < ~{t[1]} -> not out
    rule c weight 2.0: x < ~{t[2]} -> level = 2
    rule d weight 1.0: flag -> level = 3
    constraint tie: out -> level >= 2
    """
    res = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    model = gb.GreyBox(kb, semantics=semantics, residual={"out": res})
    data = pd.DataFrame({"x": rng.uniform(0, 10, 50).round(2), "y": rng.uniform(-2, 12, 50).round(2),
                         "flag": rng.random(50) < 0.5})
    model.calibrate(data)
    return model, data


@pytest.mark.parametrize("seed,semantics", [(0, "product"), (1, "probabilistic"), (2, "godel")])
def test_outputs_tied_by_hard_constraints_are_faithful(seed, semantics):
    model, data = _tied_model(seed, semantics)
    pred = model.predict(data)
    for name in ("out", "level"):
        proba = model.predict_proba(data, name)
        assert list(proba.idxmax(axis=1)) == list(pred[name]), name
    rng = np.random.default_rng(seed)
    for i in range(3):
        row = data.iloc[[i]]
        for name in ("out", "level"):
            r = gb.explain.reason(model, row, output=name)
            samples = pd.DataFrame({"x": rng.uniform(0, 10, 500), "y": rng.uniform(-2, 12, 500),
                                    "flag": rng.random(500) < 0.5})
            for fact, value in r.facts.items():
                samples[fact] = value
            assert (model.predict(samples)[name] == r.decision).all(), (name, r)
            try:
                cf = gb.explain.counterfactual(model, row, output=name)
            except gb.ModelError as err:
                assert "no change" in str(err)
            else:
                new = row.copy()
                for c in cf.changes.itertuples():
                    new[c.fact] = c.after
                assert model.predict(new)[name].iloc[0] != pred[name].iloc[i]


def test_predict_proba_agrees_with_predict_when_a_constraint_forces_the_decision():
    model = gb.GreyBox("""
        input age: int 0..120
        input income: real[0, 100000]
        output approve: bool
        rule earns: income > 30000 -> approve
        constraint minors: age < 18 -> not approve
    """, semantics="product")
    d = pd.DataFrame({"age": [40, 40, 15], "income": [20000.0, 50000.0, 50000.0]})
    assert model.predict(d)["approve"].tolist() == [False, True, False]
    proba = model.predict_proba(d)
    assert proba[True].round(4).tolist() == [0.5, 0.7311, 0.0]


def test_reasons_and_proofs_follow_predicts_repair_of_network_values():
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net[2].bias.fill_(5.0)                 # the network always says z = True
    model = gb.GreyBox("""
        input x: real[0, 10]
        input y: real[0, 10]
        neural z: bool = znet(x)
        output out: bool
        rule r weight 1: x < 5 -> out
        rule s weight 3: y > 5 -> not out
        constraint zx: z -> x > 5
    """, {"znet": net}, semantics="product")
    with torch.no_grad():
        model.decisions["out"].bias.fill_(-0.5)
    row = pd.DataFrame({"x": [1.0], "y": [1.0]}, index=["p7"])
    r = gb.explain.reason(model, row)
    assert r.level == "concept" and "y" in r.facts     # predict(x=1, y=9) is False
    assert model.predict(pd.DataFrame({"x": [1.0], "y": [9.0]}))["out"].tolist() == [False]
    result = gb.explain.verify(model, "x < 1.5 -> out")
    assert not result.holds and result.confirmed
    with pytest.raises(gb.ModelError, match="repairs network values"):
        gb.explain.reason(model, row, level="input")


def test_proofs_near_a_threshold_are_not_missed_by_the_programs_margins():
    res = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        for p in res.parameters():
            p.zero_()
    model = gb.GreyBox("input x: real[0, 10]\noutput out: bool\n"
                       "rule r weight 1: x > 5 -> not out", semantics="product", residual=res)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(0.5)
    for backend in ("milp", "z3"):
        v = gb.explain.verify(model, "x > 4.9999 -> not out", backend=backend)
        assert not v.holds and v.confirmed, backend   # x = 5 breaks it
    res2 = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        for p in res2.parameters():
            p.zero_()
    model = gb.GreyBox("""
        input x: real[0, 10]
        input y: real[0, 10]
        output out: bool
        rule r weight 2: x > 4.9999 and x <= 5 -> out
        rule s weight 1: y > 5 -> out
    """, semantics="product", residual=res2)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(-1.5)
    row = pd.DataFrame({"x": [6.0], "y": [1.0]})
    r = gb.explain.reason(model, row, backend="milp")
    assert r.decision is False and r.facts == {"x": 6.0}     # x in (4.9999, 5] would flip it
    assert model.predict(pd.DataFrame({"x": [5.0], "y": [1.0]}))["out"].tolist() == [True]


def test_a_counterexample_exactly_on_a_threshold_is_moved_to_one_that_replays():
    res = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        for p in res.parameters():
            p.zero_()
    model = gb.GreyBox("input x: real[0, 10]\ninput y: real\noutput out: bool\n"
                       "rule r weight 2: x + y > 2.4075398 -> out", semantics="product",
                       residual=res)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(-1.0)
    model.calibrate(pd.DataFrame({"x": [0.0, 10.0], "y": [-8.0, 12.0]}))
    for level, backend in (("input", "z3"), ("input", "milp"), ("concept", "z3")):
        v = gb.explain.verify(model, "x > 9.5 -> out", level=level, backend=backend)
        assert not v.holds and v.confirmed, (level, backend)
        cx = v.counterexample[["x", "y"]]
        assert not model.predict(cx)["out"].iloc[0] and cx["x"].iloc[0] > 9.5


def test_a_counterfactual_that_predict_does_not_confirm_is_refused():
    res = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        res[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        res[0].bias.fill_(0.0)
        res[2].weight.fill_(-400.0)
        res[2].bias.fill_(0.0)
    model = gb.GreyBox("input x: real[0, 10]\ninput age: real[0, 100]\noutput out: bool\n"
                       "rule r weight 2: x > 5 -> out\nrule q weight 3: age > 60 -> out",
                       semantics="product", residual=res)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(-1.0)
    row = pd.DataFrame({"x": [2.0], "age": [30.0]})
    with pytest.raises(gb.ModelError, match="does not change the decision.*level='input'"):
        gb.explain.counterfactual(model, row, level="concept", immutable="age")
    cf = gb.explain.counterfactual(model, row, immutable="age")   # a string is one name
    assert list(cf.changes.fact) != ["age"]


def test_rows_are_taken_by_their_index_label():
    model = _model(3, "product", residual=True, neural=False, output="bool")
    data = _rows(np.random.default_rng(5), 3)
    data.index = ["p5", "p6", "p7"]
    r = gb.explain.reason(model, data, "p7")
    assert r.row == "p7" and r.decision == model.predict(data)["out"].loc["p7"]
    assert gb.explain.reason(model, data).row == "p5"           # default: the first row
    with pytest.raises(gb.ModelError, match=r"row 2 is not a row label of the data; .*'p5'"):
        gb.explain.counterfactual(model, data, 2)
    ex = gb.explain.explain(model, data, parameters=False)
    assert ex.reason("p6").row == "p6" and ex.row_text("p6").startswith("row p6:")


@pytest.mark.parametrize("row", [(0.1, 0.2, 0.3), (0.3, 0.2, 0.1), (0.2, 0.2, 0.2),
                                 (0.1, 0.1, 0.4)])
def test_a_counterfactual_exists_for_a_sum_exactly_on_a_decimal_threshold(row):
    """Red-team item 5: 0.1 + 0.2 + 0.3 > 0.6 holds in floats and exactly (the binary
    fractions sum a hair above 0.6), so the closest change is smaller than the solver's
    noise bound and rounded back to the row's value: the counterfactual came out empty
    ("the solver's counterfactual () does not change the decision"). A needed change is
    kept on its side of the row's value, then rounded to a person's precision."""
    model = gb.GreyBox("set p: 0..2\ninput v[p]: real[0, 1]\noutput y: bool\n"
                       "rule r weight 1 fixed: sum(v[i] for i in p) > 0.6 -> y\n"
                       "rule s weight 0.5 fixed: true -> not y\n")
    data = pd.DataFrame([row], columns=["v[0]", "v[1]", "v[2]"])
    assert model.predict(data)["y"].tolist() == [True]
    cf = gb.explain.counterfactual(model, data)
    assert cf.verified and cf.new_decision is False and len(cf.changes) == 1
    (change,) = cf.changes.itertuples()
    assert change.after < change.before and change.after == round(change.after, 3)
    assert model.predict(cf.row_after)["y"].tolist() == [False]


class _Fixed(nn.Module):
    """A 'network' whose logits are its input tensor (so the row's tensors decide)."""

    def forward(self, x):
        return x


RELATIONAL_NEURAL = """\
set person
input f(person, person): bool
input v(person): real[0, 10]
input img(person): tensor[3]
neural k(person): int 0..2 = knet(img(person))
output c(person): bool
rule r(p in person, q in person) weight 0.5: p != q and f(p, q) and v(p) > ~5 -> c(q)
rule kk(p in person): k(p) == 2 -> c(p)
constraint cc(p in person): v(p) > 9.5 -> not c(p)
"""


def _relational_neural():
    model = gb.GreyBox(gb.rules.parse(RELATIONAL_NEURAL, sets={"person": ["a", "b", "c"]}),
                       {"knet": _Fixed()}, semantics="lukasiewicz")
    img = np.zeros((1, 3, 3), np.float32)
    img[0, :, 0] = 1.0                      # every k(p) = 0
    data = {"f": np.zeros((1, 3, 3), bool), "v": np.array([[6.0, 2.0, 3.0]]), "img": img}
    return model, data


def test_a_counterfactuals_row_after_goes_into_predict_on_a_model_with_tensor_inputs():
    """Red-team item 17: row_after held the facts (no tensors, neural values), so predict
    refused it (missing input 'img(a)'). It now holds every input as predict reads it (the
    row's tensors kept); a changed neural concept is held by cf.batch(model), which
    overrides its network's output -- what `verified` runs."""
    model, data = _relational_neural()
    assert model.predict(data)["c(b)"].tolist() == [False]
    cf = gb.explain.counterfactual(model, data, output="c(b)")
    assert cf.verified and cf.new_decision is True
    assert model.predict(cf.row_after)["c(b)"].tolist() == [True]       # inputs changed
    assert model.predict(cf.batch(model))["c(b)"].tolist() == [True]
    assert set(cf.row_after) == set(model.kb.inputs)
    assert tuple(cf.row_after["img(a)"].shape) == (1, 3)
    # with every table input held, only a neural concept can change: predict on the
    # inputs alone runs the network again (the row's decision), cf.batch holds it
    tables = [n for n in model.kb.inputs if not n.startswith("img")]
    cf = gb.explain.counterfactual(model, data, output="c(b)", immutable=tables)
    assert list(cf.changes.fact) == ["k(b)"] and cf.changes.after.tolist() == [2]
    assert cf.concepts_after["k(b)"] == 2 and cf.concepts_after["k(a)"] == 0
    assert model.predict(cf.row_after)["c(b)"].tolist() == [False]
    assert model.predict(cf.batch(model))["c(b)"].tolist() == [True]


def test_counterfactuals_are_the_same_on_every_call_and_after_save_and_load(tmp_path):
    """Red-team item 18: repeated calls returned different (valid) single changes. The
    single changes are tried fact by fact, the closest winning and ties going to the
    earlier fact, so every call -- and a saved and loaded copy -- gives the same one."""
    model, data = _relational_neural()
    data["f"][0, 0, 2] = True                  # f(a, c): v(a) > 5 pushes c(c)
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt", networks={"knet": _Fixed()})
    for output in ("c(a)", "c(b)", "c(c)"):
        seen = {str(gb.explain.counterfactual(m, data, output=output))
                for m in (model, loaded, model, loaded, model)}
        assert len(seen) == 1, seen


def _far_row_model():
    """``out`` unless ``b > 8`` or ``a < -2``, through a small bounded ReLU residual
    (``0.5 * (relu(fa) - relu(fa - 1))`` of the standardised ``a``); ``a`` declared without
    bounds and calibrated on [-2.33, 2]."""
    res = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        res[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        res[0].bias.copy_(torch.tensor([0.0, -1.0]))
        res[2].weight.copy_(torch.tensor([[0.5, -0.5]]))
        res[2].bias.fill_(0.0)
    model = gb.GreyBox("""
        input a: real
        input b: real
        output out: bool
        rule r weight 2: b > 8 -> not out
        rule s weight 2: a < -2 -> not out
    """, semantics="product", residual=res)
    with torch.no_grad():
        model.decisions["out"].bias.fill_(1.0)
    model.calibrate(pd.DataFrame({"a": [-2.33, 2.0, 0.5, -1.0], "b": [0.0, 10.0, 4.0, 6.0]}))
    return model


@pytest.mark.parametrize("backend", ["milp", "auto", "z3"])
@pytest.mark.parametrize("a,immutable,minimize,fact", [
    (50.0, "b", "count", "a"), (1e6, "b", "count", "a"), (50.0, "b", "l1", "a"),
    (1e6, "b", "l1", "a"), (50.0, "a", "count", "b"), (1e6, "a", "l1", "b"),
    (-50.0, "b", "count", "a"), (-1e6, "b", "l1", "a"), (3.0, "a", "count", "b")])
def test_a_row_far_outside_the_training_range_has_its_counterfactual(backend, a, immutable,
                                                                      minimize, fact):
    """Issue 26, finding 1: the MILP ranged every input declared without bounds over its
    training range alone -- the row's own value (a = 50, 1e6) included: its distance
    variable was bounded by the range's width, the ReLUs' big-Ms were derived from the
    range, and pinning an immutable input at its row value left the range. The program
    was infeasible, and "no change ... changes the decision" was answered although
    predict flips at a = -2.1, inside the range (or at b = 8.01, a held). An input now
    ranges over its range and its row value."""
    model = _far_row_model()
    row = pd.DataFrame({"a": [a], "b": [5.0]}, index=["far"])
    before = model.predict(row)["out"].iloc[0]
    assert before == (a >= -2)
    cf = gb.explain.counterfactual(model, row, backend=backend, immutable=immutable,
                                   minimize=minimize)
    assert cf.verified and list(cf.changes.fact) == [fact]
    assert model.predict(cf.row_after)["out"].iloc[0] != before
    (after,) = cf.changes.after
    if backend != "z3":       # the program's answer lies within the training range
        lo, hi, _ = model.input_range(fact)
        assert lo <= after <= hi and cf.assumptions


@pytest.mark.parametrize("a", [50.0, 1e6])
def test_a_reason_for_a_row_far_outside_the_training_range_survives_predict(a):
    """A reason holding ``a`` at its row value far outside the range (the program pinned
    it outside the variable's bounds, so nothing seemed to differ -- sampling through
    predict caught the reasons that then came out too short): it must survive
    completions of the other inputs through predict, and a reason leaving ``a`` free must
    survive ``a`` across the training range."""
    model = _far_row_model()
    backend = gb.explain.formal.BACKENDS["milp"]
    p = backend.problem(model, model.batch(pd.DataFrame({"a": [a], "b": [5.0]})), 0, "out",
                        level="input", max_relus=64, timeout=20.0)
    witness = p.differs({"a": a})     # a held far out: b > 8 flips (it said nothing does)
    assert witness is not None and witness["a"] == a and witness["b"] > 8
    for b in (5.0, 9.0):
        row = pd.DataFrame({"a": [a], "b": [b]})
        decision = model.predict(row)["out"].iloc[0]
        r = gb.explain.reason(model, row, backend="milp")
        assert r.verified and r.decision == decision
        samples = pd.DataFrame({"a": np.r_[np.linspace(-2.33, 2.0, 50), a],
                                "b": np.r_[np.linspace(0.0, 10.0, 50), b]})
        for name, value in r.facts.items():
            samples[name] = value
        assert (model.predict(samples)["out"] == decision).all(), (a, b, r)


def test_a_network_changed_in_place_is_encoded_again():
    """The Z3 background of a model is kept between calls: a concept network whose weights
    change in place (edited, trained further) must be encoded anew, or input-level
    answers describe the old network (the counterfactual was refused by predict)."""
    import pandas as pd

    folder = Path(__file__).resolve().parents[1] / "data" / "checkpoints_v2"
    model = gb.load(folder / "neural.pt")
    rows = pd.read_csv(folder / "neural.csv")[["a", "b"]].head(1)
    before = gb.explain.counterfactual(model, rows, 0, "ok", backend="z3", level="input")
    with torch.no_grad():
        for p in model.networks["grade"].parameters():
            p.mul_(-1.0)
    after = gb.explain.counterfactual(model, rows, 0, "ok", backend="z3", level="input")
    assert after.new_decision != before.new_decision   # the network now decides otherwise
    assert model.predict(after.row_after)["ok"].iloc[0] == after.new_decision
