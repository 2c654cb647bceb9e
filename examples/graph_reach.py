"""Reachability over graphs whose edges a network reads from images, learned from reach labels.

Each graph has a few nodes, each showing one of scikit-learn's 8x8 digit images (bundled,
no download); the nodes of a graph show distinct digits from ``0..n``. There is an edge
``x -> y`` when y's digit follows x's (``digit(y) == digit(x) + 1``), so a graph is a few
chains of consecutive digits. A network reads the two images of a pair and says whether
there is an edge; the rules (``examples/graph_reach.rules``) say what reaching is::

    neural edge(x in node, y in node): bool = edge_net(img(x), img(y))
    define reach(x in node, y in node): bool =
        edge(x, y) or (exists z in node: z != x and z != y and edge(x, z) and reach(z, y))

Training sees only whether each node reaches each other node -- never an edge, never a
digit. The exact probabilistic semantics computes P(reach(x, y)) from the network's edge
probabilities over the unrolled recursion (every world's least fixpoint), and the reach
labels train the edge network through it. Measured on held-out graphs built from unseen
images: edge accuracy (the network's decisions), reach accuracy (``predict``), the share
of graphs whose every reach is right, and the time per epoch; then the proofs of two
held-out reach decisions (``Evaluation.proof``), a right one and a wrong one: the chain of
edges that makes each true, which for the wrong one names the edge to blame.

``benchmarks/bench_graph_reach.py`` runs DeepProbLog on the same graphs and network.

Run:  python examples/graph_reach.py [--nodes 4] [--graphs 200] [--epochs 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import greybox as gb

RULES = Path(__file__).with_name("graph_reach.rules")
NAMES = "abcdefghi"      # node names: a graph of n nodes uses the first n


@dataclass(frozen=True)
class Graphs:
    """Graphs of ``n`` nodes: the images the model reads, and the truth used to measure
    (and, for ``reach``, to train)."""

    digits: np.ndarray   # (g, n) the digit each node shows (never used in training)
    images: np.ndarray   # (g, n, 64) float32 in [0, 1]
    edges: np.ndarray    # (g, n, n) bool: digit(y) == digit(x) + 1
    reach: np.ndarray    # (g, n, n) bool: a path of one or more edges from x to y

    def __len__(self) -> int:
        return len(self.digits)


def load_pools(n_nodes: int, seed: int = 0):
    """Images of the digits ``0..n_nodes`` (float, 64 values in [0, 1]) with their labels,
    split into a training pool and a test pool of distinct images (70 % / 30 %)."""
    X, y = load_digits(return_X_y=True)
    keep = y <= n_nodes
    X, y = (X[keep] / 16.0).astype(np.float32), y[keep]
    order = np.random.default_rng(seed).permutation(len(X))
    cut = int(0.7 * len(X))
    return (X[order[:cut]], y[order[:cut]]), (X[order[cut:]], y[order[cut:]])


def closure(edges: np.ndarray) -> np.ndarray:
    """Reachability by one or more edges, for a stack of adjacency matrices."""
    reach = edges.copy()
    for _ in range(edges.shape[-1]):
        reach = reach | (np.einsum("gxz,gzy->gxy", reach.astype(np.int64), edges) > 0)
    return reach


def make_graphs(pool, n_nodes: int, count: int, seed: int) -> Graphs:
    """``count`` graphs whose ``n_nodes`` nodes show distinct digits of ``0..n_nodes``
    (one digit is left out, so that chains break), each an image drawn from ``pool``."""
    images, labels = pool
    rng = np.random.default_rng(seed)
    by_digit = [np.flatnonzero(labels == d) for d in range(n_nodes + 1)]
    digits = np.stack([rng.choice(n_nodes + 1, n_nodes, replace=False) for _ in range(count)])
    picks = np.array([[rng.choice(by_digit[d]) for d in row] for row in digits])
    edges = digits[:, None, :] == digits[:, :, None] + 1
    return Graphs(digits, images[picks], edges, closure(edges))


def knowledge(n_nodes: int) -> gb.rules.KnowledgeBase:
    """The rules of ``graph_reach.rules`` grounded on nodes ``a, b, ...``."""
    return gb.rules.load(RULES, sets={"node": list(NAMES[:n_nodes])})


def columns(kb: gb.rules.KnowledgeBase, graphs: Graphs) -> dict:
    """The graphs as rows: one column per node image (``img(a)``)."""
    return kb.families["img"].split(graphs.images)


def labels(kb: gb.rules.KnowledgeBase, graphs: Graphs) -> dict:
    """The reach labels of every pair of distinct nodes (``reach(a, b)``), NaN for a node
    and itself (not asked)."""
    reach = graphs.reach.astype(np.float64)
    n = reach.shape[1]
    reach[:, np.arange(n), np.arange(n)] = np.nan
    return kb.families["reach"].split(reach)


class EdgeNet(nn.Module):
    """Reads a pair of 8x8 images: a shared encoder of each image, then a small network
    over both codes; one logit, "there is an edge from the first to the second"."""

    def __init__(self, hidden: int = 32, code: int = 16):
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, code),
                                    nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * code, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encode(a), self.encode(b)], dim=-1))


def edge_network(seed: int) -> EdgeNet:
    torch.manual_seed(seed)
    return EdgeNet()


def train(graphs: Graphs, *, epochs: int = 10, lr: float = 1e-2, batch_size: int = 8,
          seed: int = 0, progress: bool = False) -> tuple[gb.GreyBox, float]:
    """greybox, exact probabilistic semantics, trained on the reach labels of ``graphs``;
    returns the model and the mean seconds per epoch."""
    kb = knowledge(graphs.digits.shape[1])
    model = gb.GreyBox(kb, {"edge_net": edge_network(seed)}, semantics="probabilistic")
    history = model.fit(columns(kb, graphs), labels(kb, graphs), epochs=epochs, lr=lr,
                        batch_size=batch_size, seed=seed, progress=progress)
    seconds = [e["seconds"] for e in history.epochs]
    return model, float(np.mean(seconds)) if seconds else 0.0


def pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ordered pairs of distinct nodes, as two index arrays."""
    x, y = np.nonzero(~np.eye(n, dtype=bool))
    return x, y


