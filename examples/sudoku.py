"""Visual 4x4 sudoku: learn to read digits from "this grid is valid / invalid" alone, then
solve partially filled grids by the most probable completion under ``all_different``.

scikit-learn's 8x8 digits 1..4 (no download). A grid shows 16 digit images; each training
grid comes with one bit -- whether it is a valid sudoku (every row, column and 2x2 box
holds 1..4 once) -- and the digit network never sees a digit label. The model is written
once with a family of 16 neural digits (relational rules, grounded to ``digit[0]`` ..
``digit[15]``):

    set cell: 0..15
    input img[cell]: tensor[64]
    neural digit[c in cell]: int 1..4 = digit_net(img[c])
    output valid: bool
    define valid: bool = (forall r in 0..3: all_different(digit[4 * r + k] for k in 0..3))
                         and (forall c in 0..3: ...) and (forall br in 0..1, bc in 0..1: ...)

and trained on the exact probability of ``valid`` (``semantics="probabilistic"``: the
conjunction is kept as its pairwise parts and ``log P(valid)`` summed in log space over the
288 grids they allow; ``--semantics product`` trains the product t-norm instead,
``P(digit[a] != digit[b]) = 1 - <p_a, p_b>`` conjoined over the 72 pairs, which sits
longer on the uniform plateau). Validity is unchanged when the four digits are renamed, so
validity labels teach the four classes only up to their names: 20 labelled images (5
per digit) name them afterwards, and digit accuracy is also reported under the best of
the 24 namings.

Solving: the same network reads a puzzle whose empty cells are blank images (a blank
image says nothing about its digit: uniform probabilities), under the 12 hard constraints

    constraint rows[r in 0..3]: all_different(digit[4 * r + k] for k in 0..3)  ...

``predict`` returns the most probable grid that satisfies them (MAP: the maximum of the
sum of the networks' log-probabilities over the 288 valid grids, by exact max-product
variable elimination, see :mod:`greybox._repair`).

Run:  python examples/sudoku.py [--grids M] [--epochs E] [--puzzles P] [--givens G]
                                [--semantics probabilistic|product] [--seed S]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import greybox as gb

#: Index sets and the 12 units (4 rows, 4 columns, 4 boxes) of a 4x4 grid, cells 0..15
#: row by row.
UNITS = ([[4 * r + k for k in range(4)] for r in range(4)]
         + [[4 * k + c for k in range(4)] for c in range(4)]
         + [[8 * br + 2 * bc + 4 * i + j for i in range(2) for j in range(2)]
            for br in range(2) for bc in range(2)])

GRID = """\
set cell: 0..15
input img[cell]: tensor[64]
neural digit[c in cell]: int 1..4 = digit_net(img[c])
"""

ROWS = "all_different(digit[4 * r + k] for k in 0..3)"
COLS = "all_different(digit[4 * k + c] for k in 0..3)"
BOXES = "all_different(digit[8 * br + 2 * bc + 4 * i + j] for i in 0..1, j in 0..1)"

#: The model trained from validity labels: ``valid`` is the conjunction of the 12 units.
VALIDITY = GRID + f"""\
output valid: bool
define valid: bool = (forall r in 0..3: {ROWS})
    and (forall c in 0..3: {COLS})
    and (forall br in 0..1, bc in 0..1: {BOXES})
"""

#: The solver: the units as hard constraints; the solution is the constrained digits.
SOLVER = GRID + f"""\
constraint rows[r in 0..3]: {ROWS}
constraint cols[c in 0..3]: {COLS}
constraint boxes[br in 0..1, bc in 0..1]: {BOXES}
output solution[cell]: int 1..4
define solution[c in cell]: int 1..4 = digit[c]
"""


def solutions() -> np.ndarray:
    """Every valid 4x4 sudoku grid (288 of them), digits 1..4, shape (288, 16)."""
    out, grid = [], [0] * 16

    def fill(cell: int) -> None:
        if cell == 16:
            out.append(list(grid))
            return
        for d in range(1, 5):
            if all(grid[j] != d for unit in UNITS if cell in unit for j in unit if j < cell):
                grid[cell] = d
                fill(cell + 1)
        grid[cell] = 0

    fill(0)
    return np.array(out)


def is_valid(grid) -> bool:
    """Whether a grid (16 digits, row by row) has 1..4 once in every row, column and box."""
    return all(len({int(grid[i]) for i in unit}) == 4 for unit in UNITS)


def corrupt(grid: np.ndarray, rng) -> np.ndarray:
    """An invalid grid close to a valid one: 1 to 3 cells changed to another digit."""
    while True:
        bad = grid.copy()
        for cell in rng.choice(16, size=rng.integers(1, 4), replace=False):
            bad[cell] = rng.choice([d for d in range(1, 5) if d != grid[cell]])
        if not is_valid(bad):
            return bad


def digit_network() -> nn.Module:
    """A small convolutional classifier of 8x8 images (64 values) into 4 classes."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 2 x 2
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 4),
    )


