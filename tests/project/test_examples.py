"""The README's main job runs end to end on the bundled data."""

import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES


@pytest.mark.slow
def test_rules_tour_runs():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "rules_tour.py")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "crisp evaluation of 569 rows" in out
    assert "proved:" in out and "refuted:" in out
    accuracy = float(out.split("rules alone: accuracy ")[1].split(",")[0])
    assert accuracy > 0.9


@pytest.mark.slow
def test_digits_addition_example_learns_digits_from_sums():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "digits_addition.py"), "--digits", "2",
                           "--epochs", "3", "--examples", "3000"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    digit = float(out.split("unseen images:")[1].split()[0])
    total = float(out.split("unseen sums:")[1].split()[0])
    assert digit > 0.8 and total > 0.5


@pytest.mark.slow
def test_breast_cancer_example_prints_its_comparison_table():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "breast_cancer.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for row in ("rules alone", "greybox, select='kfold'", "greybox, plain fit", "MLP",
                "logistic regression"):
        assert row in out
    greybox_row = next(line for line in out.splitlines() if line.startswith("greybox"))
    tokens = greybox_row.split()
    accuracies = [float(tokens[i - 1]) for i, t in enumerate(tokens) if t == "±"]  # means
    assert len(accuracies) == 4 and min(accuracies) > 0.85


def _table(out: str) -> dict[str, list[str]]:
    """The cells of an example's comparison table, by row name (names end at two spaces)."""
    rows = {}
    for line in out.splitlines():
        name, _, cells = line.partition("  ")
        if cells.strip():
            rows[name.strip()] = cells.split()
    return rows


@pytest.mark.slow
def test_wine_example_prints_its_comparison_table():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "wine.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _table(proc.stdout)
    means = {name: [float(cells[i - 1]) for i, t in enumerate(cells) if t == "±"]
             for name, cells in rows.items() if "±" in cells}
    assert set(means) == {"rules alone", "greybox, select='kfold'", "greybox, plain fit",
                          "MLP", "logistic regression"}
    assert means["rules alone"][0] > 0.9          # the rules alone, no label
    assert len(means["greybox, select='kfold'"]) == 3          # 15, 30, all labels
    # split 0: with 15 labels plain training loses a wine, selection keeps the rules
    assert rows["splits where select trained"][:3] == ["0", "of", "1"]
    assert means["greybox, select='kfold'"][0] == means["rules alone"][0]
    assert means["greybox, plain fit"][0] < means["rules alone"][0]
    assert means["greybox, plain fit"][2] > means["rules alone"][0]   # all labels teach


def test_the_gpu_check_runs_on_the_cpu():
    """benchmarks/gpu_check.py (train, explain, reason, debug on a device; save there and
    load on the CPU) runs with --device cpu, so it is ready the day a GPU is lent."""
    script = EXAMPLES.parent / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1]
             for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert float(lines["saved on device, loaded on cpu"]) == 1.0
    assert float(lines["cancer acc"]) > 0.8
    for key in ("explain digits s", "reason s", "counterfactual s", "debugger s"):
        assert float(lines[key]) > 0
