"""Saving and loading models: round trip, atomic writes, bad files, GPU checkpoints on CPU."""

import io
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb


def _digit():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 10))


@pytest.fixture
def trained(addition):
    model = gb.GreyBox(addition, {"digit": _digit()})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return {"img1": torch.randn(20, 4, generator=g), "img2": torch.randn(20, 4, generator=g)}


def test_a_saved_model_predicts_the_same_after_loading(tmp_path, trained, images):
    path = tmp_path / "model.pt"
    trained.save(path)
    loaded = gb.load(path, networks={"digit": _digit()})
    assert loaded.kb == trained.kb and loaded.semantics == trained.semantics
    pd.testing.assert_frame_equal(loaded.predict(images), trained.predict(images))
    assert list(tmp_path.iterdir()) == [path]     # no temporary file left behind


def test_learned_rule_parameters_survive(tmp_path, credit):
    model = gb.GreyBox(credit, {"applicant_net": nn.Linear(3, 1)}, semantics="godel",
                       residual=nn.Linear(8, 1), temperature=0.3)
    with torch.no_grad():
        model.rules["trusted"].weight.fill_(-2.5)
        model.rules["low_income_high_debt"].thresholds[1].fill_(0.75)
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt", networks={"applicant_net": nn.Linear(3, 1)},
                     residual=nn.Linear(8, 1))
    assert loaded.semantics == "godel" and loaded.temperature == 0.3
    assert loaded.to_kb() == model.to_kb()
    assert loaded.rules["trusted"].weight.item() == -2.5


def test_saving_over_a_file_replaces_it_whole_or_not_at_all(tmp_path, trained, monkeypatch):
    path = tmp_path / "model.pt"
    trained.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_a_checkpoint_whose_tensors_claim_cuda_loads_on_cpu(tmp_path, trained, images):
    path = tmp_path / "gpu.pt"
    trained.save(path)
    # rewrite the storage locations as a GPU-trained checkpoint has them
    src = zipfile.ZipFile(path)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(item, data)
    path.write_bytes(out.getvalue())
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)       # what a naive load does
    loaded = gb.load(path, networks={"digit": _digit()})
    assert loaded.device.type == "cpu"
    pd.testing.assert_frame_equal(loaded.predict(images), trained.predict(images))


@pytest.mark.parametrize("content,match", [
    (b"", "not a readable greybox model"),
    (b"this is a text file, not a model", "not a readable greybox model"),
    (pickle.dumps({"a": 1}), "not a readable greybox model"),
])
def test_corrupted_or_foreign_files_get_a_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(gb.CheckpointError, match=match):
        gb.load(path)


def test_other_torch_files_and_truncated_models_are_refused(tmp_path, trained):
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(gb.CheckpointError, match="not a greybox model file"):
        gb.load(foreign)
    good = tmp_path / "model.pt"
    trained.save(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(gb.CheckpointError, match="not a readable greybox model"):
        gb.load(cut, networks={"digit": _digit()})
    with pytest.raises(gb.CheckpointError, match="no such file"):
        gb.load(tmp_path / "missing.pt")


def test_files_are_read_as_data_never_as_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "greybox-model", "payload": Evil()}, path)
    with pytest.raises(gb.CheckpointError, match="not a readable greybox model"):
        gb.load(path)


@pytest.mark.parametrize("networks,match", [
    ({}, r"the model uses networks \['digit'\]; networks= gave \[\]"),
    ({"digit": nn.Linear(4, 10), "x": nn.Linear(1, 1)}, "networks= gave"),
    ({"digit": nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 10))},
     "parameters do not match the networks given"),
    ({"digit": nn.Sequential(nn.Linear(5, 10))}, "has shape"),
])
def test_networks_that_do_not_match_the_file_are_named(tmp_path, trained, networks, match):
    path = tmp_path / "model.pt"
    trained.save(path)
    with pytest.raises(gb.CheckpointError, match=match):
        gb.load(path, networks=networks)


def test_models_pickle_and_deepcopy_with_working_thresholds(credit):
    import copy

    model = gb.GreyBox(credit, {"applicant_net": nn.Linear(3, 1)}, semantics="product")
    data = pd.DataFrame({"age": [30, 40], "income": [10000.0, 90000.0],
                         "debt_ratio": [0.9, 0.1], "employment": ["employed", "retired"],
                         "years at address": [1.0, 5.0], })
    want = model(data).scores["approve"].detach()
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        got = other(data).scores["approve"].detach()
        assert np.allclose(got.numpy(), want.numpy())
        other.rules["low_income_high_debt"].thresholds[0].data.fill_(5000.0)
        assert other.to_kb().rules["low_income_high_debt"] != model.to_kb().rules[
            "low_income_high_debt"]


