"""The command line on models with tensor inputs (issue 21, item 5): images from ``.npz``
and ``.pt`` files beside (or instead of) the CSV of table inputs, for ``greybox explain``
and ``greybox debug``; every refusal names the file, the array, what the model expects and
what was found; files are data, never code."""

import json
import pickle
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import greybox as gb
from greybox.cli import main
from greybox.explain.debug._server import DebugServer

IMAGE_RULES = """
input img: tensor[8, 8]
neural digit: int 0..9 = reader(img)
output big: bool
rule large weight 3: digit >= 5 -> big
rule small weight 3: digit < 5 -> not big
"""
#: the same with a table input beside the image
MIXED_RULES = IMAGE_RULES + """
input bonus: real[0, 1]
rule bonus: bonus > 0.5 -> big
"""
ROWS = 300


@pytest.fixture(scope="module")
def digits():
    """300 of scikit-learn's 8x8 digits (float32 in [0, 1]) and a reader of them trained
    on their labels (a few hundred steps of plain torch)."""
    X, y = load_digits(return_X_y=True)
    images = torch.tensor(X[:ROWS] / 16.0, dtype=torch.float32).reshape(ROWS, 8, 8)
    labels = torch.tensor(y[:ROWS])
    torch.manual_seed(0)
    reader = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(reader.parameters(), lr=0.05)
    for _ in range(100):   # on the first 100 images: some of the others are misread
        opt.zero_grad()
        nn.functional.cross_entropy(reader(images[:100]), labels[:100]).backward()
        opt.step()
    return images, y[:ROWS], reader


@pytest.fixture(scope="module")
def files(digits, tmp_path_factory):
    """The saved models and their data files, by name."""
    images, y, reader = digits
    folder = tmp_path_factory.mktemp("cli_tensors")
    out = {"folder": folder}
    for name, rules in (("image", IMAGE_RULES), ("mixed", MIXED_RULES)):
        out[name] = str(folder / f"{name}.pt")
        gb.GreyBox(rules, {"reader": reader}).save(out[name])
    big = y >= 5
    # float64, as numpy computes by default, with the correct answers beside the images
    out["npz"] = str(folder / "images.npz")
    np.savez(out["npz"], img=images.numpy().astype(np.float64), big=big)
    out["pt"] = str(folder / "images.pt")
    torch.save({"img": images, "big": torch.tensor(big)}, out["pt"])
    out["csv"] = str(folder / "table.csv")
    pd.DataFrame({"bonus": np.linspace(0, 1, ROWS), "big": big}).to_csv(out["csv"], index=False)
    return out


def write(folder, name, **arrays):
    """An .npz (numpy arrays) or .pt (a dict of tensors) file in ``folder``."""
    path = str(folder / name)
    if name.endswith(".npz"):
        np.savez(path, **arrays)
    else:
        torch.save(arrays, path)
    return path


def predicted(files, digits, model="image"):
    """What ``predict`` decides on every row (the reference for the command line)."""
    images, _, _ = digits
    data = {"img": images}
    if model == "mixed":
        data["bonus"] = np.linspace(0, 1, ROWS)
    return gb.load(files[model]).predict(data)["big"].to_numpy()


# ---------------------------------------------------------------------------- explain
@pytest.mark.parametrize("kind", ["npz", "pt"])
def test_explain_an_image_model_from_a_tensor_file(files, digits, capsys, kind):
    code = main(["explain", files["image"], "--tensors", files[kind], "--row", "5",
                 "--no-parameters", "--reason"])
    out, err = capsys.readouterr()
    assert code == 0, err
    want = predicted(files, digits)[5]
    assert out.startswith(f"row 5: big = {want} ")
    assert "because digit = " in out
    note = (f"greybox explain: note: {files['npz']}: 'img' float64 converted to float32, "
            "the dtype of network 'reader'")
    # float64 (numpy's default) meets the network's float32, and says so; the .pt was float32
    assert (note in err) == (kind == "npz")
    assert "rescaled" not in err


