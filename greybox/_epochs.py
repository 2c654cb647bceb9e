"""The training loop of :func:`greybox.fit`: mini-batch steps (under DDP too),
validation figures, early stopping. Used by :mod:`greybox._train` and
:mod:`greybox._select` (which trains copies of the model on folds)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from greybox.errors import ModelError
from greybox.rules import ast as A

from ._batch import Batch, Targets
from ._history import History
from ._objective import _prior_penalty

__all__ = ["Setting", "TrainingData", "has_label", "hits_of", "summary", "train_epochs"]


@dataclass
class _Last:
    """What the last training step's loss was."""

    data_loss: float = 0.0
    penalised: bool = False


class _LossModule(nn.Module):
    """Wraps a model so that DistributedDataParallel sees the loss as the forward pass."""

    def __init__(self, model, *, tie: bool = False, priors=(), weight_decay: float = 0.0):
        super().__init__()
        self.model = model
        self.tie = tie
        self.priors = list(priors)
        self.weight_decay = weight_decay
        #: the last data loss (without the prior penalty) as a float, and whether the
        #: prior penalty was added to it (a plain object: no Module attribute per step)
        self.last = _Last()

    @property
    def data_loss(self) -> float:
        return self.last.data_loss

    def forward(self, batch: Batch, labels: Targets) -> torch.Tensor:
        loss = self.model.trace_loss(self.model(batch), labels)
        last = self.last
        last.data_loss, last.penalised = float(loss.detach()), False
        if self.tie and not loss.requires_grad and torch.is_grad_enabled():
            # nothing in this process's batch teaches (no label, or only impossible ones):
            # a zero that reaches every parameter, so backward and DDP's all-reduce still
            # run in step with the other processes
            for p in self.parameters():
                if p.requires_grad:
                    loss = loss + 0.0 * p.sum()
        if loss.requires_grad and self.weight_decay and self.priors:
            # rule weights and thresholds decay toward the rules' values, not toward 0
            loss = loss + _prior_penalty(self.priors, self.weight_decay, loss.device)
            last.penalised = True
        return loss


def has_label(labels: Targets | None, rows: torch.Tensor | None = None) -> bool:
    """Whether any of ``rows`` (default: all) has a label for some variable."""
    if labels is None:
        return False
    for mask in labels.mask.values():
        m = mask if rows is None else mask[rows.to(mask.device)]
        if bool(m.any()):
            return True
    return False


def _step_rows(perm: torch.Tensor, per: int, world: int, start: int, size: int
               ) -> torch.Tensor:
    """The rows that all ``world`` processes (``per`` rows each) take at one step."""
    if world == 1:
        return perm[start:start + size]
    return torch.cat([perm[r * per + start:r * per + min(start + size, per)]
                      for r in range(world)])


def hits_of(model, batch: Batch, labels: Targets | None) -> tuple[float, dict]:
    """The summed loss over ``batch`` and, per labelled variable, a tensor with one entry
    per labelled row: 1/0 for a right/wrong decision of a finite variable (outputs as
    :meth:`GreyBox.predict` decides them), minus the squared error of a real one."""
    was = model.training
    model.eval()
    losses, correct = 0.0, {}
    try:
        with torch.no_grad():
            for start in range(0, batch.n, 2048):
                rows = torch.arange(start, min(batch.n, start + 2048))
                sub = batch.take(rows)
                lab = labels.take(rows) if labels is not None else None
                tr = model(sub)
                losses += float(model.trace_loss(tr, lab)) * len(rows)
                for name, hit in _row_hits(model, sub, lab, tr).items():
                    correct.setdefault(name, []).append(hit)
    finally:
        model.train(was)
    return losses, {name: torch.cat(hits) for name, hits in correct.items()}


def _row_hits(model, sub: Batch, lab: Targets | None, tr) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    decisions = None
    for name, y in (lab.values.items() if lab is not None else ()):
        mask = lab.mask[name]
        var = model.kb.variables[name]
        if not bool(mask.any()):
            continue
        if A.is_finite_type(var.type) and name not in model.kb.additive:
            if var.output:   # what predict decides
                decisions = decisions or model(sub, crisp=True).decisions()
                pred = decisions[name]
            else:
                v = tr.values[name]
                pred = (v > 0.5).long() if v.dim() == 1 else v.argmax(1)
            if not isinstance(y, torch.Tensor):    # big integers (BigLabels): exactly
                hit = torch.tensor([bool(a == b) for a, b in zip(pred[mask].indices,
                                                                y[mask].indices)]).float()
            else:
                hit = (pred[mask].to(y.device) == y[mask].long()).float()
        else:
            hit = -((tr.values[name][mask] - y[mask]) ** 2)
        out[name] = hit.cpu()
    return out


def summary(model, loss: float, n: int, hits: dict, prefix: str) -> dict:
    """Mean loss, and accuracy (finite variables) or squared error (real ones)."""
    out = {f"{prefix}loss": loss / max(n, 1)}
    for name, h in hits.items():
        if A.is_finite_type(model.kb.variables[name].type) and name not in model.kb.additive:
            out[f"{prefix}{name}_accuracy"] = float(h.mean())
        else:
            out[f"{prefix}{name}_mse"] = float(-h.mean())
    return out


def _metrics(model, batch: Batch, labels: Targets | None, prefix: str) -> dict:
    loss, hits = hits_of(model, batch, labels)
    return summary(model, loss, batch.n, hits, prefix)