def test_a_file_written_before_the_training_range_was_stored_still_loads(tmp_path):
    import pandas as pd

    model = gb.GreyBox("input x: real\noutput y: bool\nrule r: x > ~1 -> y", semantics="product")
    model.calibrate(pd.DataFrame({"x": [0.5, 2.25, 4.0]}))
    path = tmp_path / "old.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]                       # as written before the digest existed
    for k in ("feature_min", "feature_max", "feature_step", "range_known"):
        del payload["state"][k]
    torch.save(payload, path)
    loaded = gb.load(path)
    assert loaded.predict({"x": [0.0, 3.0]})["y"].tolist() == [False, True]
    assert bool(loaded.calibrated)
    lo, hi, from_data = loaded.input_range("x")     # not known: no range is made up
    assert (lo, hi, from_data) == (-float("inf"), float("inf"), True)
    model.save(tmp_path / "new.pt")
    assert gb.load(tmp_path / "new.pt").input_range("x") == (0.5, 4.0, True)


# which networks read standardised inputs is part of the file (issue 21) --------------------
_RAW_KB = ("input a: real\ninput b: real[0, 10]\nneural z: bool = net(a, b)\noutput y: bool\n"
           "rule r: z -> y\n")


def _raw_model(scale_inputs):
    torch.manual_seed(0)
    model = gb.GreyBox(_RAW_KB, {"net": nn.Sequential(nn.Linear(2, 4), nn.ReLU(),
                                                      nn.Linear(4, 1))},
                       semantics="product", scale_inputs=scale_inputs)
    data = pd.DataFrame({"a": np.linspace(-30, 70, 40), "b": np.linspace(0, 10, 40)})
    model.calibrate(data)
    return model, data


@pytest.mark.parametrize("scale_inputs", [False, True])
def test_the_scaling_of_network_inputs_survives_save_and_load(tmp_path, scale_inputs):
    model, data = _raw_model(scale_inputs)
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt")
    assert loaded.scaled_networks == model.scaled_networks
    assert torch.equal(loaded(data).logits["z"], model(data).logits["z"])


def test_a_file_from_before_the_switch_loads_with_its_networks_scaled(tmp_path):
    from greybox._io import _digest

    model, data = _raw_model(True)      # what every model did then
    model.save(tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    del payload["scale_inputs"]          # a file written before the field existed
    payload["sha256"] = _digest(payload)
    torch.save(payload, tmp_path / "old.pt")
    loaded = gb.load(tmp_path / "old.pt")
    assert loaded.scaled_networks == ("net",)
    assert torch.equal(loaded(data).logits["z"], model(data).logits["z"])
    # and a model pickled then unpickles the same way
    state = model.__getstate__()
    del state["scaled_networks"]
    again = gb.GreyBox.__new__(gb.GreyBox)
    again.__setstate__(state)
    assert again.scaled_networks == ("net",)


def test_a_bad_scale_inputs_field_is_refused(tmp_path):
    from greybox._io import _digest

    model, _ = _raw_model(False)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["scale_inputs"] = ["other"]
    payload["sha256"] = _digest(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(gb.CheckpointError, match="'scale_inputs' must list networks"):
        gb.load(tmp_path / "bad.pt")


@pytest.mark.parametrize("where,match", [
    ("cuda", r"no CUDA device is available on this machine; pass map_location='cpu'"),
    ("cuda:1", r"no CUDA device is available on this machine; pass map_location='cpu'"),
    ("gpu", r"map_location='gpu' is not a device"),
])
def test_loading_onto_a_device_this_machine_lacks_says_so(tmp_path, trained, monkeypatch,
                                                          where, match):
    path = tmp_path / "m.pt"
    trained.save(path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(gb.CheckpointError, match=match) as info:
        gb.load(path, networks={"digit": _digit()}, map_location=where)
    assert str(path) in str(info.value)


def test_loading_onto_a_gpu_number_this_machine_lacks_says_so(tmp_path, trained, monkeypatch):
    path = tmp_path / "m.pt"
    trained.save(path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(gb.CheckpointError, match=r"has 1 CUDA device\(s\), numbered from 0; "
                                                 r"pass map_location='cuda:0' or 'cpu'"):
        gb.load(path, networks={"digit": _digit()}, map_location="cuda:3")
