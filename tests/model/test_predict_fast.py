"""``predict``'s fast paths (issue 22's fixed cost) give what the plain ones give.

- the learned rules (``to_kb``, cached by the parameters' values) are never stale,
  whichever way a weight, threshold or constraint threshold changes;
- a DataFrame's columns of plain numbers read as arrays give the batch, and the errors,
  that the Series give;
- the output frame built from one 2-D array equals the one built from a Series each;
- the decision runs its networks and residual in evaluation mode and leaves every module
  in its mode.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox import _batch
from greybox._batch import to_batch
from greybox._frame import FrameColumns
from greybox._parameters import RuleParameters
from greybox._predictions import output_frame

RULES = """input x: real
input z: real
output y: bool
rule r weight 2: x > ~1.5 -> y
rule s weight 1: z > 0.5 -> y
constraint c: not (x > ~9.5 and y)
"""


def _model():
    return gb.GreyBox(RULES, semantics="product")


ROW = pd.DataFrame({"x": [3.0], "z": [0.0]})


def _weight(kb, name):
    return kb.rules[name].weight


def _thresholds(kb):
    """The ``~`` numbers of the learned rules, in rule order."""
    out = []
    for st in (*kb.rules.values(), *kb.constraints.values()):
        body = st.body if hasattr(st, "body") else st.formula
        out += [n.value for n in gb.rules.ast.walk(body)
                if isinstance(n, gb.rules.ast.Num) and n.learnable]
    return out


def _decided(model):
    """``predict``'s decision on ROW, and the learned rules' own evaluation of it."""
    got = bool(model.predict(ROW)["y"].iloc[0])
    ref = bool(gb.rules.evaluate(model.to_kb(), ROW).decisions["y"].iloc[0])
    assert got == ref
    return got


def _sgd_step_negating_r(model):
    opt = torch.optim.SGD([model.rules["r"].weight], lr=1.0)
    opt.zero_grad()
    (2.0 * model.rules["r"].weight).backward()   # gradient 2: weight 2 -> 0 -> ...
    opt.step()
    opt.step()                                    # 2 - 2 - 2 = -2


def _data_mul(model):
    model.rules["r"].weight.data.mul_(-1)


def _data_assign(model):
    model.rules["r"].weight.data = torch.tensor(-2.0)


def _no_grad_copy(model):
    with torch.no_grad():
        model.rules["r"].weight.copy_(torch.tensor(-2.0))


def _load_state(model):
    state = model.state_dict()
    state["rules.r.weight"] = torch.tensor(-2.0)
    model.load_state_dict(state)


def _module_replaced(model):
    model.rules["r"] = RuleParameters(-2.0, [1.5])


def _parameter_replaced(model):
    model.rules["r"].weight = nn.Parameter(torch.tensor(-2.0))


@pytest.mark.parametrize("change", [_data_mul, _data_assign, _no_grad_copy, _load_state,
                                    _sgd_step_negating_r, _module_replaced,
                                    _parameter_replaced])
def test_a_changed_weight_is_read(change):
    model = _model()
    assert _weight(model.to_kb(), "r") == 2.0 and _decided(model) is True
    change(model)
    assert _weight(model.to_kb(), "r") == -2.0
    assert _decided(model) is False


@pytest.mark.parametrize("how", ["data_mul", "data_assign", "copy", "load", "sgd"])
def test_a_changed_threshold_is_read(how):
    model = _model()
    assert _thresholds(model.to_kb()) == [1.5, 9.5] and _decided(model) is True
    p = model.rules["r"].thresholds[0]
    if how == "data_mul":
        p.data.mul_(3)
    elif how == "data_assign":
        p.data = torch.tensor(4.5)
    elif how == "copy":
        with torch.no_grad():
            p.copy_(torch.tensor(4.5))
    elif how == "load":
        model.load_state_dict({**model.state_dict(), "rules.r.thresholds.0": torch.tensor(4.5)})
    else:
        opt = torch.optim.SGD([p], lr=1.0)
        (-3.0 * p).backward()
        opt.step()
    assert _thresholds(model.to_kb()) == [4.5, 9.5]
    assert _decided(model) is False   # x = 3 is no longer above the threshold


@pytest.mark.parametrize("how", ["data_mul", "copy", "load"])
def test_a_changed_constraint_threshold_is_read(how):
    model = _model()
    assert _decided(model) is True
    p = model.constraints["c"].thresholds[0]
    if how == "data_mul":
        p.data.mul_(0.2)                     # 9.5 -> 1.9: x = 3 is above, y is refused
    elif how == "copy":
        with torch.no_grad():
            p.copy_(torch.tensor(1.9))
    else:
        model.load_state_dict({**model.state_dict(),
                               "constraints.c.thresholds.0": torch.tensor(1.9)})
    assert _thresholds(model.to_kb())[1] == pytest.approx(1.9)
    assert _decided(model) is False


def test_unchanged_parameters_give_the_same_rules_object():
    model = _model()
    assert model.to_kb() is model.to_kb()
    model.double()   # same values in another precision: the same rules
    assert _weight(model.to_kb(), "r") == 2.0 and _decided(model) is True


def test_rules_of_differently_shaped_parameters_still_read():
    """A parameter that is no single number (as a user may load one) takes the slow read,
    and a change of it is seen."""
    model = _model()
    model.to_kb()
    extra = nn.Module()
    extra.register_buffer("v", torch.zeros(3))
    model.rules["r"].extra = extra
    kb = model.to_kb()
    assert _weight(kb, "r") == 2.0
    model.rules["r"].weight.data.mul_(-1)
    assert _weight(model.to_kb(), "r") == -2.0
    model.rules["r"].register_parameter("unset", None)   # a None among the tensors
    model.rules["r"].weight.data.mul_(-1)
    assert _weight(model.to_kb(), "r") == 2.0


def test_every_row_of_a_batch_sees_the_new_values():
    model = _model()
    rows = pd.DataFrame({"x": np.array([0.0, 3.0, 6.0]), "z": np.zeros(3)})
    assert model.predict(rows)["y"].tolist() == [False, True, True]
    model.rules["r"].thresholds[0].data.fill_(4.5)
    assert model.predict(rows)["y"].tolist() == [False, False, True]


# frames read at once -------------------------------------------------------------------------
READ = """input a: real
input b: int 0..9
input c: bool
input d: {lo, hi}
input e: optional real
input f: real[0, 1]
output y: bool
rule r: a > 1 and b > 2 and c and d == hi and f > 0.5 -> y
"""

FRAMES = {
    "numpy dtypes": pd.DataFrame({"a": [0.5, 2.0], "b": [1, 3], "c": [True, True],
                                  "d": ["lo", "hi"], "e": [np.nan, 1.0], "f": [0.2, 0.9]},
                                 index=["p", "q"]),
    "ints as floats, 0/1 bools": pd.DataFrame({"a": [1, 2], "b": [1.0, 3.0], "c": [0, 1],
                                               "d": pd.Categorical(["lo", "hi"]),
                                               "e": [1.5, 2.5], "f": np.float32([0.2, 0.9])}),
    "nullable and object": pd.DataFrame({"a": pd.array([0.5, 2.0], dtype="Float64"),
                                         "b": pd.array([1, 3], dtype="Int64"),
                                         "c": pd.array([True, False], dtype="boolean"),
                                         "d": np.array(["lo", "hi"], dtype=object),
                                         "e": np.array([None, 2.0], dtype=object),
                                         "f": [0.2, 0.9]}),
    "one block, a view": pd.DataFrame(np.array([[2.0, 3.0, 1.0, 0.0, 1.0, 0.9]]),
                                      columns=list("abcdef")).assign(d="hi"),
    "no rows": pd.DataFrame({"a": np.zeros(0), "b": np.zeros(0, int), "c": np.zeros(0, bool),
                             "d": np.array([], dtype=object), "e": np.zeros(0),
                             "f": np.zeros(0)}),
}

BAD = {
    "nan in a real": ("a", [np.nan, 1.0]),
    "inf": ("a", [1.0, np.inf]),
    "not whole": ("b", [1.0, 2.5]),
    "out of range int": ("b", [1, 12]),
    "out of range real": ("f", [0.5, 1.5]),
    "bool not 0/1": ("c", [0, 2]),
    "nan in a bool": ("c", [1.0, np.nan]),
    "int beyond the type": ("b", np.array([3, -4], dtype=np.int8)),
    "not a label": ("d", ["lo", "mid"]),
    "a missing label": ("d", ["lo", None]),
    "a blank label": ("d", ["lo", " "]),
    "a label as object": ("d", np.array(["lo", 3], dtype=object)),
}


def _series_path(monkeypatch):
    """Every column read as a Series by the engine's reader, as before the fast paths."""
    monkeypatch.setattr(FrameColumns, "table", FrameColumns.__getitem__)
    monkeypatch.setattr(FrameColumns, "labels", lambda self, key: None)
    monkeypatch.setattr(_batch, "plain_column", lambda var, col: None)