def edge_decisions(net: nn.Module, graphs: Graphs) -> np.ndarray:
    """The network's edges (probability above 1/2), (g, n, n); the diagonal is left False."""
    n = graphs.digits.shape[1]
    x, y = pairs(n)
    images = torch.from_numpy(graphs.images)
    was = net.training
    net.eval()
    with torch.no_grad():
        logits = net(images[:, x], images[:, y])[..., 0].numpy()
    net.train(was)
    out = np.zeros((len(graphs), n, n), bool)
    out[:, x, y] = logits > 0
    return out


def predicted_reach(model: gb.GreyBox, graphs: Graphs) -> np.ndarray:
    """``predict``'s reach decisions, (g, n, n)."""
    kb = model.kb
    decided = model.predict(columns(kb, graphs))
    n = graphs.digits.shape[1]
    out = np.zeros((len(graphs), n, n), bool)
    for i, j in zip(*pairs(n)):
        out[:, i, j] = decided[kb.families["reach"].member(NAMES[i], NAMES[j])].to_numpy()
    return out


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Accuracy over the pairs of distinct nodes, and the share of graphs all right."""
    x, y = pairs(truth.shape[1])
    right = predicted[:, x, y] == truth[:, x, y]
    return float(right.mean()), float(right.all(axis=1).mean())


def proofs(model: gb.GreyBox, graphs: Graphs) -> str:
    """Proofs of two held-out reach decisions, read from the network's edges by crisp
    evaluation (what ``predict`` decides from them): the first right one over two or more
    edges, and the first wrong one (reach decided true where it is false), whose proof names
    the edges to blame."""
    kb, n = model.kb, graphs.digits.shape[1]
    edges = edge_decisions(model.network("edge_net"), graphs)
    reach = closure(edges)
    wanted = {"right": lambda g, i, j: reach[g, i, j] and graphs.reach[g, i, j]
              and not edges[g, i, j],
              "wrong": lambda g, i, j: reach[g, i, j] and not graphs.reach[g, i, j]}
    texts = []
    for kind, test in wanted.items():
        found = next(((g, i, j) for g in range(len(graphs)) for i, j in zip(*pairs(n))
                      if test(g, i, j)), None)
        if found is None:
            texts.append(f"no {kind} held-out reach to prove")
            continue
        g, i, j = found
        shown = ", ".join(f"{NAMES[k]}={graphs.digits[g, k]}" for k in range(n))
        ev = gb.rules.evaluate(kb, kb.families["edge"].split(edges[g:g + 1]))
        proof = ev.proof(kb.families["reach"].member(NAMES[i], NAMES[j]))
        texts.append(f"a {kind} decision, held-out graph {g} (its images show {shown}):\n"
                     f"{proof}")
    return "\n\n".join(texts)


def run(n_nodes: int = 4, n_graphs: int = 200, epochs: int = 10, seed: int = 0,
        test_graphs: int = 200, lr: float = 1e-2, batch_size: int = 8) -> dict:
    """Train on ``n_graphs`` graphs and measure on ``test_graphs`` held-out ones."""
    train_pool, test_pool = load_pools(n_nodes, seed)
    graphs = make_graphs(train_pool, n_nodes, n_graphs, seed)
    held_out = make_graphs(test_pool, n_nodes, test_graphs, seed + 1)
    model, seconds = train(graphs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    edge_acc, _ = accuracy(edge_decisions(model.network("edge_net"), held_out), held_out.edges)
    start = time.perf_counter()
    reach = predicted_reach(model, held_out)
    inference = time.perf_counter() - start
    reach_acc, graphs_right = accuracy(reach, held_out.reach)
    return {"model": model, "held_out": held_out, "edge_accuracy": edge_acc,
            "reach_accuracy": reach_acc, "graphs_right": graphs_right,
            "seconds_per_epoch": seconds, "inference_seconds": inference}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="nodes per graph (2..9)")
    parser.add_argument("--graphs", type=int, default=200, help="training graphs")
    parser.add_argument("--test-graphs", type=int, default=200, help="held-out graphs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= len(NAMES):
        parser.error(f"--nodes must be in 2..{len(NAMES)}, got {args.nodes}")
    torch.set_num_threads(1)
    n = args.nodes
    print(f"{args.graphs} training graphs of {n} nodes (digits 0..{n}, edges x -> y where "
          f"digit(y) = digit(x) + 1); labels: reach for the {n * (n - 1)} pairs of each "
          "graph, no edge, no digit\n")
    r = run(n, args.graphs, args.epochs, args.seed, args.test_graphs)
    print(f"edge accuracy on {args.test_graphs} held-out graphs:   {r['edge_accuracy']:.3f}"
          "  (no edge label was used)")
    print(f"reach accuracy on the held-out pairs:      {r['reach_accuracy']:.3f}")
    print(f"held-out graphs with every reach right:    {r['graphs_right']:.3f}")
    print(f"time per epoch:                            {r['seconds_per_epoch']:.2f} s")
    print(f"predict on the held-out graphs:            {r['inference_seconds']:.2f} s\n")
    print(proofs(r["model"], r["held_out"]))


if __name__ == "__main__":
    main()
