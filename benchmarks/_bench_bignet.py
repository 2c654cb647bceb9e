"""Big concept networks (issue 24, item 3): greybox's explanations of a 10.1M-parameter
ResNet-like concept network against Captum's own methods on the same network and rows.

The network (``tests/helpers/bignet.py``): 8x8 digit images -> a stem of convolutions,
a widening convolution, two residual blocks of 512 channels with batch norm, a linear
head (10,112,525 parameters, random weights: time and memory do not depend on training);
two rules decide ``odd`` from the digit. Each case runs in a fresh process (one thread,
``torch.set_num_threads(1)``); "peak MB" is the growth of the process's peak resident
memory (Linux's VmHWM, reset with ``/proc/self/clear_refs``) above what it held before
the call, the model and data included in the latter.

1. Input attributions of the digit concept: ``explain(parameters=False)`` (Captum's
   method behind greybox's calling convention, plus the rules' contributions and the
   concepts) against ``captum.attr.IntegratedGradients`` / ``Saliency`` on the network
   alone, the same rows, steps and target (the most probable digit).
2. Parameter attributions (integrated gradients over the parameters, ``--steps`` steps):
   greybox's chunked computation (one row and step at a time through the plain model,
   each parameter tensor its own leaf) against Captum's ``IntegratedGradients`` over a
   copy of the flat parameter vector per row, all rows and steps at once under ``vmap``
   (greybox's computation before issue 24).
3. TracIn with the current parameters: greybox's ``tracin_influence`` on its default
   layers (above 1M parameters: each network's last layer and the rules) and on every
   layer, against Captum's ``TracInCP`` as greybox called it before (every layer,
   training batches of 64).

Run:  python benchmarks/_bench_bignet.py [--rows 2] [--train 32] [--steps 8]
      (runnable on its own; ``benchmarks/bench_scale.py --only bignet`` where that file
      exists calls :func:`main`). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (label, greybox case, Captum case)
PAIRS = [
    ("input attributions, integrated gradients", "explain_ig", "captum_ig"),
    ("input attributions, saliency", "explain_saliency", "captum_saliency"),
    ("parameter attributions (IG over parameters)", "params_chunked", "params_captum"),
    ("TracIn, default layers (last) vs TracInCP", "tracin_last", "tracincp"),
    ("TracIn, every layer vs TracInCP", "tracin_all", "tracincp"),
]


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _case(name: str, rows: int, train: int, steps: int) -> dict:
    """Run one case in this process: seconds and peak memory growth (bytes)."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    import greybox as gb
    from greybox.explain._params import parameter_attributions
    from greybox.explain.debug._tracin import _Loss, _Probabilities, tracin_influence
    from tests.helpers import bignet

    model = bignet.model()
    data, odd = bignet.digits(rows)
    train_data, train_odd = bignet.digits(train, offset=100)
    batch = model.batch(data)
    net = model.networks["resnet"]
    x = data["img"]
    with torch.no_grad():
        target = model(batch, crisp=True).decisions()["odd"]
        digit = net(x).argmax(1)

    def params_captum():
        from captum.attr import IntegratedGradients

        from greybox.explain._params import _Flat, _forward

        flat = _Flat(model)
        forward = _forward(model, flat, batch, "odd")
        inputs = flat.values.unsqueeze(0).expand(rows, -1).clone()
        return IntegratedGradients(forward).attribute(
            inputs, baselines=torch.zeros_like(inputs), n_steps=steps,
            additional_forward_args=(target, *batch.values.values()))

    def tracincp():
        import os
        import tempfile

        from captum.influence import TracInCP
        from torch.utils.data import TensorDataset

        from greybox.explain.debug._tracin import _indices

        tb = model.batch(train_data)
        keys = list(tb.values)
        wrapper = _Probabilities(model, keys, "odd")
        dataset = TensorDataset(*[tb.values[k] for k in keys],
                                _indices(model.kb, "odd", train_odd))
        fd, path = tempfile.mkstemp(suffix=".pt")
        os.close(fd)
        torch.save(wrapper.state_dict(), path)

        def load(net, checkpoint):
            net.load_state_dict(torch.load(checkpoint, weights_only=True))
            return 1.0

        try:
            tracin = TracInCP(wrapper, dataset, checkpoints=[path], loss_fn=_Loss(),
                              checkpoints_load_func=load, batch_size=64)
            test = (*[batch.values[k][:1] for k in keys],
                    _indices(model.kb, "odd", [bool(odd[0])]))
            return tracin.influence(test, k=5, proponents=False)
        finally:
            os.unlink(path)

    cases = {
        "explain_ig": lambda: gb.explain.explain(model, data, parameters=False),
        "explain_saliency": lambda: gb.explain.explain(model, data, parameters=False,
                                                       method="saliency"),
        "captum_ig": lambda: __import__("captum.attr").attr.IntegratedGradients(net).attribute(
            x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=digit,
            n_steps=50),
        "captum_saliency": lambda: __import__("captum.attr").attr.Saliency(net).attribute(
            x.clone().requires_grad_(True), target=digit, abs=False),
        "params_chunked": lambda: parameter_attributions(model, batch, "odd", target,
                                                         n_steps=steps, baseline="zero"),
        "params_captum": params_captum,
        "tracin_last": lambda: tracin_influence(model, "odd", (train_data, train_odd),
                                                batch.take(torch.arange(1)), bool(odd[0]),
                                                k=5),
        "tracin_all": lambda: tracin_influence(model, "odd", (train_data, train_odd),
                                               batch.take(torch.arange(1)), bool(odd[0]),
                                               k=5, layers="all"),
        "tracincp": tracincp,
    }
    with torch.no_grad():
        model(batch)                      # warm: first calls load kernels
    before = _status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")     # the peak starts again from here
    start = time.perf_counter()
    cases[name]()
    seconds = time.perf_counter() - start
    return {"case": name, "seconds": seconds, "peak": _status("VmHWM") - before,
            "parameters": bignet.n_parameters(model)}


