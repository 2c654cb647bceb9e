"""Visual 9x9 sudoku: learn to read digits from "this grid is valid / invalid" alone, with
the approximate probabilistic route, then solve puzzles by the most probable completion.

scikit-learn's 8x8 digits 1..9 (no download). A grid shows 81 digit images and comes with
one bit: whether it is a valid sudoku (every row, column and 3x3 box holds 1..9 once). Valid
grids are a base grid with its digits, rows within bands, bands, columns within stacks and
stacks permuted (and maybe transposed); invalid ones are valid grids with 1 to 3 cells
changed. The digit network never sees a digit label.

Exact inference cannot train this: ``P(valid)`` is a sum over the 6.7e21 valid grids, and
its elimination over the 81 cells is far beyond the table limit (``semantics=
"probabilistic"`` refuses, naming the formula). ``inference="approximate"`` computes each
of the 27 ``all_different`` units exactly (a programme over the 2**9 subsets of digits
used) and combines them as if independent: ``log P(valid) ~ sum_u log P(unit u)``. The
approximation is poor on an unsure network (at uniform digit beliefs it says 1.7e-82 for
the exact 3.4e-56) and exact on a sure one; its gradient points the right way, which is
what training needs (docs/semantics.md measures its error where exact still runs).

As in examples/sudoku.py, validity cannot tell the digits' names apart: digit accuracy is
reported under the best naming (Hungarian matching on the test images) and after naming the
classes from 45 labelled images (5 per digit).

Solving: a puzzle shows its givens as images and its empty cells as blank images (uniform
beliefs); the solution is the most probable valid grid (MAP: the largest sum of the
network's log-probabilities under the 27 ``all_different`` units) -- what ``predict`` of
a model with the units as hard constraints returns (:data:`SOLVER`), and what this example
calls. 9x9 is too large for greybox's exact max-product elimination and its Z3 route
(weighted MaxSAT) did not finish within its 5 s on any of 20 puzzles; the 27 units are
linear over the cells' one-hot indicators, so ``predict``'s repair solves each puzzle as a
0/1 linear programme with SciPy's HiGHS, exactly. :func:`map_grid` states the same
programme by hand; the example checks that both give the same grids.

Run:  python examples/sudoku9.py [--grids M] [--epochs E] [--puzzles P] [--givens G]
                                 [--seed S]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp
from sklearn.datasets import load_digits
from sudoku import CellReader  # the 4x4 example's reader: a blank image reads uniform
from torch import nn

import greybox as gb

#: The 27 units (9 rows, 9 columns, 9 boxes) of a 9x9 grid, cells 0..80 row by row.
UNITS = ([[9 * r + k for k in range(9)] for r in range(9)]
         + [[9 * k + c for k in range(9)] for c in range(9)]
         + [[27 * br + 3 * bc + 9 * i + j for i in range(3) for j in range(3)]
            for br in range(3) for bc in range(3)])

GRID = """\
set cell: 0..80
input img[cell]: tensor[64]
neural digit[c in cell]: int 1..9 = digit_net(img[c])
"""

ROWS = "all_different(digit[9 * r + k] for k in 0..8)"
COLS = "all_different(digit[9 * k + c] for k in 0..8)"
BOXES = "all_different(digit[27 * br + 3 * bc + 9 * i + j] for i in 0..2, j in 0..2)"

#: The model trained from validity labels (under inference="approximate").
VALIDITY = GRID + f"""\
output valid: bool
define valid: bool = (forall r in 0..8: {ROWS})
    and (forall c in 0..8: {COLS})
    and (forall br in 0..2, bc in 0..2: {BOXES})
