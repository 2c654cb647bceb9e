"""Loading saved models without user code (issue 11, item 4): networks and residuals built
from standard torch.nn layers are described in the file as data and rebuilt from it; custom
modules need networks= (Python) or --networks (CLI), with errors worded for each."""

import importlib.util
import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox import _io
from greybox.cli import main
from tests.conftest import EXAMPLES

IMAGES = """
input img: tensor[64]
input pic: tensor[1, 8, 8]
input x: real
neural a: int 0..3 = flat(img)
neural b: int 0..3 = conv(pic)
output y: bool
rule r1: a == 1 -> y
rule r2 weight 0.5: b == 2 and x > ~0.5 -> y
"""


def _flat():
    return nn.Sequential(nn.Unflatten(1, (4, 16)), nn.Conv1d(4, 3, 3, padding=1),
                         nn.BatchNorm1d(3, momentum=None), nn.LeakyReLU(0.2),
                         nn.MaxPool1d(2), nn.AvgPool1d(2, count_include_pad=False),
                         nn.Flatten(), nn.LayerNorm(12), nn.Dropout(0.1), nn.GELU("tanh"),
                         nn.Linear(12, 4), nn.Softmax(dim=1))


def _conv():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding="same", padding_mode="reflect"),
                         nn.BatchNorm2d(2), nn.ELU(), nn.MaxPool2d(2, ceil_mode=True),
                         nn.Conv2d(2, 2, (3, 1), stride=(1, 1), padding=(1, 0), bias=False),
                         nn.AvgPool2d(2, divisor_override=3), nn.Flatten(), nn.SiLU(),
                         nn.Sequential(nn.Linear(8, 6), nn.Softplus(beta=2), nn.Identity()),
                         nn.Linear(6, 4), nn.LogSoftmax(-1))


def _residual():
    return nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1), nn.Sigmoid())


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = gb.GreyBox(IMAGES, {"flat": _flat(), "conv": _conv()}, semantics="product",
                       residual=_residual())
    g = torch.Generator().manual_seed(1)
    data = {"img": torch.randn(6, 64, generator=g), "pic": torch.randn(6, 1, 8, 8, generator=g),
            "x": torch.rand(6, generator=g).tolist()}
    model.fit(data, {"y": [True, False, True, False, True, True]}, epochs=2, progress=False)
    path = tmp_path / "m.pt"
    model.save(path)
    return model, path, data


def test_standard_networks_and_residual_are_rebuilt_from_the_file(saved):
    model, path, data = saved
    loaded = gb.load(path)
    for name in ("flat", "conv"):
        assert repr(loaded.networks[name]) == repr(model.networks[name])
    assert repr(loaded.residual["y"]) == repr(model.residual["y"])
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    pd.testing.assert_frame_equal(loaded.predict(data), model.predict(data))


@pytest.mark.parametrize("module", [
    nn.Linear(3, 2, bias=False), nn.Conv1d(2, 4, 3, stride=2, dilation=2, groups=2),
    nn.Conv2d(3, 6, (3, 5), padding="valid", padding_mode="circular"),
    nn.MaxPool2d((2, 3), stride=1, padding=1, dilation=2, return_indices=True),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    nn.BatchNorm1d(5, eps=1e-3, affine=False, track_running_stats=False),
    nn.LayerNorm([2, 3], elementwise_affine=False), nn.Dropout(0.3, inplace=True),
    nn.ReLU(inplace=True), nn.Flatten(0, 2), nn.Unflatten(-1, (2, 5)), nn.Softmax(),
], ids=lambda m: type(m).__name__)
def test_every_standard_layer_is_rebuilt_with_its_arguments(module):
    desc = _io.describe(module)
    assert desc is not None and "custom" not in desc
    assert repr(_io._build(desc, "", [0])) == repr(module)


class DigitNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(64, 4)

    def forward(self, x):
        return self.layer(x)


class MyLinear(nn.Linear):
    pass


def _hooked():
    m = nn.Linear(64, 4)
    m.register_forward_hook(lambda mod, args, out: out * 2)
    return m


@pytest.mark.parametrize("custom", [DigitNet, lambda: MyLinear(64, 4), _hooked,
                                    lambda: nn.Sequential(nn.Linear(64, 4), DigitNet())],
                         ids=["own class", "subclass", "hooked", "inside a Sequential"])
def test_custom_modules_are_not_described(custom):
    assert _io.describe(custom()) is None


def test_a_custom_network_must_be_given_and_the_error_says_how(tmp_path):
    kb = "input img: tensor[64]  neural a: int 0..3 = flat(img)  output y: bool  rule r: a == 1 -> y"
    model = gb.GreyBox(kb, {"flat": DigitNet()}, semantics="product")
    path = tmp_path / "m.pt"
    model.save(path)
    with pytest.raises(gb.CheckpointError, match=r"network 'flat' cannot be rebuilt from the "
                       r"file: it is a custom module \(tests.model.test_hardening_load.DigitNet\), "
                       r"and a file holds data, never code; pass networks=\{'flat': module\}"):
        gb.load(path)
    assert gb.load(path, networks={"flat": DigitNet()}).to_kb() == model.to_kb()


@pytest.fixture
def custom_residual(tmp_path):
    model = gb.GreyBox("input x: real  output y: bool  rule r: x > ~1 -> y",
                       semantics="product", residual=MyLinear(1, 1))
    path = tmp_path / "m.pt"
    model.save(path)
    data = tmp_path / "d.csv"
    data.write_text("x,y\n0.5,False\n2.0,True\n")
    return path, data


