"""The debugger's targets are decoded like the output's type, or refused naming the row
(issue 11, item 11): strings, NaN and blank CSV cells never silently become True."""

import io

import numpy as np
import pandas as pd
import pytest

import greybox as gb
from greybox.errors import DataError

X = np.linspace(0, 10, 21)
LABELS = pd.Index([f"p{i}" for i in range(21)])
TRUTH = X > 6                       # the model errs on x in (5, 6]: accuracy 19/21


@pytest.fixture(scope="module")
def bool_model():
    return gb.GreyBox("""
input x: real[0, 10]
output high: bool
rule big: x > 5 -> high
rule small: x <= 5 -> not high
""", semantics="product")


@pytest.fixture(scope="module")
def enum_model():
    return gb.GreyBox("""
input x: real[0, 10]
output grade: {low, mid, high}
rule r1: x > 6 -> grade = high
rule r2: x <= 3 -> grade = low
""", semantics="product")


@pytest.fixture(scope="module")
def int_model():
    return gb.GreyBox("""
input x: real[0, 10]
output n: int 0..3
rule r1: x > 6 -> n = 3
rule r2: x <= 3 -> n = 0
""", semantics="product")


def _frame():
    return pd.DataFrame({"x": X}, index=LABELS)


def _spelled(true, false):
    return np.array([true if t else false for t in TRUTH], dtype=object)


@pytest.mark.parametrize("targets", [
    TRUTH,
    TRUTH.astype(int),
    TRUTH.astype(float),
    _spelled("True", "False"),
    _spelled("true", "FALSE"),
    _spelled("yes", "no"),
    _spelled(" Yes ", "No"),
    _spelled("1", "0"),
    _spelled(True, False),
    _spelled(1, 0.0),
    pd.Series(TRUTH, dtype="boolean"),
    pd.Series(TRUTH.astype(int), dtype="Int64"),
    pd.Series(_spelled("yes", "no"), dtype="category"),
    pd.Series(_spelled("yes", "no"), dtype="string"),
], ids=lambda t: type(t).__name__ + ":" + str(getattr(t, "dtype", "")))
def test_bool_targets_are_decoded_not_cast(bool_model, targets):
    dbg = gb.explain.Debugger(bool_model, _frame(), targets)
    assert dbg.target.dtype == bool
    np.testing.assert_array_equal(dbg.target, TRUTH)
    assert dbg.accuracy == pytest.approx(19 / 21)


@pytest.mark.parametrize("targets, match", [
    (np.where(TRUTH, 1.0, np.nan), r"target of 'high' is missing at row 'p0' \(and 12 more"),
    (_spelled("True", None), r"missing at row 'p0'"),
    (_spelled("True", ""), r"missing at row 'p0'"),
    (_spelled("True", "  "), r"missing at row 'p0'"),
    (pd.Series(_spelled(True, pd.NA), dtype="boolean"), r"missing at row 'p0'"),
    (_spelled("yes", "maybe"), r"'maybe' at row 'p0' \(and 12 more row\(s\)\) is not "
                               r"true/false"),
    (_spelled(1, 2), r"2 at row 'p0' .*is not true/false"),
    (_spelled(1.0, 0.5), r"0\.5 at row 'p0'"),
    (np.where(TRUTH, 1, -1), r"-1 at row 'p0'"),
    (_spelled("True", "Falsch"), r"'Falsch' at row 'p0'"),
    (_spelled("True", "x" * 500), r"'xxxx.*\.\.\. at row 'p0'"),
])
def test_bool_targets_that_mean_nothing_are_refused_naming_the_row(bool_model, targets,
                                                                   match):
    with pytest.raises(DataError, match=match):
        gb.explain.Debugger(bool_model, _frame(), targets)