"""

#: The solver as a greybox model: the 27 units as hard constraints; its ``predict`` is the
#: MAP (by its repair's 0/1 linear programme; :func:`map_grid` is the same by hand).
SOLVER = GRID + f"""\
constraint rows[r in 0..8]: {ROWS}
constraint cols[c in 0..8]: {COLS}
constraint boxes[br in 0..2, bc in 0..2]: {BOXES}
output solution[cell]: int 1..9
define solution[c in cell]: int 1..9 = digit[c]
"""

#: A valid grid: row r is 1..9 shifted by 3 * (r % 3) + r // 3.
BASE = np.array([[(3 * (r % 3) + r // 3 + c) % 9 + 1 for c in range(9)] for r in range(9)])


def is_valid(grid) -> bool:
    """Whether a grid (81 digits, row by row) has 1..9 once in every row, column and box."""
    g = np.asarray(grid)
    return all(len(set(g[u].tolist())) == 9 for u in UNITS)


def random_grid(rng) -> np.ndarray:
    """A valid grid (81 digits): the base grid with its digits, rows within bands, bands,
    columns within stacks and stacks permuted, transposed half of the time."""
    digits = np.concatenate([[0], rng.permutation(9) + 1])
    rows = np.concatenate([3 * b + rng.permutation(3) for b in rng.permutation(3)])
    cols = np.concatenate([3 * s + rng.permutation(3) for s in rng.permutation(3)])
    g = digits[BASE][rows][:, cols]
    return (g.T if rng.random() < 0.5 else g).reshape(81)


def corrupt(grid: np.ndarray, rng) -> np.ndarray:
    """An invalid grid close to a valid one: 1 to 3 cells changed to another digit."""
    while True:
        bad = grid.copy()
        for cell in rng.choice(81, size=rng.integers(1, 4), replace=False):
            bad[cell] = rng.choice([d for d in range(1, 10) if d != grid[cell]])
        if not is_valid(bad):
            return bad


def digit_network() -> nn.Module:
    """A small convolutional classifier of 8x8 images (64 values) into 9 classes."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 2 x 2
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 9),
    )


def load_pools(seed: int = 0):
    """Images of the digits 1..9 (float, 64 values in [0, 1]) and their labels, split into
    a training pool (1,200 images) and a test pool of distinct images (417)."""
    X, y = load_digits(return_X_y=True)
    keep = y >= 1
    X, y = X[keep] / 16.0, y[keep]
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order].astype(np.float32), y[order]
    return (X[:1200], y[:1200]), (X[1200:], y[1200:])


def render(grids: np.ndarray, images, labels, rng) -> np.ndarray:
    """Images for grids of digits (0 = empty cell: a blank image), shape (rows, 81, 64)."""
    out = np.zeros((*grids.shape, images.shape[1]), dtype=np.float32)
    for d in range(1, 10):
        where = grids == d
        out[where] = images[rng.choice(np.flatnonzero(labels == d), size=int(where.sum()))]
    return out


def make_grids(images, labels, count: int, seed: int):
    """``count`` grids rendered with images, half valid, half corrupted: (images, valid
    labels, digits -- the digits only measure, never train)."""
    rng = np.random.default_rng(seed)
    grids = np.stack([random_grid(rng) for _ in range(count)])
    valid = rng.random(count) < 0.5
    for i in np.flatnonzero(~valid):
        grids[i] = corrupt(grids[i], rng)
    return render(grids, images, labels, rng), valid, grids


def count_completions(grid: np.ndarray, limit: int = 2) -> int:
    """How many valid grids agree with the filled cells of ``grid`` (0 = empty), counted
    up to ``limit`` (depth-first, the cell with the fewest candidates first)."""
    g = grid.copy()
    peers = [sorted({j for u in UNITS if c in u for j in u} - {c}) for c in range(81)]

    def search() -> int:
        empty = np.flatnonzero(g == 0)
        if not len(empty):
            return 1
        options = [(set(range(1, 10)) - set(g[peers[c]].tolist()), c) for c in empty]
        cand, cell = min(options, key=lambda o: len(o[0]))
        found = 0
        for d in cand:
            g[cell] = d
            found += search()
            if found >= limit:
                break
        g[cell] = 0
        return found

    return search()


