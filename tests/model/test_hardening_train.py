"""Hardening of fit (issue 11, item 2): batches without a single label."""

import numpy as np
import pandas as pd
import pytest
import torch

import greybox as gb

RULES = """
input x: real[0, 10]
output y: bool
rule above weight 4: x > ~3.0 -> y
rule below weight 4: x < ~3.0 -> not y
"""


@pytest.fixture
def data():
    x = np.random.default_rng(0).uniform(0, 10, 64)
    return pd.DataFrame({"x": x}), x > 6.5


def test_batches_without_a_label_are_skipped_and_training_goes_on(data):
    X, y = data
    labels = y.astype(object)
    labels[:] = None
    labels[:4] = y[:4]      # one labelled row in four: with batch_size=1 most batches have none
    model = gb.GreyBox(RULES, semantics="product")
    before = model.rules["above"].thresholds[0].item()
    history = model.fit(X, {"y": labels}, epochs=2, batch_size=1, progress=False)
    assert len(history.epochs) == 2
    assert np.isfinite(history.epochs[-1]["loss"])
    assert model.rules["above"].thresholds[0].item() != before   # the labelled rows taught


@pytest.mark.parametrize("validation", [None, 0.25])
def test_no_labelled_row_at_all_is_a_data_error(data, validation):
    X, _ = data
    model = gb.GreyBox(RULES, semantics="product")
    with pytest.raises(gb.DataError, match="no row of the training data has a label"):
        model.fit(X, {"y": [None] * len(X)}, epochs=1, validation=validation, progress=False)


def test_no_label_in_the_training_part_after_holding_out_validation(data):
    X, y = data
    labels = np.full(len(X), np.nan)
    model = gb.GreyBox(RULES, semantics="product")
    # the only labelled row ends up in the validation part
    for row in range(len(X)):
        labels[:] = np.nan
        labels[row] = float(y[row])
        try:
            model.fit(X, {"y": labels}, epochs=1, validation=0.5, progress=False)
        except gb.DataError as err:
            assert "no row of the training data has a label" in str(err)
            return
    pytest.fail("no row ended up in the validation part")


# ---- numbers too large for a float (issue 11, item 12)

HUGE = 10 ** 400


@pytest.mark.parametrize("labels,match", [
    # true/false labels say what they expect (the debugger's decoder), the number by its size
    ({"y": [True, HUGE]}, r"labels of 'y': expected true/false, got an integer of about "
                          r"401 digits at row 1"),
    ({"y": np.array([None, True, -HUGE], dtype=object)}, r"labels of 'y': expected "
                                                         r"true/false, got .* at row 2"),
])
def test_labels_too_large_for_a_float_name_the_variable_and_row(labels, match):
    model = gb.GreyBox(RULES, semantics="product")
    n = len(labels["y"])
    with pytest.raises(gb.DataError, match=match):
        model.fit({"x": np.linspace(0, 10, n)}, labels, epochs=1, progress=False)


def test_real_labels_beyond_float32_are_refused():
    model = gb.GreyBox("input x: real  define z: real = 2 * x  output y: bool  "
                       "rule r: z > ~1 -> y", semantics="product")
    with pytest.raises(gb.DataError, match=r"labels of 'z': 1e\+300 at row 1 is beyond "
                                           r"float32"):
        model.fit({"x": [1.0, 2.0]}, {"z": [2.0, 1e300]}, epochs=1, progress=False)


NET_RULES = "input img: tensor[2]  neural d: bool = net(img)  output y: bool  rule r: d -> y"


@pytest.mark.parametrize("img,where", [
    ([[1.0, 2.0], [3.0, HUGE]], "row 1"),
    (np.array([[1.0, -HUGE], [3.0, 4.0]], dtype=object), "row 0"),
])
def test_tensor_inputs_too_large_for_a_float_name_the_input_and_row(img, where):
    from torch import nn

    model = gb.GreyBox(NET_RULES, {"net": nn.Linear(2, 1)}, semantics="product")
    with pytest.raises(gb.DataError, match=f"input 'img': a number at {where} is too large"):
        model({"img": img})


