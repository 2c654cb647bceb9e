"""Run by tests/model/test_ddp.py under torchrun: trains one model on 2 processes (gloo)."""

import json
import sys

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

import greybox as gb

RULES = """
input x: real[0, 10]
input z: real[0, 10]
output y: bool
rule above weight 2: x > ~3.0 -> y
rule below weight 2: x < ~3.0 -> not y
"""


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)   # same initial weights everywhere (DDP also broadcasts them)
    model = gb.GreyBox(RULES, semantics="product",
                       residual=nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)))
    initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 512)
    X = pd.DataFrame({"x": x, "z": rng.uniform(0, 10, 512)})
    model.fit(X, x > 6, epochs=3, batch_size=32, lr=0.05, progress=False, seed=1)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if rank == 0:
        json.dump({
            "world": dist.get_world_size(),
            "max_difference": float(max((g - gathered[0]).abs().max() for g in gathered)),
            "moved": float((flat - initial).abs().max()),
            "accuracy": float((model.predict(X)["y"].to_numpy() == (x > 6)).mean()),
        }, open(out_path, "w"))
    dist.barrier()   # no rank tears gloo down while another still works (SIGABRT at exit)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