def _same_batches(one, two):
    assert one.n == two.n and one.index.equals(two.index)
    assert list(one.columns) == list(two.columns) and list(one.values) == list(two.values)
    for k in one.columns:
        np.testing.assert_array_equal(one.columns[k], two.columns[k])
        assert one.columns[k].dtype == two.columns[k].dtype
    for k in one.values:
        assert one.values[k].dtype == two.values[k].dtype
        assert torch.equal(one.values[k], two.values[k])


@pytest.mark.parametrize("name", list(FRAMES))
def test_a_frame_reads_as_its_series_do(name, monkeypatch):
    model = gb.GreyBox(READ, semantics="product")
    frame = FRAMES[name]
    before = frame.copy(deep=True)
    fast = to_batch(model.kb, frame, torch.device("cpu"))
    got = model.predict(frame)
    pd.testing.assert_frame_equal(frame, before)   # the caller's frame untouched
    with monkeypatch.context() as m:
        _series_path(m)
        _same_batches(fast, to_batch(model.kb, frame, torch.device("cpu")))
        pd.testing.assert_frame_equal(got, model.predict(frame))


def test_a_read_column_is_no_writable_view_of_the_callers_frame():
    model = gb.GreyBox(READ, semantics="product")
    frame = FRAMES["numpy dtypes"].copy()
    batch = model.batch(frame)
    col = batch.columns["a"]
    if np.shares_memory(col, frame["a"].to_numpy()):
        assert not col.flags.writeable
    batch.values["a"][0] = 99.0          # the tensors are copies
    assert frame["a"].iloc[0] == 0.5


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_column_is_refused_as_its_series_is(case, monkeypatch):
    model = gb.GreyBox(READ, semantics="product")
    column, values = BAD[case]
    frame = FRAMES["numpy dtypes"].copy()
    frame[column] = values
    with pytest.raises(gb.DataError) as fast:
        model.predict(frame)
    with monkeypatch.context() as m:
        _series_path(m)
        with pytest.raises(gb.DataError) as slow:
            model.predict(frame)
    assert str(fast.value) == str(slow.value)
    assert "'q'" in str(fast.value) or "row" in str(fast.value)


