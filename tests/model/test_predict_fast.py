"""``predict``'s fast paths (issue 22's fixed cost) give what the plain ones give.

- the learned rules (``to_kb``, cached by the parameters' values) are never stale,
  whichever way a weight, threshold or constraint threshold changes;
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import greybox as gb
from greybox._parameters import RuleParameters

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


def test_every_row_of_a_batch_sees_the_new_values():
    model = _model()
    rows = pd.DataFrame({"x": np.array([0.0, 3.0, 6.0]), "z": np.zeros(3)})
    assert model.predict(rows)["y"].tolist() == [False, True, True]
    model.rules["r"].thresholds[0].data.fill_(4.5)
    assert model.predict(rows)["y"].tolist() == [False, False, True]
