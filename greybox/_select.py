"""Whether to train at all, decided by k-fold cross-validation over the labelled rows.

``fit(..., select="kfold")``: with few labels, training can end below the rules it
started from (ten labels overfit). The labelled rows are dealt into ``folds`` folds (each
class spread over them); for each fold a copy of the model trains for the given epochs
with that fold's labels hidden (its rows still take part, unlabelled), and both the copy
and the model as given decide the hidden labels. Pooled over the folds, the labels whose
decision training changed are counted: ``fixed`` (the copy right, the model as given
wrong) and ``broken``. The model is trained only if a one-sided exact sign test
(McNemar's exact test) says that so many fixes against so few breaks would come less
than ``ALPHA`` = 5% of the time from training that helps nothing; otherwise it keeps the
values it was given — the rules' stated values.

Why a test on the changed labels and not the mean per-fold gain against its standard
error (the one-standard-error rule, used before): that is a k-fold cross-validated paired
t test, which Dietterich (*Approximate statistical tests for comparing supervised
classification learning algorithms*, Neural Computation 10(7), 1998) found to reject far
too often, and at a threshold of one standard error (t > 1, with four degrees of
freedom: one time in five by chance) it trained whenever two or three folds gained one
label each and none lost — on the breast-cancer example with 20 labels, 2 fixed and 0
broken (a one-in-four event) trained and lost two test patients. McNemar's test is the
one that paper recommends when each candidate is trained once.

Only the two ends are candidates: on the breast-cancer example, stopping after the epoch
with the best held-out score did worse on test patients than either end (the per-epoch
scores of a few labels are noise, and a part-trained model is a poor one).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch

from greybox.errors import ModelError

from ._batch import Targets
from ._epochs import TrainingData, hits_of, summary, train_epochs

__all__ = ["SELECT", "select_epochs"]

#: the values ``fit(select=...)`` takes
SELECT = ("kfold",)
#: training is adopted when the sign test's p-value is below this level
ALPHA = 0.05


def check_select(select, folds) -> None:
    """Refuse a ``select``/``folds`` pair :func:`select_epochs` cannot use."""
    if select is not None and select not in SELECT:
        raise ModelError(f"select must be None or 'kfold', got {select!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ModelError(f"folds must be an integer of at least 2, got {folds!r}")


def select_epochs(model, d, s, gen: torch.Generator, *, folds: int, seed: int | None
                  ) -> tuple[int, list[dict]]:
    """``(epochs, records)``: ``s.epochs`` if training wins the sign test over the
    held-out labels of ``folds``-fold cross-validation over the labelled rows of ``d``,
    else 0; and one record per candidate (0 and ``s.epochs``): its held-out loss,
    accuracy or squared error per labelled variable (pooled over the folds), ``score``,
    its ``gain`` in score over the model as given, the held-out labels training
    ``fixed`` and ``broken``, and the test's ``p_value``. Neither ``model`` nor the
    random streams the training that follows uses are touched."""

    rows, fold = _deal(d.labels, folds, seed)
    k = int(fold.max()) + 1
    given, trained = [], []       # per fold: (summed loss, hits per variable)
    quiet = dataclasses.replace(s, progress=False, patience=None)
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for f in range(k):
            held = rows[fold == f]
            held_batch, held_labels = d.batch.take(held), d.labels.take(held)
            given.append(hits_of(model, held_batch, held_labels))
            trial = copy.deepcopy(model)
            fold_gen = torch.Generator().set_state(gen.get_state())
            train_epochs(trial, TrainingData(d.batch, _hide(d.labels, held), None, None, d.soft), quiet,
                   fold_gen, stop_after=s.epochs)
            trained.append(hits_of(trial, held_batch, held_labels))
    records = [_record(model, 0, given, len(rows)), _record(model, s.epochs, trained, len(rows))]
    fixed, broken = _discordant(given, trained)
    p = _sign_test(fixed, broken)
    records[0].update(gain=0.0, fixed=0, broken=0, p_value=1.0)
    records[1].update(gain=records[1]["score"] - records[0]["score"], fixed=fixed,
                      broken=broken, p_value=p)
    chosen = s.epochs if p < ALPHA else 0
    if s.progress:
        print(f"select: {'train' if chosen else 'keep the model as given'} ({k}-fold "
              f"cross-validation over {len(rows)} labelled rows: held-out score "
              f"{records[0]['score']:.4f} as given, {records[1]['score']:.4f} after "
              f"{s.epochs} epochs; training fixed {fixed} and broke {broken} held-out "
              f"labels, one-sided sign test p = {p:.3g})", flush=True)
    return chosen, records


def _discordant(given: list[tuple[float, dict]], trained: list[tuple[float, dict]]
                ) -> tuple[int, int]:
    """``(fixed, broken)``: held-out labels, pooled over the folds and the labelled
    variables, that the trained copy gets right and the model as given wrong, and the
    other way round (for a real variable: a smaller or a larger squared error). Labels
    both get right, or both wrong, say nothing about which is better."""
    fixed = broken = 0
    for (_, g), (_, t) in zip(given, trained):
        for name, gh in g.items():
            th = t[name]
            fixed += int((th > gh).sum())
            broken += int((th < gh).sum())
    return fixed, broken


def _sign_test(fixed: int, broken: int) -> float:
    """The one-sided exact sign test (McNemar's exact test) of ``fixed`` against
    ``broken``: the probability of ``fixed`` or more heads in ``fixed + broken`` fair
    coin tosses, i.e. of training fixing at least this many of the labels it changes if
    it were as likely to break each one. 1.0 when it changes none."""
    n = fixed + broken
    if n == 0 or fixed == 0:
        return 1.0
    k = torch.arange(fixed, n + 1, dtype=torch.float64)
    log_pmf = (math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
               - n * math.log(2.0))
    return min(1.0, float(torch.logsumexp(log_pmf, 0).exp()))


def _deal(labels: Targets | None, folds: int, seed: int | None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled rows and each one's fold: shuffled with ``seed``, then dealt in turn,
    class by class where one finite variable is labelled (so every fold sees each
    class)."""
    if labels is None:
        raise ModelError("select='kfold' cross-validates over labelled rows: give targets")
    any_label = torch.zeros_like(next(iter(labels.mask.values())), dtype=torch.bool)
    for mask in labels.mask.values():
        any_label |= mask
    rows = torch.nonzero(any_label.cpu()).flatten()
    if len(rows) < 2:
        raise ModelError(f"select='kfold' needs at least 2 labelled rows, got {len(rows)}")
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    rows = rows[torch.randperm(len(rows), generator=gen)]
    if len(labels.values) == 1:
        y = next(iter(labels.values.values())).cpu()[rows]
        if not torch.is_floating_point(y) or bool((y == y.round()).all()):
            rows = rows[torch.sort(y, stable=True).indices]
    fold = torch.arange(len(rows)) % min(folds, len(rows))
    return rows, fold


def _hide(labels: Targets, rows: torch.Tensor) -> Targets:
    """``labels`` with every label of ``rows`` missing."""
    mask = {}
    for name, m in labels.mask.items():
        m = m.clone()
        m[rows.to(m.device)] = False
        mask[name] = m
    return Targets(dict(labels.values), mask)


def _score(hits: dict) -> float:
    """The mean over labelled variables of the accuracy (finite) or minus the squared
    error (real)."""
    scores = [float(v.double().mean()) for v in hits.values() if len(v)]
    return sum(scores) / len(scores) if scores else 0.0


def _record(model, epochs: int, tally: list[tuple[float, dict]], n: int) -> dict:
    """One candidate's held-out figures pooled over the folds (each labelled row is held
    out once)."""

    hits: dict[str, list] = {}
    for _, h in tally:
        for name, v in h.items():
            hits.setdefault(name, []).append(v)
    pooled = {name: torch.cat(v) for name, v in hits.items()}
    out = {"epochs": epochs, **summary(model, sum(loss for loss, _ in tally), n, pooled, "")}
    out["score"] = _score(pooled)
    return out
