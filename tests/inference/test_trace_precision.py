"""The smooth traces decide comparisons as ``predict`` does, at float32 rounding distance of
a threshold (training, attributions and the debugger read the trace; ``predict`` reads
float64 and exact rationals): crisp comparisons agree exactly, smooth ones are on
``predict``'s side of 1/2."""

import numpy as np
import pytest
import torch
from torch import nn

import greybox as gb

SEMANTICS = ["probabilistic", "product", "godel", "lukasiewicz"]

# (rule text, data, the rule body per row as predict decides it)
CRISP = {
    # float32 rounds 0.300000005 and 0.30000001 alike (0.3000000119...)
    "fraction": ("input x: real\noutput o: bool\nrule r weight 2: x >= 0.30000001 -> o",
                 {"x": [0.300000005, 0.30000001, 0.3000000101, 0.2999]}, [0, 1, 1, 0]),
    # 0.1 + 0.2 is 0.3 in float32, above 0.3 in float64 and exactly
    "sum": ("input x: real\ninput y: real\noutput o: bool\nrule r weight 2: x + y > 0.3 -> o",
            {"x": [0.1, 0.1], "y": [0.2, 0.19]}, [1, 0]),
    # float64 rounds 0.1 + 0.2 up onto 0.30000000000000004; the exact sum is below it
    "float64 rounds": ("input x: real\ninput y: real\noutput o: bool\n"
                       "rule r weight 2: x + y >= 0.30000000000000004 -> o",
                       {"x": [0.1, 0.1], "y": [0.2, 0.2000000000000001]}, [0, 1]),
    "real define": ("input x: real\ninput y: real\ndefine s: real = x + y\noutput o: bool\n"
                    "rule r weight 2: s > 0.3 -> o", {"x": [0.1, 0.1], "y": [0.2, 0.19]},
                    [1, 0]),
    "large real": ("input x: real\noutput o: bool\nrule r weight 2: x > 16777216 -> o",
                   {"x": [16777217.0, 16777216.0]}, [1, 0]),
    "tiny real": ("input x: real\noutput o: bool\nrule r weight 2: x > 1e-50 -> o",
                  {"x": [2e-50, 0.0]}, [1, 0]),
    "int against a fraction": ("input k: int 0..100\noutput o: bool\n"
                               "rule r weight 2: k >= 3.0000000001 -> o", {"k": [3, 4]},
                               [0, 1]),
}


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("case", list(CRISP))
def test_crisp_comparisons_of_the_smooth_trace_are_predicts(case, semantics):
    text, data, want = CRISP[case]
    model = gb.GreyBox(text, semantics=semantics)
    assert model(data, crisp=True).bodies["r"].tolist() == want      # predict's
    trace = model(data)
    assert trace.bodies["r"].tolist() == want
    assert trace.bodies["r"].dtype == torch.float32
    assert trace.decisions()["o"].tolist() == model.predict(data)["o"].astype(int).tolist()


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_hard_constraint_at_a_threshold_masks_what_predict_masks(semantics):
    text = ("input x: real\noutput o: bool\nrule r weight 3: x < 5 -> o\n"
            "constraint c: x >= 0.30000001 -> not o\n")
    data = {"x": [0.300000005, 0.30000001]}
    model = gb.GreyBox(text, semantics=semantics)
    assert model.predict(data)["o"].tolist() == [True, False]
    assert model(data).decisions()["o"].tolist() == [1, 0]