def test_a_missing_or_renamed_column_is_named():
    model = gb.GreyBox(READ, semantics="product")
    frame = FRAMES["numpy dtypes"].rename(columns={"a": "A"})
    with pytest.raises(gb.DataError, match="missing input 'a'; found 'A'"):
        model.predict(frame)


# the output frame ------------------------------------------------------------------------------
OUTPUTS = {
    "one bool": "output y: bool",
    "bools": "output y: bool  output w: bool",
    "ints": "output y: int 0..3  output w: int -2..2",
    "real": "output y: real",
    "enum": "output y: {a, b, c}",
    "mixed": "output y: bool  output w: int 0..3",
    "big int": "input x: int 0..9\noutput y: int 0..100000000000000000000\n"
               "define y: int 0..100000000000000000000 = 10000000000000000000 * x",
}


def _codes(kb, n, rng):
    out = {}
    for name in kb.outputs:
        d = gb.rules.ast.domain(kb.variables[name].type)
        if d.big:
            out[name] = np.array([10 ** 19 + i for i in range(n)], dtype=object)
        elif d.finite:
            out[name] = np.array([d.code_at(int(i)) for i in rng.integers(0, d.size, n)])
        else:
            out[name] = rng.normal(size=n)
    return out


@pytest.mark.parametrize("outputs", list(OUTPUTS))
@pytest.mark.parametrize("index", [pd.RangeIndex(3), pd.Index(["p", "q", "r"]),
                                   pd.RangeIndex(0)])
def test_the_output_frame_is_the_frame_of_its_series(outputs, index):
    kb = gb.rules.parse(OUTPUTS[outputs])
    codes = _codes(kb, len(index), np.random.default_rng(0))
    got = output_frame(kb, codes, index)
    want = pd.DataFrame({name: gb.rules.ast.domain(kb.variables[name].type).series(
        codes[name], index=index) for name in kb.outputs}, index=index)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.index is index and got.columns.dtype == want.columns.dtype
    got.columns.name = "mine"   # a frame's column name stays on that frame
    assert output_frame(kb, codes, index).columns.name is None


# evaluation mode -------------------------------------------------------------------------------
def test_the_decision_runs_its_network_and_residual_in_evaluation_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.9), nn.Linear(8, 1))
    res = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.9), nn.Linear(8, 1))
    model = gb.GreyBox("input x: real\nneural z: bool = net(x)\noutput o: bool\n"
                       "rule r: z -> o", {"net": net}, residual=res)
    rows = {"x": np.linspace(-1, 1, 200)}
    first = model.predict(rows)
    assert all(m.training for m in model.modules())
    pd.testing.assert_frame_equal(first, model.predict(rows))   # dropout was off
    model.eval()
    pd.testing.assert_frame_equal(first, model.predict(rows))
    assert not any(m.training for m in model.modules())