def test_tensor_inputs_of_python_numbers_in_an_object_array_work():
    from torch import nn

    model = gb.GreyBox(NET_RULES, {"net": nn.Linear(2, 1)}, semantics="product")
    got = model({"img": np.array([[1, 2.0], [3, 4]], dtype=object)}).values["d"]
    want = model({"img": [[1.0, 2.0], [3.0, 4.0]]}).values["d"]
    assert np.allclose(got.detach().numpy(), want.detach().numpy())


def test_a_bad_label_is_named_by_its_rows_label_in_the_data():
    """Rows are named by the data's index labels everywhere (issue 11, item 5): a bad label
    given as an array used to be named by its position ('row 1')."""
    model = gb.GreyBox("input x: int 0..5\noutput y: bool\nrule r: x >= ~4 -> y",
                       semantics="product")
    data = pd.DataFrame({"x": [5, 0, 3]}, index=["ann", "bob", "cy"])
    labels = {"y": np.array([True, "maybe", False], dtype=object)}
    with pytest.raises(gb.DataError, match="got 'maybe' at row 'bob'"):
        model.fit(data, labels, epochs=1, progress=False)
    with pytest.raises(gb.DataError, match="got 'maybe' at row 'bob'"):
        model.loss(data, labels)


LABELLED = "input x: int 0..5\noutput y: bool\nrule r: x >= ~4 -> y"


def test_labels_in_a_series_are_matched_to_the_datas_rows_by_label():
    """A Series of labels indexed like the data but in another order labelled each row
    with the label at its position -- another row's (found by the debugger team)."""
    model = gb.GreyBox(LABELLED, semantics="product")
    data = pd.DataFrame({"x": [5, 0, 3, 4]}, index=["ann", "bob", "cy", "dee"])
    aligned = pd.Series([True, False, False, True], index=data.index)
    shuffled = aligned.loc[["dee", "cy", "ann", "bob"]]
    assert float(model.loss(data, {"y": shuffled})) == float(model.loss(data, {"y": aligned}))
    assert float(model.loss(data, shuffled)) == float(model.loss(data, aligned))
    wrong = pd.Series(aligned.to_numpy()[[3, 2, 0, 1]], index=data.index)   # truly different
    assert float(model.loss(data, wrong)) != float(model.loss(data, aligned))
    # labels for more rows than the data (a whole table's): the data's rows are taken
    more = pd.concat([shuffled, pd.Series([False], index=["eve"])])
    assert float(model.loss(data, more)) == float(model.loss(data, aligned))
    # the same through fit: the same parameters as with the aligned labels
    a = gb.GreyBox(LABELLED, semantics="product")
    b = gb.GreyBox(LABELLED, semantics="product")
    a.fit(data, aligned, epochs=3, seed=0, progress=False)
    b.fit(data, shuffled, epochs=3, seed=0, progress=False)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_labels_that_miss_a_row_of_the_data_are_refused_by_name():
    model = gb.GreyBox(LABELLED, semantics="product")
    data = pd.DataFrame({"x": [5, 0, 3]}, index=["ann", "bob", "cy"])
    with pytest.raises(gb.DataError, match=r"labels of 'y': no label for row 'cy'.*to_numpy"):
        model.loss(data, pd.Series([True, False, True], index=["ann", "bob", "dee"]))
    with pytest.raises(gb.DataError, match=r"'bob' appears more than once"):
        model.fit(data, {"y": pd.Series([1, 0, 1], index=["ann", "bob", "bob"])}, epochs=1,
                  progress=False)
    # an array pairs by position, as ever
    model.loss(data, np.array([True, False, True]))


def test_data_without_row_labels_pairs_a_series_by_position():
    """Arrays, or a DataFrame with the default index (or labels with it): one side has no
    row labels to match, so the labels are read in order, as scikit-learn reads them."""
    model = gb.GreyBox(LABELLED, semantics="product")
    labels = pd.Series([True, False, True], index=[10, 11, 12])
    plain = np.array([True, False, True])
    for data in ({"x": [5, 0, 3]}, pd.DataFrame({"x": [5, 0, 3]})):
        assert float(model.loss(data, labels)) == float(model.loss(data, plain))
    # and labels without row labels (a Series made from an array) for labelled data
    data = pd.DataFrame({"x": [5, 0, 3]}, index=["ann", "bob", "cy"])
    assert float(model.loss(data, pd.Series(plain))) == float(model.loss(data, plain))