def make_puzzles(images, labels, count: int, givens: int, seed: int):
    """``count`` puzzles with a unique completion and (about) ``givens`` filled cells
    (cells emptied in random order while the completion stays unique): (images with
    blank empty cells, the filled digits (0 = empty), the solutions)."""
    rng = np.random.default_rng(seed)
    answers = np.stack([random_grid(rng) for _ in range(count)])
    shown = answers.copy()
    for grid in shown:
        for cell in rng.permutation(81):
            if np.count_nonzero(grid) <= givens:
                break
            keep, grid[cell] = grid[cell], 0
            if count_completions(grid) > 1:
                grid[cell] = keep          # the completion would no longer be unique
    return render(shown, images, labels, rng), shown, answers


def best_naming(guess: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The naming of the 9 classes (output k means digit ``naming[k]``) that agrees best
    with ``labels`` (Hungarian matching of the confusion counts)."""
    counts = np.zeros((9, 9))
    np.add.at(counts, (guess, labels - 1), 1)
    rows, cols = linear_sum_assignment(-counts)
    return cols[np.argsort(rows)] + 1


def rename(net: nn.Module, naming: np.ndarray) -> None:
    """Reorder the network's outputs so that output ``k`` means digit ``k + 1``."""
    perm = torch.as_tensor(np.argsort(naming))
    last = net[-1]
    with torch.no_grad():
        last.weight.copy_(last.weight[perm])
        last.bias.copy_(last.bias[perm])


def read(net: nn.Module, images) -> np.ndarray:
    """The network's most probable class (0..8) per image."""
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(images)).argmax(1).numpy()


def map_grid(logp: np.ndarray) -> np.ndarray:
    """The most probable valid grid (digits 1..9, 81) given each cell's log-probabilities
    ``logp`` (81, 9): the maximum of the sum of the chosen digits' log-probabilities under
    the 27 ``all_different`` units, as a 0/1 linear programme (one variable per cell and
    digit; each cell one digit, each unit each digit once) solved by HiGHS."""
    units = np.asarray(UNITS)
    rows = [np.eye(81)[c].repeat(9) for c in range(81)]               # one digit per cell
    for u in units:                                                   # each digit once
        for d in range(9):
            row = np.zeros(729)
            row[u * 9 + d] = 1
            rows.append(row)
    a = np.asarray(rows)
    res = milp(-logp.reshape(-1), constraints=LinearConstraint(a, 1, 1),
               integrality=np.ones(729), bounds=Bounds(0, 1))
    if not res.success:
        raise gb.SolverError(f"HiGHS found no valid grid: {res.message}")
    return res.x.reshape(81, 9).argmax(1) + 1


def solve(reader: nn.Module, puzzles: int, givens: int, test, seed: int) -> dict:
    """MAP completion of ``puzzles`` puzzles under the 27 hard constraints: ``predict`` of
    the :data:`SOLVER` model (the network's log-probabilities, blank cells uniform; its
    repair solves a 0/1 linear programme per puzzle), cross-checked with :func:`map_grid`."""
    p_imgs, shown, answers = make_puzzles(*test, puzzles, givens, seed)
    reader.eval()
    solver = gb.GreyBox(SOLVER, {"digit_net": reader})
    data = solver.kb.families["img"].split(p_imgs)
    start = time.perf_counter()
    frame = solver.predict(data) if puzzles else None
    seconds = time.perf_counter() - start
    grid = frame[[f"solution[{c}]" for c in range(81)]].to_numpy() if puzzles else answers
    with torch.no_grad():
        logp = torch.log_softmax(reader(torch.as_tensor(p_imgs.reshape(-1, 64))), 1)
    logp = logp.numpy().reshape(puzzles, 81, 9).astype(np.float64)
    check = [(map_grid(lp) == g).all() for lp, g in zip(logp[:5], grid)]
    read_alone = logp.argmax(2) + 1
    filled = shown > 0
    return {"puzzles": puzzles, "givens": float(filled.sum(1).mean()),
            "solve_accuracy": float((grid == answers).all(axis=1).mean()),
            "consistent": float(np.mean([is_valid(g) and (g[f] == s[f]).all()
                                         for g, s, f in zip(grid, shown, filled)])),
            "cell_accuracy": float((grid == answers).mean()),
            "all_valid": bool(all(is_valid(g) for g in grid)),
            "given_read_accuracy": float((read_alone[filled] == shown[filled]).mean()),
            "given_map_accuracy": float((grid[filled] == shown[filled]).mean()),
            "solve_seconds_per_puzzle": seconds / max(puzzles, 1),
            "map_grid_agrees": float(np.mean(check)) if check else 1.0}


