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
    assert frame.loc[15, "p_value"] >= 0.05
    assert "k-fold selection kept 0 epochs" in str(history)


def test_selection_trains_where_training_wins_on_held_out_labels():
    # the rules draw the line at 2; the labels (all right) at 5
    rules = RULES.replace("~5", "~2")
    data, labels, test, truth = _planted(0, labelled=40, flipped=0)
    rules_alone = _accuracy(_model(rules), test, truth)
    model = _model(rules)
    history = model.fit(data, labels, select="kfold", **FIT)
    assert history.selected_epochs == 15 and len(history.epochs) == 15
    record = history.selection[1]
    assert record["gain"] > 0 and record["fixed"] > record["broken"]
    assert record["p_value"] < 0.05
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


def _noisy(seed: int, *, labelled: int = 20, n: int = 64, noise: float = 1.0):
    """Rows whose ``y`` is ``x + noise > 5``, so that the rules' ``x > 5`` is the best any
    model can do; ``labelled`` of them labelled, and 4,000 test rows drawn alike."""
    rng = np.random.default_rng(seed)
    x, z = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
    y = x + rng.normal(0, noise, n) > 5
    chosen = rng.choice(n, labelled, replace=False)
    labels = np.full(n, np.nan)
    labels[chosen] = y[chosen]
    xt, zt = rng.uniform(0, 10, 4000), rng.uniform(0, 10, 4000)
    return {"x": x, "z": z}, {"y": labels}, {"x": xt, "z": zt}, xt + rng.normal(0, noise, 4000) > 5


def test_a_few_lucky_folds_do_not_decide():
    # 20 noisy labels of rules that are already the best: training fixes 3 held-out
    # labels and breaks none, in three folds (by chance: on test rows it loses 0.076).
    # The mean per-fold gain was 2.5 standard errors above 0 and trained; the sign test
    # says 3 of 3 happens one time in eight when training helps nothing, and keeps the rules
    data, labels, test, truth = _noisy(7)
    rules_alone = _accuracy(_model(), test, truth)
    trained = _model()
    trained.fit(data, labels, **FIT)
    assert _accuracy(trained, test, truth) < rules_alone - 0.05     # training hurts here

    selected = _model()
    history = selected.fit(data, labels, select="kfold", **FIT)
    record = history.selection[1]
    assert (record["fixed"], record["broken"]) == (3, 0)
    assert record["p_value"] == pytest.approx(1 / 8)
    assert history.selected_epochs == 0
    assert _accuracy(selected, test, truth) == rules_alone


@pytest.mark.parametrize("fixed, broken, p", [
    (0, 0, 1.0),                 # training changed no held-out decision
    (1, 0, 0.5),
    (2, 0, 0.25),                # what the one-standard-error rule took as a win
    (3, 0, 0.125),
    (5, 0, 1 / 32),              # the fewest that win at 5%
    (6, 1, 7 / 128 + 1 / 128),   # P(6 or 7 heads in 7 tosses)
    (0, 4, 1.0),
    (2, 2, 11 / 16),
    (60, 40, 0.028443966820490395),   # sum of comb(100, k) for k >= 60, over 2**100
])
def test_the_sign_test_is_the_exact_binomial_tail(fixed, broken, p):
    from greybox._select import _sign_test

    assert _sign_test(fixed, broken) == pytest.approx(p, rel=1e-9)


def test_training_wins_at_five_per_cent():
    from greybox._select import ALPHA, _sign_test

    assert ALPHA == 0.05
    assert _sign_test(4, 0) > ALPHA > _sign_test(5, 0)
    assert _sign_test(7, 2) > ALPHA > _sign_test(8, 1)
