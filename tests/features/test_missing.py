"""Missing values (issue 21, item 2): optional inputs, ``x is missing``, and one
three-valued meaning on every backend -- crisp evaluation, the t-norms, exact inference,
Z3 and the MILP -- each result replayed through ``predict``."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import greybox as gb
import greybox.rules as gr
from greybox.rules import ast as A

TEXT = """
input income: optional real[0, 100000]
input kind: optional {a, b}
input smoker: optional bool
input age: int 0..120
output ok: bool
rule rich: income > 500 -> ok
rule poor weight 0.5: not income > 500 -> not ok
rule either: kind == a or smoker -> ok
rule both weight 0.75: kind == b and smoker -> not ok
rule arrow weight 0.25: (smoker -> income > 2000) -> ok
rule same weight 0.5: (smoker <-> kind in {a}) -> not ok
rule unknown weight 2: income is missing and age > 60 -> not ok
rule known weight 0.5: income is not missing and count(kind == a, smoker) >= 1 -> ok
"""

# -------------------------------------------------------------- a reference: Kleene


def _k_not(a):
    return None if a is None else not a


def _k_and(*xs):
    if any(x is False for x in xs):
        return False
    return None if any(x is None for x in xs) else True


def _k_or(*xs):
    if any(x is True for x in xs):
        return True
    return None if any(x is None for x in xs) else False


def _cmp(x, f):
    return None if x is None else f(x)


def _reference_bodies(income, kind, smoker, age) -> dict:
    """Each rule body of TEXT in Kleene's three-valued logic, written out by hand (None:
    unknown); a rule fires where its body is True."""
    rich = _cmp(income, lambda v: v > 500)
    return {
        "rich": rich,
        "poor": _k_not(rich),
        "either": _k_or(_cmp(kind, lambda v: v == "a"), smoker),
        "both": _k_and(_cmp(kind, lambda v: v == "b"), smoker),
        "arrow": _k_or(_k_not(smoker), _cmp(income, lambda v: v > 2000)),
        "same": _k_and(_k_or(_k_not(smoker), _cmp(kind, lambda v: v == "a")),
                       _k_or(smoker, _k_not(_cmp(kind, lambda v: v == "a")))),
        "unknown": income is None and age > 60,
        # a count that reads a missing value is unknown, so is a comparison of it
        "known": _k_and(income is not None,
                        None if kind is None or smoker is None else
                        (kind == "a") + smoker >= 1),
    }


def _rows(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.choice([0.0, 500.0, 501.0, 2500.0, 90000.0], n)
    return pd.DataFrame({
        "income": np.where(rng.random(n) < 0.3, np.nan, income),
        "kind": pd.Series(rng.choice(["a", "b", None], n), dtype=object),
        "smoker": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
        "age": rng.integers(0, 121, n),
    }, index=[f"r{i}" for i in range(n)])


def _cell(v):
    return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v


@pytest.fixture(scope="module")
def kb():
    return gr.parse(TEXT)


@pytest.fixture(scope="module")
def rows():
    return _rows()


# ------------------------------------------------------------------------ language


def test_syntax_prints_back_and_the_fast_path_builds_what_lark_builds(kb):
    from tests.language.test_parser import _fast_agrees_with_lark

    assert kb.variables["income"].optional and not kb.variables["age"].optional
    assert gr.parse(gr.to_text(kb)) == kb
    assert "input income: optional real[0, 100000]" in gr.to_text(kb)
    assert gr.to_text(kb.rules["known"].body).startswith("income is not missing and")
    assert _fast_agrees_with_lark(TEXT.replace("count(kind == a, smoker)", "age"))   # no call
    assert _fast_agrees_with_lark("input x: optional int 0..3\noutput y: bool\n"
                                  "rule r: not x is not missing or (x is missing) -> y")
    b = gr.Builder()
    x = b.input("income", "real[0, 100000]", optional=True)
    y = b.output("y", bool)
    b.rule("r", x.is_missing() | (~x.is_missing() & (x > 3)), y)
    assert b.build() == gr.parse("input income: optional real[0, 100000]\noutput y: bool\n"
                                 "rule r: income is missing or income is not missing and "
                                 "income > 3 -> y")


@pytest.mark.parametrize("text, message", [
    ("input x: real\noutput y: bool\nrule r: x is missing -> y",
     r"'is missing' tests an input declared optional .* got input 'x'"),
    ("input x: optional real\noutput y: bool\ndefine d: bool = x > 1\nrule r: d -> y",
     r"the definition of 'd' reads optional input 'x'"),
    ("input x: optional real\nneural n: bool = net(x)\noutput y: bool\nrule r: n -> y",
     r"network 'net' of 'n' reads optional input 'x'"),
    ("input t: optional tensor[2]\noutput y: bool\nrule r: true -> y",
     r"'t': a tensor input cannot be optional"),
    ("input usage: real\noutput y: bool\nrule r: usage == nan -> y",
     r"undeclared name 'nan'; a missing value is tested with 'x is missing'"),
])
def test_misuse_is_refused_with_a_message(text, message):
    with pytest.raises(gr.GreyboxError, match=message):
        gr.parse(text)


def test_a_define_may_test_is_missing():
    kb = gr.parse("input x: optional real\noutput y: bool\ndefine gap: bool = x is missing\n"
                  "rule r: gap -> y")
    assert gr.evaluate(kb, {"x": [None, 1.0]}).decisions["y"].tolist() == [True, False]


# ------------------------------------------------------------------------ data


@pytest.mark.parametrize("column", [
    [np.nan, 1.0, 2.0], [None, 1.0, 2.0], pd.array([None, 1, 2], dtype="Int64"),
    pd.array([None, 1.0, 2.0], dtype="Float64"), np.array([None, 1.0, 2.0], dtype=object),
])
def test_every_kind_of_missing_cell_is_read_as_missing(column):
    kb = gr.parse("input x: optional real\noutput y: bool\nrule r: x is missing -> y")
    data = pd.DataFrame({"x": column}, index=["p", "q", "s"])
    assert gr.evaluate(kb, data).decisions["y"].tolist() == [True, False, False]
    model = gb.GreyBox(kb, semantics="product")
    assert model.predict(data)["y"].tolist() == [True, False, False]
    assert data["x"].isna().tolist() == [True, False, False]   # the caller's data untouched


@pytest.mark.parametrize("decl, column, shown", [
    ("bool", pd.array([True, False, None], dtype="boolean"), "<NA>"),
    ("int 0..9", pd.array([1, 2, None], dtype="Int64"), "<NA>"),
    ("real", pd.array([1.0, 2.0, None], dtype="Float64"), "<NA>"),
    ("real", [1.0, 2.0, np.nan], "NaN"),
    ("{a, b}", np.array(["a", "b", None], dtype=object), "(None|NaN)"),   # pandas 3: NaN
    ("{a, b}", ["a", "b", " "], "' '"),
])
def test_a_required_input_refuses_a_missing_cell_naming_the_row_label(decl, column, shown):
    body = "x" if decl == "bool" else "x == a" if decl.startswith("{") else "x > 0"
    kb = gr.parse(f"input x: {decl}\noutput y: bool\nrule r: {body} -> y")
    data = pd.DataFrame({"x": column}, index=["first", "second", "third"])
    message = (rf"column 'x': missing value \({shown}\) at row 'third'; an input that may be "
               rf"missing is declared 'input x: optional ")
    with pytest.raises(gr.DataError, match=message):
        gr.evaluate(kb, data)
    with pytest.raises(gr.DataError, match=message):
        gb.GreyBox(kb, semantics="product").predict(data)


@pytest.mark.parametrize("optional", ["", "optional "])
def test_bool_columns_read_yes_no_and_true_false_as_labels_do(optional):
    """Regression: "yes"/"no" were refused for a bool input although labels accept them."""
    kb = gr.parse(f"input s: {optional}bool\noutput y: bool\nrule r: s -> y")
    data = pd.DataFrame({"s": ["yes", "No", " TRUE", "false", "1", "0"]})
    want = [True, False, True, False, True, False]
    assert gr.evaluate(kb, data).decisions["y"].tolist() == want
    assert gb.GreyBox(kb, semantics="product").predict(data)["y"].tolist() == want
    with pytest.raises(gr.DataError, match=r"column 's': expected true/false .* got 'maybe'"):
        gr.evaluate(kb, {"s": ["yes", "maybe"]})


# ------------------------------------------------------------ meaning: every backend


def test_crisp_evaluation_is_kleene_three_valued_logic(kb, rows):
    ev = gr.evaluate(kb, rows)
    for label, row in rows.iterrows():
        want = _reference_bodies(*(_cell(row[c]) for c in ("income", "kind", "smoker", "age")))
        got = ev.bodies.loc[label]
        for rule, truth in want.items():
            assert bool(got[rule]) == (truth is True), (label, rule, truth)


@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz", "probabilistic"])
def test_every_semantics_computes_what_predict_decides(kb, rows, semantics):
    ev = gr.evaluate(kb, rows)
    model = gb.GreyBox(kb, semantics=semantics)
    assert model.predict(rows)["ok"].tolist() == ev.decisions["ok"].tolist()
    trace = model(rows)
    for rule in kb.rules:
        truth = trace.bodies[rule].detach().numpy()
        assert np.isfinite(truth).all()
        np.testing.assert_array_equal(truth, ev.bodies[rule].to_numpy(dtype=float), rule)


@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz", "probabilistic"])
def test_a_smooth_comparison_of_a_missing_value_has_truth_zero_and_trains(semantics):
    kb = gr.parse("input x: optional real[0, 10]\noutput y: bool\n"
                  "rule up: x > ~5 -> y\nrule down: not x > ~5 -> not y")
    data = pd.DataFrame({"x": [None, 1.0, 9.0, None, 7.0, 2.0]})
    model = gb.GreyBox(kb, semantics=semantics)
    trace = model(data)
    for rule in ("up", "down"):
        truth = trace.bodies[rule].detach().numpy()
        assert truth[0] == 0.0 and truth[3] == 0.0 and np.isfinite(truth).all()
    model.fit(data, {"y": [False, False, True, False, True, False]}, epochs=3, progress=False)
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
    assert model.predict(data)["y"].tolist() == gr.evaluate(
        model.to_kb(), data, bias=model.bias_table()).decisions["y"].tolist()


def test_a_constraint_over_a_missing_value_restricts_nothing():
    kb = gr.parse("input x: optional real\noutput y: bool\nconstraint c: x > 3 -> y\n"
                  "constraint d: not x > 3 -> not y")
    data = {"x": [None, 5.0, 1.0]}
    ev = gr.evaluate(kb, data)
    assert ev.decisions["y"].tolist() == [False, True, False]
    assert not ev.infeasible.any() and not ev.violations.any().any()
    for semantics in ("product", "probabilistic"):
        assert gb.GreyBox(kb, semantics=semantics).predict(data)["y"].tolist() == \
            [False, True, False]


def test_entails_and_check_read_the_same_meaning(kb):
    assert gr.entails(kb, "income is missing and age > 60 and not kind == a -> not ok").holds
    assert gr.entails(kb, "not ok -> income <= 500 or income is missing or kind != a").holds
    refuted = gr.entails(kb, "income is missing -> not ok")
    assert not refuted.holds and refuted.confirmed
    assert refuted.counterexample["income"].isna().all()
    report = gr.check(gr.parse("input x: optional real\noutput y: bool\n"
                               "rule never: x is missing and x > 3 -> y\n"
                               "rule up: x > 3 -> y\nrule down: x is missing -> not y"))
    kinds = {(f.check, f.subjects) for f in report.findings}
    assert any(c == "dead-rule" and "never" in s for c, s in kinds), kinds
    assert not any(c == "opposite-rules" for c, _ in kinds), kinds   # never together


# -------------------------------------------------------------- formal, via predict


def _model():
    model = gb.GreyBox(TEXT, semantics="product")
    return model


def _completions(kb, facts: dict, rows: int, rng) -> pd.DataFrame:
    """Random rows holding ``facts`` (None: missing) and drawing the other inputs, optional
    ones missing a third of the time."""
    cols = {}
    for n in kb.inputs:
        if n in facts:
            cols[n] = pd.Series([facts[n]] * rows, dtype=object)
            continue
        t = kb.variables[n].type
        if isinstance(t, A.BoolType):
            v = rng.integers(0, 2, rows).astype(bool).astype(object)
        elif isinstance(t, A.EnumType):
            v = rng.choice(list(t.values), rows).astype(object)
        elif isinstance(t, A.IntType):
            v = rng.integers(t.lo, t.hi + 1, rows).astype(object)
        else:   # uniform, and at the thresholds of TEXT within the type
            v = rng.uniform(t.lo, t.hi, rows)
            at = [c for c in (500.0, 500.5, 2000.0, 2001.0, 5.0) if t.lo <= c <= t.hi]
            pick = rng.random(rows) < 0.3
            v[pick] = rng.choice([t.lo, t.hi, *at], int(pick.sum()))
            v = v.astype(object)
        if kb.variables[n].optional:
            v[rng.random(rows) < 1 / 3] = None
        cols[n] = pd.Series(v, dtype=object)
    return pd.DataFrame(cols)


ROWS = pd.DataFrame({
    "income": [None, 1000.0, None, 300.0, None, 2500.0],
    "kind": ["a", None, None, "b", "b", None],
    "smoker": pd.array([None, True, None, False, True, None], dtype="boolean"),
    "age": [70, 30, 20, 40, 65, 18],
}, index=list("uvwxyz"))


@pytest.mark.parametrize("backend", ["z3", "milp"])
def test_reasons_name_missing_inputs_and_survive_every_completion(backend):
    model = _model()
    kb = model.kb
    rng = np.random.default_rng(1)
    decided = model.predict(ROWS)["ok"]
    for label in ROWS.index:
        r = gb.explain.reason(model, ROWS, row=label, backend=backend, level="input")
        assert r.verified and r.decision == decided[label]
        for n, v in r.facts.items():
            cell = _cell(ROWS.loc[label, n])
            assert v == cell or (v is None and cell is None)
            if v is None:
                assert f"{n} is missing" in str(r)
        sampled = _completions(kb, r.facts, 400, rng)
        assert (model.predict(sampled)["ok"] == r.decision).all(), (label, r)


@pytest.mark.parametrize("backend", ["z3", "milp"])
def test_counterfactuals_keep_missing_values_missing_unless_allowed(backend):
    model = _model()
    for label in ROWS.index:
        missing = {n for n in ("income", "kind", "smoker") if _cell(ROWS.loc[label, n]) is None}
        try:
            cf = gb.explain.counterfactual(model, ROWS, row=label, backend=backend,
                                           level="input")
        except gb.ModelError:
            cf = None   # only filling in a missing value would change it: checked below
        if cf is not None:
            assert cf.verified
            for n in ("income", "kind", "smoker"):   # nothing filled in, nothing erased
                assert (cf.row_after[n] is None) == (n in missing), (label, n, cf.row_after)
            got = model.predict(pd.DataFrame({k: [v] for k, v in cf.row_after.items()}))
            assert got["ok"].item() == cf.new_decision != cf.decision
        filled = gb.explain.counterfactual(model, ROWS, row=label, backend=backend,
                                           level="input", fill_missing=True)
        assert filled.verified
        for n in ("income", "kind", "smoker"):   # filled in perhaps, never erased
            if n not in missing:
                assert filled.row_after[n] is not None
        got = model.predict(pd.DataFrame({k: [v] for k, v in filled.row_after.items()}))
        assert got["ok"].item() == filled.new_decision != filled.decision
        if cf is not None:
            assert filled.distance <= cf.distance


def test_the_row_where_only_filling_in_changes_the_decision():
    model = gb.GreyBox("input x: optional real[0, 10]\ninput z: bool\noutput y: bool\n"
                       "rule r: x > 5 -> y", semantics="product")
    row = {"x": [None], "z": [True]}
    with pytest.raises(gb.ModelError, match=r"keeping x"):
        gb.explain.counterfactual(model, row)
    cf = gb.explain.counterfactual(model, row, fill_missing=True)
    assert list(cf.changes.fact) == ["x"] and cf.changes.before.tolist() == [None]
    assert model.predict(cf.row_after)["y"].item() is True


@pytest.mark.parametrize("backend, level", [("z3", "concept"), ("z3", "input"),
                                            ("milp", "input")])
@pytest.mark.parametrize("prop, holds", [
    ("income is missing and age > 60 and kind != a -> not ok", True),
    ("income > 2000 and income is not missing -> ok", True),
    ("income is missing -> not ok", False),
    ("age > 60 -> not ok", False),
])
def test_verify_agrees_across_backends_and_replays_through_predict(backend, level, prop,
                                                                   holds):
    model = _model()
    v = gb.explain.verify(model, prop, backend=backend, level=level)
    assert v.holds is holds
    if not holds:
        assert v.confirmed
        row = v.counterexample[list(model.kb.inputs)]
        row = row.astype(object).where(row.notna(), None)
        ev = gr.evaluate(model.to_kb(), row, bias=model.bias_table())
        assert model.predict(row)["ok"].tolist() == ev.decisions["ok"].tolist()
        assert not ev.holds(prop).iloc[0] and ev.holds(A.Not(gr.parse_formula(prop, model.kb))
                                                       ).iloc[0]   # known false there


def test_every_missing_pattern_replays_the_z3_decision():
    """The Z3 encoding decides each pattern of missing inputs as predict does."""
    import z3

    model = _model()
    kb = model.to_kb()
    enc = gr.Z3Encoding(kb, bias=model.bias_table())
    for income, kind, smoker in itertools.product([None, 300.0, 2500.0], [None, "a", "b"],
                                                  [None, True, False]):
        row = {"income": income, "kind": kind, "smoker": smoker, "age": 70}
        want = model.predict(pd.DataFrame({k: [v] for k, v in row.items()},
                                          dtype=object))["ok"].item()
        s = z3.Solver()
        s.add(*enc.domain(), *enc.decision(), enc.const("age") == 70)
        for n in ("income", "kind", "smoker"):
            if row[n] is None:
                s.add(enc.missing(n))
            else:
                s.add(z3.Not(enc.missing(n)),
                      enc.const(n) == A.domain(kb.variables[n].type).z3_value(row[n]))
        assert s.check() == z3.sat
        assert z3.is_true(s.model().eval(enc.const("ok"))) == want, row


# ------------------------------------------------------------ explanations and I/O


def test_explanations_name_missing_inputs_as_facts():
    model = _model()
    ex = gb.explain.explain(model, ROWS.loc[["u", "v"]], parameters=False)
    assert ex.missing("u") == ["income", "smoker"]
    assert "  facts: income is missing, smoker is missing" in ex.row_text("u")
    assert "  facts: kind is missing" in ex.row_text("v")
    frame = ex.to_frame()
    gaps = frame[frame.part == "missing"]
    assert sorted(zip(gaps.row, gaps.name)) == [("u", "income"), ("u", "smoker"),
                                                ("v", "kind")]
    assert ex.graph("u").nodes["income"]["label"] == "income is missing"


def test_a_saved_model_with_optional_inputs_loads_and_decides_alike(tmp_path):
    model = _model()
    model.fit(ROWS, {"ok": [True, False, True, False, True, False]}, epochs=2,
              progress=False)
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt")
    assert loaded.kb.variables["income"].optional
    assert loaded.predict(ROWS).equals(model.predict(ROWS))


def test_a_residual_reads_the_placeholder_and_z3_encodes_it():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    model = gb.GreyBox("input x: optional real[0, 10]\ninput z: real[0, 10]\noutput y: bool\n"
                       "rule r: x > 5 -> y", semantics="product", residual=net)
    data = pd.DataFrame({"x": [None, 7.0, 2.0, None], "z": [1.0, 2.0, 9.0, 8.0]})
    model.fit(data, {"y": [False, True, False, True]}, epochs=3, progress=False)
    for label in data.index:
        r = gb.explain.reason(model, data, row=label, backend="z3", level="input")
        sampled = _completions(model.kb, r.facts, 200, np.random.default_rng(label))
        assert (model.predict(sampled)["y"] == r.decision).all()
    with pytest.raises(gb.ModelError, match=r"residual network reads the optional input"):
        gb.explain.reason(model, data, backend="milp", level="input")


def test_input_statistics_are_of_the_values_present():
    model = gb.GreyBox("input x: optional real\noutput y: bool\nrule r: x > ~5 -> y",
                       semantics="product")
    model.calibrate(pd.DataFrame({"x": [None, 10.0, 20.0, None]}))
    assert float(model.feature_center[0]) == 15.0
    assert model.input_range("x") == (10.0, 20.0, True)   # not the placeholder 0


# ------------------------------------------------ random formulas: every backend agrees


def _formula(rng, depth: int) -> str:
    if depth == 0 or rng.random() < 0.3:
        return str(rng.choice(["x > 2", "x <= 5", "k == p", "k in {q}", "b", "a >= 1",
                               "x is missing", "k is not missing", "x + a > 4",
                               "count(b, x > 1) >= 1", "true"]))
    op = rng.choice(["and", "or", "not", "->", "<->"])
    if op == "not":
        return f"not ({_formula(rng, depth - 1)})"
    return f"({_formula(rng, depth - 1)}) {op} ({_formula(rng, depth - 1)})"


def _kleene(e, row: dict):
    """A formula's three-valued truth (None: unknown), by the definition."""
    if isinstance(e, A.IsMissing):
        return row[e.operand.name] is None
    if isinstance(e, A.Not):
        return _k_not(_kleene(e.operand, row))
    if isinstance(e, (A.And, A.Or)):
        vals = [_kleene(a, row) for a in e.args]
        return _k_and(*vals) if isinstance(e, A.And) else _k_or(*vals)
    if isinstance(e, A.Implies):
        return _k_or(_k_not(_kleene(e.left, row)), _kleene(e.right, row))
    if isinstance(e, A.Iff):
        left, right = _kleene(e.left, row), _kleene(e.right, row)
        return None if None in (left, right) else left == right
    if isinstance(e, A.BoolConst):
        return e.value
    if isinstance(e, A.Var):   # a bool input (None: missing) or the decision
        return row[e.name]
    # an atom: unknown when it reads a missing value, else its crisp truth
    if any(row[n] is None for n in A.variables(e)):
        return None
    return bool(gr.evaluate(KB_ATOMS, {k: [v] for k, v in row.items()}).holds(e).iloc[0])


