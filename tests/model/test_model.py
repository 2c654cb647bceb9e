"""The GreyBox module: construction, parameters, data checks, crisp exactness, constraints."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox import functional as F
from greybox.semantics import REGISTRY

FUZZY = ["product", "godel", "lukasiewicz"]
SEMANTICS = ["probabilistic", *FUZZY]


@pytest.fixture
def credit_data():
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame({
        "age": rng.integers(10, 90, n),
        "income": rng.uniform(0, 100000, n),
        "debt_ratio": rng.uniform(0, 2, n),
        "employment": rng.choice(["employed", "self_employed", "unemployed", "retired"], n),
        "years at address": rng.uniform(0, 20, n),
    })


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


@pytest.fixture
def credit_model(credit):
    def make(semantics="probabilistic", residual=None):
        # a fresh network over raw incomes (up to 100,000) asks for standardised inputs
        return gb.GreyBox(credit, {"applicant_net": _net()}, semantics=semantics,
                          residual=residual, scale_inputs=True)
    return make


# ------------------------------------------------------------------------ construction


def test_parameters_are_named_after_rules_and_decisions(credit_model):
    names = [n for n, _ in credit_model().named_parameters()]
    assert "rules.low_income_high_debt.weight" in names
    assert "rules.low_income_high_debt.thresholds.0" in names
    assert "rules.low_income_high_debt.thresholds.1" in names
    assert "rules.stable.weight" not in names          # `fixed`: a buffer, not learned
    assert "rules.stable.weight" in dict(credit_model().named_buffers())
    assert "decisions.approve.bias" in names
    assert any(n.startswith("networks.applicant_net.") for n in names)


@pytest.mark.parametrize("kwargs,match", [
    ({"networks": {}}, "no module given for network 'applicant_net'"),
    ({"networks": {"applicant_net": nn.Linear(3, 1), "other": nn.Linear(1, 1)}},
     "network 'other' is not used"),
    ({"networks": {"applicant_net": lambda x: x}}, "must be a torch.nn.Module"),
    ({"networks": {"applicant_net": nn.Linear(3, 1)}, "semantics": "fuzzy"},
     "unknown semantics 'fuzzy'"),
    ({"networks": {"applicant_net": nn.Linear(3, 1)}, "residual": {"reliable": nn.Linear(1, 1)}},
     "residual given for 'reliable', which is not decided"),
    ({"networks": {"applicant_net": nn.Linear(3, 1)}, "temperature": 0}, "temperature"),
])
def test_construction_errors_say_what_is_wrong(credit, kwargs, match):
    networks = kwargs.pop("networks")
    with pytest.raises(gb.ModelError, match=match):
        gb.GreyBox(credit, networks, **kwargs)


def test_rule_text_and_paths_are_accepted(tmp_path):
    text = "input x: real\noutput y: bool\nrule r: x > 1 -> y\n"
    path = tmp_path / "m.rules"
    path.write_text(text)
    assert gb.GreyBox(text).kb == gb.GreyBox(str(path)).kb == gb.GreyBox(path).kb


# ---------------------------------------------------------------------------- data


def test_missing_inputs_and_bad_values_are_named(credit_model, credit_data):
    model = credit_model()
    with pytest.raises(gb.DataError, match="missing input 'age'"):
        model(credit_data.drop(columns="age"))
    bad = credit_data.copy()
    bad.loc[5, "employment"] = "astronaut"
    with pytest.raises(gb.DataError, match=r"column 'employment': 'astronaut' at row 5"):
        model(bad)
    bad = credit_data.copy()
    bad.loc[7, "age"] = 150
    with pytest.raises(gb.DataError, match=r"column 'age': 150 at row 7 is outside int 0..120"):
        model(bad)


def test_tensor_inputs_are_checked_against_their_declared_shape():
    kb = gb.rules.parse("input img: tensor[8, 8]\nneural d: int 0..9 = net(img)\n"
                        "output o: bool\nrule r: d > 4 -> o")
    model = gb.GreyBox(kb, {"net": nn.Sequential(nn.Flatten(), nn.Linear(64, 10))})
    with pytest.raises(gb.DataError, match=r"input 'img': each row must have shape \[8, 8\], "
                                           r"got \[8, 7\]"):
        model({"img": torch.zeros(2, 8, 7)})


def test_networks_returning_the_wrong_shape_get_a_clear_error():
    kb = gb.rules.parse("input img: tensor\nneural d: int 0..9 = net(img)\n"
                        "output o: bool\nrule r: d > 4 -> o")
    model = gb.GreyBox(kb, {"net": nn.Linear(4, 5)})
    with pytest.raises(gb.ModelError, match=r"network 'net' for 'd' \(int 0..9\) returned shape "
                                            r"\[3, 5\]; expected \[3, 10\]"):
        model({"img": torch.zeros(3, 4)})


def test_one_network_serves_several_variables_in_one_call(addition):
    calls = []

    class Digit(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 10)

        def forward(self, x):
            calls.append(x.shape[0])
            return self.lin(x)

    model = gb.GreyBox(addition, {"digit": Digit()})
    trace = model({"img1": torch.randn(5, 4), "img2": torch.randn(5, 4)})
    assert calls == [10]
    assert trace.values["d1"].shape == (5, 10) and trace.values["total"].shape == (5, 19)
    assert torch.allclose(trace.values["total"].sum(1), torch.ones(5))


# ------------------------------------------------------------------------- the trace


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_the_trace_holds_everything_batch_first(credit_model, credit_data, semantics):
    trace = credit_model(semantics)(credit_data)
    n = len(credit_data)
    assert trace.values["approve"].shape == (n,)
    assert trace.values["employment"].shape == (n, 4)
    assert torch.equal(trace.values["age"], torch.tensor(credit_data.age.to_numpy(),
                                                         dtype=torch.float32))
    assert trace.values["reliable"].shape == (n,)
    assert set(trace.bodies) == {"low_income_high_debt", "stable", "trusted"}
    for r in trace.bodies:
        assert trace.bodies[r].shape == trace.contributions[r].shape == (n,)
        assert ((trace.bodies[r] >= 0) & (trace.bodies[r] <= 1)).all()
    # contributions add up to the score, exactly (no residual, bias 0)
    total = sum(trace.contributions.values())
    assert torch.allclose(trace.scores["approve"], total, atol=1e-6)
    assert trace.contributions["low_income_high_debt"].max() <= 0  # a `not approve` rule
    frame = trace.to_frame()
    assert len(frame) == n and "contribution.trusted" in frame and "value.employment=retired" in frame


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_gradients_reach_every_learnable_part(credit_model, credit_data, semantics):
    model = credit_model(semantics)
    model.calibrate(credit_data)
    loss = model.loss(credit_data, {"approve": (credit_data.income > 30000).to_numpy()})
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.rules["low_income_high_debt"].thresholds[0].grad != 0
    assert model.rules["trusted"].weight.grad != 0


# -------------------------------------------------------------- crisp mode = rules package


def _crisp_reference(model, data):
    """The rules package's evaluation with the networks' crisp outputs as data."""
    batch = model.batch(data)
    logits = model.run_networks(batch)
    cols = {c: data[c] for c in data.columns}
    cols["reliable"] = (logits["reliable"] > 0).numpy()
    return gb.rules.evaluate(model.to_kb(), cols, bias=model.bias_table(batch))


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("residual", [False, True])
def test_crisp_mode_matches_the_rules_package_exactly(credit_model, credit_data, semantics,
                                                      residual):
    torch.manual_seed(1)
    res = nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 1)) if residual else None
    model = credit_model(semantics, res)
    with torch.no_grad():  # move the parameters off their initial values
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = _crisp_reference(model, credit_data)
    model.eval().crisp()
    got = model.predict(credit_data, on_infeasible="flag")
    assert (got["approve"].to_numpy() == ref.decisions["approve"].to_numpy()).all()
    trace = model(credit_data)
    for r in model.kb.rules:
        assert (trace.bodies[r].numpy() == ref.bodies[r].to_numpy()).all()
    assert np.allclose(trace.scores["approve"].numpy(), ref.scores["approve"].to_numpy(),
                       atol=1e-5)
    model.crisp(False)
    assert model(credit_data).semantics == semantics


def test_learned_values_are_written_back_into_rules(credit_model):
    model = credit_model()
    with torch.no_grad():
        model.rules["low_income_high_debt"].thresholds[0].fill_(25000.0)
        model.rules["low_income_high_debt"].weight.fill_(3.5)
    kb = model.to_kb()
    rule = kb.rules["low_income_high_debt"]
    assert rule.weight == 3.5
    text = gb.rules.to_text(rule)
    assert "~25000" in text and "~0.6" in text
    assert gb.rules.parse(gb.rules.to_text(kb)) == kb


# ------------------------------------------------------------------- hard constraints


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_hard_constraints_hold_in_every_prediction(credit_model, credit_data, semantics):
    model = credit_model(semantics)
    with torch.no_grad():
        model.decisions["approve"].bias.fill_(5.0)   # the scores alone would approve all
    pred = model.predict(credit_data)
    assert pred["approve"][credit_data.age >= 18].all()
    assert not pred["approve"][credit_data.age < 18].any()
    trace = model(credit_data)
    minors = torch.tensor((credit_data.age < 18).to_numpy())
    assert (trace.values["approve"][minors] < 1e-6).all()


def test_constraints_between_decisions_are_decided_jointly():
    kb = gb.rules.parse("""
        input x: real
        output a: bool
        output b: bool
        rule ra weight 2: x > 0 -> a
        rule rb weight 1: x > 0 -> b
        constraint exclusive: not (a and b)
    """)
    for sem in SEMANTICS:
        model = gb.GreyBox(kb, semantics=sem)
        pred = model.predict({"x": [1.0, -1.0]})
        assert pred["a"].tolist() == [True, False] and pred["b"].tolist() == [False, False]
        model.crisp()
        pred = model.predict({"x": [1.0, -1.0]})
        assert pred["a"].tolist() == [True, False] and pred["b"].tolist() == [False, False]


# ------------------------------------------------------------- semantics conformance


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_semantics_agrees_with_boolean_logic_on_crisp_truths(name):
    kb = gb.rules.parse("""
        input p: bool
        input q: bool
        output o: bool
        rule r1: p and q -> o
        rule r2: p or q -> o
        rule r3: not p -> o
        rule r4: (p -> q) -> o
        rule r5: (p <-> q) -> o
    """)
    model = gb.GreyBox(kb, semantics="product")
    data = {"p": [False, False, True, True], "q": [False, True, False, True]}
    trace = model(data, crisp=True) if name == "crisp" else \
        REGISTRY[name].trace(model, model.batch(data))
    p = np.array(data["p"])
    q = np.array(data["q"])
    want = {"r1": p & q, "r2": p | q, "r3": ~p, "r4": ~p | q, "r5": p == q}
    for r, w in want.items():
        assert trace.bodies[r].detach().numpy().tolist() == w.astype(float).tolist(), (name, r)


@pytest.mark.parametrize("tnorm", FUZZY)
def test_t_norm_laws_hold_on_random_degrees(tnorm):
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(200, generator=g) for _ in range(3))
    and_, or_ = (lambda x, y: F.t_and(x, y, tnorm)), (lambda x, y: F.t_or(x, y, tnorm))
    assert torch.allclose(and_(a, b), and_(b, a))
    assert torch.allclose(and_(a, and_(b, c)), and_(and_(a, b), c), atol=1e-6)
    assert torch.allclose(and_(a, torch.ones_like(a)), a, atol=1e-6)
    assert torch.allclose(or_(a, torch.zeros_like(a)), a, atol=1e-6)
    # De Morgan with the standard negation
    assert torch.allclose(F.t_not(and_(a, b)), or_(F.t_not(a), F.t_not(b)), atol=1e-6)
    assert (and_(a, b) <= torch.minimum(a, b) + 1e-7).all()


def test_smooth_comparisons_sharpen_to_crisp_ones_as_the_temperature_falls():
    x = torch.tensor([0.0, 0.9, 1.1, 2.0])
    for temp, tol in [(0.01, 1e-3)]:
        got = F.smooth_compare(">", x, torch.tensor(1.0), temp)
        assert torch.allclose(got, (x > 1).float(), atol=tol)
    assert F.smooth_compare("==", x, torch.tensor(2.0), 0.1)[-1] == 1.0
    with pytest.raises(ValueError, match="unknown comparison"):
        F.smooth_compare("~", x, x, 1.0)


def test_residual_logits_add_to_the_score(credit_model, credit_data):
    class Const(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1), 1.5)

    base = credit_model("product")
    plus = credit_model("product", Const())
    s0 = base(credit_data).scores["approve"]
    s1 = plus(credit_data).scores["approve"]
    assert torch.allclose(s1 - s0, torch.full_like(s0, 1.5), atol=1e-5)
    assert plus.feature_names[:3] == ["age", "income", "debt_ratio"]
    assert len(plus.feature_names) == 8   # 4 numbers + one-hot employment


class _Fixed(nn.Module):
    """A 'network' whose outputs are given per row (its input is the row's output)."""

    def forward(self, x):
        return x[:, 0]


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_real_network_outputs_violating_a_constraint_are_moved_to_the_closest_valid_value(
        semantics):
    kb = gb.rules.parse("""
        input out: real
        neural risk: real = net(out)
        output high: bool
        rule h weight 2: risk > 0.5 -> high
        rule l weight 2: risk < 0.5 -> not high
        constraint bounded: risk >= 0 and risk <= 0.4
    """)
    model = gb.GreyBox(kb, {"net": _Fixed()}, semantics=semantics)
    model.feature_center.zero_()
    model.feature_scale.fill_(1.0)
    data = {"out": [0.2, 0.9, -0.3]}
    # the network says 0.9 for row 1: outside the constraint -> moved to 0.4, so not high
    assert model.predict(data)["high"].tolist() == [False, False, False]
    assert model(data).infeasible.tolist() == [False, True, True]   # before the repair


def test_rows_that_no_real_value_can_repair_stay_infeasible():
    kb = gb.rules.parse("""
        input out: real
        neural risk: real = net(out)
        output high: bool
        rule h: risk > 0.5 -> high
        constraint impossible: risk > 1 and risk < 0
    """)
    model = gb.GreyBox(kb, {"net": _Fixed()}, semantics="product")
    with pytest.raises(gb.DataError, match="no decision satisfying the hard constraints"):
        model.predict({"out": [0.2]})


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_hard_constraints_with_learnable_thresholds_are_never_softened(semantics):
    kb = gb.rules.parse("""
        input income: real[0, 100000]
        output approve: bool
        rule earns weight 50: income > 0 -> approve
        constraint poor: income < ~5000 -> not approve
    """)
    model = gb.GreyBox(kb, semantics=semantics, temperature=1.0)
    data = {"income": [4000.0, 4999.0, 5001.0]}
    assert model.predict(data)["approve"].tolist() == [False, False, True]
    assert model(data).values["approve"][:2].max() == 0.0


def test_a_trace_renders_as_golden_text():
    model = gb.GreyBox("""
        input x: real
        output high: bool
        rule big weight 3.0: x > 1.0 -> high
        rule small: x < 0.5 -> not high
    """, semantics="product")
    trace = model({"x": [0.0, 2.0]}, crisp=True)
    assert str(trace) == (
        "trace under crisp semantics, 2 row(s)\n"
        "row 0: high=False (p=1.00)\n"
        "  rules: small -1.000\n"
        "row 1: high=True (p=1.00)\n"
        "  rules: big +3.000")
    assert "<pre>" in trace._repr_html_()


def test_learned_values_are_stated_at_the_parameters_precision():
    model = gb.GreyBox("input x: real\noutput y: bool\nrule r weight 1.6: x > ~0.1 -> y",
                       semantics="product")
    text = gb.rules.to_text(model.to_kb())
    assert "rule r weight 1.6: x > ~0.1 -> y" in text          # not 1.600000023841858
    with torch.no_grad():
        model.rules["r"].thresholds[0].fill_(17.708656311035156)
    assert "x > ~17.708656 -> y" in gb.rules.to_text(model.to_kb())
    # the stated value is the decision function's: data exactly at it is decided alike
    assert model.predict({"x": [17.708656, 17.708657]})["y"].tolist() == [False, True]
    assert gb.rules.evaluate(model.to_kb(), {"x": [17.708656, 17.708657]}).decisions[
        "y"].tolist() == [False, True]


@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz"])
@pytest.mark.parametrize("label", [True, False])
def test_a_saturated_neural_bool_has_a_finite_gradient(semantics, label):
    """A network so sure that its sigmoid is exactly 1.0 in float32: the label's loss and its
    gradient stay finite (the unchosen side's log 0 gave a NaN gradient, and a long
    smokers run ended with 'the loss became nan')."""
    import torch

    class Sure(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(40.0))

        def forward(self, x):
            return self.w * x[:, 0]

    model = gb.GreyBox("input x: tensor[1]\nneural s: bool = net(x)\noutput y: bool\n"
                       "rule r: s -> y\n", {"net": Sure()}, semantics=semantics)
    loss = model.loss({"x": torch.ones(2, 1)}, {"s": [label, label]})
    loss.backward()
    grad = model.network("net").w.grad
    assert torch.isfinite(loss) and torch.isfinite(grad)
    assert loss.item() == pytest.approx(0.0 if label else -np.log(1e-12), rel=1e-4)


def test_predict_leaves_every_submodule_in_the_mode_it_found_it():
    """predict decides in evaluation mode (dropout off) and puts each module back as it
    was, a network left training among modules in evaluation mode included."""
    net = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.9), nn.Linear(8, 1))
    model = gb.GreyBox("input x: real\nneural z: bool = net(x)\noutput o: bool\n"
                       "rule r: z -> o", {"net": net})
    rows = {"x": np.linspace(-1, 1, 200)}
    model.eval()
    net.train()
    first = model.predict(rows)
    assert not model.training and net.training and net[1].training
    pd.testing.assert_frame_equal(first, model.predict(rows))   # dropout was off
    model.train()
    model.predict(rows)
    assert all(m.training for m in model.modules())


