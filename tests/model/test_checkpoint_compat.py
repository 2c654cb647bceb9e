"""Checkpoints written in today's format (format version 2, before GreyBox was built from
components, issue 22) load unchanged: the same state-dict keys, the same predictions.

The files in tests/data/checkpoints_v2/ were written by its ``make.py`` with the code of
that day; never regenerate them with newer code (they stand for files users hold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import greybox as gb

DATA = Path(__file__).resolve().parents[1] / "data" / "checkpoints_v2"
NAMES = ("propositional", "relational", "neural", "regression")


def _rows(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pd.read_csv(DATA / f"{name}.csv")
    pred = [c for c in table.columns if c.startswith("pred_")]
    return table.drop(columns=pred), table[pred].rename(columns=lambda c: c[len("pred_"):])


@pytest.mark.parametrize("name", NAMES)
def test_an_old_checkpoint_loads_with_its_keys(name):
    model = gb.load(DATA / f"{name}.pt")
    keys = (DATA / f"{name}.keys").read_text().split()
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("name", NAMES)
def test_an_old_checkpoint_predicts_as_it_did(name):
    model = gb.load(DATA / f"{name}.pt")
    data, expected = _rows(name)
    got = model.predict(data)
    assert list(got.columns) == list(expected.columns)
    for col in expected.columns:
        want = expected[col].to_numpy()
        have = got[col].to_numpy()
        if want.dtype.kind == "f":
            np.testing.assert_array_equal(have.astype(np.float64), want)
        else:
            assert [str(v) for v in have] == [str(v) for v in want], col


@pytest.mark.parametrize("name", NAMES)
def test_an_old_checkpoint_saves_again_to_the_same_state(name, tmp_path):
    model = gb.load(DATA / f"{name}.pt")
    model.save(tmp_path / "again.pt")
    again = gb.load(tmp_path / "again.pt")
    data, _ = _rows(name)
    pd.testing.assert_frame_equal(again.predict(data), model.predict(data))
    assert list(again.state_dict()) == list(model.state_dict())


def test_a_model_pickled_before_the_parts_unpickles():
    # the layout of a model pickled then: the statistics' buffers were the model's own,
    # the rule index lived in its __dict__
    model = gb.load(DATA / "propositional.pt")
    state = model.__getstate__()
    state["_modules"] = dict(state["_modules"])
    stats = state["_modules"].pop("statistics")
    state["_buffers"] = dict(stats._buffers)
    state.update(feature_names=list(stats.feature_names), _owner={}, _nums={}, _slots={},
                 _kb_cache=None)
    again = gb.GreyBox.__new__(gb.GreyBox)
    again.__setstate__(state)
    assert list(again.state_dict()) == (DATA / "propositional.keys").read_text().split()
    data, expected = _rows("propositional")
    assert again.predict(data)["y"].tolist() == [v == "True" or v is True
                                                 for v in expected["y"]]
    assert list(model.state_dict()) == list(again.state_dict())   # the original untouched