def run(rows: int = 2, train: int = 32, steps: int = 8) -> list[dict]:
    """Every case, each in a fresh process: ``[{case, seconds, peak, parameters}]``."""
    found = {}
    for name in dict.fromkeys(c for _, *pair in PAIRS for c in pair):
        out = subprocess.run([sys.executable, __file__, "--case", name, "--rows", str(rows),
                              "--train", str(train), "--steps", str(steps)],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise RuntimeError(f"case {name} failed:\n{out.stderr[-3000:]}")
        found[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return list(found.values())


def table(results: list[dict], rows: int, train: int, steps: int) -> str:
    by = {r["case"]: r for r in results}
    size = next(iter(by.values()))["parameters"]
    lines = [f"{size:,}-parameter concept network, {rows} rows, {train} training rows, "
             f"{steps} steps over the parameters, 1 thread",
             f"{'':46} {'greybox s':>9} {'MB':>7} {'Captum s':>9} {'MB':>7} "
             f"{'time x':>7} {'mem x':>7}"]
    mb = 2 ** 20
    for label, ours, ref in PAIRS:
        a, b = by[ours], by[ref]
        lines.append(f"{label:46} {a['seconds']:9.2f} {a['peak'] / mb:7.0f} "
                     f"{b['seconds']:9.2f} {b['peak'] / mb:7.0f} "
                     f"{a['seconds'] / b['seconds']:7.2f} "
                     f"{a['peak'] / max(b['peak'], 1):7.2f}")
    lines.append("time x, mem x: greybox / Captum (below 1: greybox is faster or smaller)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_case(args.case, args.rows, args.train, args.steps)))
        return
    print(table(run(args.rows, args.train, args.steps), args.rows, args.train, args.steps))


if __name__ == "__main__":
    main()