def test_a_rule_written_under_a_members_name_keeps_its_own_weight():
    """The debugger exports an edited grounding as a rule of its own under the member's
    name, the template guarded away there; sharing the family's parameters by name gave
    it the template's weight (2.0, not 5.0) once members shared them by name alone."""
    text = """set person: {anna, bob}
input lvl(person): int 0..5
output cancer(person): bool
rule own(p in person) weight 2.0: p != anna and lvl(p) >= ~4.0 -> cancer(p)
rule `own(anna)` weight 5.0: lvl(anna) >= 1 -> cancer(anna)
rule `calm(anna)` weight 3.0: lvl(anna) >= 1 -> not cancer(anna)"""
    model = gb.GreyBox(gb.rules.parse(text), semantics="product")
    state = {k: float(v) for k, v in model.state_dict().items() if k.endswith("weight")}
    assert state["rules.own(anna).weight"] == 5.0 and state["rules.own(*).weight"] == 2.0
    assert model.to_kb().rules["own(anna)"].weight == 5.0
    got = model.predict({"lvl": np.array([[1, 0]])})
    assert bool(got["cancer(anna)"].iloc[0])          # 5.0 - 3.0 > 0 (2.0 - 3.0 was not)


# a network trained outside greybox keeps its answers inside (issue 21) ---------------------
_CANCER = ["mean radius", "mean texture", "mean smoothness", "worst concave points"]