def test_the_cli_words_a_needed_custom_module_as_its_option(custom_residual, capsys):
    path, data = custom_residual
    assert main(["explain", str(path), str(data)]) == 2
    err = capsys.readouterr().err
    assert (f"greybox explain: {path}: the residual network for 'y' cannot be rebuilt from the "
            "file: it is a custom module (tests.model.test_hardening_load.MyLinear), and a file holds "
            "data, never code; give --networks module:function") in err
    assert "(networks, residual)" in err
    assert "residual=" not in err and "Traceback" not in err


def test_the_cli_names_the_option_when_its_function_builds_other_networks(
        saved, tmp_path, capsys, monkeypatch):
    _, path, _ = saved
    (tmp_path / "nets.py").write_text("import torch\n"
                                      "def build():\n"
                                      "    return {'flat': torch.nn.Linear(64, 4)}\n")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.csv"
    data.write_text("x\n0.5\n")
    assert main(["explain", str(path), str(data), "--networks", "nets:build"]) == 2
    err = capsys.readouterr().err
    assert (f"{path}: the model uses networks ['conv', 'flat']; the function given by "
            "--networks nets:build built ['flat']") in err and "networks=" not in err


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_debugging_tutorials_command_works_on_its_own_model(tmp_path, capsys,
                                                                 monkeypatch):
    # docs/tutorial_debugging.md: python examples/breast_cancer.py --save model.pt, then
    # greybox debug model.pt patients.csv --target malignant
    from greybox.explain.debug import _server

    model, csv = _example("breast_cancer").save_for_debugging(tmp_path / "model.pt", epochs=1)
    served = []

    def serve_forever(self):      # serve, ask for the summary, then Ctrl-C
        self.start()
        url = f"http://127.0.0.1:{self.port}/api/summary?token={self.token}"
        with urllib.request.urlopen(url, timeout=60) as response:
            served.append(json.loads(response.read()))
        raise KeyboardInterrupt

    monkeypatch.setattr(_server.DebugServer, "serve_forever", serve_forever)
    assert main(["debug", str(model), str(csv), "--target", "malignant"]) == 0, \
        capsys.readouterr().err
    assert "greybox debugger for" in capsys.readouterr().out
    assert served[0]["rows"] == 171


def _rewrite(path, change, *, digest=True):
    payload = torch.load(path, weights_only=True)
    change(payload)
    if digest:
        payload["sha256"] = _io._digest(payload)
    else:
        payload.pop("sha256", None)
    torch.save(payload, path)


def test_files_written_before_architectures_were_saved_load_with_networks(saved):
    model, path, data = saved

    def old(payload):
        payload["version"] = 1
        del payload["architectures"]

    _rewrite(path, old)      # its digest, as it was computed then, without architectures
    with pytest.raises(_io.ModulesNeeded, match=r"networks 'conv', 'flat' cannot be rebuilt "
                       r"from the file: the file was written before greybox saved "
                       r"architectures; pass networks=\{'conv': module, 'flat': module\}"):
        gb.load(path)
    loaded = gb.load(path, networks={"flat": _flat(), "conv": _conv()}, residual=_residual())
    pd.testing.assert_frame_equal(loaded.predict(data), model.predict(data))


def test_the_digest_covers_the_architectures(saved):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["architectures"]["residual"]["y"]["children"][1][1]["type"] = "ReLU"
    torch.save(payload, path)          # same tensors, another architecture
    with pytest.raises(gb.CheckpointError, match="do not match the SHA-256 digest"):
        gb.load(path)


def _linear(n_in, n_out):
    return {"type": "Linear", "args": {"in_features": n_in, "out_features": n_out,
                                       "bias": True}}


def _deep(depth):
    desc = _linear(1, 4)
    for _ in range(depth):
        desc = {"type": "Sequential", "children": [["0", desc]]}
    return desc


@pytest.mark.parametrize("desc,match", [
    ({"type": "os.system", "args": {}}, "names 'os.system', which is not one of the standard"),
    ({"type": "Linear", "args": {"in_features": "1", "out_features": 4, "bias": True}},
     "has in_features='1'"),
    ({"type": "Linear", "args": {"in_features": 1, "out_features": 4}},
     "has arguments \\['in_features', 'out_features'\\]; expected"),
    ({"type": "Sequential", "children": [["a.b", _linear(1, 4)]]}, "malformed children"),
    ({"type": "Sequential", "children": [["training", _linear(1, 4)]]},
     "names a child 'training', which is an attribute of nn.Sequential"),
    ({"type": "Sequential", "children": [["forward", _linear(1, 4)]]},
     "names a child 'forward'"),
    (_deep(40), "deeper than 32 levels"),
    (_linear(10 ** 9, 10 ** 9), r"does not fit its weights in the file: residual.y.weight is "
     r"\[1000000000, 1000000000\] in the description, \[4, 1\] in the file"),
    ([1, 2], "is a list, not a description"),
    ({"custom": "evil.Module"}, r"it is a custom module \(evil.Module\)"),
])
def test_doctored_descriptions_are_refused_as_data(tmp_path, desc, match):
    model = gb.GreyBox("input x: real  output y: bool  rule r: x > ~1 -> y",
                       semantics="product", residual=nn.Linear(1, 4))
    path = tmp_path / "m.pt"
    model.save(path)
    _rewrite(path, lambda p: p["architectures"]["residual"].__setitem__("y", desc),
             digest=False)
    with pytest.raises(gb.CheckpointError, match=match):
        gb.load(path)


def test_networks_given_by_hand_still_win(saved):
    model, path, data = saved
    flat = _flat()
    loaded = gb.load(path, networks={"flat": flat, "conv": _conv()})
    assert loaded.networks["flat"] is flat
    assert np.allclose(loaded.predict_proba(data).to_numpy(), model.predict_proba(data).to_numpy())
