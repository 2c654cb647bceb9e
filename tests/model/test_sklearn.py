"""GreyBoxClassifier under scikit-learn's contract."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import greybox as gb
from tests.conftest import EXAMPLES


# Every check scikit-learn has for classifiers, on the rule-free form (X's columns become
# the inputs, the residual network does the work): none is skipped. The checks feed arrays
# with arbitrary numbers of columns, which rules written for named columns cannot take;
# the rule-based form is tested below on the data its rules are about.
@parametrize_with_checks([gb.GreyBoxClassifier(residual="mlp", epochs=20)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target.map({0: True, 1: False}).rename("malignant")  # 0 = malignant


def _clf(**kw):
    kw.setdefault("epochs", 10)
    return gb.GreyBoxClassifier(rules=str(EXAMPLES / "breast_cancer.rules"), **kw)


def test_rules_on_named_columns_fit_and_score(cancer):
    X, y = cancer
    clf = _clf().fit(X, y)
    assert clf.classes_.tolist() == [False, True]
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X.iloc[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1)
    assert clf.feature_names_in_.tolist() == list(X.columns)
    assert "rules.large_irregular.thresholds.0" in dict(clf.model_.named_parameters())


def test_works_in_pipelines_cross_validation_and_clone(cancer):
    X, y = cancer
    pipe = make_pipeline(FunctionTransformer(lambda d: d), _clf(residual="mlp", epochs=5))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.85
    clf = _clf(lr=0.03)
    other = clone(clf)
    assert other.get_params()["lr"] == 0.03 and not hasattr(other, "model_")
    assert clf.set_params(epochs=3).epochs == 3


def test_labels_outside_the_output_are_refused(cancer):
    X, _ = cancer
    with pytest.raises(ValueError, match="output 'malignant' is a bool but y has 3 classes"):
        _clf().fit(X, np.arange(len(X)) % 3)


def test_rules_need_their_columns(cancer):
    X, y = cancer
    with pytest.raises(gb.DataError, match="missing input 'mean radius'"):
        _clf().fit(X.drop(columns="mean radius"), y)


def test_a_residual_module_is_copied_not_trained_in_place(cancer):
    import torch
    from torch import nn

    X, y = cancer
    res = nn.Linear(6, 1)
    before = {k: v.clone() for k, v in res.state_dict().items()}
    _clf(residual=res, epochs=2).fit(X, y)
    assert all(torch.equal(before[k], v) for k, v in res.state_dict().items())


def test_enum_outputs_map_their_values():
    X = pd.DataFrame({"x": np.linspace(0, 9, 90)})
    y = np.where(X.x < 3, "low", np.where(X.x < 6, "mid", "high"))
    rules = """
        input x: real[0, 10]
        output level: {low, mid, high}
        rule l weight 3: x < ~3 -> level = low
        rule m weight 3: x >= ~3 and x < ~6 -> level = mid
        rule h weight 3: x >= ~6 -> level = high
    """
    clf = gb.GreyBoxClassifier(rules=rules, epochs=20, lr=0.05).fit(X, y)
    assert clf.classes_.tolist() == ["low", "mid", "high"]
    assert clf.score(X, y) > 0.9
