"""A grey-box model's table inputs as its networks read them: names, statistics, range.

:class:`InputStatistics` is a child module of :class:`~greybox.GreyBox` (``statistics``):
given the knowledge base, it owns the standardisation of the table inputs
(``feature_names``, ``feature_center``/``feature_scale`` buffers), their range and
precision seen in the data (:meth:`~InputStatistics.calibrate`), and the spreads smooth
comparisons and counterfactual distances are measured in. It reads nothing of the model;
the model keeps its buffers' state-dict names at the top level (``feature_center``, not
``statistics.feature_center``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from greybox.errors import DataError
from greybox.rules import ast as A
from greybox.rules.engine import missing_key

from ._batch import Batch

__all__ = ["STATISTICS", "InputStatistics"]

#: the buffers :meth:`InputStatistics.calibrate` sets (copied by :meth:`GreyBox.replace`)
STATISTICS = ("feature_center", "feature_scale", "calibrated", "feature_min",
              "feature_max", "feature_step", "range_known")


class InputStatistics(nn.Module):
    """The table inputs of knowledge base ``kb`` as features: their names (enums one-hot),
    center and scale (from the declared bounds until :meth:`calibrate` sees data), and the
    range and precision seen in the data. Contract: given a :class:`Batch` of ``kb``, it
    returns features and spreads; :meth:`calibrate` is the only writer of its buffers.

    Examples
    --------
    >>> import greybox as gb
    >>> kb = gb.rules.parse("input x: real[0, 8]  input c: {a, b}  output y: bool")
    >>> stats = InputStatistics(kb)
    >>> stats.feature_names, stats.spread("x")
    (['x', 'c=a', 'c=b'], 2.0)
    """

    def __init__(self, kb):
        super().__init__()
        self.kb = kb
        self.feature_names: list[str] = []
        centers, scales = [], []
        for name in self.kb.inputs:
            t = self.kb.variables[name].type
            if isinstance(t, A.TensorType):
                continue
            if isinstance(t, A.EnumType):
                self.feature_names += [f"{name}={v}" for v in t.values]
                centers += [0.0] * t.size
                scales += [1.0] * t.size
                continue
            self.feature_names.append(name)
            lo, hi = (t.lo, t.hi) if isinstance(t, (A.IntType, A.RealType)) else (0, 1)
            known = lo is not None and hi is not None and hi > lo
            centers.append((lo + hi) / 2 if known else 0.0)
            scales.append((hi - lo) / 4 if known else 1.0)
        self.register_buffer("feature_center", torch.tensor(centers, dtype=torch.float32))
        self.register_buffer("feature_scale", torch.tensor(scales, dtype=torch.float32))
        self.register_buffer("calibrated", torch.tensor(False))
        # the range and precision seen in the data (calibrate): formal reasoning bounds an
        # input declared without bounds by its range, and rounds counterfactual values to
        # its precision (a step of 0: not known)
        n = len(self.feature_names)
        for name in ("feature_min", "feature_max", "feature_step"):
            self.register_buffer(name, torch.zeros(n, dtype=torch.float64))
        self.register_buffer("range_known", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"{len(self.feature_names)} features"

    def scale_of(self, name: str) -> torch.Tensor | float:
        """The spread of a table input as a tensor (a buffer's element) where it is a
        feature, else from its declared range (a quarter of an int's width, at least 1)."""
        if name in self.feature_names:
            return self.feature_scale[self.feature_names.index(name)]
        var = self.kb.variables[name]
        if isinstance(var.type, A.IntType):
            return max(1.0, (var.type.hi - var.type.lo) / 4)
        return 1.0

    def features(self, batch: Batch, *, standardise: bool = True) -> torch.Tensor:
        """The table inputs of ``batch``, enums one-hot, in :attr:`feature_names` order;
        standardised by the center and scale unless ``standardise=False``."""
        cols = []
        for name in self.kb.inputs:
            t = self.kb.variables[name].type
            if isinstance(t, A.TensorType):
                continue
            x = batch.values[name]
            if isinstance(t, A.EnumType):
                cols.append(nn.functional.one_hot(x, t.size).float())
            else:
                cols.append(x.float().unsqueeze(1))
        if not cols:
            return torch.zeros(batch.n, 0, device=self.feature_center.device)
        if not standardise:
            return torch.cat(cols, 1)
        return (torch.cat(cols, 1) - self.feature_center) / self.feature_scale

    def spread(self, name: str) -> float:
        """The spread of a table input (its standard deviation once calibrated): the unit
        of counterfactual distances and of smooth comparisons' temperature."""
        return float(self.scale_of(name))

    # statistics -------------------------------------------------------------------------------
    def calibrate(self, batch: Batch) -> InputStatistics:
        """Set the table inputs' center and spread (mean, standard deviation), range and
        precision from ``batch``."""
        if batch.n < 2:
            raise DataError("calibrate needs at least 2 rows")
        feats = self.features(batch) * self.feature_scale + self.feature_center
        center = feats.mean(0)
        scale = feats.std(0)
        for i, name in enumerate(self.feature_names):
            if "=" in name and name not in self.kb.variables:  # one-hot enum columns
                center[i], scale[i] = 0.0, 1.0
        raw = self.raw_features(batch)
        for i, name in enumerate(self.feature_names):   # over the values present only
            gaps = np.isnan(raw[:, i])
            if gaps.any() and name in self.kb.variables:
                seen = feats[torch.as_tensor(~gaps, device=feats.device), i]
                center[i] = seen.mean() if len(seen) else 0.0
                scale[i] = seen.std() if len(seen) > 1 else 1.0
                raw[gaps, i] = np.nanmin(raw[:, i]) if len(seen) else 0.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        with torch.no_grad():
            self.feature_center.copy_(center)
            self.feature_scale.copy_(scale)
            self.calibrated.fill_(True)
            self.feature_min.copy_(torch.as_tensor(raw.min(0), dtype=torch.float64))
            self.feature_max.copy_(torch.as_tensor(raw.max(0), dtype=torch.float64))
            self.range_known.fill_(True)
            self.feature_step.copy_(torch.as_tensor([_precision(raw[:, i])
                                                     for i in range(raw.shape[1])],
                                                    dtype=torch.float64))
        return self

    def raw_features(self, batch: Batch) -> np.ndarray:
        """The table inputs in :attr:`feature_names` order, unstandardised, in float64."""
        cols = []
        for name in self.kb.inputs:
            t = self.kb.variables[name].type
            if isinstance(t, A.TensorType):
                continue
            x = np.asarray(batch.columns[name])
            if isinstance(t, A.EnumType):
                cols.append(np.eye(t.size)[x.astype(np.int64)])
            else:
                x = x.astype(np.float64)
                if self.kb.variables[name].optional:   # a missing cell: NaN, not its placeholder
                    x = np.where(batch.columns[missing_key(name)], np.nan, x)
                cols.append(x.reshape(-1, 1))
        return np.concatenate(cols, 1) if cols else np.zeros((batch.n, 0))

    def input_range(self, name: str) -> tuple[float, float, bool]:
        """``(lo, hi, from_data)``: a table input's declared bounds, or, where it has
        none, the range seen by :meth:`calibrate` (``from_data`` True); infinite where
        neither is known."""
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return 0.0, 1.0, False
        lo, hi = getattr(t, "lo", None), getattr(t, "hi", None)
        if lo is not None and hi is not None:
            return float(lo), float(hi), False
        i = self.feature_names.index(name)
        dlo, dhi = (float(self.feature_min[i]), float(self.feature_max[i])) \
            if bool(self.range_known) else (-float("inf"), float("inf"))
        return (float(lo) if lo is not None else dlo,
                float(hi) if hi is not None else dhi, True)

    def input_step(self, name: str) -> float:
        """The precision of a table input in the calibration data (0.01 for values with two
        decimals, 1 for ints; 0 when not known)."""
        t = self.kb.variables[name].type
        if isinstance(t, (A.IntType, A.BoolType)):
            return 1.0
        if name not in self.feature_names:
            return 0.0
        return float(self.feature_step[self.feature_names.index(name)])


def _precision(x: np.ndarray, most: int = 6) -> float:
    """The largest step ``10**-k`` (k <= ``most``) of which every value is a multiple, up
    to float noise; 0 when the values need more decimals than that."""
    x = x[np.isfinite(x)]
    for k in range(most + 1):
        step = 10.0 ** -k
        scaled = x / step
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return step
    return 0.0
