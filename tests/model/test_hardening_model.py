"""Hardening of the model and its training (issue 11, items 1 and 3): weight decay pulls
rule weights and thresholds toward the rules' values, not toward 0; networks get inputs in
their own dtype, and an error inside a network names the network, its variables and the
input shape."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from torch import nn

import greybox as gb
from tests.conftest import EXAMPLES

DIGIT = """
input img: tensor[64]
neural d: int 0..9 = digit(img)
output s: int 0..9
define s: int 0..9 = d
"""


def test_weight_decay_keeps_learned_thresholds_near_the_rules_in_the_tutorial():
    # the breast-cancer tutorial's settings: 10 labels, weight_decay=1e-3, 20 epochs
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:300], (data.target == 0).to_numpy()[:300]
    labels = np.full(len(y), np.nan)
    chosen = np.r_[np.flatnonzero(y)[:4], np.flatnonzero(~y)[:6]]
    labels[chosen] = y[chosen]
    model = gb.GreyBox(gb.rules.load(EXAMPLES / "breast_cancer.rules"), semantics="product")
    model.fit(X, {"malignant": labels}, epochs=20, lr=0.01, weight_decay=1e-3, progress=False)
    area = X["worst area"]
    for rule, written in (("large_irregular", 880), ("small_smooth", 700)):
        threshold = model.rules[rule].thresholds[0].item()     # `worst area` > ~880 ...
        assert area.min() < threshold < area.max(), (rule, threshold)   # was 51.2 and 10.8
        assert abs(threshold - written) < area.std()


def test_strong_weight_decay_pulls_toward_the_rules_values_not_zero():
    x = np.linspace(400.0, 600.0, 64)
    model = gb.GreyBox("input x: real  output y: bool  rule r weight 2: x > ~500 -> y",
                       semantics="product")
    model.fit({"x": x}, {"y": x > 450}, epochs=30, lr=0.05, weight_decay=10.0,
              progress=False)
    assert abs(model.rules["r"].thresholds[0].item() - 500) < 10    # not toward 0 or 450
    assert abs(model.rules["r"].weight.item() - 2) < 0.5              # not toward 0


def test_parameter_groups_exempt_rule_parameters_from_the_optimisers_decay():
    model = gb.GreyBox("input x: real[0, 40]  output y: bool  "
                       "rule r weight 2: x > ~20 -> y  rule f fixed: x < 5 -> not y",
                       semantics="product", residual=nn.Linear(1, 1))
    groups = model.parameter_groups(0.1)
    decayed = {id(p) for g in groups if "weight_decay" not in g for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[i] for i in decayed) == ["decisions.y.bias", "residual.y.bias",
                                                 "residual.y.weight"]
    assert [(names[id(p)], prior, scale) for p, prior, scale in model.prior_terms()] == [
        ("rules.r.weight", 2.0, 1.0), ("rules.r.thresholds.0", 20.0, 10.0)]
    threshold = next(g for g in groups if g["params"][0] is model.rules["r"].thresholds[0])
    assert threshold == {"params": [model.rules["r"].thresholds[0]], "lr": 1.0,
                         "weight_decay": 0.0}
    with torch.no_grad():
        model.rules["r"].weight.fill_(3.0)
        model.rules["r"].thresholds[0].fill_(40.0)
    assert model.prior_penalty(0.5).item() == pytest.approx(0.25 * (1 + 4))


@pytest.fixture
def digits64():
    return load_digits().data[:6] / 16          # float64, as scikit-learn gives it


@pytest.mark.parametrize("wrap", [np.asarray, torch.tensor], ids=["array", "tensor"])
def test_float64_tensor_inputs_meet_a_float32_network(digits64, wrap):
    torch.manual_seed(0)
    net = nn.Linear(64, 10)
    model = gb.GreyBox(DIGIT, {"digit": net})
    got = model.predict({"img": wrap(digits64)})["s"].tolist()
    want = net(torch.tensor(digits64, dtype=torch.float32)).argmax(1).tolist()
    assert got == want
    model.fit({"img": wrap(digits64)}, {"s": [0, 1, 2, 3, 4, 5]}, epochs=1, progress=False)


def test_a_float64_network_gets_float64_inputs(digits64):
    torch.manual_seed(0)
    model = gb.GreyBox(DIGIT, {"digit": nn.Linear(64, 10).double()})
    trace = model({"img": torch.tensor(digits64, dtype=torch.float32)})
    assert trace.logits["d"].dtype == torch.float64


def test_a_network_whose_input_size_does_not_fit_is_named(digits64):
    model = gb.GreyBox(gb.rules.load(EXAMPLES / "addition.rules"),
                       {"digit": nn.Linear(60, 10)})
    with pytest.raises(gb.ModelError, match=r"network 'digit' \(for 'd1', 'd2', their inputs "
                       r"stacked in one call\) failed on its input of shape \[12, 64\]: "
                       r"RuntimeError: mat1 and mat2 shapes cannot be multiplied") as info:
        images = digits64.astype(np.float32)
        model.predict({"img1": images, "img2": images})
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_table_network_error_names_its_variable(credit):
    model = gb.GreyBox(credit, {"applicant_net": nn.Linear(4, 1)}, semantics="product")
    data = {"age": [30, 40], "income": [1e4, 9e4], "debt_ratio": [0.9, 0.1],
            "employment": ["employed", "retired"], "years at address": [1.0, 5.0]}
    with pytest.raises(gb.ModelError, match=r"network 'applicant_net' \(for '[a-z_]+'\) "
                       r"failed on its input of shape \[2, 3\]"):
        model(data)


def test_a_residual_whose_input_size_does_not_fit_is_named():
    model = gb.GreyBox("input x: real  input z: real  output y: bool  rule r: x > 1 -> y",
                       semantics="product", residual=nn.Linear(3, 1))
    with pytest.raises(gb.ModelError, match=r"the residual network for 'y' \(its input: the 2 "
                       r"standardised table inputs, model.feature_names\) failed on its input "
                       r"of shape \[2, 2\]"):
        model.predict({"x": [1.0, 2.0], "z": [0.0, 1.0]})


def test_a_mapping_of_single_values_is_one_row_and_a_lone_scalar_is_named():
    """A counterfactual's row_after (a dict of single values) goes straight into predict,
    as into greybox.rules.evaluate; a single value among columns is a DataError naming
    the input, not a raw TypeError."""
    import greybox as gb
    from greybox.errors import DataError

    model = gb.GreyBox("input x: real\ninput b: bool\noutput y: bool\n"
                       "rule r: x > 1 and b -> y\n", semantics="product")
    assert model.predict({"x": 2.0, "b": True})["y"].tolist() == [True]
    with pytest.raises(DataError, match="input 'b': expected one value per row"):
        model.predict({"x": [2.0, 0.0], "b": True})


# ---- red-team item 2: non-finite tensor inputs

FEATURE = """
set person
input feat(person): tensor[3]
neural k(person): int 0..2 = knet(feat(person))
output c(person): bool
rule q(p in person): k(p) == 0 -> c(p)
"""


@pytest.mark.parametrize("bad,what", [(np.nan, r"a missing value \(NaN\)"),
                                      (-np.inf, r"an infinite value \(-inf\)")])
def test_a_non_finite_tensor_input_is_named_with_its_row(bad, what):
    """NaN logits argmax to 0: a NaN feature used to decide c(a) = True and be explained
    as k(a) = 0 (verified). Now a DataError names the member, the row (by its label) and
    the entry, wherever the data enters: predict, fit, explanations."""
    import pandas as pd

    from greybox import rules as gr

    kb = gr.parse(FEATURE, sets={"person": ["a", "b"]})
    model = gb.GreyBox(kb, {"knet": nn.Linear(3, 3)})
    x = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)
    x[1, 0, 2] = bad
    message = rf"input 'feat\(a\)': {what} at row 1, entry \[2\]; tensor inputs must be finite"
    with pytest.raises(gb.DataError, match=message):
        model.predict({"feat": x})
    with pytest.raises(gb.DataError, match=message):
        model.predict({"feat": torch.from_numpy(x)})
    with pytest.raises(gb.DataError, match=message):
        model.fit({"feat": x}, {"c(a)": [True, False, True]}, epochs=1, progress=False)
    with pytest.raises(gb.DataError, match=r"input 'feat\(a\)': .* at row 0, entry \[2\]"):
        gb.explain.reason(model, {"feat": x[1:2]}, output="c(a)")
    labelled = pd.DataFrame({"img": list(x[:, 0])}, index=["u", "v", "w"])
    plain = gb.GreyBox("input img: tensor[3]\nneural d: bool = net(img)\noutput y: bool\n"
                       "rule r: d -> y", {"net": nn.Sequential(nn.Linear(3, 1),
                                                               nn.Flatten(0))})
    with pytest.raises(gb.DataError, match=rf"input 'img': {what} at row 'v', entry \[2\]"):
        plain.predict(labelled)
    assert len(plain.predict(labelled.drop(index="v"))) == 2


# the smooth traces compute integer arithmetic of observed inputs exactly (red team item 3):
# float32 rounds 1234567890 and 1234567891 alike, float64 does not
BIG = """set cell: 0..9
input x[cell]: int 0..9
output y: bool
rule big weight 1.0 fixed: sum(10^(9 - i) * x[i] for i in cell) >= 1234567891 -> y
"""
BIG_DEFINE = BIG.replace(
    "rule big weight 1.0 fixed: sum(10^(9 - i) * x[i] for i in cell) >= 1234567891 -> y",
    "define code: int 0..9999999999 = sum(10^(9 - i) * x[i] for i in cell)\n"
    "rule big weight 1.0 fixed: code >= 1234567891 -> y")
DIGITS = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 1]])


def _cols(kb):
    return kb.families["x"].split(DIGITS)


@pytest.mark.parametrize("rules", [BIG, BIG_DEFINE], ids=["sum", "define"])
@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz", "probabilistic"])
def test_the_smooth_trace_of_a_large_integer_sum_agrees_with_predict(rules, semantics):
    kb = gb.rules.parse(rules)
    model = gb.GreyBox(kb, semantics=semantics)
    cols = _cols(kb)
    assert model.predict(cols)["y"].tolist() == [False, True]
    trace = model(cols)
    assert trace.bodies["big"].tolist() == [0.0, 1.0]
    assert trace.bodies["big"].dtype == torch.float32     # the trace stays float32
    score = trace.scores["y"].detach()
    assert float(score[1] - score[0]) == pytest.approx(1.0)


def test_training_on_a_large_integer_sum_learns_what_predict_decides():
    kb = gb.rules.parse(BIG)
    model = gb.GreyBox(kb, semantics="product")
    cols = _cols(kb)
    model.fit(cols, {"y": [False, True]}, epochs=50)
    assert model.predict(cols)["y"].tolist() == [False, True]
    p = model(cols).values["y"].tolist()      # trained on the rows told apart
    assert p[0] < 0.5 < p[1]


def test_an_integer_input_beyond_float32s_exact_integers_is_compared_exactly():
    model = gb.GreyBox("input n: int 0..100000000\noutput y: bool\n"
                       "rule r weight 1.0 fixed: n >= 99999999 -> y\n")
    data = {"n": [99999998, 99999999]}
    assert model.predict(data)["y"].tolist() == [False, True]
    assert model(data).bodies["r"].tolist() == [0.0, 1.0]


def test_a_sum_beyond_float64s_exact_integers_is_read_from_predicts_evaluation():
    # the comparison reads observed inputs only: the smooth trace takes its truth from the
    # crisp evaluation of the batch (exact); from tensors alone it cannot, and refuses
    rules = BIG.replace("0..9\n", "0..15\n", 1).replace("10^(9 - i)", "10^(15 - i)")
    kb = gb.rules.parse(rules)
    model = gb.GreyBox(kb, semantics="product")
    cols = kb.families["x"].split(np.tile(DIGITS, (1, 2))[:, :16])
    want = model(cols, crisp=True).bodies["big"].tolist()   # predict's, exact
    assert model(cols).bodies["big"].tolist() == want
    batch = model.batch(cols)
    tensors = gb.Batch(dict(batch.values), batch.n, batch.index, {})
    with pytest.raises(gb.ModelError, match=r"rule 'big'.*about 1e\+16.*2\*\*53"):
        model(tensors)


@pytest.mark.parametrize("semantics", ["product", "probabilistic"])
def test_a_template_rules_coefficient_beyond_float32_is_exact_in_every_grounding(semantics):
    # 16777217 is 2**24 + 1: float32 rounds it to 2**24, and 16777217 * 1 - 16777216 to 0
    kb = gb.rules.parse("set p: 0..3\ninput a[p]: int 0..20\noutput y[p]: bool\n"
                        "rule r(q in p) weight 1.0 fixed: 16777217 * a[q] - 16777216 >= 1 "
                        "-> y[q]\n")
    cols = kb.families["a"].split(np.array([[0, 1, 1, 0]] * 2))
    model = gb.GreyBox(kb, semantics=semantics)
    trace = model(cols)
    assert model.predict(cols).iloc[0].tolist() == [False, True, True, False]
    assert [float(trace.bodies[r][0]) for r in trace.bodies] == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("a,logit", [(1e300, "inf"), (-1e300, "-inf"), (1e39, "inf")])
def test_an_input_that_overflows_the_residual_is_named_with_its_row_label(a, logit):
    """Issue 26, item 13: a finite input beyond float32 (a = 1e300) made the residual's
    logit infinite, and predict raised ``RuleError: bias of 'y' must be finite, got -inf
    at row 0`` -- about a bias the user never gave, at a position, not the row's label.
    The decision is not defined there (the float network says inf, the formal layer's
    exact arithmetic a finite number): a DataError names the input, its value and range,
    and the row by its label."""
    res = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        res[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        res[0].bias.fill_(0.0)
    model = gb.GreyBox("input a: real\ninput b: real\noutput y: bool\n"
                       "rule r weight 2: b > 8 -> y", semantics="product", residual=res)
    model.calibrate({"a": [-2.0, 2.0], "b": [0.0, 10.0]})
    frame = pd.DataFrame({"a": [0.5, a], "b": [5.0, 5.0]}, index=[3, 7])
    want = (rf"the residual network for 'y' overflowed at row 7 \(its logit is {logit}\): "
            rf"input 'a' = {re.escape(repr(a))} \(its training range \[-2, 2\]\) lies beyond")
    with pytest.raises(gb.DataError, match=want):
        model.predict(frame)
    with pytest.raises(gb.DataError, match=want):
        model.predict_proba(frame)
    assert model.predict(frame.iloc[:1])["y"].tolist() == [True]     # the other row decides


def test_a_residual_with_non_finite_weights_is_named_not_the_input():
    """The same logit from finite inputs and NaN weights is the model's fault: a
    ModelError naming the parameter, not a DataError blaming an input."""
    res = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        res[0].weight.fill_(float("nan"))
    model = gb.GreyBox("input a: real\ninput b: real\noutput y: bool\n"
                       "rule r weight 2: b > 8 -> y", semantics="product", residual=res)
    model.calibrate({"a": [-2.0, 2.0], "b": [0.0, 10.0]})
    with pytest.raises(gb.ModelError, match=r"residual network for 'y' has non-finite "
                                            r"weights \('0.weight'\): its logit at row 'r1'"):
        model.predict(pd.DataFrame({"a": [0.5], "b": [5.0]}, index=["r1"]))


# ----------------------------------------------------- names as module-dict keys (issue 26)

NAMED = {
    "rule": ("input x: real[0, 1]\noutput y: bool\nrule {n}: x > ~0.5 -> y\n"
             "rule other weight 0.5: x < 0.2 -> not y", None),
    "output": ("input x: real[0, 1]\noutput {n}: bool\nrule r: x > ~0.5 -> {n}", None),
    "constraint": ("input x: real[0, 1]\noutput y: bool\nrule r: x > 0.5 -> y\n"
                   "constraint {n}: x > ~0.8 -> y", None),
    "network": ("input x: real[0, 1]\nneural c: bool = {n}(x)\noutput y: bool\n"
                "rule r: c -> y", "network"),
    "residual": ("input x: real[0, 1]\noutput {n}: bool\nrule r: x > ~0.5 -> {n}",
                 "residual"),
}


@pytest.mark.parametrize("kind", list(NAMED))
@pytest.mark.parametrize("name", ["keys", "training", "forward", "_modules", "items",
                                  "_parameters", "T_destination"])
def test_names_of_module_dict_attributes_are_ordinary_names(kind, name, tmp_path):
    """A rule, output, constraint, network or residual named like an attribute of
    ``nn.ModuleDict`` was a raw ``KeyError: "attribute 'keys' already exists"``."""
    import greybox.rules as gr

    text, extra = NAMED[kind]
    text = text.format(n=f"`{name}`" if name.startswith("_") else name)
    torch.manual_seed(0)
    networks = {name: nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())} \
        if extra == "network" else None
    residual = nn.Linear(1, 1) if extra == "residual" else None
    model = gb.GreyBox(text, networks, semantics="product", residual=residual)
    data = {"x": [0.1, 0.3, 0.6, 0.9]}
    predicted = model.predict(data)
    if extra is None:
        ev = gr.evaluate(model.to_kb(), data, bias=model.bias_table())
        for out in model.kb.outputs:
            assert list(predicted[out]) == list(ev.decisions[out])
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt")
    assert loaded.predict(data).equals(predicted)
    assert list(loaded.state_dict()) == list(model.state_dict())


def test_dotted_names_and_one_dot_leaders_get_their_own_parameters(tmp_path):
    """`a.b` and `a\u2024b` (U+2024, what a dot became in a parameter's name)
    shared one parameter -- the second rule's written weight and threshold were lost --
    and predict disagreed with the rules' own evaluation; the same for output families
    ``y.z`` and ``y\u2024z`` and their biases."""
    import greybox.rules as gr

    text = ("input x: real[0, 1]\noutput y: bool\n"
            "rule `a.b`: x > ~0.5 -> y\n"
            "rule `a\u2024b` weight 3: x > ~0.2 -> not y\n"
            "rule `a\u2025b` weight 0.5: x > ~0.9 -> y\n")
    kb = gr.parse(text)
    model = gb.GreyBox(kb, semantics="product")
    weights = [n for n, _ in model.named_parameters() if n.endswith(".weight")]
    assert len(weights) == 3
    data = {"x": [i / 20 for i in range(21)]}
    assert list(model.predict(data)["y"]) == list(gr.evaluate(kb, data).decisions["y"])
    assert model.to_kb() == kb
    model.save(tmp_path / "m.pt")
    assert gb.load(tmp_path / "m.pt").to_kb() == kb

    families = gb.GreyBox("set p: {a, b}\ninput x(p): real[0, 1]\n"
                          "output `y.z`(p): bool\noutput `y\u2024z`(p): bool\n"
                          "rule r(q in p): x(q) > 0.5 -> `y.z`(q)\n"
                          "rule s(q in p): x(q) > 0.5 -> `y\u2024z`(q)\n", semantics="product")
    biases = [n for n, _ in families.named_parameters() if n.startswith("decisions.")]
    assert len(biases) == 2


@pytest.mark.parametrize("name", ["`a.b`", "`a\u2024b`"])
def test_a_residual_for_an_output_with_a_dotted_name_loads(name, tmp_path):
    model = gb.GreyBox(f"input x: real[0, 1]\noutput {name}: bool\nrule r: x > ~0.5 -> {name}",
                       semantics="product", residual=nn.Linear(1, 1))
    model.save(tmp_path / "m.pt")
    data = {"x": [0.1, 0.6]}
    assert gb.load(tmp_path / "m.pt").predict(data).equals(model.predict(data))
