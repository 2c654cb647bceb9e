"""Hardening of fit (issue 11, item 2): batches without a single label."""

import numpy as np
import pandas as pd
import pytest

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
