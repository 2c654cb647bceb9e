"""The graph reachability example (issue 23) and its DeepProbLog benchmark run at a tiny
size: the example prints its figures and a proof; the benchmark runs greybox alone and
says DeepProbLog was skipped when it cannot be imported, and (where DeepProbLog is
installed) both exact engines agree on P(reach)."""

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import EXAMPLES

BENCH = EXAMPLES.parent / "benchmarks" / "bench_graph_reach.py"
TINY = ["--nodes", "3", "--graphs", "16", "--test-graphs", "8", "--epochs", "1"]


def _figure(out: str, label: str) -> float:
    return float(out.split(label)[1].split()[0])


@pytest.mark.slow
def test_the_example_runs_and_prints_a_proof():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "graph_reach.py"), *TINY],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for label in ("held-out graphs:", "held-out pairs:", "every reach right:"):
        assert 0.0 <= _figure(out, label) <= 1.0
    assert _figure(out, "time per epoch:") > 0
    assert out.count("holds in row 0, proved by") + out.count("held-out reach to prove") == 2


@pytest.mark.slow
def test_the_example_data_and_labels():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import graph_reach as ex
    finally:
        sys.path.remove(str(EXAMPLES))
    pool, _ = ex.load_pools(4, seed=0)
    graphs = ex.make_graphs(pool, 4, 30, seed=0)
    assert all(len(set(row)) == 4 and max(row) <= 4 for row in graphs.digits.tolist())
    d = graphs.digits
    assert (graphs.edges == (d[:, None, :] == d[:, :, None] + 1)).all()
    # reach: a path of consecutive digits, every digit between present
    for g in range(len(graphs)):
        for i in range(4):
            for j in range(4):
                want = d[g, j] > d[g, i] and all(k in d[g] for k in range(d[g, i], d[g, j] + 1))
                assert graphs.reach[g, i, j] == want
    kb = ex.knowledge(4)
    labels = ex.labels(kb, graphs)
    assert np.isnan(labels["reach(a, a)"]).all()
    assert (labels["reach(a, b)"] == graphs.reach[:, 0, 1]).all()
    assert ex.columns(kb, graphs)["img(c)"].shape == (30, 64)


@pytest.mark.slow
def test_the_benchmark_says_deepproblog_was_skipped_when_it_is_missing():
    code = ("import runpy, sys; sys.modules['deepproblog'] = None; "
            f"sys.argv = ['bench', *{TINY!r}]; "
            f"runpy.run_path({str(BENCH)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DeepProbLog skipped: not installed" in proc.stdout
    assert "greybox (exact)" in proc.stdout and "greybox / DeepProbLog" not in proc.stdout


@pytest.mark.slow
def test_the_benchmark_runs_deepproblog_on_the_same_task_where_installed():
    pytest.importorskip("deepproblog")
    pytest.importorskip("pysdd")
    proc = subprocess.run([sys.executable, str(BENCH), *TINY], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert _figure(out, "differ by at most") < 1e-5      # both exact: the same P(reach)
    assert "DeepProbLog (exact)" in out and "greybox / DeepProbLog" in out
