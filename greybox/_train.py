"""Training a grey-box model: mini-batches, validation, early stopping, DDP."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping

import pandas as pd
import torch

from greybox.errors import DataError, ModelError

from ._batch import Batch, Targets
from ._epochs import Setting, TrainingData, has_label, train_epochs
from ._history import History
from ._select import check_select, select_epochs

__all__ = ["History", "fit"]


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
    setting = Setting(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       optimizer=optimizer, patience=patience, progress=progress,
                       anneal=anneal)
    if select is None:
        return train_epochs(model, d, setting, gen, stop_after=epochs)
    chosen, records = select_epochs(model, d, setting, gen, folds=folds, seed=seed)
    history = train_epochs(model, d, setting, gen, stop_after=chosen)
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
    check_select(select, folds)
    if select is not None and patience is not None:
        raise ModelError("select and patience both choose when training stops: give one")


def _training_data(model, data, targets, validation, gen: torch.Generator, *,
                   calibrate: bool) -> TrainingData:
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
    if not soft and not has_label(labels):
        held = " (after holding out the validation rows)" if isinstance(validation, float) \
            else ""
        raise DataError(f"no row of the training data has a label{held}, and the rules have "
                        "no soft constraint to learn from unlabelled rows: give at least one "
                        "label (missing labels are NaN or None)")
    return TrainingData(batch, labels, val_batch, val_labels, soft)


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