def test_a_blank_csv_cell_is_refused_naming_its_row(bool_model, tmp_path):
    # what `greybox debug model.pt data.csv --target high` reads
    text = "x,high\n1,False\n7,True\n8,\n9,True\n"
    data = pd.read_csv(io.StringIO(text))
    with pytest.raises(DataError, match=r"target of 'high' is missing at row 2:"):
        gb.explain.Debugger(bool_model, data)
    data = pd.read_csv(io.StringIO(text.replace("8,\n", "8,yes\n")))
    dbg = gb.explain.Debugger(bool_model, data)
    np.testing.assert_array_equal(dbg.target, [False, True, True, True])
    assert dbg.accuracy == 1.0


def test_int_targets_are_integral_numbers_or_their_strings_in_range(int_model):
    truth = np.where(X > 6, 3, np.where(X <= 3, 0, 1))
    for targets in [truth, truth.astype(float), truth.astype(str),
                    np.array([f" {v}.0" for v in truth], dtype=object)]:
        dbg = gb.explain.Debugger(int_model, _frame(), targets)
        assert dbg.target.dtype == np.int64
        np.testing.assert_array_equal(dbg.target, truth)
    for bad, match in [(1.5, r"1\.5 at row 'p0' is not an integer in 0\.\.3"),
                       ("two", r"'two' at row 'p0'"), (7, r"7 at row 'p0'"),
                       (True, r"True at row 'p0'"), (np.nan, r"missing at row 'p0'"),
                       (10 ** 400, r"an integer in 0\.\.3")]:
        targets = truth.astype(object)
        targets[0] = bad
        with pytest.raises(DataError, match=match):
            gb.explain.Debugger(int_model, _frame(), targets)


def test_enum_targets_are_value_names(enum_model):
    truth = np.where(X > 6, "high", np.where(X <= 3, "low", "mid"))
    dbg = gb.explain.Debugger(enum_model, _frame(), pd.Series(truth, dtype="category"))
    np.testing.assert_array_equal(dbg.target, truth)
    assert dbg.accuracy == pytest.approx(15 / 21)   # every "mid" row fails
    for bad, match in [("medium", r"'medium' at row 'p0' is not one of \{low, mid, high\}"),
                       (0, r"0 at row 'p0'"), (None, r"missing at row 'p0'")]:
        targets = truth.astype(object)
        targets[0] = bad
        with pytest.raises(DataError, match=match):
            gb.explain.Debugger(enum_model, _frame(), targets)


def test_targets_of_the_wrong_length_are_refused(bool_model):
    with pytest.raises(DataError, match=r"one value per row: expected shape \(21,\)"):
        gb.explain.Debugger(bool_model, _frame(), TRUTH[:5])


# ---- red-team findings (second wave)

def test_fit_takes_the_bool_labels_the_debugger_takes(bool_model):
    """Item 20: one decoder for bool labels: fit and loss read "yes"/"no", "True"/"false"
    and 1/0 as the debugger does (blank cells are missing labels), and refuse the rest
    naming the row."""
    spelled = _spelled(" Yes ", "no")
    spelled[3] = ""                                   # a blank cell: an unlabelled row
    numbers = np.where(TRUTH, 1.0, 0.0)
    numbers[3] = np.nan
    data = _frame()
    model = gb.GreyBox(bool_model.kb, semantics="product")
    assert model.loss(data, {"high": spelled}).item() == pytest.approx(
        model.loss(data, {"high": numbers}).item())
    model.fit(data, {"high": _spelled("true", "FALSE")}, epochs=1, progress=False)
    with pytest.raises(DataError, match=r"labels of 'high': expected true/false, got 'maybe' at "
                       r"row 'p0' \(True/False, 1/0 or yes/no\)"):   # the row's label
        model.fit(data, {"high": _spelled("yes", "maybe")}, epochs=1, progress=False)


