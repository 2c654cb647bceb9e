"""Distributed data-parallel training: 2 CPU processes with the gloo backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "ddp_worker.py"


@pytest.mark.slow
def test_training_under_torchrun_leaves_equal_parameters_on_every_rank(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world"] == 2
    assert result["moved"] > 1e-3             # training changed the parameters
    assert result["max_difference"] == 0.0    # ... identically on both ranks
    assert result["accuracy"] > 0.9