def _rows_float32_sums_misplace(t: float, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Rows (x, y) whose float32 sum is on the other side of ``t`` than their exact sum."""
    rng = np.random.default_rng(0)
    x = rng.uniform(4.0, 8.0, 200_000)
    y = t - x + rng.uniform(-3e-8, 3e-8, x.size)
    f32 = (x.astype(np.float32) + y.astype(np.float32)).astype(np.float64)
    pick = np.flatnonzero(((x + y > t) != (f32 > t)) & (f32 != t))[:n]
    assert len(pick) == n
    return x[pick], y[pick]


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_smooth_sum_is_on_predicts_side_of_one_half(semantics):
    # a near-crisp temperature: float32 sums put these rows on the wrong side (bodies 1
    # where predict says false); the margin in float64 against the threshold predict
    # uses (the shortest decimal of the float32 parameter) does not
    x, y = _rows_float32_sums_misplace(0.3)
    model = gb.GreyBox("input x: real\ninput y: real\noutput o: bool\n"
                       "rule r weight 2: x + y > ~0.3 -> o", semantics=semantics,
                       temperature=1e-9)
    data = {"x": x, "y": y}
    want = model(data, crisp=True).bodies["r"].tolist()
    assert sorted(set(want)) == [0.0, 1.0]
    body = model(data).bodies["r"]
    assert ((body > 0.5).float()).tolist() == want


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_real_input_against_a_learnable_threshold_is_never_on_the_other_side(semantics):
    # read in float32 against the float32 parameter: rounding onto the threshold gives
    # 1/2 at worst, never the opposite of predict
    t32 = float(np.float32(0.3))
    x = [0.3 - 1e-9, 0.3 + 1e-9, t32, t32 - 1e-9, t32 + 1e-9, 0.29999999, 0.30000003]
    for op in (">", "<=", "<", ">="):
        model = gb.GreyBox(f"input x: real\noutput o: bool\nrule r weight 2: x {op} ~0.3 -> o",
                           semantics=semantics, temperature=1e-9)
        want = model({"x": x}, crisp=True).bodies["r"]
        body = model({"x": x}).bodies["r"]
        assert not bool(((want == 1) & (body < 0.5)).any()), (op, body.tolist())
        assert not bool(((want == 0) & (body > 0.5)).any()), (op, body.tolist())


class _Sure(nn.Module):
    """A digit network sure of value index ``k`` on every row."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        out = torch.full((x.shape[0], 10), -30.0)
        out[:, self.k] = 30.0
        return out


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_network_value_beyond_float32s_integers_is_compared_exactly(semantics):
    # 100000006 and 100000005 are both 100000008 in float32: the mass of d <= 100000005
    # counted d = 100000006 (truth 1 where the network is sure of 100000006)
    text = ("input img: tensor[2]\nneural d: int 100000000..100000009 = net(img)\n"
            "output y: bool\nrule r weight 2: d <= 100000005 -> y")
    model = gb.GreyBox(text, {"net": _Sure(6)}, semantics=semantics)
    data = {"img": torch.zeros(2, 2)}
    assert model(data, crisp=True).bodies["r"].tolist() == [0.0, 0.0]
    assert model(data).bodies["r"].max() < 1e-20
    sure5 = gb.GreyBox(text, {"net": _Sure(5)}, semantics=semantics)
    assert sure5(data).bodies["r"].min() > 1 - 1e-6


def test_a_batch_holds_real_inputs_in_float64_as_predict_reads_them():
    model = gb.GreyBox("input x: real\ninput k: int 0..9\noutput o: bool\n"
                       "rule r: x > k -> o", semantics="product")
    batch = model.batch({"x": [0.300000005], "k": [3]})
    assert batch.values["x"].dtype == torch.float64
    assert batch.values["x"].tolist() == [0.300000005]
    assert batch.values["k"].dtype == torch.float32     # exact in float32


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_every_trace_holds_an_integer_input_beyond_float32_exactly(semantics):
    # float32 holds 99999998 and 99999999 as 100000000
    model = gb.GreyBox("input n: int 0..100000000\noutput y: bool\n"
                       "rule r: n >= 99999999 -> y", semantics=semantics)
    data = {"n": [99999998, 99999999]}
    assert model(data).values["n"].tolist() == [99999998, 99999999]
    assert model(data, crisp=True).values["n"].tolist() == [99999998, 99999999]
