"""Big concept networks (issue 24): parameter attributions in chunks equal to the
unchunked computation, TracIn's ``layers=``, and a 10M-parameter convolutional concept
network explained and debugged in bounded memory."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

import greybox as gb
from greybox.explain._params import _Flat, _forward, parameter_attributions
from greybox.explain.debug import _tracin
from greybox.explain.debug._tracin import _loss, tracin_influence, tracin_layers

ROOT = Path(__file__).resolve().parents[2]

RULES = """
input img: tensor[16]
input x: real[0, 10]
neural d: int 0..9 = net(img)
output odd: bool
rule r weight 3: d in {1, 3, 5, 7, 9} -> odd
rule s: x > ~5 -> odd
"""


class _Reversed(nn.Module):
    """Registers its layers in the opposite order to the one it runs them in."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 10)
        self.inner = nn.Linear(16, 8)

    def forward(self, x):
        return self.out(torch.relu(self.inner(x)))


def _small(net=None):
    torch.manual_seed(0)
    net = net or nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10))
    model = gb.GreyBox(RULES, {"net": net}).eval()
    data = {"img": torch.randn(5, 16), "x": np.linspace(0, 10, 5)}
    return model, data


def _unchunked(model, batch, output, target, n_steps, baseline):
    """The computation before chunks: Captum's IntegratedGradients over every row's own
    copy of the flat parameter vector, all rows and steps at once."""
    flat = _Flat(model)
    forward = _forward(model, flat, batch, output)
    data = tuple(batch.values.values())
    inputs = flat.values.unsqueeze(0).expand(batch.n, -1).clone()
    base = torch.cat([p.detach().flatten() * (baseline == "thresholds" and ".thresholds." in name)
                      for name, p in zip(flat.names, flat.tensors)])
    base = base.unsqueeze(0).expand(batch.n, -1).clone()
    attr, delta = IntegratedGradients(forward).attribute(
        inputs, baselines=base, additional_forward_args=(target, *data), n_steps=n_steps,
        return_convergence_delta=True)
    return flat, attr.detach(), delta.detach()


@pytest.mark.parametrize("baseline", ["thresholds", "zero"])
@pytest.mark.parametrize("chunk", [None, 1, 5, 16, 33, 10_000])
def test_chunked_parameter_attributions_equal_the_unchunked_ones(chunk, baseline):
    model, data = _small()
    batch = model.batch(data)
    with torch.no_grad():
        target = model(batch, crisp=True).decisions()["odd"]
    flat, attr, delta = _unchunked(model, batch, "odd", target, 16, baseline)
    per_tensor, top, completeness = parameter_attributions(
        model, batch, "odd", target, n_steps=16, top_k=6, baseline=baseline, chunk=chunk)
    expected = torch.stack([a.sum(1) for a in attr.split(flat.sizes, dim=1)], 1)
    assert list(per_tensor.parameter[:len(flat.names)]) == flat.names
    np.testing.assert_allclose(per_tensor.attribution.to_numpy().reshape(5, -1),
                               expected.numpy(), rtol=1e-5, atol=1e-7)
    for row in range(5):
        mine = top[top.row == row]
        best = attr[row].abs().topk(6)
        np.testing.assert_allclose(mine.attribution.abs(), best.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(mine.attribution, attr[row][best.indices], rtol=1e-5,
                                   atol=1e-7)
    np.testing.assert_allclose(completeness.sum_of_attributions, attr.sum(1), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(completeness.gap, delta.abs(), atol=1e-6)


def test_the_chunk_size_is_checked():
    model, data = _small()
    batch = model.batch(data)
    target = torch.zeros(5, dtype=torch.long)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(gb.ModelError, match=r"chunk must be a whole number >= 1, got"):
            parameter_attributions(model, batch, "odd", target, chunk=bad)


def test_a_small_model_compares_every_layer_and_a_big_one_its_last_layers(monkeypatch):
    model, data = _small(_Reversed())
    batch = model.batch(data)
    every = ["networks.net.out", "networks.net.inner", "rules.r", "rules.s",
             "rules.s.thresholds", "decisions.odd"]
    assert tracin_layers(model) == tracin_layers(model, "all") == every
    # the layer the forward pass runs last, not the last registered one
    last = ["networks.net.out", "rules.r", "rules.s", "rules.s.thresholds", "decisions.odd"]
    assert tracin_layers(model, "last", batch) == last
    assert tracin_layers(model, "last")[0] == "networks.net.inner"   # no rows: module order
    monkeypatch.setattr(_tracin, "TRACIN_ALL_LAYERS", 100)            # 234 parameters
    assert tracin_layers(model, None, batch) == last


def test_named_layers_are_kept_once_and_unknown_ones_refused():
    model, _ = _small()
    assert tracin_layers(model, "networks.net.2") == ["networks.net.2"]
    assert tracin_layers(model, ["rules", "rules.r", "networks.net"]) == ["rules", "networks.net"]
    with pytest.raises(gb.ModelError, match=r"TracIn layer 'networks.net.7' is no module of "
                                            r"the model; the layers with trainable parameters "
                                            r"are networks.net.0, networks.net.2, rules.r, "):
        tracin_layers(model, ["networks.net.7"])
    with pytest.raises(gb.ModelError, match=r"'networks.net.1' is a module without trainable "
                                            r"parameters .* such as networks.net, rules\)"):
        tracin_layers(model, ["networks.net.1"])
    for bad in ([], [3], 3, ("rules", None)):
        with pytest.raises(gb.ModelError, match=r"layers= takes 'all', 'last' or a non-empty "
                                                r"list of module names, got"):
            tracin_layers(model, bad)


def _manual_tracin(model, layers, train, targets, test, test_target):
    """TracIn with one checkpoint by hand: the dot products of the per-row loss gradients
    over the chosen layers' parameters."""
    params = [p for name in layers for p in model.get_submodule(name).parameters()]

    def grad(data, y):
        p = model(model.batch(data)).values["odd"]
        loss = _loss(p, torch.as_tensor(y, dtype=torch.float32))
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss.sum(), params)])

    g_test = grad(test, [test_target])
    return np.array([float(grad({k: v[i:i + 1] for k, v in train.items()}, targets[i:i + 1])
                           @ g_test) for i in range(len(targets))])