def test_entity_targets_naming_another_output_are_refused():
    """Item 20: {"cancer": ..., "other": ...} debugged cancer and silently ignored other."""
    import greybox.rules as gr

    kb = gr.parse("set person\ninput smokes(person): bool\noutput cancer(person): bool\n"
                  "output other: bool\nrule own(p in person) weight 2.0: smokes(p) -> cancer(p)\n"
                  "rule o: smokes(anna) -> other\n", sets={"person": ["anna", "bob"]})
    model = gb.GreyBox(kb, semantics="product")
    smokes = np.random.default_rng(0).random((8, 2)) < 0.5
    data = {"smokes": smokes}
    with pytest.raises(DataError, match=r"targets name 'other', which are not members of "
                       r"cancer \(.*debug another output with Debugger\)"):
        gb.explain.EntityDebugger(model, data, {"cancer": smokes, "other": smokes[:, 0]})
    with pytest.raises(DataError, match=r"'cancer\(bob\)' is given twice"):
        gb.explain.EntityDebugger(model, data, {"cancer": smokes, "cancer(bob)": smokes[:, 1]})
    dbg = gb.explain.EntityDebugger(model, data, {"cancer": smokes})
    assert set(dbg.members) == {"anna", "bob"}


@pytest.mark.parametrize("make", ["Debugger", "EntityDebugger"])
def test_duplicate_row_labels_are_refused_when_the_debugger_is_made(make):
    """Item 7: rows are named by their labels everywhere, so labels must be unique."""
    import greybox.rules as gr

    if make == "Debugger":
        model = gb.GreyBox("input x: int 0..5\noutput y: bool\nrule r: x >= 4 -> y")
        data = pd.DataFrame({"x": [5, 0, 3, 1]}, index=["r1", "r1", "r2", "r2"])
        args = (model, data, {"y": [True, True, False, False]})
    else:
        kb = gr.parse("set person\ninput smokes(person): bool\noutput cancer(person): bool\n"
                      "rule own(p in person): smokes(p) -> cancer(p)\n",
                      sets={"person": ["anna", "bob"]})
        model = gb.GreyBox(kb)
        data = pd.DataFrame({"smokes(anna)": [True, False, True], "smokes(bob)": [1, 0, 0]},
                            index=[7, 7, 8])
        args = (model, data, {"cancer": np.ones((3, 2), bool)})
    with pytest.raises(DataError, match=r"index labels 'r1', 'r2' name more than one row|"
                                        r"index labels 7 name more than one row"):
        getattr(gb.explain, make)(*args)


def test_targets_in_a_series_are_matched_to_the_datas_rows_by_label():
    """The debugger read a Series of targets by position: indexed like the data in
    another order, each row was judged against another row's target."""
    model = gb.GreyBox("input x: int 0..5\noutput y: bool\nrule r: x >= 4 -> y",
                       semantics="product")
    data = pd.DataFrame({"x": [5, 0, 3, 4]}, index=["ann", "bob", "cy", "dee"])
    aligned = pd.Series([True, False, False, True], index=data.index)
    dbg = gb.explain.Debugger(model, data, aligned.loc[["dee", "cy", "ann", "bob"]])
    assert dbg.target.tolist() == [True, False, False, True]
    assert len(dbg.failures()) == 0
    with pytest.raises(DataError, match="no label for row 'dee'"):
        gb.explain.Debugger(model, data, aligned.loc[["ann", "bob", "cy"]].set_axis(
            ["ann", "bob", "zed"]).reindex(["ann", "bob", "cy", "zed"]).fillna(False))


def test_train_labels_in_a_series_are_matched_to_the_training_rows_by_label():
    """train=(data, labels) paired a Series by position (the reviewer's find): indexed
    like the training data in another order, TracIn blamed rows under others' labels."""
    model = gb.GreyBox("input x: int 0..5\noutput y: bool\nrule r: x >= 4 -> y",
                       semantics="product")
    train = pd.DataFrame({"x": [5, 0, 4, 1]}, index=["a", "b", "c", "d"])
    labels = pd.Series([True, False, True, False], index=train.index)
    dbg = gb.explain.Debugger(model, train, labels,
                              train=(train, labels.loc[["d", "c", "b", "a"]]))
    assert dbg.train[1].tolist() == [True, False, True, False]
