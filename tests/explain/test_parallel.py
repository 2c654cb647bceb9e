"""Per-row explanations through joblib (n_jobs, Dask, Ray) and tables by Dask partitions
(issue 24): the same results as the serial run, in row order; errors name their row."""

import joblib
import numpy as np
import pandas as pd
import pytest
import torch

import greybox as gb
from greybox.errors import ModelError

RULES = """
input age: int 0..120
input income: real[0, 100000]
input savings: real[0, 100000]
output approve: bool
rule earns weight 2: income > ~30000 -> approve
rule saved: savings > ~50000 -> approve
constraint minors: age < 18 -> not approve
"""


@pytest.fixture(scope="module")
def model():
    return gb.GreyBox(RULES, semantics="product")


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    n = 8
    return pd.DataFrame({"age": rng.integers(20, 90, n),
                         "income": rng.uniform(0, 1e5, n).round(2),
                         "savings": rng.uniform(0, 1e5, n).round(2)},
                        index=[f"r{i}" for i in range(n)])


def cf_key(c):
    """Everything of a counterfactual but the seconds it took."""
    return (c.row, c.output, c.decision, c.new_decision, c.changes.to_dict(), c.row_after,
            c.distance, c.verified, c.level, c.assumptions, c.concepts_after)


def reason_key(r):
    return (r.row, r.output, r.decision, r.facts, r.verified, r.level, r.assumptions, r.free)


@pytest.fixture(scope="module")
def serial(model, table):
    """One call per row on the whole table: the reference."""
    return {"counterfactual": [cf_key(gb.explain.counterfactual(model, table, r))
                               for r in table.index],
            "reason": [reason_key(gb.explain.reason(model, table, r)) for r in table.index]}


@pytest.fixture
def threads():
    """joblib's threading backend: the same tasks without starting worker processes
    (each start imports torch: seconds on a busy machine)."""
    with joblib.parallel_config(backend="threading"):
        yield


@pytest.mark.slow   # starting two worker processes
def test_processes_give_the_serial_results_in_order(model, table, serial):
    rows = list(table.index[::-1])   # the order asked, not the table's
    got = gb.explain.counterfactual(model, table, rows, n_jobs=2)
    assert [cf_key(c) for c in got] == serial["counterfactual"][::-1]
    got = gb.explain.reason(model, table, rows, n_jobs=2)
    assert [reason_key(r) for r in got] == serial["reason"][::-1]
    # an error raised in a worker process comes back naming its row
    data = table.copy()
    data.loc["r5", "age"] = 15
    with pytest.raises(ModelError, match="row 'r5': no change of the mutable facts"):
        gb.explain.counterfactual(model, data, list(data.index), n_jobs=2, immutable=["age"])
    with pytest.raises(ModelError, match=r"^row 'r2': free names 'nope'"):
        gb.explain.reason(model, table, ["r2", "r3"], n_jobs=2, free=["nope"])
    whole, parts = gb.explain.explain(model, table), gb.explain.explain(model, table, n_jobs=2)
    pd.testing.assert_frame_equal(parts.rules, whole.rules)
    pd.testing.assert_frame_equal(parts.completeness, whole.completeness, check_exact=False,
                                  rtol=1e-5, atol=1e-6)


def test_one_job_and_threads_give_the_serial_results(model, table, serial):
    rows = list(table.index)
    got = gb.explain.counterfactual(model, table, rows)
    assert [cf_key(c) for c in got] == serial["counterfactual"]
    # threads wait for the Z3 lock in turn (the caller must not hold it: no deadlock)
    with joblib.parallel_config(backend="threading"):
        got = gb.explain.reason(model, table, rows[::-1], n_jobs=2)
        cfs = gb.explain.counterfactual(model, table, pd.Index(rows[::-1]), n_jobs=2)
    assert [reason_key(r) for r in got] == serial["reason"][::-1]
    assert [cf_key(c) for c in cfs] == serial["counterfactual"][::-1]


def test_counterfactuals_of_many_rows(model, table, threads):
    rows = list(table.index[:3])
    got = gb.explain.counterfactuals(model, table, rows, n=2, n_jobs=2)
    want = [gb.explain.counterfactuals(model, table, r, n=2) for r in rows]
    assert [[cf_key(c) for c in g] for g in got] == [[cf_key(c) for c in w] for w in want]
    assert [g.stopped for g in got] == [w.stopped for w in want]


def test_a_failing_row_is_named(model, table, threads):
    data = table.copy()
    data.loc["r5", "age"] = 15   # a minor: no change of the income or savings approves
    with pytest.raises(ModelError, match="row 'r5': no change of the mutable facts"):
        gb.explain.counterfactual(model, data, list(data.index), n_jobs=2, immutable=["age"])
    # an error whose own message names no row gets the row's label
    with pytest.raises(ModelError, match=r"^row 'r2': free names 'nope'"):
        gb.explain.reason(model, table, ["r2", "r3"], n_jobs=2, free=["nope"])
    with pytest.raises(ModelError, match="row 'zz' is not a row label"):
        gb.explain.reason(model, table, ["r1", "zz"], n_jobs=2)


def test_verify_many_properties(model, threads):
    props = ["age < 18 -> not approve", "income > 40000 -> approve"]
    got = gb.explain.verify(model, props, n_jobs=2)
    want = [gb.explain.verify(model, p) for p in props]
    assert [(v.property, v.holds, v.confirmed) for v in got] == \
        [(v.property, v.holds, v.confirmed) for v in want] == \
        [(props[0], True, True), (props[1], False, True)]
    # Z3's witness depends on what the process solved before (also serially): each is
    # a row predict decides against the property
    for v in (got[1], want[1]):
        row = v.counterexample
        assert row["income"].iloc[0] > 40000 and not model.predict(row)["approve"].iloc[0]
    with pytest.raises(gb.RuleError, match="property 'age < 18 -> nope'"):
        gb.explain.verify(model, [props[0], "age < 18 -> nope"], n_jobs=2)


