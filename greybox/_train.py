"""Training a grey-box model: mini-batches, validation, early stopping, DDP."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from greybox.errors import DataError, ModelError
from greybox.rules import ast as A

from ._batch import Batch, Targets
from ._objective import _prior_penalty

__all__ = ["History", "fit"]


@dataclass(frozen=True, repr=False)
class History:
    """What :func:`fit` did: one record per epoch (training loss, validation loss and
    metrics, seconds), the best epoch, whether training stopped early, and with
    ``select="kfold"`` the held-out figures that decided whether to train.

    ``repr`` is one line; ``str`` adds the epochs as a table (the best epoch marked) and
    the k-fold decision; in Jupyter it shows as an HTML table.

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> model = gb.GreyBox("input x: real[0, 10]  output y: bool  rule r: x > ~5 -> y",
    ...                    semantics="product")
    >>> x = np.linspace(0, 10, 40)
    >>> history = model.fit({"x": x}, {"y": x > 6}, epochs=3, validation=0.25, seed=0,
    ...                     progress=False)
    >>> history.best_epoch, list(history.to_frame().columns)
    (3, ['loss', 'val_loss', 'val_y_accuracy', 'seconds'])
    >>> print(str(history).splitlines()[0])
    History(3 epochs; last: loss ..., val_loss ..., val_y_accuracy ...; best epoch 3)
    """

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    #: with ``fit(select="kfold")``: one record per candidate, the model as given (0
    #: epochs) and trained: held-out ``loss``, accuracy or squared error per labelled
    #: variable, ``score``, its ``gain`` over the model as given, the held-out labels
    #: training ``fixed`` and ``broken``, and the sign test's ``p_value``
    selection: list[dict] = field(default_factory=list)
    #: with ``fit(select="kfold")``: the epochs trained (0: the model as given)
    selected_epochs: int | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch (index: epoch): ``loss``, the validation figures when
        there was a validation set (``val_loss``, ``val_<name>_accuracy``...),
        ``temperature`` when annealed, and ``seconds``."""
        return pd.DataFrame(self.epochs).set_index("epoch") if self.epochs else pd.DataFrame()

    def selection_frame(self) -> pd.DataFrame:
        """The k-fold selection's records, one row per candidate (index: epochs)."""
        return (pd.DataFrame(self.selection).set_index("epochs") if self.selection
                else pd.DataFrame())

    def _marked(self) -> pd.DataFrame:
        """The epochs table with a ``note`` column: the best epoch, where training stopped
        early."""
        frame = self.to_frame()
        if frame.empty:
            return frame
        note = pd.Series("", index=frame.index)
        if self.best_epoch in note.index:
            note[self.best_epoch] = ("best (lowest val_loss)" if "val_loss" in frame
                                     else "best (last: no validation set)")
        if self.stopped_early:
            last = frame.index[-1]
            note[last] = ", ".join(filter(None, [note[last], "stopped early"]))
        return frame.assign(note=note)

    def _decision(self) -> str:
        """The k-fold selection's decision in words ("" without one)."""
        if self.selected_epochs is None or len(self.selection) != 2:
            return ""
        given, trained = self.selection
        verdict = (f"trained {self.selected_epochs} epochs" if self.selected_epochs
                   else "kept the model as given (0 epochs)")
        return (f"k-fold selection {verdict}: held-out score {given['score']:.4g} as given, "
                f"{trained['score']:.4g} after {trained['epochs']} epochs; training fixed "
                f"{trained['fixed']} and broke {trained['broken']} held-out labels (sign "
                f"test p = {trained['p_value']:.3g})")

    def __repr__(self) -> str:
        chosen = ("" if self.selected_epochs is None else
                  f"; k-fold selection kept {self.selected_epochs} epochs")
        if not self.epochs:
            return f"History(no epochs{chosen})"
        last = self.epochs[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if k not in ("epoch", "seconds") and isinstance(v, float))
        stop = (f"; stopped early after epoch {last['epoch']}, the best restored"
                if self.stopped_early else "")
        return (f"History({len(self.epochs)} epochs; last: {shown}; best epoch "
                f"{self.best_epoch}{stop}{chosen})")

    def __str__(self) -> str:
        lines = [repr(self)]
        if self.epochs:
            lines.append(self._marked().to_string(float_format="{:.4g}".format,
                                                  max_rows=20))
        if self._decision():
            lines.append(self._decision())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        parts = [f"<pre>{html.escape(repr(self))}</pre>"]
        with pd.option_context("display.float_format", "{:.4g}".format):   # as str
            if self.epochs:
                parts.append(self._marked()._repr_html_())
            if self._decision():
                parts.append(f"<p>{html.escape(self._decision())}</p>"
                             + self.selection_frame()._repr_html_())
        return "<div>" + "".join(parts) + "</div>"


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