KB_ATOMS = gr.parse("input x: optional real[0, 10]\ninput k: optional {p, q}\n"
                    "input b: optional bool\ninput a: int 0..3")


@pytest.mark.parametrize("seed", range(6))
def test_random_formulas_mean_the_same_on_every_backend(seed):
    rng = np.random.default_rng(seed)
    bodies = [_formula(rng, 3) for _ in range(4)]
    text = (gr.to_text(KB_ATOMS) + "\noutput y: bool\n"
            + "".join(f"rule r{i}: ({f}) -> y\n" for i, f in enumerate(bodies)))
    kb = gr.parse(text)
    values = itertools.product([None, 1.0, 3.0], [None, "p", "q"], [None, True, False], [0, 2])
    rows = [dict(zip("xkba", v)) for v in values]
    data = pd.DataFrame({n: pd.Series([r[n] for r in rows], dtype=object) for n in "xkba"})
    ev = gr.evaluate(kb, data)
    for i, row in enumerate(rows):
        for name, rule in kb.rules.items():
            assert bool(ev.bodies[name].iloc[i]) == (_kleene(rule.body, row) is True), \
                (gr.to_text(rule.body), row)
    for semantics in ("product", "godel", "lukasiewicz", "probabilistic"):
        trace = gb.GreyBox(kb, semantics=semantics)(data)
        for name in kb.rules:
            np.testing.assert_array_equal(trace.bodies[name].detach().numpy(),
                                          ev.bodies[name].to_numpy(dtype=float))
    model = gb.GreyBox(kb, semantics="product")
    for prop in bodies[:2]:   # verify's verdict = brute force over the rows above
        known_false = [_kleene(gr.parse_formula(f"y -> ({prop})", kb), {**r, "y": d}) is False
                       for r, d in zip(rows, ev.decisions["y"])]
        v = gb.explain.verify(model, f"y -> ({prop})", backend="z3", level="concept")
        assert v.holds or v.confirmed
        if any(known_false):
            assert not v.holds