@dataclass(frozen=True)
class Setting:
    """How :func:`fit` was asked to train (checked)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: object
    patience: int | None
    progress: bool
    anneal: float


@dataclass(frozen=True)
class TrainingData:
    """Training rows and labels, validation rows and labels (or None)."""

    batch: Batch
    labels: Targets | None
    val_batch: Batch | None
    val_labels: Targets | None
    soft: bool   # the rules have a soft constraint: unlabelled rows teach too


def train_epochs(model, d: TrainingData, s: Setting, gen: torch.Generator, *, stop_after: int,
           on_epoch=None) -> History:
    """Train for ``stop_after`` of the ``s.epochs`` epochs (the temperature schedule is
    that of ``s.epochs``); ``on_epoch(epoch)`` runs after each one."""
    dist = torch.distributed
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    step = _Step(model, d, s, gen, rank=rank, world=world)
    stop = _EarlyStopping(s.patience)
    start_temperature = model.temperature
    history = []
    model.train()
    for epoch in range(1, stop_after + 1):
        t0 = time.perf_counter()
        model.temperature = start_temperature * s.anneal ** ((epoch - 1) / max(s.epochs - 1, 1))
        record = {"epoch": epoch, "loss": step.epoch(epoch)}
        if s.anneal != 1:
            record["temperature"] = model.temperature
        if d.val_batch is not None:
            record.update(_metrics(model, d.val_batch, d.val_labels, "val_"))
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch)
        if s.progress and rank == 0:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
            print(f"epoch {epoch}/{s.epochs}: {shown}", flush=True)
        if d.val_batch is not None and stop.stops(model, epoch, record["val_loss"]):
            break
    stop.restore(model)
    model.eval()
    best = stop.best_epoch if stop.best_epoch is not None else (stop_after or None)
    return History(history, best, stop.stopped)


class _Step:
    """One epoch of optimiser steps over shuffled mini-batches (DDP-aware)."""

    def __init__(self, model, d: TrainingData, s: Setting, gen, *, rank: int, world: int):
        self.model, self.d, self.s, self.gen = model, d, s, gen
        self.rank, self.world = rank, world
        params = model.parameter_groups(s.lr)
        self.inner = self.runner = _LossModule(model, tie=world > 1, priors=model.prior_terms(),
                                               weight_decay=s.weight_decay)
        if world > 1:
            self.runner = nn.parallel.DistributedDataParallel(self.runner,
                                                              find_unused_parameters=True)
        self.opt = s.optimizer(params) if s.optimizer is not None else torch.optim.Adam(
            params, lr=s.lr, weight_decay=s.weight_decay)
        #: a row without any label may be drawn (so each step checks for one), decided
        #: once: a variable labelled on every row makes every step teach
        self.gaps = not d.soft and d.labels is not None and not any(
            bool(m.all()) for m in d.labels.mask.values())

    def epoch(self, epoch: int) -> float:
        """Run epoch ``epoch``; returns its mean data loss over the rows that taught."""
        d, s, world = self.d, self.s, self.world
        whole = torch.randperm(d.batch.n, generator=self.gen)
        per = d.batch.n // world
        perm = whole[self.rank * per:(self.rank + 1) * per] if world > 1 else whole
        bar = _bar(range(0, len(perm), s.batch_size), f"epoch {epoch}/{s.epochs}",
                   show=s.progress and self.rank == 0)
        shown = not getattr(bar, "disable", True)   # a bar on a terminal: its running loss
        total, seen = 0.0, 0
        for start in bar:
            rows = perm[start:start + s.batch_size]
            if self.gaps and not has_label(d.labels, _step_rows(whole, per, world, start,
                                                                  s.batch_size)):
                continue   # no process has a labelled row at this step: all skip it
            if self._step(rows, epoch):
                total += self.inner.data_loss * len(rows)
                seen += len(rows)
                if shown:
                    bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        return total / max(seen, 1)

    def _step(self, rows: torch.Tensor, epoch: int) -> bool:
        """One optimiser step on ``rows``; False when nothing in them teaches."""
        sub = self.d.batch.take(rows)
        lab = self.d.labels.take(rows) if self.d.labels is not None else None
        self.opt.zero_grad(set_to_none=True)
        loss = self.runner(sub, lab)
        last = self.inner.last
        value = last.data_loss   # read once (one synchronisation per step)
        if last.penalised and math.isfinite(value):
            value = float(loss.detach())
        if not math.isfinite(value):
            raise ModelError(f"the loss became {value} in epoch {epoch}; lower the "
                             "learning rate or check the labels")
        if not loss.requires_grad:
            return False   # every label in the batch is impossible: nothing to learn
        loss.backward()
        self.opt.step()
        return True


def _bar(steps, desc: str, *, show: bool):
    """A tqdm progress bar over ``steps`` (terminals only: logs get one line per epoch)."""
    if not show:
        return steps
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return steps
    return tqdm(steps, desc=desc, leave=False, mininterval=0.5, disable=None)


class _EarlyStopping:
    """The best validation loss so far; with ``patience``, the parameters (and
    temperature) at it, and whether training should stop."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best, self.best_epoch, self.bad, self.stopped = math.inf, None, 0, False
        self.state, self.temperature = None, None

    def stops(self, model, epoch: int, val_loss: float) -> bool:
        if val_loss < self.best - 1e-9:
            self.best, self.best_epoch, self.bad = val_loss, epoch, 0
            if self.patience is not None:
                self.state = copy.deepcopy(model.state_dict())
                self.temperature = model.temperature
            return False
        self.bad += 1
        self.stopped = self.patience is not None and self.bad >= self.patience
        return self.stopped

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)
            model.temperature = self.temperature