def _has_label(labels: Targets | None, rows: torch.Tensor | None = None) -> bool:
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


def _default_targets(model, data):
    if isinstance(data, pd.DataFrame):
        names = [c for c in data.columns if c in model.kb.variables
                 and model.kb.variables[c].role != "input"]
    elif isinstance(data, Mapping):
        names = [c for c in data if c in model.kb.variables
                 and model.kb.variables[c].role != "input"]
    else:
        names = []
    return {n: data[n] for n in names} if names else None


def _hits(model, batch: Batch, labels: Targets | None) -> tuple[float, dict]:
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


def _summary(model, loss: float, n: int, hits: dict, prefix: str) -> dict:
    """Mean loss, and accuracy (finite variables) or squared error (real ones)."""
    out = {f"{prefix}loss": loss / max(n, 1)}
    for name, h in hits.items():
        if A.is_finite_type(model.kb.variables[name].type) and name not in model.kb.additive:
            out[f"{prefix}{name}_accuracy"] = float(h.mean())
        else:
            out[f"{prefix}{name}_mse"] = float(-h.mean())
    return out


def _metrics(model, batch: Batch, labels: Targets | None, prefix: str) -> dict:
    loss, hits = _hits(model, batch, labels)
    return _summary(model, loss, batch.n, hits, prefix)


