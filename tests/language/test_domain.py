"""Domain: the one value <-> index <-> code convention, round trips on every finite type."""

import numpy as np
import pandas as pd
import pytest
import z3

from greybox.rules import ast as A

TYPES = [A.BoolType(), A.IntType(-2, 3), A.IntType(5, 5), A.EnumType(("low", "mid", "high"))]


@pytest.mark.parametrize("t", TYPES, ids=repr)
def test_value_index_and_code_round_trip(t):
    d = A.domain(t)
    values = list(d.values)
    assert d.size == len(values) == len(A.domain_values(t))
    for k, v in enumerate(values):
        assert d.index(v) == k and d.value(k) == v
        assert d.decode(d.code(v)) == v and d.code_at(k) == d.code(v)
        assert d.index_of(d.code(v)) == k
    codes = d.codes(values)
    assert list(d.series(codes)) == values
    assert list(d.index_of(codes)) == list(range(len(values)))
    assert list(d.indices(pd.Series(values, dtype=object))) == list(range(len(values)))
    assert list(d.from_indices(np.arange(len(values)))) == values


@pytest.mark.parametrize("t", TYPES, ids=repr)
def test_z3_values_decode_to_themselves(t):
    d = A.domain(t)
    x = d.z3_const("x")
    for k, v in enumerate(d.values):
        s = z3.Solver()
        s.add(x == d.z3_value(v))
        assert s.check() == z3.sat
        m = s.model()
        assert d.z3_decode(m.eval(x, model_completion=True)) == v
        assert m.eval(d.z3_index(x)).as_long() == k


def test_codes_are_what_arithmetic_sees():
    assert A.domain(A.IntType(10, 20)).code(12) == 12       # an int is its value
    assert A.domain(A.IntType(10, 20)).index(12) == 2       # its index counts from lo
    assert A.domain(A.EnumType(("a", "b"))).code("b") == 1  # an enum's code is its index
    assert A.domain(A.BoolType()).code(1) is True
    real = A.domain(A.RealType(0.0, 1.0))
    assert not real.finite and real.decode(np.float32(0.5)) == 0.5
    assert real.series([0.25]).dtype == np.float64
    with pytest.raises(TypeError, match="not a finite type"):
        _ = real.size
    with pytest.raises(TypeError, match="no domain"):
        A.domain(A.TensorType())


def test_series_keeps_types_and_labels():
    d = A.domain(A.EnumType(("x", "y")))
    s = d.series(np.array([1, 0]), index=pd.Index(["r1", "r2"]), name="e")
    assert isinstance(s.dtype, pd.CategoricalDtype) and list(s.cat.categories) == ["x", "y"]
    assert s.to_dict() == {"r1": "y", "r2": "x"} and s.name == "e"
    assert A.domain(A.IntType(3, 9)).from_indices(np.array([0, 6])).tolist() == [3, 9]
    assert list(d.indices(["y", "nope"])) == [1, -1]


def test_a_huge_int_domain_costs_nothing():
    d = A.domain(A.IntType(0, 900_000_000))
    assert d.size == 900_000_001 and isinstance(d.values, range)
    assert d.decode(2**40) == 2**40 and d.index(900_000_000) == 900_000_000