def run(grids: int = 1000, epochs: int = 6, puzzles: int = 50, givens: int = 30,
        seed: int = 0, batch_size: int = 16, lr: float = 3e-3, progress: bool = True,
        test_grids: int = 200) -> dict:
    """Train from validity labels (approximate route), name the classes, classify and
    solve; the figures."""
    train, test = load_pools(seed)
    imgs, valid, _ = make_grids(*train, grids, seed)
    torch.manual_seed(seed)
    net = digit_network()
    reader = CellReader(net)
    model = gb.GreyBox(VALIDITY, {"digit_net": reader}, inference="approximate")
    data = model.kb.families["img"].split(imgs)
    start = time.perf_counter()
    history = model.fit(data, {"valid": valid}, epochs=epochs, batch_size=batch_size, lr=lr,
                        seed=seed, progress=progress)
    train_seconds = time.perf_counter() - start

    unnamed = float((best_naming(read(net, test[0]), test[1])[read(net, test[0])]
                     == test[1]).mean())
    few = np.concatenate([np.flatnonzero(train[1] == d)[:5] for d in range(1, 10)])
    rename(net, best_naming(read(net, train[0][few]), train[1][few]))
    digit_acc = float((read(net, test[0]) + 1 == test[1]).mean())

    test_imgs, test_valid, _ = make_grids(*test, test_grids, seed + 1)
    said = model.predict(model.kb.families["img"].split(test_imgs))["valid"].to_numpy()
    out = {"grids": grids, "epochs": epochs, "train_seconds": train_seconds,
           "seconds_per_epoch": float(np.mean([e["seconds"] for e in history.epochs])),
           "digit_accuracy": digit_acc, "digit_accuracy_best_naming": unnamed,
           "validity_accuracy": float((said == test_valid).mean()), "model": model}
    if puzzles:
        out.update(solve(reader, puzzles, givens, test, seed + 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=1000, help="training grids")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--puzzles", type=int, default=50, help="puzzles to solve")
    parser.add_argument("--givens", type=int, default=30, help="filled cells per puzzle")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"Training a digit network from {args.grids} 9x9 grids labelled only valid/invalid "
          f"({args.epochs} epochs, inference='approximate'); it never sees a digit label.\n")
    r = run(args.grids, args.epochs, args.puzzles, args.givens, args.seed)
    print(f"digit accuracy on 417 unseen images:        {r['digit_accuracy']:.3f}  "
          f"(classes named from 45 labelled images; best naming: "
          f"{r['digit_accuracy_best_naming']:.3f})")
    print(f"validity accuracy on 200 unseen grids:      {r['validity_accuracy']:.3f}")
    if args.puzzles:
        print(f"solved puzzles ({r['puzzles']}, {r['givens']:.1f} givens):       "
              f"{r['solve_accuracy']:.3f}  (cells {r['cell_accuracy']:.3f}; every solution "
              f"valid: {r['all_valid']}; valid and keeping every given: "
              f"{r['consistent']:.3f})")
        print(f"givens read right: network alone {r['given_read_accuracy']:.3f}, "
              f"MAP under the rules {r['given_map_accuracy']:.3f}")
        print(f"solving time per puzzle (predict):          "
              f"{1000 * r['solve_seconds_per_puzzle']:.0f} ms  (the same grid as map_grid "
              f"on the first 5: {r['map_grid_agrees']:.3f})")
    print(f"training time:                              {r['train_seconds']:.1f} s "
          f"({r['seconds_per_epoch']:.1f} s per epoch)")


if __name__ == "__main__":
    main()
