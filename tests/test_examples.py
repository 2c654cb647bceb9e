"""The README's main job runs end to end on the bundled data."""

import subprocess
import sys

import pytest

from .conftest import EXAMPLES


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