def test_explain_by_chunks_equals_explain(model, table, threads):
    whole = gb.explain.explain(model, table)
    parts = gb.explain.explain(model, table, n_jobs=2)
    for name in ("decision", "rules", "concepts"):
        pd.testing.assert_frame_equal(getattr(parts, name), getattr(whole, name))
    # integrals summed over a batch of another size: equal to float32 rounding
    for name in ("parameters", "top_parameters", "completeness"):
        pd.testing.assert_frame_equal(getattr(parts, name), getattr(whole, name),
                                      check_exact=False, rtol=1e-5, atol=1e-6)
    assert parts.attributions.keys() == whole.attributions.keys()
    for k, v in whole.attributions.items():
        torch.testing.assert_close(parts.attributions[k], v, rtol=1e-5, atol=1e-6)
    assert cf_key(parts.counterfactual("r3")) == cf_key(whole.counterfactual("r3"))
    # the explanation's own methods take a list of rows and n_jobs
    assert [cf_key(c) for c in parts.counterfactual(["r1", "r3"], n_jobs=2)] == \
        [cf_key(whole.counterfactual(r)) for r in ("r1", "r3")]


# ----------------------------------------------------------------- Dask
try:
    import dask  # noqa: F401
except ImportError:   # the dask extra (in .[dev]) is optional
    dask = None
needs_dask = pytest.mark.skipif(dask is None, reason="dask is not installed "
                                "(pip install 'greybox-nesy[dask]')")


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@needs_dask
def test_dask_backend_gives_the_serial_results(model, table, serial, client):
    rows = list(table.index)
    assert len(client.scheduler_info()["workers"]) == 2
    with joblib.parallel_config(backend="dask"):
        got = gb.explain.counterfactual(model, table, rows, n_jobs=2)
        reasons = gb.explain.reason(model, table, rows)
    assert [cf_key(c) for c in got] == serial["counterfactual"]
    assert [reason_key(r) for r in reasons] == serial["reason"]


@needs_dask
@pytest.mark.slow
def test_dask_worker_processes_give_the_serial_results(model, table, serial):
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        with joblib.parallel_config(backend="dask"):
            got = gb.explain.counterfactual(model, table, list(table.index), n_jobs=2)
    assert [cf_key(c) for c in got] == serial["counterfactual"]


@needs_dask
def test_predict_evaluate_explain_by_partitions(model, table):
    import dask.dataframe as dd

    data = dd.from_pandas(table, npartitions=3, sort=False)
    lazy = gb.explain.predict_partitions(model, data)
    assert lazy.npartitions == 3
    # dask holds string labels as pyarrow strings: the labels, not their dtype
    same = dict(check_index_type=False)
    pd.testing.assert_frame_equal(lazy.compute(scheduler="sync"), model.predict(table), **same)
    flagged = gb.explain.predict_partitions(model, data, on_infeasible="flag")
    assert list(flagged.columns) == ["approve", "infeasible"]
    kb = model.to_kb()
    ev = gb.rules.evaluate(kb, table)
    got = gb.explain.evaluate_partitions(kb, data).compute(scheduler="sync")
    pd.testing.assert_series_equal(got["approve"], ev.decisions["approve"].set_axis(table.index),
                                   **same)
    scored = gb.explain.explain_partitions(model, data)
    computed = scored.compute(scheduler="sync")
    ex = gb.explain.explain(model, table, parameters=False)
    pd.testing.assert_frame_equal(computed[list(ex.decision.columns)], ex.decision, **same)
    assert (scored.dtypes == computed.dtypes).all()   # the declared metadata is right
    top = ex.rules.drop_duplicates("row").set_index("row")
    assert computed["top_rule"].tolist() == top.loc[table.index, "rule"].tolist()
    with pytest.raises(ModelError, match="dask.dataframe.DataFrame"):
        gb.explain.predict_partitions(model, table)


# ----------------------------------------------------------------- Ray
@pytest.mark.slow
def test_ray_backend_gives_the_serial_results(model, table, serial):
    ray = pytest.importorskip("ray", reason="ray is not installed")
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with joblib.parallel_config(backend="ray"):
            got = gb.explain.counterfactual(model, table, list(table.index), n_jobs=2)
    finally:
        ray.shutdown()
    assert [cf_key(c) for c in got] == serial["counterfactual"]


# ----------------------------------------------------------------- Debugger.suggest
def suggestion_key(found):
    return ([(s.edits, s.fixed, s.broken, s.checks, s.kind) for s in found],
            found.rows, found.candidates, found.measured, found.dropped, found.notes)


@pytest.mark.parametrize("keep", [(), ("age < 18 -> not approve",)])
def test_suggest_measures_candidates_in_parallel_with_the_serial_answer(model, threads,
                                                                        keep):
    rng = np.random.default_rng(1)
    n = 60
    data = pd.DataFrame({"age": rng.integers(10, 90, n),
                         "income": rng.uniform(0, 1e5, n).round(2),
                         "savings": rng.uniform(0, 1e5, n).round(2)})
    wanted = (data.income > 45000) & (data.age >= 18)   # the rules' threshold is off
    dbg = gb.explain.Debugger(model, data, wanted)
    serial = dbg.suggest(keep=keep)
    both = dbg.suggest(keep=keep, n_jobs=2)
    assert len(serial) > 0
    assert suggestion_key(both) == suggestion_key(serial)