class CellReader(nn.Module):
    """The digit network, reading a blank image (an empty cell) as "no idea": uniform
    logits, so an empty cell costs the same whatever digit the solver puts there."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        logits = self.net(x)
        blank = x.abs().amax(dim=1) == 0
        return logits.masked_fill(blank.unsqueeze(1), 0.0)


def load_pools(seed: int = 0):
    """Images of the digits 1..4 (float, 64 values in [0, 1]) and their labels, split into
    a training pool and a test pool of distinct images."""
    X, y = load_digits(return_X_y=True)
    keep = (y >= 1) & (y <= 4)
    X, y = X[keep] / 16.0, y[keep]
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order].astype(np.float32), y[order]
    cut = 500
    return (X[:cut], y[:cut]), (X[cut:], y[cut:])


def render(grids: np.ndarray, images, labels, rng) -> np.ndarray:
    """Images for grids of digits (0 = empty cell: a blank image), shape (rows, 16, 64)."""
    by_digit = {d: np.flatnonzero(labels == d) for d in range(1, 5)}
    out = np.zeros((*grids.shape, images.shape[1]), dtype=np.float32)
    for d, idx in by_digit.items():
        where = grids == d
        out[where] = images[rng.choice(idx, size=int(where.sum()))]
    return out


def make_grids(images, labels, count: int, seed: int):
    """``count`` grids rendered with images, half valid, half corrupted: (images, valid
    labels, digits -- the digits are only used to measure, never to train)."""
    rng = np.random.default_rng(seed)
    sols = solutions()
    grids = sols[rng.integers(0, len(sols), size=count)]
    valid = rng.random(count) < 0.5
    for i in np.flatnonzero(~valid):
        grids[i] = corrupt(grids[i], rng)
    return render(grids, images, labels, rng), valid, grids


def make_puzzles(images, labels, count: int, givens: int, seed: int):
    """``count`` puzzles with a unique completion and (about) ``givens`` filled cells:
    (images with blank empty cells, the filled digits (0 = empty), the solutions)."""
    rng = np.random.default_rng(seed)
    sols = solutions()
    answers = sols[rng.integers(0, len(sols), size=count)]
    shown = answers.copy()
    for grid in shown:
        for cell in rng.permutation(16):
            if np.count_nonzero(grid) <= givens:
                break
            keep, grid[cell] = grid[cell], 0
            filled = grid > 0
            if ((sols[:, filled] == grid[filled]).all(axis=1)).sum() > 1:
                grid[cell] = keep          # the completion would no longer be unique
    return render(shown, images, labels, rng), shown, answers


def name_classes(net: nn.Module, images, labels) -> list[int]:
    """Reorder the network's 4 outputs so that output ``k`` means digit ``k + 1``: the
    naming (of the 24) that agrees best with a few labelled ``images``. Returns the
    permutation applied (new output ``k`` = old output ``perm[k]``)."""
    net.eval()
    with torch.no_grad():
        guess = net(torch.as_tensor(images)).argmax(1).numpy()
    best = max(itertools.permutations(range(4)),
               key=lambda p: int((np.asarray(p)[labels - 1] == guess).sum()))
    perm = torch.as_tensor(best)
    last = net[-1]
    with torch.no_grad():
        last.weight.copy_(last.weight[perm])
        last.bias.copy_(last.bias[perm])
    return list(best)


def accuracy_up_to_naming(guess: np.ndarray, labels: np.ndarray) -> float:
    """Digit accuracy under the best of the 24 namings of the 4 classes (guess 0..3)."""
    return max(float((np.asarray(p)[labels - 1] == guess).mean())
               for p in itertools.permutations(range(4)))


def run(grids: int = 2000, epochs: int = 8, puzzles: int = 200, givens: int = 6,
        seed: int = 0, batch_size: int = 32, lr: float = 3e-3, progress: bool = True,
        semantics: str = "probabilistic") -> dict:
    """Train from validity labels, name the classes, classify and solve; the figures."""
    (train_x, train_y), (test_x, test_y) = load_pools(seed)
    imgs, valid, _ = make_grids(train_x, train_y, grids, seed)
    torch.manual_seed(seed)
    net = digit_network()
    reader = CellReader(net)
    model = gb.GreyBox(VALIDITY, {"digit_net": reader}, semantics=semantics)
    data = model.kb.families["img"].split(imgs)
    start = time.perf_counter()
    history = model.fit(data, {"valid": valid}, epochs=epochs, batch_size=batch_size, lr=lr,
                        seed=seed, progress=progress)
    train_seconds = time.perf_counter() - start

    net.eval()
    with torch.no_grad():
        guess = net(torch.as_tensor(test_x)).argmax(1).numpy()
    unnamed = accuracy_up_to_naming(guess, test_y)
    # 5 labelled training images per digit name the classes (validity cannot)
    few = np.concatenate([np.flatnonzero(train_y == d)[:5] for d in range(1, 5)])
    naming = name_classes(net, train_x[few], train_y[few])
    with torch.no_grad():
        digit_acc = float((net(torch.as_tensor(test_x)).argmax(1).numpy() + 1 == test_y).mean())

    test_imgs, test_valid, _ = make_grids(test_x, test_y, 1000, seed + 1)
    said = model.predict(model.kb.families["img"].split(test_imgs))["valid"].to_numpy()
    validity_acc = float((said == test_valid).mean())

    solver = gb.GreyBox(SOLVER, {"digit_net": reader})
    p_imgs, shown, answers = make_puzzles(test_x, test_y, puzzles, givens, seed + 2)
    start = time.perf_counter()
    solved = solver.predict(solver.kb.families["img"].split(p_imgs))
    solve_seconds = time.perf_counter() - start
    grid = solved[[f"solution[{c}]" for c in range(16)]].to_numpy()
    with torch.no_grad():   # the network alone on the filled cells, no constraint
        read = net(torch.as_tensor(p_imgs.reshape(-1, 64))).argmax(1).numpy().reshape(-1, 16) + 1
    filled = shown > 0
    return {
        "grids": grids, "epochs": epochs,
        "seconds_per_epoch": float(np.mean([e["seconds"] for e in history.epochs])),
        "train_seconds": train_seconds,
        "digit_accuracy": digit_acc,
        "digit_accuracy_up_to_naming": unnamed,
        "naming": naming,
        "validity_accuracy": validity_acc,
        "puzzles": puzzles,
        "givens": float(filled.sum(1).mean()),
        "given_read_accuracy": float((read[filled] == shown[filled]).mean()),
        "given_map_accuracy": float((grid[filled] == shown[filled]).mean()),
        "puzzles_read_right": float(np.mean([(read[i] == shown[i])[filled[i]].all()
                                             for i in range(puzzles)])),
        "solve_accuracy": float((grid == answers).all(axis=1).mean()),
        "cell_accuracy": float((grid == answers).mean()),
        "all_valid": bool(all(is_valid(g) for g in grid)),
        "solve_seconds_per_puzzle": solve_seconds / max(puzzles, 1),
        "solved": grid, "answers": answers, "shown": shown, "model": model, "solver": solver,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=2000, help="training grids")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--puzzles", type=int, default=200, help="puzzles to solve")
    parser.add_argument("--givens", type=int, default=6, help="filled cells per puzzle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--semantics", default="probabilistic",
                        choices=["probabilistic", "product"],
                        help="how validity is trained: its exact probability (default), or "
                             "the product t-norm")
    args = parser.parse_args()
    print(f"Training a digit network from {args.grids} grids labelled only valid/invalid "
          f"({args.epochs} epochs); it never sees a digit label.\n")
    r = run(args.grids, args.epochs, args.puzzles, args.givens, args.seed,
            semantics=args.semantics)
    print(f"digit accuracy on {228} unseen images:        {r['digit_accuracy']:.3f}  "
          f"(classes named from 20 labelled images; best naming: "
          f"{r['digit_accuracy_up_to_naming']:.3f})")
    print(f"validity accuracy on 1,000 unseen grids:    {r['validity_accuracy']:.3f}")
    print(f"solved puzzles ({r['puzzles']}, {r['givens']:.1f} givens):       "
          f"{r['solve_accuracy']:.3f}  (cells {r['cell_accuracy']:.3f}; every solution "
          f"valid: {r['all_valid']})")
    print(f"givens read right, network alone:           {r['given_read_accuracy']:.3f}  "
          f"(whole puzzles: {r['puzzles_read_right']:.3f})")
    print(f"givens read right, MAP under the rules:     {r['given_map_accuracy']:.3f}")
    print(f"training time:                              {r['train_seconds']:.1f} s "
          f"({r['seconds_per_epoch']:.2f} s per epoch)")
    print(f"solving time per puzzle:                    "
          f"{1000 * r['solve_seconds_per_puzzle']:.1f} ms")


if __name__ == "__main__":
    main()