def test_a_family_of_optional_inputs():
    kb = gr.parse("set person: {anna, bob}\ninput level(person): optional int 0..3\n"
                  "output high(person): bool\n"
                  "rule r(p in person): level(p) >= 2 -> high(p)\n"
                  "rule s(p in person) weight 2: level(p) is missing -> not high(p)")
    assert kb.variables["level(bob)"].optional and gr.parse(gr.to_text(kb)) == kb
    data = {"level(anna)": [None, 3], "level(bob)": [2, None]}
    want = [[False, True], [True, False]]
    assert gr.evaluate(kb, data).decisions[["high(anna)", "high(bob)"]].to_numpy().tolist() \
        == want
    got = gb.GreyBox(kb, semantics="product").predict(data)
    assert got[["high(anna)", "high(bob)"]].to_numpy().tolist() == want


@pytest.mark.parametrize("semantics", ["product", "probabilistic"])
def test_a_hard_constraint_on_a_network_binds_only_where_known(semantics):
    import torch
    from torch import nn

    net = nn.Sequential(nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
    model = gb.GreyBox("input x: optional real[0, 10]\ninput z: real[0, 10]\n"
                       "neural n: bool = net(z)\noutput y: bool\nrule r: n -> y\n"
                       "constraint c: x > 5 -> not n", {"net": net}, semantics=semantics)
    data = pd.DataFrame({"x": [None, 7.0, 2.0], "z": [3.0, 3.0, 3.0]})
    assert model.predict(data)["y"].tolist() == [True, False, True]   # repaired in row 1