@pytest.mark.parametrize("order", ["csv first", "csv last"])
def test_explain_table_and_tensor_inputs_together(files, digits, capsys, order):
    args = ["--tensors", files["pt"], "--row", "7", "--format", "json", "--no-parameters"]
    argv = ["explain", files["mixed"], *(
        [files["csv"], *args] if order == "csv first" else [*args, files["csv"]])]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    ex = json.loads(out)
    assert ex["row"] == "7"                           # the row labelled as in the data
    assert ex["decision"]["value"] == bool(predicted(files, digits, "mixed")[7])
    assert np.shape(ex["attributions"]["digit"]) == (8, 8)   # the image, per pixel


def test_integer_images_become_floats_with_a_note(files, digits, capsys):
    images, _, _ = digits
    path = write(files["folder"], "uint8.npz", img=(images.numpy() * 16).astype(np.uint8))
    assert main(["explain", files["image"], "--tensors", path, "--no-parameters"]) == 0
    err = capsys.readouterr().err
    assert (f"{path}: 'img' uint8 converted to float32, the dtype of network 'reader' "
            "(values kept as they are, not rescaled)") in err


def test_a_whole_family_of_images_or_its_members(tmp_path, capsys):
    torch.manual_seed(0)
    model = gb.GreyBox("set pos: 0..1\n"
                       "input a_img[pos]: tensor[64]\n"
                       "neural a[k in pos]: int 0..9 = digit(a_img[k])\n"
                       "output total: int 0..18\n"
                       "define total: int 0..18 = sum(a[k] for k in pos)\n",
                       {"digit": nn.Linear(64, 10)})
    path = str(tmp_path / "sum.pt")
    model.save(path)
    images = np.random.default_rng(0).random((4, 2, 64), dtype=np.float32)
    whole = write(tmp_path, "whole.npz", a_img=images)
    members = write(tmp_path, "members.pt", **{f"a_img[{k}]": torch.tensor(images[:, k])
                                               for k in range(2)})
    want = model.predict({"a_img": images})["total"][2]
    for data in (whole, members):
        assert main(["explain", path, "--tensors", data, "--row", "2", "--no-parameters"]) == 0
        assert capsys.readouterr().out.startswith(f"row 2: total = {want} ")
    bad = write(tmp_path, "three.npz", a_img=np.zeros((4, 3, 64), dtype=np.float32))
    assert main(["explain", path, "--tensors", bad]) == 2
    assert (f"{bad}: 'a_img' has shape [4, 3, 64]; input 'a_img' is a family over pos of "
            "tensor[64], so expected shape [rows, 2, 64]") in capsys.readouterr().err
    empty = write(tmp_path, "other.npz", b=np.zeros((4, 2, 64)))
    assert main(["explain", path, "--tensors", empty]) == 2
    assert ("the model's tensor input 'a_img[0]' (tensor[64]) is in no tensor file (the "
            "tensor files hold: b): give it with --tensors FILE.npz (or FILE.pt) holding an "
            "array named 'a_img[0]' (or the whole family 'a_img', one axis per parameter); "
            "tensor inputs missing: 'a_img[0]', 'a_img[1]'") in capsys.readouterr().err


EMBED_FACTORY = """
import torch
def build():
    torch.manual_seed(0)
    return {"emb": torch.nn.Sequential(torch.nn.Embedding(10, 2), torch.nn.Flatten(),
                                       torch.nn.Linear(6, 1))}
"""


