"""scikit-learn estimators on top of :class:`~greybox.GreyBox` for tabular data: a
classifier (a finite output) and a regressor (an additive real or int output)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from greybox import rules as gr
from greybox.errors import ModelError, listed
from greybox.rules import ast as A

__all__ = ["GreyBoxClassifier", "GreyBoxRegressor"]


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class GreyBoxClassifier(ClassifierMixin, BaseEstimator):
    """Rules plus an optional residual network, as a scikit-learn classifier.

    Parameters
    ----------
    rules : str, KnowledgeBase or None
        Rule text (or a parsed knowledge base, or a ``.rules`` path) with one finite
        output decided by rules, whose inputs name the DataFrame's columns. ``None``: no
        rules; the inputs are X's columns and the classifier is the residual network
        alone (a baseline on the same footing).
    residual : None, "mlp", int or nn.Module
        What the rules miss: ``"mlp"`` is one hidden layer of ``hidden`` units, an int
        sets the hidden units, a module is used as given (it gets the standardised table
        inputs and returns one logit per row for a bool output, one per value otherwise;
        it is copied, never trained in place).
    semantics : str
        ``"product"`` (default), ``"godel"``, ``"lukasiewicz"`` or ``"probabilistic"``.
    epochs, batch_size, lr, weight_decay, patience, validation_fraction, select, folds
        Training (see :func:`greybox.fit`); ``patience`` uses ``validation_fraction``;
        ``select="kfold"`` chooses how many of the ``epochs`` to train (0: the rules as
        written) by ``folds``-fold cross-validation over the labelled rows.
    hidden : int
        Hidden units of the ``"mlp"`` residual.
    temperature : float
        Of smooth comparisons (see :class:`~greybox.GreyBox`).
    random_state : int or None
        Seeds the networks' initialisation and the training.
    verbose : bool
        Show progress.

    Attributes
    ----------
    model_ : GreyBox
    classes_ : ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray (when fitted on a DataFrame)
    history_ : History

    Examples
    --------
    >>> import pandas as pd, greybox as gb
    >>> X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    >>> y = [False, False, False, True, True, True]
    >>> clf = gb.GreyBoxClassifier(rules="input x: real  output y: bool "
    ...                            "rule big weight 2: x > ~2.5 -> y  rule small weight 2: x < ~2.5 -> not y",
    ...                            epochs=5)
    >>> clf.fit(X, y).predict(X).tolist()
    [False, False, False, True, True, True]
    """

    def __init__(self, rules=None, residual=None, *, semantics: str = "product",
                 epochs: int = 30, batch_size: int = 32, lr: float = 0.01,
                 weight_decay: float = 0.0, patience: int | None = None,
                 validation_fraction: float = 0.1, hidden: int = 16,
                 temperature: float = 0.1, random_state: int | None = 0,
                 verbose: bool = False, select: str | None = None, folds: int = 5):
        self.rules = rules
        self.residual = residual
        self.semantics = semantics
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.hidden = hidden
        self.temperature = temperature
        self.random_state = random_state
        self.verbose = verbose
        self.select = select
        self.folds = folds

    # ----------------------------------------------------------------------- helpers
    def _frame(self, X, *, fitting: bool) -> pd.DataFrame:
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError(f"{type(self).__name__} does not take sparse input; pass a dense "
                            "array or a DataFrame (X.toarray())")
        if isinstance(X, pd.DataFrame):
            df = X.rename(columns=str) if any(not isinstance(c, str) for c in X.columns) else X
            names = np.asarray(list(df.columns), dtype=object)
        else:
            arr = np.asarray(X)
            if arr.dtype.kind == "c":
                raise ValueError("Complex data not supported")
            if arr.dtype.kind == "O":
                try:  # a TypeError (a dict in a cell) says what it could not convert
                    arr = arr.astype(np.float64)
                except ValueError:
                    raise ValueError("X must hold numbers, or be a DataFrame") from None
            if arr.ndim != 2:
                raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead: X of "
                                 f"shape {arr.shape}. Reshape your data with "
                                 "X.reshape(-1, 1) for one feature or X.reshape(1, -1) for "
                                 "one row")
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"X must hold numbers, got dtype {arr.dtype}")
            df = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
            names = None
        if df.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={df.shape}) while a minimum "
                             "of 1 is required.")
        if df.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={df.shape}) while a "
                             "minimum of 1 is required.")
        if fitting:
            self.n_features_in_ = df.shape[1]
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            if df.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {df.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input")
            if names is None and hasattr(self, "feature_names_in_"):
                df.columns = list(self.feature_names_in_)
        return df

    def _kb(self, df: pd.DataFrame, n_classes: int):
        if self.rules is None:
            lines = [f"input {gr.to_text(gr.ast.Var(str(c)))}: real" for c in df.columns]
            out = "bool" if n_classes == 2 else f"int 0..{n_classes - 1}"
            lines.append(f"output y: {out}")
            return gr.parse("\n".join(lines))
        kb = self.rules
        if isinstance(kb, str):
            kb = gr.load(kb) if kb.endswith(".rules") and "\n" not in kb else gr.parse(kb)
        if not isinstance(kb, gr.KnowledgeBase):
            raise ModelError(f"rules must be rule text, a KnowledgeBase or None, got "
                             f"{type(kb).__name__}")
        return kb

    def _output(self, kb) -> str:
        outs = [o for o in kb.outputs if A.is_finite_type(kb.variables[o].type)]
        if len(outs) != 1:
            raise ModelError("GreyBoxClassifier needs rules with exactly one finite output, "
                             f"got {listed(kb.outputs) or 'none'}")
        if kb.networks:
            raise ModelError("GreyBoxClassifier takes rules without neural variables (use "
                             "GreyBox for networks over tensors)")
        return outs[0]

    def _classes(self, y, classes, out: str, t, values: list) -> np.ndarray:
        """Set ``classes_``; each label's index among the output's values."""
        if self.rules is None:
            self.classes_ = classes
            return np.searchsorted(classes, y)
        if isinstance(t, A.BoolType):
            if len(classes) > 2:
                raise ValueError(f"output {out!r} is a bool but y has {len(classes)} classes")
            self.classes_ = classes if len(classes) == 2 else np.array([False, True])
            return (y == self.classes_[1]).astype(np.int64)
        lookup = {v: i for i, v in enumerate(values)}
        lookup.update({str(v): i for i, v in enumerate(values)})
        bad = [v for v in classes if v not in lookup]
        if bad:
            raise ValueError(f"label {bad[0]!r} is not a value of output {out!r} ({values})")
        self.classes_ = np.asarray(values, dtype=object if isinstance(t, A.EnumType)
                                   else np.int64)
        return np.array([lookup[v] for v in y], dtype=np.int64)

    def _residual(self, kb, n_out: int):
        """The residual network the ``residual`` parameter asks for (a fresh copy)."""
        residual = self.residual
        if residual is None or isinstance(residual, nn.Module):
            return copy.deepcopy(residual)
        if residual == "mlp" or (isinstance(residual, int) and not isinstance(residual, bool)):
            hidden = self.hidden if residual == "mlp" else int(residual)
            n_in = sum(kb.variables[i].type.size if isinstance(kb.variables[i].type,
                                                                A.EnumType) else 1
                       for i in kb.inputs)
            return _mlp(n_in, n_out, hidden)
        raise ModelError(f"residual must be None, 'mlp', a number of hidden units or "
                         f"an nn.Module, got {residual!r}")

    # ------------------------------------------------------------------------- API
    def fit(self, X, y):
        """Fit on a DataFrame (or array) ``X`` and labels ``y``; returns ``self``."""
        df = self._frame(X, fitting=True)
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != len(df):
            raise ValueError(f"X has {len(df)} rows but y has {len(y)}")
        check_classification_targets(y)
        classes = np.unique(y)
        if self.rules is None and len(classes) < 2:
            raise ValueError("GreyBoxClassifier needs at least 2 classes to train; got 1 class")
        kb = self._kb(df, len(classes))
        out = self._output(kb)
        t = kb.variables[out].type
        values = list(A.domain(t).values)
        index = self._classes(y, classes, out, t, values)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        from ._model import GreyBox

        residual = self._residual(kb, 1 if isinstance(t, A.BoolType) else len(values))
        self.model_ = GreyBox(kb, semantics=self.semantics, residual=residual,
                              temperature=self.temperature)
        self.output_ = out
        if isinstance(t, A.BoolType):
            target = index.astype(np.float64)
        else:
            target = np.asarray([values[i] for i in index],
                                dtype=object if isinstance(t, A.EnumType) else np.float64)
        validation = self.validation_fraction if self.patience is not None else None
        self.history_ = self.model_.fit(df, {out: target}, epochs=self.epochs,
                                        batch_size=self.batch_size, lr=self.lr,
                                        weight_decay=self.weight_decay, patience=self.patience,
                                        validation=validation, seed=self.random_state,
                                        progress=self.verbose, select=self.select,
                                        folds=self.folds)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        df = self._frame(X, fitting=False)
        return self.model_.predict_proba(df, self.output_).to_numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class per row (hard constraints hold)."""
        check_is_fitted(self, "model_")
        df = self._frame(X, fitting=False)
        pred = self.model_.predict(df)[self.output_].to_numpy()
        t = self.model_.kb.variables[self.output_].type
        if isinstance(t, A.BoolType):
            return self.classes_[pred.astype(np.int64)]
        if self.rules is None:
            return self.classes_[pred.astype(np.int64)]
        return np.asarray(pred, dtype=self.classes_.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class GreyBoxRegressor(RegressorMixin, BaseEstimator):
    """Rules that add to a number, plus an optional residual network, as a scikit-learn
    regressor.

    The prediction is ``bias + sum(weight * [body]) + residual`` (see the models guide,
    "Regression outputs"): each rule whose body holds adds its weight (``-> y``) or
    subtracts it (``-> not y``); an ``int`` output rounds that score to the nearest whole
    number, halves up, within its bounds.

    Parameters
    ----------
    rules : str, KnowledgeBase or None
        Rule text (or a parsed knowledge base, or a ``.rules`` path) with one additive
        output: a ``real`` output, or an ``int`` one whose rules add to it, and inputs that
        name the DataFrame's columns. ``None``: no rules; the inputs are X's columns and
        the regressor is the bias plus the residual network.
    residual : None, "mlp", int or nn.Module
        What the rules miss, added to the score: ``"mlp"`` is one hidden layer of
        ``hidden`` units, an int sets the hidden units, a module is used as given (it
        gets the standardised table inputs and returns one number per row; it is copied,
        never trained in place).
    loss : str
        ``"squared"`` (default) or ``"absolute"`` error.
    semantics, epochs, batch_size, lr, weight_decay, patience, validation_fraction, hidden,
    temperature, random_state, verbose
        As for :class:`GreyBoxClassifier`.

    Attributes
    ----------
    model_ : GreyBox
    output_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray (when fitted on a DataFrame)
    history_ : History

    Examples
    --------
    >>> import numpy as np, pandas as pd, greybox as gb
    >>> X = pd.DataFrame({"x": np.linspace(0, 10, 50)})
    >>> y = np.where(X["x"] > 5, 30.0, 10.0)
    >>> reg = gb.GreyBoxRegressor(rules="input x: real  output y: real "
    ...                           "rule high weight 10: x > ~4 -> y", epochs=100)
    >>> reg.fit(X, y).predict(pd.DataFrame({"x": [1.0, 9.0]})).round().tolist()
    [10.0, 30.0]
    """

    def __init__(self, rules=None, residual=None, *, loss: str = "squared",
                 semantics: str = "product", epochs: int = 30, batch_size: int = 32,
                 lr: float = 0.01, weight_decay: float = 0.0, patience: int | None = None,
                 validation_fraction: float = 0.1, hidden: int = 16,
                 temperature: float = 0.1, random_state: int | None = 0,
                 verbose: bool = False):
        self.rules = rules
        self.residual = residual
        self.loss = loss
        self.semantics = semantics
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.hidden = hidden
        self.temperature = temperature
        self.random_state = random_state
        self.verbose = verbose

    _frame = GreyBoxClassifier._frame
    _residual = GreyBoxClassifier._residual

    def _kb(self, df: pd.DataFrame):
        if self.rules is None:
            lines = [f"input {gr.to_text(gr.ast.Var(str(c)))}: real" for c in df.columns]
            lines.append("output y: real")
            return gr.parse("\n".join(lines))
        return GreyBoxClassifier._kb(self, df, 0)

    def _output(self, kb) -> str:
        outs = [o for o in kb.outputs if o in kb.additive]
        if len(outs) != 1:
            raise ModelError("GreyBoxRegressor needs rules with exactly one additive output "
                             "(a real output, or an int one whose rules add to it: "
                             f"'-> y'), got {listed(outs) or 'none'} among the outputs "
                             f"{listed(kb.outputs) or 'none'}")
        if kb.networks:
            raise ModelError("GreyBoxRegressor takes rules without neural variables (use "
                             "GreyBox for networks over tensors)")
        return outs[0]

    def fit(self, X, y):
        """Fit on a DataFrame (or array) ``X`` and numbers ``y``; returns ``self``."""
        df = self._frame(X, fitting=True)
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != len(df):
            raise ValueError(f"X has {len(df)} rows but y has {len(y)}")
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"y must hold numbers, got dtype {y.dtype}") from None
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        if self.loss not in ("squared", "absolute"):
            raise ModelError(f"loss must be 'squared' or 'absolute', got {self.loss!r}")
        kb = self._kb(df)
        out = self._output(kb)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        from ._model import GreyBox

        self.model_ = GreyBox(kb, semantics=self.semantics, residual=self._residual(kb, 1),
                              temperature=self.temperature)
        self.output_ = out
        validation = self.validation_fraction if self.patience is not None else None
        self.history_ = self.model_.fit(df, {out: y}, epochs=self.epochs,
                                        batch_size=self.batch_size, lr=self.lr,
                                        weight_decay=self.weight_decay, patience=self.patience,
                                        validation=validation, seed=self.random_state,
                                        progress=self.verbose, loss=self.loss)
        return self

    def predict(self, X) -> np.ndarray:
        """The model's number per row (float64; an int output's whole numbers)."""
        check_is_fitted(self, "model_")
        df = self._frame(X, fitting=False)
        return self.model_.predict(df)[self.output_].to_numpy().astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