@pytest.mark.parametrize("layers", [None, "last", ["networks.net.2"], ["rules", "decisions"]])
def test_tracin_scores_are_the_gradient_dot_products_of_the_chosen_layers(layers, monkeypatch):
    model, _ = _small()
    rng = np.random.default_rng(1)
    train = {"img": torch.randn(12, 16), "x": rng.uniform(0, 10, 12)}
    targets = rng.random(12) < 0.5
    test = {"img": torch.randn(1, 16), "x": np.array([7.0])}
    chosen = tracin_layers(model, layers, model.batch(test))
    expected = np.sort(_manual_tracin(model, chosen, train, targets, test, True))[:4]
    found = tracin_influence(model, "odd", (train, targets), model.batch(test), True, k=4,
                             layers=layers)
    np.testing.assert_allclose(found.influence, expected, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(_tracin, "TRACIN_BUDGET", 1)          # one training row at a time
    one = tracin_influence(model, "odd", (train, targets), model.batch(test), True, k=4,
                           layers=layers)
    pd.testing.assert_frame_equal(one, found, rtol=1e-5)


def test_tracin_compares_the_trainable_layers_of_a_partly_frozen_network():
    """A frozen layer (a pretrained backbone's, say) made TracIn fail inside torch:
    "One of the differentiated Tensors does not require grad". Now the default layers
    are those with trainable parameters, and the scores their gradients' dot products."""
    model, _ = _small()
    model.networks["net"][0].requires_grad_(False)
    assert tracin_layers(model) == ["networks.net.2", "rules.r", "rules.s",
                                    "rules.s.thresholds", "decisions.odd"]
    rng = np.random.default_rng(2)
    train = {"img": torch.randn(8, 16), "x": rng.uniform(0, 10, 8)}
    targets = rng.random(8) < 0.5
    test = {"img": torch.randn(1, 16), "x": np.array([2.0])}
    found = tracin_influence(model, "odd", (train, targets), model.batch(test), False, k=3)
    expected = np.sort(_manual_tracin(model, tracin_layers(model), train, targets, test,
                                      False))[:3]
    np.testing.assert_allclose(found.influence, expected, rtol=1e-4, atol=1e-6)
    assert not any(p.requires_grad for p in model.networks["net"][0].parameters())


def test_tracin_leaves_frozen_parameters_frozen():
    model, _ = _small()
    model.networks["net"][0].bias.requires_grad_(False)
    train = {"img": torch.randn(6, 16), "x": np.linspace(0, 10, 6)}
    test = model.batch({"img": torch.randn(1, 16), "x": [3.0]})
    tracin_influence(model, "odd", (train, np.arange(6) % 2 == 0), test, True, k=2,
                     layers=["networks.net.0"])
    assert not model.networks["net"][0].bias.requires_grad


def test_blame_takes_layers_and_refuses_unknown_ones_at_once():
    model, data = _small()
    wrong = ~model.predict(data)["odd"].to_numpy().astype(bool)
    train = ({"img": torch.randn(10, 16), "x": np.linspace(0, 10, 10)},
             np.arange(10) % 2 == 0)
    dbg = gb.explain.Debugger(model, data, wrong, train=train)
    everything = dbg.blame(0).training
    last = dbg.blame(0, layers=["networks.net.2", "rules"]).training
    assert len(everything) == len(last) == 10
    assert not np.allclose(everything.sort_values("train_row").influence,
                           last.sort_values("train_row").influence)
    with pytest.raises(gb.ModelError, match=r"TracIn layer 'net' is no module"):
        dbg.blame(0, layers=["net"])


# ------------------------------------------------------------------- a 10M network

_BIG = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from tests.helpers import bignet
import greybox as gb
from greybox.explain.debug._tracin import tracin_influence, tracin_layers

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

def peak_growth(f):
    before = rss()
    open("/proc/self/clear_refs", "w").write("5")     # the peak starts again from here
    start = time.perf_counter()
    out = f()
    seconds = time.perf_counter() - start
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return out, seconds, int(line.split()[1]) * 1024 - before

model = bignet.model()
data, odd = bignet.digits(2)
train, train_odd = bignet.digits(12, offset=100)
batch = model.batch(data)
with torch.no_grad():
    model(batch)
ex, t_explain, m_explain = peak_growth(lambda: gb.explain.explain(model, data, n_steps=8))
test = batch.take(torch.arange(1))
last, t_last, m_last = peak_growth(lambda: tracin_influence(
    model, "odd", (train, train_odd), test, bool(odd[0]), k=3))
every, t_all, m_all = peak_growth(lambda: tracin_influence(
    model, "odd", (train, train_odd), test, bool(odd[0]), k=3, layers="all"))
print(json.dumps({
    "parameters": bignet.n_parameters(model),
    "layers": tracin_layers(model, None, test),
    "gap": float(ex.completeness.gap.max()), "top": ex.top_parameters.parameter.tolist(),
    "attributed": sorted(ex.attributions), "trained_rows": sorted(every.train_row.tolist()),
    "seconds": [t_explain, t_last, t_all], "growth": [m_explain, m_last, m_all]}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                    reason="peak memory is read from Linux's /proc")
def test_a_10m_parameter_concept_network_is_explained_in_bounded_memory():
    """explain (input and parameter attributions) and TracIn on a ResNet-like network of
    10.1M parameters (40 MB of float32): the peak memory above the model's own stays under
    8 copies of the parameters, where Captum's integrated gradients over a copy of the
    parameters per row and step (greybox's computation before) holds 2 x rows x steps =
    32 copies (its inputs and their gradients) and TracInCP over every layer with its
    batch of 64 holds 2 x 12 (the gradients of the 12 training rows, listed and stacked).
    Measured on a 2-core machine: explain 155 MB (3.8 copies) in 6 s, TracIn on the
    default last layers 18 MB in 1 s, on every layer 101 MB (2.5 copies) in 5 s."""
    out = subprocess.run([sys.executable, "-c", _BIG, str(ROOT)], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    size = found["parameters"]
    assert size >= 10_000_000
    assert found["layers"] == ["networks.resnet.head.2", "rules.odd", "rules.even",
                               "decisions.odd"]
    assert found["gap"] < 1e-3
    assert found["attributed"] == ["d"]
    assert len(found["top"]) == 20
    copies = [g / (4 * size) for g in found["growth"]]
    assert copies[0] < 8 and copies[2] < 8, copies
    assert copies[1] < 1, copies               # the last layers: a few thousand numbers
