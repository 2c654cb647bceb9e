"""fit(select="kfold"): how long to train, chosen by k-fold cross-validation over the
labelled rows, so that training on few labels does not end below the rules (issue 11,
item 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import greybox as gb

RULES = """
input x: real[0, 10]
input z: real[0, 10]
output y: bool
rule high weight 2: x > ~5 -> y
rule low weight 2: x <= ~5 -> not y
"""


def _model(rules: str = RULES) -> gb.GreyBox:
    torch.manual_seed(0)
    residual = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    return gb.GreyBox(rules, semantics="product", residual=residual)


def _planted(seed: int, *, labelled: int = 10, flipped: int = 2, n: int = 64):
    """Rows where ``y`` is ``x > 5`` (what the rules say), ``labelled`` of them labelled
    and ``flipped`` of those labels wrong; and 500 test rows with the true ``y``."""
    rng = np.random.default_rng(seed)
    x, z = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
    chosen = rng.choice(n, labelled, replace=False)
    labels = np.full(n, np.nan)
    labels[chosen] = x[chosen] > 5
    labels[chosen[:flipped]] = 1 - labels[chosen[:flipped]]
    xt, zt = rng.uniform(0, 10, 500), rng.uniform(0, 10, 500)
    return {"x": x, "z": z}, {"y": labels}, {"x": xt, "z": zt}, xt > 5


def _accuracy(model, test, truth) -> float:
    return float((model.predict(test)["y"].to_numpy() == truth).mean())


FIT = {"epochs": 15, "lr": 0.05, "progress": False}


def test_selection_keeps_the_rules_where_training_on_few_labels_ends_below_them():
    data, labels, test, truth = _planted(3)
    rules_alone = _accuracy(_model(), test, truth)
    trained = _model()
    trained.fit(data, labels, **FIT)
    assert _accuracy(trained, test, truth) < rules_alone - 0.05     # the plant: it hurts

    selected = _model()
    history = selected.fit(data, labels, select="kfold", **FIT)
    assert history.selected_epochs == 0 and history.epochs == []
    assert _accuracy(selected, test, truth) == rules_alone
    frame = history.selection_frame()
    assert list(frame.index) == [0, 15]
    assert frame.loc[15, "gain"] <= frame.loc[15, "gain_se"]
    assert "k-fold selection kept 0 epochs" in str(history)


def test_selection_trains_where_training_wins_on_held_out_labels():
    # the rules draw the line at 2; the labels (all right) at 5
    rules = RULES.replace("~5", "~2")
    data, labels, test, truth = _planted(0, labelled=40, flipped=0)
    rules_alone = _accuracy(_model(rules), test, truth)
    model = _model(rules)
    history = model.fit(data, labels, select="kfold", **FIT)
    assert history.selected_epochs == 15 and len(history.epochs) == 15
    assert history.selection[1]["gain"] > history.selection[1]["gain_se"] > 0
    assert _accuracy(model, test, truth) > rules_alone + 0.05


def test_selection_leaves_the_model_and_random_streams_as_they_were():
    # what trains after selecting is the plain run: the same parameters
    data, labels, _, _ = _planted(0, labelled=40, flipped=0)
    model = _model(RULES.replace("~5", "~2"))
    history = model.fit(data, labels, select="kfold", seed=4, **FIT)
    plain = _model(RULES.replace("~5", "~2"))
    plain.fit(data, labels, seed=4, **{**FIT, "epochs": history.selected_epochs})
    for (name, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("kwargs, match", [
    ({"select": "cv"}, "select must be None or 'kfold'"),
    ({"select": "kfold", "folds": 1}, "folds must be an integer of at least 2"),
    ({"select": "kfold", "folds": 2.5}, "folds must be an integer"),
    ({"select": "kfold", "validation": 0.2, "patience": 2}, "select and patience"),
])
def test_bad_selection_arguments_are_refused(kwargs, match):
    data, labels, _, _ = _planted(0)
    with pytest.raises(gb.errors.ModelError, match=match):
        _model().fit(data, labels, epochs=1, progress=False, **kwargs)


def test_selection_needs_two_labelled_rows():
    data, labels, _, _ = _planted(0, labelled=1, flipped=0)
    with pytest.raises(gb.errors.ModelError, match="at least 2 labelled rows, got 1"):
        _model().fit(data, labels, epochs=1, select="kfold", progress=False)


def test_selection_needs_labels():
    rules = RULES + "constraint c weight 1: x > 9 -> y\n"
    data, _, _, _ = _planted(0)
    with pytest.raises(gb.errors.ModelError, match="over labelled rows: give targets"):
        _model(rules).fit(data, epochs=1, select="kfold", progress=False)


def test_folds_never_outnumber_the_labelled_rows():
    data, labels, _, _ = _planted(0, labelled=3, flipped=0)
    history = _model().fit(data, labels, epochs=2, select="kfold", folds=10, progress=False)
    assert history.selected_epochs in (0, 2)


def test_the_classifier_selects_too():
    import pandas as pd
    from sklearn.base import clone

    data, labels, _, _ = _planted(0, labelled=12, flipped=0)
    seen = ~np.isnan(labels["y"])
    X = pd.DataFrame(data)[seen]
    clf = gb.GreyBoxClassifier(rules=RULES, select="kfold", folds=3, epochs=3)
    clf.fit(X, labels["y"][seen].astype(bool))
    assert clf.history_.selected_epochs in (0, 3)
    assert len(clf.history_.selection) == 2
    assert clone(clf).get_params()["select"] == "kfold"


@pytest.mark.parametrize("gains, wins", [
    ([0.5, 0, 0, 0, 0], False),          # one fold gains: mean 0.1 = its standard error
    ([0.25, 0.25, 0, 0, 0], True),       # two folds
    ([0.0] * 5, False),                  # a tie keeps the rules
    ([0.5, 0.5, 0.5, 0, 0], True),
    ([0.5, 0.5, 0.5, -0.5, 0], False),   # mean 0.2 = its standard error again
    ([0.5, -0.5, 0, 0, 0], False),
    ([1 / 3, 0, 0], False),              # thirds, in float rounding
])
def test_training_wins_only_beyond_one_standard_error(gains, wins):
    from greybox._select import _wins

    gain, se, won = _wins(torch.tensor(gains))
    assert won is wins
    assert gain == pytest.approx(sum(gains) / len(gains))
