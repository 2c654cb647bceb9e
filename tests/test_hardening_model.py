"""Hardening of the model (issue 11, item 3): networks get inputs in their own dtype, and
an error inside a network names the network, its variables and the input shape."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import greybox as gb

from .conftest import EXAMPLES

DIGIT = """
input img: tensor[64]
neural d: int 0..9 = digit(img)
output s: int 0..9
define s: int 0..9 = d
"""


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
