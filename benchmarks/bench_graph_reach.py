"""Reachability learned from reach labels: greybox against DeepProbLog on the same graphs.

The graphs, labels and edge network of ``examples/graph_reach.py``: nodes that show digit
images, an edge ``x -> y`` when y's digit follows x's, and only reach labels for training.
Each system learns in its own idiom from the same knowledge:

- greybox: ``examples/graph_reach.rules`` (a recursive ``define reach``), exact
  probabilistic semantics over the unrolled recursion, ``GreyBox.fit``;
- DeepProbLog (Manhaeve et al., 2018; its exact engine, which compiles each query's ground
  program into an SDD): the same knowledge as a logic program::

      nn(edge_net, [X, Y]) :: edge(X, Y).
      reach(X, Y, Ns) :- edge(X, Y).
      reach(X, Y, Ns) :- member(Z, Ns), Z \\= X, Z \\= Y, edge(X, Z), reach(Z, Y, Ns).

  one query ``reach(a, b, [a, b, c, d])`` per labelled pair, the nodes substituted by the
  graph's images (so one compiled circuit per pair serves every graph: DeepProbLog's cache
  on), the cross-entropy of each query's probability, ``TrainObject.get_loss``.

Both get the same training graphs in the same order, the same network with the same
initial weights (DeepProbLog's reads the sigmoid of its logit), the same epochs, Adam with
the same learning rate, and batches of the same graphs (DeepProbLog's batch is the queries
of those graphs). Before training, both compute P(reach) on held-out graphs: being exact,
they agree (the table's first line says by how much). Measured: edge accuracy (the network's
decisions), reach accuracy (greybox: ``predict``; DeepProbLog: a query's probability above
1/2) and the share of held-out graphs with every reach right; CPU seconds per training
epoch and for inference on the held-out graphs, one thread, with the ratio greybox /
DeepProbLog.

Needs DeepProbLog, which is not a greybox dependency. Install it without letting pip touch
the installed torch (PySDD ships wheels; its exact engine needs it):

    pip install --no-deps deepproblog problog pysdd     # 2.1.0, 2.3.0, 1.0.6 tested

Without it, greybox runs alone and the script says DeepProbLog was skipped.

Run:  python benchmarks/bench_graph_reach.py [--nodes 4] [--graphs 200] [--epochs 10]
                                           [--test-graphs 100] [--seed 0]
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import graph_reach as ex  # noqa: E402  (the example's data, rules and network)

PROGRAM = """
nn(edge_net, [X, Y]) :: edge(X, Y).
reach(X, Y, Ns) :- edge(X, Y).
reach(X, Y, Ns) :- member(Z, Ns), Z \\= X, Z \\= Y, edge(X, Z), reach(Z, Y, Ns).
"""


def deepproblog_available() -> bool:
    try:
        with _quiet():   # "ApproximateEngine is not available" (it needs SWI-Prolog)
            import deepproblog  # noqa: F401
            import pysdd  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet():
    """DeepProbLog's prints ("Caching ACs") and warnings (a tensor read as a float) off."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class _Probability(torch.nn.Module):
    """The example's edge network as DeepProbLog reads it: a probability, shape (batch, 1)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(a, b))


class DeepProbLogRun:
    """DeepProbLog's model of the task, on the example's graphs."""

    def __init__(self, net: torch.nn.Module, *, lr: float, sources: dict):
        with _quiet():
            from deepproblog.engines import ExactEngine
            from deepproblog.model import Model
            from deepproblog.network import Network

        self.net = net
        network = Network(_Probability(net), "edge_net", batching=True)
        network.optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        with _quiet():
            self.model = Model(PROGRAM, [network], load=False)
            self.model.set_engine(ExactEngine(self.model), cache=True)
        for name, graphs in sources.items():
            self.model.add_tensor_source(name, {
                (g, i): torch.from_numpy(graphs.images[g, i])
                for g in range(len(graphs)) for i in range(graphs.images.shape[1])})

    @staticmethod
    def queries(graphs: ex.Graphs, source: str, rows) -> list:
        """One query per ordered pair of distinct nodes of each graph in ``rows``."""
        from deepproblog.query import Query
        from problog.logic import Constant, Term, list2term

        n = graphs.images.shape[1]
        nodes = [Term(ex.NAMES[i]) for i in range(n)]
        out = []
        for g in rows:
            sub = {nodes[i]: Term("tensor", Term(source, Constant(int(g)), Constant(i)))
                   for i in range(n)}
            for i, j in zip(*ex.pairs(n)):
                out.append(Query(Term("reach", nodes[i], nodes[j], list2term(nodes)), sub,
                                 p=float(graphs.reach[g, i, j])))
        return out

    def fit(self, graphs: ex.Graphs, *, epochs: int, batch_size: int, seed: int) -> float:
        """Train on the reach labels; CPU seconds per epoch."""
        from deepproblog.semiring.graph_semiring import GraphSemiring
        from deepproblog.train import TrainObject

        trainer = TrainObject(self.model)
        start = time.process_time()
        for epoch in range(epochs):
            order = np.random.default_rng(seed + epoch).permutation(len(graphs))
            self.model.train()
            for s in range(0, len(graphs), batch_size):
                batch = self.queries(graphs, "train", order[s:s + batch_size])
                self.model.optimizer.zero_grad()
                with _quiet():
                    trainer.get_loss(batch, GraphSemiring.cross_entropy)
                self.model.optimizer.step()
        return (time.process_time() - start) / max(epochs, 1)

    def probabilities(self, graphs: ex.Graphs, source: str) -> np.ndarray:
        """P(reach(x, y)) of every pair of distinct nodes, (g, n, n) (diagonal 0)."""
        self.model.eval()
        n = graphs.images.shape[1]
        out = np.zeros((len(graphs), n, n))
        x, y = ex.pairs(n)
        with torch.no_grad(), _quiet():
            for g in range(len(graphs)):
                results = self.model.solve(self.queries(graphs, source, [g]))
                out[g, x, y] = [float(next(iter(r.result.values()))) for r in results]
        return out


def greybox_probabilities(model, graphs: ex.Graphs) -> np.ndarray:
    """greybox's P(reach(x, y)) (the exact semantics' trace), (g, n, n) (diagonal 0)."""
    kb, n = model.kb, graphs.images.shape[1]
    model.eval()
    with torch.no_grad():
        trace = model(ex.columns(kb, graphs))
    out = np.zeros((len(graphs), n, n))
    for i, j in zip(*ex.pairs(n)):
        out[:, i, j] = trace.values[kb.families["reach"].member(ex.NAMES[i], ex.NAMES[j])].numpy()
    model.train()
    return out


def run_greybox(train, held_out, args) -> dict:
    import greybox as gb

    kb = ex.knowledge(args.nodes)
    model = gb.GreyBox(kb, {"edge_net": ex.edge_network(args.seed)}, semantics="probabilistic")
    before = greybox_probabilities(model, held_out)
    start = time.process_time()
    model.fit(ex.columns(kb, train), ex.labels(kb, train), epochs=args.epochs, lr=args.lr,
              batch_size=args.batch_size, seed=args.seed, progress=False)
    per_epoch = (time.process_time() - start) / max(args.epochs, 1)
    start = time.process_time()
    reach = ex.predicted_reach(model, held_out)
    inference = time.process_time() - start
    edges = ex.edge_decisions(model.network("edge_net"), held_out)
    return {"before": before, "edges": edges, "reach": reach, "epoch": per_epoch,
            "inference": inference}


def run_deepproblog(train, held_out, args) -> dict:
    net = ex.edge_network(args.seed)
    dpl = DeepProbLogRun(net, lr=args.lr, sources={"train": train, "test": held_out})
    before = dpl.probabilities(held_out, "test")
    per_epoch = dpl.fit(train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    start = time.process_time()
    reach = dpl.probabilities(held_out, "test") > 0.5
    inference = time.process_time() - start
    edges = ex.edge_decisions(net, held_out)
    return {"before": before, "edges": edges, "reach": reach, "epoch": per_epoch,
            "inference": inference}


def table(results: dict, held_out: ex.Graphs) -> str:
    """Accuracy on the held-out graphs: the network's edges, each system's reach decision
    (and the share of graphs all right), the reach the network's edges make (the same
    reading for both: ``predict``'s for greybox); CPU seconds."""
    lines = [f"{'system':<22}{'edge acc':>9}{'reach acc':>10}{'graphs':>8}{'by edges':>9}"
             f"{'s/epoch':>9}{'infer s':>9}"]
    for name, r in results.items():
        edge, _ = ex.accuracy(r["edges"], held_out.edges)
        reach, graphs = ex.accuracy(r["reach"], held_out.reach)
        by_edges, _ = ex.accuracy(ex.closure(r["edges"]), held_out.reach)
        lines.append(f"{name:<22}{edge:>9.3f}{reach:>10.3f}{graphs:>8.3f}{by_edges:>9.3f}"
                     f"{r['epoch']:>9.2f}{r['inference']:>9.2f}")
    if len(results) == 2:
        a, b = results.values()
        lines.append(f"{'greybox / DeepProbLog':<22}{'':>36}{a['epoch'] / b['epoch']:>9.3f}"
                     f"{a['inference'] / b['inference']:>9.3f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--graphs", type=int, default=200, help="training graphs")
    parser.add_argument("--test-graphs", type=int, default=100, help="held-out graphs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=8, help="graphs per batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train_pool, test_pool = ex.load_pools(args.nodes, args.seed)
    train = ex.make_graphs(train_pool, args.nodes, args.graphs, args.seed)
    held_out = ex.make_graphs(test_pool, args.nodes, args.test_graphs, args.seed + 1)
    print(f"{args.graphs} training graphs of {args.nodes} nodes, {args.test_graphs} held out; "
          f"{args.epochs} epochs, Adam lr {args.lr}, {args.batch_size} graphs a batch; "
          "CPU seconds, one thread")
    results = {"greybox (exact)": run_greybox(train, held_out, args)}
    if deepproblog_available():
        results["DeepProbLog (exact)"] = run_deepproblog(train, held_out, args)
        gap = np.abs(results["greybox (exact)"]["before"]
                     - results["DeepProbLog (exact)"]["before"]).max()
        print(f"before training, P(reach) of greybox and DeepProbLog on the held-out pairs "
              f"differ by at most {gap:.1e}")
    else:
        print("DeepProbLog skipped: not installed (pip install --no-deps deepproblog problog "
              "pysdd)")
    print(table(results, held_out))


if __name__ == "__main__":
    main()
