"""Device handling without a GPU: nothing is created on a fixed or default device.

Under ``torch.device("meta")`` every tensor created without an explicit device lands on
the meta device, and mixing it with the model's CPU tensors fails. A forward pass, a loss
and a backward pass that succeed there create every tensor on the model's device (or the
inputs'), which is what lets a model move to a GPU and back. (A real GPU run is done
when a GPU machine is available; a CUDA checkpoint loading on CPU is in test_io.py.)
"""

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from tests.conftest import EXAMPLES


@pytest.fixture
def credit_frame():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame({
        "age": rng.integers(10, 90, n), "income": rng.uniform(0, 100000, n),
        "debt_ratio": rng.uniform(0, 2, n),
        "employment": rng.choice(["employed", "self_employed", "unemployed", "retired"], n),
        "years at address": rng.uniform(0, 20, n)})


@pytest.mark.parametrize("semantics", ["probabilistic", "product", "godel", "lukasiewicz"])
def test_rules_and_networks_create_nothing_on_the_default_device(credit, credit_frame,
                                                                 semantics):
    model = gb.GreyBox(credit, {"applicant_net": nn.Linear(3, 1)}, semantics=semantics,
                       residual=nn.Linear(8, 1))
    batch = model.batch(credit_frame)
    labels = model._targets({"approve": (credit_frame.income > 3e4).to_numpy()}, batch.n)
    with torch.device("meta"):
        trace = model(batch)
        loss = model._loss(trace, labels)
        loss.backward()
        decisions = trace.decisions()
    assert loss.device.type == "cpu" and decisions["approve"].device.type == "cpu"
    assert all(p.grad.device.type == "cpu" for p in model.parameters())


def test_exact_inference_over_digits_creates_nothing_on_the_default_device():
    sys.path.insert(0, str(EXAMPLES))
    from digits_addition import addition_rules, digit_network

    model = gb.GreyBox(addition_rules(3), {"digit": digit_network()})
    batch = model.batch({f"{s}{k}_img": torch.rand(4, 64) for s in "ab" for k in range(3)})
    with torch.device("meta"):
        trace = model(batch)
        lp = trace.log_prob("total", torch.tensor([5, 100, 999, 1500], device="cpu"))
        lp.sum().backward()
        assert trace.values["total"].device.type == "cpu"
        assert trace.decisions()["total"].device.type == "cpu"


def test_moving_a_model_rebuilds_its_compiled_tables(addition):
    model = gb.GreyBox(addition, {"digit": nn.Linear(4, 10)})
    x = {"img1": torch.randn(3, 4), "img2": torch.randn(3, 4)}
    before = model(x).values["total"]
    compiled = model.compiled
    assert compiled._tensors
    model.to(torch.device("cpu"))
    assert model.compiled is not compiled and not model.compiled._tensors
    assert torch.allclose(model(x).values["total"], before)
    assert model.device.type == "cpu"