@pytest.fixture(scope="module")
def cancer_net():
    """A small MLP trained with plain torch on four raw breast-cancer columns, seeded."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    x = data.frame[_CANCER].rename(columns=lambda c: c.replace(" ", "_"))
    y = data.target.to_numpy().astype(bool)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    xt = torch.tensor(x.to_numpy(), dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(
            net(xt)[:, 0], torch.tensor(y, dtype=torch.float32)).backward()
        opt.step()
    return net, x, y, xt


def _cancer_kb(columns, typ):
    return ("\n".join(f"input {c}: {typ}" for c in columns)
            + f"\nneural benign: bool = net({', '.join(columns)})\noutput ok: bool\n"
            "rule r weight 2: benign -> ok\nrule s weight 2: not benign -> not ok\n")


@pytest.mark.parametrize("typ", ["real", "real[0, 50]"])
def test_a_pretrained_network_sees_the_raw_columns_before_and_after_fit(cancer_net, typ):
    net, x, y, xt = cancer_net
    with torch.no_grad():
        outside = net(xt)[:, 0]
    assert ((outside > 0).numpy() == y).mean() > 0.85
    model = gb.GreyBox(_cancer_kb(list(x.columns), typ), {"net": net}, semantics="product")
    assert model.scaled_networks == () and "scale_inputs=False" in repr(model)
    assert torch.equal(model(x).logits["benign"].detach(), outside)
    weights = [p.detach().clone() for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        model.fit(x, {"ok": y}, epochs=2)   # calibrates, trains the rules
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
    assert bool(model.calibrated)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert torch.equal(model(x).logits["benign"].detach(), outside)
    assert (model.predict(x)["ok"].to_numpy() == y).mean() > 0.85


def test_scaling_is_on_request_and_named(cancer_net):
    net, x, _, xt = cancer_net
    model = gb.GreyBox(_cancer_kb(list(x.columns), "real[0, 50]"), {"net": net},
                       semantics="product", scale_inputs=True)
    assert model.scaled_networks == ("net",) and model.scales_inputs("net")
    assert "scale_inputs=['net']" in repr(model)
    feats = torch.tensor(x.to_numpy(), dtype=torch.float32)
    expected = net((feats - 25.0) / 12.5)[:, 0]        # (x - center) / spread of [0, 50]
    assert torch.allclose(model(x).logits["benign"], expected)
    assert gb.GreyBox(_cancer_kb(list(x.columns), "real"), {"net": net},
                      scale_inputs=["net"]).scaled_networks == ("net",)
    with pytest.raises(gb.ModelError, match="scale_inputs names 'nett'"):
        gb.GreyBox(_cancer_kb(list(x.columns), "real"), {"net": net}, scale_inputs=["nett"])
    with pytest.raises(gb.ModelError, match="scale_inputs must be"):
        gb.GreyBox(_cancer_kb(list(x.columns), "real"), {"net": net}, scale_inputs="net")
    # replace keeps the choice
    assert model.replace().scaled_networks == ("net",)


# ----------------------------------- the decision part on codes (issue 22 item 2)

_CODED = """
input x: real[0, 10]
input n: int 3..9
input k: {a, b, c}
input m: optional real[0, 1]
output y: {lo, hi}
rule r1 weight 1.5: x > 4 and k == b -> y = hi
rule r2 weight 0.8: n >= 6 or m is missing -> y = hi
rule r3 weight 1.1: k in {a, c} -> y = lo
"""


def test_a_batch_of_codes_decides_as_the_labels_it_stands_for():
    model = gb.GreyBox(_CODED, semantics="product")
    rng = np.random.default_rng(0)
    x, n, k = rng.uniform(0, 10, 30), rng.integers(3, 10, 30), rng.integers(0, 3, 30)
    miss = rng.random(30) < 0.3
    m = np.where(miss, np.nan, rng.uniform(0, 1, 30))
    labels = pd.DataFrame({"x": x, "n": n, "k": np.array(["a", "b", "c"])[k], "m": m})
    codes = gb.Batch.from_codes(model.kb, {"x": x, "n": n, "k": k, "m": np.nan_to_num(m),
                                           gb.rules.engine.missing_key("m"): miss}, 30)
    expected = model.predict(labels)
    assert model.predict(codes)["y"].tolist() == expected["y"].tolist()
    ev, _ = model.decision.evaluate(model.batch(labels))
    assert ev.code("y").tolist() == [["lo", "hi"].index(v) for v in expected["y"]]
    # a row's variants: codes changed, an int code rounded, a value set missing
    batch = model.batch(labels)
    rows = batch.variants(model.kb, 2, [{}, {"n": 8.6, "k": 1}, {"m": gb.rules.engine.MISSING}])
    again = pd.DataFrame({"x": [x[2]] * 3, "n": [n[2], 9, n[2]],
                          "k": [labels.k[2], "b", labels.k[2]], "m": [m[2], m[2], np.nan]})
    assert model.predict(rows)["y"].tolist() == model.predict(again)["y"].tolist()
    assert rows.columns["n"].tolist() == [float(n[2]), 9.0, float(n[2])]