def fit(model, data, targets=None, *, epochs: int = 10, batch_size: int = 32,
        lr: float = 1e-2, weight_decay: float = 0.0, optimizer=None, validation=None,
        seed: int | None = 0, patience: int | None = None, progress: bool = True,
        calibrate: bool = True, anneal: float = 1.0, select: str | None = None,
        folds: int = 5, loss: str | None = None) -> History:
    """Train ``model`` on ``data``.

    Parameters
    ----------
    model : GreyBox
    data : DataFrame or mapping of input name -> values
    targets : mapping of variable name -> labels, Series/array (the only output), optional
        Any variable may be supervised: outputs, defined variables (distant supervision:
        a digit network learns from sums) or neural concepts. Missing labels (NaN/None)
        are skipped; soft constraints still train on those rows, and without soft
        constraints a mini-batch with no label at all is skipped. Default: columns of
        ``data`` named after non-input variables.
    epochs, batch_size, lr
        Adam over :meth:`GreyBox.parameter_groups` unless ``optimizer`` (a function
        ``params -> torch.optim.Optimizer``) is given.
    weight_decay : float
        L2 regularisation. Networks, the residual and the biases get Adam's
        ``weight_decay`` (toward 0); rule weights and ``~`` thresholds are pulled toward
        the values written in the rules instead, by
        :meth:`GreyBox.prior_penalty` added to the loss (``weight_decay / 2`` times the
        squared distance from the rules' value, in units of the spread of what a
        threshold is compared with). With ``optimizer``, the penalty still applies and
        :meth:`GreyBox.parameter_groups` sets ``weight_decay=0`` on the rule groups.
        The recorded ``loss`` is the data loss, without the penalty. The penalty is
        added to each step's *mean* loss, like the optimiser's decay: the rules' values
        weigh as much as ``weight_decay`` times the number of labels, so with few labels
        they hold weakly (not as a Bayesian prior, whose weight against the data grows
        as labels get fewer); what keeps few labels from ending below the rules is
        ``select="kfold"`` (see the user guide, "Few labels").
    validation : (data, targets) or float, optional
        Held-out data, or the fraction of ``data`` to hold out (chosen with ``seed``).
        Its loss and accuracies are recorded every epoch.
    seed : int or None
        Seeds torch's random numbers where the model lives (the CPU generator; a GPU's
        when the model is on it) and the shuffling, so the same call gives the same model.
    patience : int, optional
        Stop when the validation loss has not improved for this many epochs, and restore
        the best parameters.
    progress : bool
        Show a progress bar (tqdm).
    calibrate : bool
        Set the input statistics from ``data`` first (see :meth:`GreyBox.calibrate`) if
        they were never set.
    anneal : float
        Temperature schedule of smooth comparisons ("train smooth, decide crisp"): the
        temperature moves geometrically from the model's temperature in the first epoch
        to ``anneal`` times it in the last, and the model keeps the final one. Below 1,
        the smooth model the loss sees approaches the crisp decision function that
        :meth:`GreyBox.predict` and every explanation use. 1 (default) keeps it fixed.
    select : None or "kfold"
        ``"kfold"``: train only if training wins on held-out labels. The labelled rows
        are dealt into ``folds`` folds; per fold, a copy of the model trains for
        ``epochs`` with that fold's labels hidden (its rows still take part, unlabelled),
        and it and the model as given are scored on the hidden labels (accuracy of the
        decisions :meth:`GreyBox.predict` makes; for a real variable, a smaller squared
        error counts as right). The model then trains for ``epochs`` only if training wins a
        one-sided exact sign test (McNemar's test) at the 5% level: among the held-out
        labels whose decision training changed, pooled over the folds, it must fix so
        many more than it breaks that a coin that favours neither would do as well less
        than one time in twenty (3 fixed and none broken: 1 in 8, kept; 5 and none: 1 in
        32, trained). Otherwise it keeps the values it was given (the rules' stated
        values, a residual that starts at 0): 0 epochs. Costs
        ``folds`` extra trainings; meant for few labels. Not with ``patience``.
    folds : int
        Folds for ``select="kfold"`` (fewer when fewer rows are labelled).
    loss : None, "squared" or "absolute"
        The error an additive (regression) output trains on: squared (default) or
        absolute, in units of its labels' standard deviation (kept by the model as
        ``regression_loss``; None keeps the model's). Its bias starts at the labels'
        mean less the rules' mean push when it is 0 (never trained), and its bias and
        rule weights, in the labels' unit, learn at ``lr`` times that deviation.

    Under ``torch.distributed`` (e.g. ``torchrun``) the model is wrapped in
    ``DistributedDataParallel``; every process takes its share of each epoch's shuffled
    rows and gradients are averaged, so all processes end with the same parameters.

    Returns
    -------
    History
        With ``select``, also ``selected_epochs`` and ``selection`` (the held-out figures
        of both candidates, :meth:`History.selection_frame`).

    Examples
    --------
    >>> import numpy as np, greybox as gb
    >>> model = gb.GreyBox("input x: real[0, 10]  output y: bool  rule r weight 2: x > ~5 -> y",
    ...                    semantics="product")
    >>> x = np.linspace(0, 10, 40)
    >>> labels = np.where(np.arange(40) % 4 == 0, x > 5, np.nan)   # 10 labels
    >>> history = gb.fit(model, {"x": x}, {"y": labels}, epochs=5, select="kfold",
    ...                  progress=False)
    >>> [round(r["y_accuracy"], 2) for r in history.selection]  # held out: as given, trained
    [1.0, 0.9]
    >>> history.selected_epochs      # training does not win on held-out labels: rules kept
    0

    Raises
    ------
    DataError
        The data or labels do not fit the rules, or no training row has a label and there
        is no soft constraint to learn from.
    ModelError
        Bad arguments, nothing to learn from, or a loss that is not finite.
    """
    _check_arguments(epochs=epochs, batch_size=batch_size, validation=validation,
                     patience=patience, anneal=anneal, select=select, folds=folds)
    if seed is not None:
        _seed(model, seed)
    gen = torch.Generator().manual_seed(seed if seed is not None else int(time.time()))
    if loss is not None:
        if loss not in ("squared", "absolute"):
            raise ModelError(f"loss must be 'squared' or 'absolute', got {loss!r}")
        model.regression_loss = loss
    d = _training_data(model, data, targets, validation, gen, calibrate=calibrate)
    _regression_start(model, d)
    setting = _Setting(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       optimizer=optimizer, patience=patience, progress=progress,
                       anneal=anneal)
    if select is None:
        return _train(model, d, setting, gen, stop_after=epochs)
    from ._select import select_epochs

    chosen, records = select_epochs(model, d, setting, gen, folds=folds, seed=seed)
    history = _train(model, d, setting, gen, stop_after=chosen)
    return dataclasses.replace(history, selection=records, selected_epochs=chosen)


def _regression_start(model, d) -> None:
    """Each labelled additive output's label spread (the unit of its loss and weights)
    and, where its bias is 0 (never trained), a bias at the labels' mean less the
    rules' mean push on them."""
    if d.labels is None:
        return
    for name in model.kb.additive:
        if name not in d.labels.values:
            continue
        mask = d.labels.mask[name]
        y = d.labels.values[name][mask].double()
        if y.numel() == 0:
            continue
        sd = float(y.std()) if y.numel() > 1 else 0.0
        model.output_spread[name] = sd if math.isfinite(sd) and sd > 0 else 1.0
        bias = model.decisions_bias(name)
        if float(bias.detach()) == 0.0:
            with torch.no_grad():
                was = model.training
                model.eval()
                score = model(d.batch).scores[name].detach().double()
                model.train(was)
                push = score.expand(d.batch.n)[mask.to(score.device)].mean()
                bias.fill_(float((y.to(score.device) - push).mean()))