def test_token_ids_stay_integers_and_floats_are_refused_for_an_embedding(
        tmp_path, capsys, monkeypatch):
    (tmp_path / "embed_nets.py").write_text(EMBED_FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from embed_nets import build

    model = gb.GreyBox("input tok: tensor[3]  neural topic: bool = emb(tok)  output y: bool  "
                       "rule r: topic -> y", build())
    model.save(tmp_path / "emb.pt")
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    good = write(tmp_path, "ids.npz", tok=ids)
    argv = ["explain", str(tmp_path / "emb.pt"), "--networks", "embed_nets:build",
            "--no-parameters", "--row", "1"]
    assert main([*argv, "--tensors", good]) == 0
    out, err = capsys.readouterr()
    want = model.predict({"tok": torch.tensor(ids, dtype=torch.int64)})["y"][1]
    assert out.startswith(f"row 1: y = {want} ") and "note" not in err
    bad = write(tmp_path, "floats.npz", tok=ids.astype(np.float32))
    assert main([*argv, "--tensors", bad]) == 2
    assert (f"{bad}: 'tok' holds float32 values; input 'tok' is read by network 'emb', which "
            "starts with an nn.Embedding and takes integer token ids: save integers"
            ) in capsys.readouterr().err


# ---------------------------------------------------------------------------- debug
@pytest.fixture
def served(monkeypatch):
    """``greybox debug`` run through ``main`` with its server answering a few requests
    in place of serving forever: the answers, by path."""
    answers = {}

    def serve(self):
        self.start()
        for path in ("/api/summary", "/api/failures", "/api/row?id=5"):
            sep = "&" if "?" in path else "?"
            url = f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"
            with urllib.request.urlopen(url, timeout=30) as response:
                answers[path] = json.loads(response.read())

    monkeypatch.setattr(DebugServer, "serve_forever", serve)
    return answers


@pytest.mark.parametrize("kind", ["npz", "pt"])
def test_debug_an_image_model_from_a_tensor_file(files, digits, capsys, served, kind):
    # the correct answers are an array of the same file: no CSV at all
    assert main(["debug", files["image"], "--tensors", files[kind], "--target", "big"]) == 0
    out = capsys.readouterr().out
    assert f"greybox debugger for {files['image']} on {files[kind]}: http://127.0.0.1:" in out
    truth = digits[1] >= 5
    want = predicted(files, digits)
    summary = served["/api/summary"]
    assert summary["rows"] == ROWS and summary["output"] == "big"
    assert summary["failures"] == int((want != truth).sum()) > 0
    assert summary["accuracy"] == pytest.approx(float((want == truth).mean()))
    assert {f["row"] for f in served["/api/failures"]} == set(np.flatnonzero(want != truth))
    assert served["/api/row?id=5"]["decision"]["value"] == bool(want[5])


def test_debug_table_and_tensor_inputs_together(files, digits, capsys, served):
    assert main(["debug", files["mixed"], files["csv"], "--tensors", files["npz"],
                 "--target", "big"]) == 0
    assert f"on {files['csv']} + {files['npz']}: " in capsys.readouterr().out
    want = predicted(files, digits, "mixed")
    assert served["/api/summary"]["failures"] == int((want != (digits[1] >= 5)).sum())


# ---------------------------------------------------------------------------- refusals
def refused(capsys, argv, *messages):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for message in messages:
        assert message in err, err
    return err


def test_a_tensor_input_is_asked_for_by_name(files, capsys):
    # the first try: the image model with a CSV only
    refused(capsys, ["explain", files["mixed"], files["csv"]],
            "greybox explain: the model's tensor input 'img' (tensor[8, 8]) is in no tensor "
            "file (no tensor file was given): give it with --tensors FILE.npz (or FILE.pt) "
            "holding an array named 'img'")
    other = write(files["folder"], "misnamed.npz", image=np.zeros((ROWS, 8, 8)))
    refused(capsys, ["explain", files["image"], "--tensors", other],
            "is in no tensor file (the tensor files hold: image)")


def test_a_csv_column_for_a_tensor_input_is_refused(files, capsys):
    # the other tries: the image in a CSV column
    csv = files["folder"] / "pixels.csv"
    pd.DataFrame({"img": ["[0.0, 1.0]"] * 3, "big": [True] * 3}).to_csv(csv, index=False)
    refused(capsys, ["explain", files["image"], str(csv)],
            f"{csv}: column 'img' is the tensor input 'img' (tensor[8, 8]); a CSV holds table "
            "inputs only: give it with --tensors FILE.npz (or FILE.pt) holding an array "
            "named 'img'")


@pytest.mark.parametrize("array,message", [
    (np.zeros((ROWS, 64)), "'img' has shape [300, 64]; input 'img' is declared tensor[8, 8], "
     "so expected shape [rows, 8, 8] (one 8 x 8 per row), found 64 per row (the values are "
     "there: reshape it, array.reshape(len(array), 8, 8))"),
    (np.zeros((ROWS, 4, 4)), "'img' has shape [300, 4, 4]; input 'img' is declared "
     "tensor[8, 8], so expected shape [rows, 8, 8] (one 8 x 8 per row), found 4 x 4 per row"),
    (np.float64(1.0), "'img' is a single value, not one per row"),
    (np.zeros((ROWS, 8, 8), dtype=np.complex64), "'img' holds complex numbers (complex64); "
     "input 'img' takes float32 numbers (network 'reader' computes in it)"),
    (np.full((ROWS, 8, 8), "0.5"), "'img' holds text (<U3); input 'img' takes float32 numbers"),
    (np.zeros((ROWS, 8, 8), dtype="datetime64[s]"), "'img' holds dates (datetime64[s])"),
])
def test_a_bad_array_is_refused_naming_file_key_expected_and_found(files, capsys, array,
                                                                   message):
    path = write(files["folder"], "bad.npz", img=array)
    refused(capsys, ["explain", files["image"], "--tensors", path], f"{path}: {message}")


def test_a_bad_tensor_in_a_pt_file(files, capsys):
    path = write(files["folder"], "bad.pt", img=torch.zeros(ROWS, 64))
    refused(capsys, ["explain", files["image"], "--tensors", path],
            f"{path}: 'img' has shape [300, 64]; input 'img' is declared tensor[8, 8]")


def test_row_counts_must_agree(files, digits, capsys):
    images = digits[0].numpy()
    short = write(files["folder"], "short.npz", img=images[:299])
    refused(capsys, ["explain", files["mixed"], files["csv"], "--tensors", short],
            f"{short}: 'img' has 299 rows; {files['csv']} has 300; give one row per example "
            "in every file, in the same order")
    labels = write(files["folder"], "labels.npz", big=np.ones(10, dtype=bool))
    refused(capsys, ["debug", files["image"], "--tensors", files["pt"], "--tensors", labels,
                     "--target", "big"],
            f"'big' is in both {files['pt']} and {labels}; give each input once")
    only = write(files["folder"], "only_img.pt", img=digits[0])
    refused(capsys, ["debug", files["image"], "--tensors", only, "--tensors", labels,
                     "--target", "big"],
            f"{labels}: 'big' has 10 rows; {only}: 'img' has 300; give one row per example")


def test_inputs_in_the_wrong_place_or_missing(files, capsys):
    table = write(files["folder"], "bonus.npz", img=np.zeros((ROWS, 8, 8), np.float32),
                  bonus=np.zeros(ROWS))
    refused(capsys, ["explain", files["mixed"], "--tensors", table],
            f"{table}: 'bonus' is a table input (real[0, 1]), not a tensor input: give it as "
            "a column of the CSV")
    refused(capsys, ["explain", files["mixed"], "--tensors", files["pt"]],
            "the model's table inputs (bonus) come from a CSV file: give DATA.csv after MODEL")
    refused(capsys, ["explain", files["image"]], "no data: give DATA.csv (table inputs), "
            "--tensors FILE.npz or FILE.pt (tensor inputs), or both")
    refused(capsys, ["explain", files["image"], "--tensors", files["pt"], "--tensors",
                     files["pt"]], f"--tensors {files['pt']} is given twice")
    refused(capsys, ["explain", files["image"], "--tensors", files["npz"], "--row", "300"],
            f"--row 300 is outside {files['npz']} (rows 0..299)")
    refused(capsys, ["debug", files["image"], "--tensors", files["npz"], "--target", "nope"],
            f"--target: no array 'nope' in {files['npz']} (arrays of the tensor files: big, "
            "img)")
    refused(capsys, ["explain", files["image"], "--tensors", files["csv"]],
            f"{files['csv']}: not a tensor file by its name (expected .npz, .pt, .pth)")
    refused(capsys, ["explain", files["image"], "--tensors", "/no/such/file.npz"],
            "cannot read /no/such/file.npz: No such file or directory")


class Stranger:
    """A class of the test module: pickled by reference, which weights_only refuses."""


class Planted:
    """Runs code when unpickled: a file that does this must never be loaded."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (open, (self.mark, "w"))


@pytest.mark.parametrize("content,message", [
    ({"img": [1, 2, 3]}, "'img' is a list, not a tensor; a tensor file holds tensors only"),
    ({"img": {"a": torch.zeros(1)}}, "'img' is a dict, not a tensor"),
    ({"img": 3}, "'img' is an int, not a tensor"),
    ({1: torch.zeros(1)}, "the key 1 is an int; the names of a tensor file's entries are "
     "strings"),
    (torch.zeros(3, 8, 8), "holds one tensor, not a dict of name -> tensor; save {'img': "
     "tensor}"),
    ([torch.zeros(3)], "holds a list, not a dict of name -> tensor"),
    ({"img": Stranger()}, "holds objects other than tensors, which greybox never loads "
     "(torch.load with weights_only=True refused it"),
    ({"img": torch.zeros(3, 8, 8).to_sparse()}, "'img' is a torch.sparse_coo tensor; give a "
     "dense one"),
])
def test_a_pt_file_holding_anything_but_tensors_is_refused(files, capsys, content, message):
    path = str(files["folder"] / "objects.pt")
    torch.save(content, path)
    refused(capsys, ["explain", files["image"], "--tensors", path], f"{path}: {message}")


def test_files_are_data_never_code(files, tmp_path, capsys):
    mark = tmp_path / "ran"
    pt = str(tmp_path / "planted.pt")
    torch.save({"img": Planted(mark)}, pt)
    refused(capsys, ["explain", files["image"], "--tensors", pt],
            f"{pt}: holds objects other than tensors, which greybox never loads")
    npz = str(tmp_path / "planted.npz")
    with open(npz, "wb") as f:    # a pickle under an .npz name
        pickle.dump({"img": Planted(mark)}, f)
    refused(capsys, ["explain", files["image"], "--tensors", npz],
            f"{npz}: not an .npz archive: it holds pickled Python objects, which greybox "
            "never loads")
    assert not mark.exists()


def test_a_pickled_array_in_an_npz_is_refused(files, capsys):
    cells = np.empty(ROWS, dtype=object)
    cells[:] = [np.zeros((8, 8))] * ROWS   # one array per row, stored as Python objects
    path = write(files["folder"], "objects.npz", img=cells)
    refused(capsys, ["explain", files["image"], "--tensors", path],
            f"{path}: 'img' is an array of Python objects (stored pickled), which greybox "
            "never loads: save numbers")


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable .npz archive"),
    (b"PK\x03\x04 truncated", "not a readable .npz archive"),
    (b"\x93NUMPY\x01\x00", "not an .npz archive"),
])
def test_a_damaged_npz_is_refused(files, capsys, content, message):
    path = files["folder"] / "damaged.npz"
    path.write_bytes(content)
    refused(capsys, ["explain", files["image"], "--tensors", str(path)], f"{path}: {message}")


def test_a_single_npy_array_under_an_npz_name_is_refused(files, capsys):
    path = files["folder"] / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((ROWS, 8, 8)))
    refused(capsys, ["explain", files["image"], "--tensors", str(path)],
            f"{path}: a single .npy array, not an .npz archive of named arrays")


@pytest.mark.parametrize("command", ["explain", "debug"])
def test_help_says_where_tensor_inputs_come_from(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--tensors FILE.npz|FILE.pt" in out and "[DATA.csv]" in out
    assert "Tensor inputs (images...) come from --tensors files" in out


def test_the_tensor_file_docstring_examples_run():
    # (here rather than in test_doctests.py's list of modules, which other work edits)
    import doctest

    import greybox._tensor_files as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