def _seed(model, seed: int) -> None:
    """Seed torch's random numbers where the model lives: the CPU generator, and a
    device's generators only when a parameter or buffer is on that device (what
    ``torch.manual_seed`` does for every device type, at ~1 ms a call)."""
    torch.default_generator.manual_seed(seed)
    kinds = {t.device.type for t in (*model.parameters(), *model.buffers())} - {"cpu"}
    for kind in sorted(kinds):
        module = getattr(torch, kind, None)
        seed_all = getattr(module, "manual_seed_all", None) or getattr(module, "manual_seed",
                                                                        None)
        if seed_all is None:
            raise ModelError(f"cannot seed the random numbers of device type {kind!r} (no "
                             f"torch.{kind}.manual_seed): pass seed=None and seed them "
                             "yourself")
        seed_all(seed)


@dataclass(frozen=True)
class _Setting:
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
class _Data:
    """Training rows and labels, validation rows and labels (or None)."""

    batch: Batch
    labels: Targets | None
    val_batch: Batch | None
    val_labels: Targets | None
    soft: bool   # the rules have a soft constraint: unlabelled rows teach too


def _check_arguments(*, epochs, batch_size, validation, patience, anneal, select,
                     folds) -> None:
    if not isinstance(epochs, int) or epochs < 0:
        raise ModelError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"batch_size must be a positive integer, got {batch_size!r}")
    if patience is not None and validation is None:
        raise ModelError("patience (early stopping) needs validation data")
    if not (isinstance(anneal, (int, float)) and 0 < anneal <= 1 and math.isfinite(anneal)):
        raise ModelError(f"anneal must be a number in (0, 1], got {anneal!r}")
    from ._select import check_select

    check_select(select, folds)
    if select is not None and patience is not None:
        raise ModelError("select and patience both choose when training stops: give one")


def _training_data(model, data, targets, validation, gen: torch.Generator, *,
                   calibrate: bool) -> _Data:
    """The batches and labels to train and validate on (calibrating the model's input
    statistics first when asked and never done)."""
    if targets is None:
        targets = _default_targets(model, data)
    batch = model.batch(data)
    if batch.n == 0:
        raise DataError("no rows to train on")
    labels = model.labels(targets, batch.n, index=batch.index) if targets is not None else None
    soft = any(not c.hard for c in model.kb.constraints.values())
    if labels is None and not soft:
        raise ModelError("nothing to learn from: give targets (labels for an output, a "
                         "defined or a neural variable) or soft constraints")
    if calibrate and not bool(model.calibrated) and model.feature_names and batch.n > 1:
        model.calibrate(batch)
    batch, labels, val_batch, val_labels = _hold_out(model, batch, labels, validation, gen)
    if not soft and not _has_label(labels):
        held = " (after holding out the validation rows)" if isinstance(validation, float) \
            else ""
        raise DataError(f"no row of the training data has a label{held}, and the rules have "
                        "no soft constraint to learn from unlabelled rows: give at least one "
                        "label (missing labels are NaN or None)")
    return _Data(batch, labels, val_batch, val_labels, soft)


def _hold_out(model, batch: Batch, labels: Targets | None, validation, gen):
    """``(batch, labels, val_batch, val_labels)``: a fraction of the rows held out, or
    the validation data given."""
    if isinstance(validation, float):
        if not 0 < validation < 1:
            raise ModelError(f"validation fraction must be in (0, 1), got {validation}")
        perm = torch.randperm(batch.n, generator=gen)
        k = max(1, int(round(batch.n * validation)))
        val_rows, rows = perm[:k].sort().values, perm[k:].sort().values
        if labels is None:
            return batch.take(rows), None, batch.take(val_rows), None
        return batch.take(rows), labels.take(rows), batch.take(val_rows), labels.take(val_rows)
    if validation is None:
        return batch, labels, None, None
    if not (isinstance(validation, tuple) and len(validation) == 2):
        raise ModelError("validation must be a fraction or a (data, targets) pair")
    val_batch = model.batch(validation[0])
    vt = validation[1] if validation[1] is not None else _default_targets(model, validation[0])
    val_labels = model.labels(vt, val_batch.n, index=val_batch.index) if vt is not None else None
    return batch, labels, val_batch, val_labels


def _train(model, d: _Data, s: _Setting, gen: torch.Generator, *, stop_after: int,
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

    def __init__(self, model, d: _Data, s: _Setting, gen, *, rank: int, world: int):
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
            if self.gaps and not _has_label(d.labels, _step_rows(whole, per, world, start,
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
