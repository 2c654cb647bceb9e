"""The grey-box model: a knowledge base and networks as one ``torch.nn.Module``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import ModelError, listed

from ._batch import Batch, to_batch
from ._calls import NetworkCalls, overflow_error
from ._construction import (
    adopt_statistics,
    as_kb,
    check_options,
    network_modules,
    residual_modules,
    scaled_network_names,
)
from ._names import _key
from ._objective import Objective

# RuleParameters and DecisionParameters lived here: models pickled then still name them here
from ._parameters import (  # noqa: F401
    DecisionParameters,
    RuleIndex,
    RuleParameters,
    RuleValues,
    build_parameters,
)
from ._predictions import Predictions
from ._save import save as save_model
from ._statistics import STATISTICS, InputStatistics
from ._trace import Trace
from .semantics import APPROXIMATE, REGISTRY
from .semantics._approx import check_inference
from .semantics._sampled import SAMPLES, check_samples

__all__ = ["GreyBox"]


def _statistic(name: str, doc: str) -> property:
    """A read-only attribute of the model: buffer ``name`` of its input statistics."""
    return property(lambda self: getattr(self.statistics, name), doc=doc)


class GreyBox(Predictions, nn.Module):
    """Networks and rules composed into one differentiable model.

    Parameters
    ----------
    kb : KnowledgeBase, str or path
        The rules (a parsed knowledge base, rule text, or a ``.rules`` file). Decisions
        that hard constraints tie into more joint assignments than can be enumerated are
        a :class:`~greybox.errors.RuleError` here, located at the constraint.
    networks : mapping of network name -> nn.Module
        One module per network the knowledge base names (``neural d1: int 0..9 =
        digit(img1)`` names ``digit``). A network returns, per row, one logit for a bool,
        one logit per value for a finite type, or the value for a real type. Tensor
        arguments are passed as they are (variables served by the same network with
        same-shaped arguments go through it in one call); table columns are
        standardised and stacked into one (rows, arguments) tensor.
    semantics : str
        ``"probabilistic"`` (default), ``"product"``, ``"godel"``, ``"lukasiewicz"``.
    inference : str
        ``"exact"`` (default) or ``"approximate"``: under ``semantics="probabilistic"``,
        a conjunction too large for exact inference is split into parts each computed
        exactly and combined as if independent (:mod:`greybox.semantics._approx`); a
        formula no exact part holds (a recursive component past the limit) is estimated
        from sampled worlds (:mod:`greybox.semantics._sampled`).
    samples : int
        Worlds drawn per estimate of ``inference="approximate"``'s Monte Carlo blocks
        (default 1,000: standard error at most 0.016); more is slower and more precise.
    residual : nn.Module or mapping of output -> nn.Module, optional
        A network over the standardised table inputs (:attr:`feature_names`) whose logits
        are added to a decided output's score: what the rules miss.
    temperature : float
        Smooth comparisons are ``sigmoid(margin / (temperature * spread))``, the spread
        being the compared column's standard deviation (see :meth:`calibrate`).
    scale_inputs : bool or iterable of network names
        Which networks read their table arguments standardised (``(x - center) /
        spread``, the statistics :meth:`calibrate` sets). Default False: every network
        given in ``networks`` reads the columns exactly as they are in the data, as it
        would outside greybox (a network trained elsewhere keeps its answers). True: all
        of them; names: those. Tensor arguments are never rescaled; the residual always
        reads the standardised table inputs (:meth:`features`).

    Notes
    -----
    The model is built from parts (see docs/architecture.md): the module dicts
    ``networks``, ``rules``, ``constraints``, ``decisions`` and ``residual``, the child
    module ``statistics`` (:class:`~greybox._statistics.InputStatistics`, whose buffers
    keep their top-level state-dict names ``feature_center``, ...), and three components
    over them: the rule values (:class:`~greybox._parameters.RuleValues`), the network
    calls (:class:`~greybox._calls.NetworkCalls`) and the objective
    (:class:`~greybox._objective.Objective`). Its methods delegate to them.

    Examples
    --------
    >>> import torch, greybox as gb
    >>> kb = gb.rules.parse('''
    ... input x: real
    ... output high: bool
    ... rule big weight 3.0: x > ~1.0 -> high
    ... rule small: x < 0.5 -> not high
    ... ''')
    >>> model = gb.GreyBox(kb, semantics="product")
    >>> [name for name, _ in model.named_parameters()]
    ['rules.big.weight', 'rules.big.thresholds.0', 'rules.small.weight', 'decisions.high.bias']
    >>> trace = model({"x": [0.0, 2.0]})
    >>> [round(p, 2) for p in trace.values["high"].tolist()]
    [0.27, 0.95]
    >>> model.predict({"x": [0.0, 2.0]})["high"].tolist()
    [False, True]
    """

    #: the buffers :meth:`calibrate` sets (copied by :meth:`replace`)
    STATISTICS = STATISTICS

    def __init__(self, kb, networks: Mapping[str, nn.Module] | None = None, *,
                 semantics: str = "probabilistic", inference: str = "exact",
                 samples: int = SAMPLES, residual: nn.Module | Mapping[str, nn.Module] | None = None,
                 temperature: float = 0.1, scale_inputs: bool | Iterable[str] = False):
        super().__init__()
        self.kb = as_kb(kb)
        # decisions too large to enumerate are refused here, naming the statement, rather
        # than at the first fit or predict
        gr.engine.plan(self.kb)
        check_options(semantics, temperature)
        check_inference(semantics, inference)
        self.semantics, self.inference = semantics, inference
        self.samples = check_samples(samples)
        self.temperature = float(temperature)
        self._crisp = False
        self.networks = network_modules(self.kb, networks)
        #: the networks that read their table arguments standardised (sorted names)
        self.scaled_networks: tuple[str, ...] = scaled_network_names(self.kb, scale_inputs)
        index = RuleIndex(self.kb)
        parameters = build_parameters(self.kb, index)
        self.rules = parameters["rules"]
        self.constraints = parameters["constraints"]
        self.decisions = parameters["decisions"]
        self.statistics = InputStatistics(self.kb)
        self.residual = residual_modules(self.kb, residual)
        self._compiled = None
        self._assemble(index)

    def _assemble(self, index: RuleIndex | None = None) -> None:
        """The components over the registered modules (again after unpickling: the
        knowledge base's AST objects are new, and the index finds numbers by node)."""
        self._values = RuleValues(self.kb, rules=self.rules, constraints=self.constraints,
                                  decisions=self.decisions, index=index)
        self._calls = NetworkCalls(self.kb, networks=self.networks, residual=self.residual,
                                   statistics=self.statistics, scaled=self.scaled_networks)
        self._objective = Objective(self.kb, values=self._values, calls=self._calls)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_compiled"] = None          # rebuilt on first use
        # the components are rebuilt from the modules; what they hold of their own is
        # kept under the names the model had before it was built from parts
        for part in ("_values", "_calls", "_objective"):
            state.pop(part, None)
        state["_rule_scale"] = self._values.scale
        state["_output_spread"] = self._objective.output_spread
        if "regression_loss" in vars(self._objective):
            state["regression_loss"] = self._objective.regression_loss
        return state

    def __setstate__(self, state) -> None:
        # the knowledge base comes back re-parsed (new AST objects): re-index its numbers
        state = dict(state)
        scale = state.pop("_rule_scale", None)
        spread = state.pop("_output_spread", {})
        loss = state.pop("regression_loss", None)
        for old in ("_owner", "_nums", "_slots", "_kb_cache", "feature_names"):
            state.pop(old, None)           # held by the components now
        super().__setstate__(state)
        if "scaled_networks" not in self.__dict__:   # pickled before the switch: scaled
            self.scaled_networks = tuple(sorted(self.kb.networks))
        if "statistics" not in self._modules:        # pickled before: buffers on the model
            self.statistics = adopt_statistics(self.kb, self._buffers)
        self._compiled = None
        self._assemble()
        self._values.scale = scale
        self._objective.output_spread.update(spread)
        if loss is not None:
            self._objective.regression_loss = loss

    # state-dict names: the statistics' buffers at the top level, as before ----------------------
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """As :meth:`torch.nn.Module.state_dict`, the input statistics' buffers named at
        the top level (``feature_center``, ...) as in every file greybox has written."""
        out = super().state_dict(*args, destination=destination, prefix=prefix,
                                 keep_vars=keep_vars)
        inner = f"{prefix}statistics."
        mine = [(k, out.pop(k)) for k in [k for k in out if k.startswith(prefix)]]
        for k, v in mine:
            if k.startswith(inner):
                out[prefix + k[len(inner):]] = v
        for k, v in mine:
            if not k.startswith(inner):
                out[k] = v
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in STATISTICS:   # top-level names (state_dict's) to the child's
            if prefix + name in state_dict:
                state_dict[f"{prefix}statistics.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        text = (f"semantics={self.semantics!r}, "
                + (f"inference={self.inference!r}, " if self.inference != "exact" else "")
                + (f"samples={self.samples}, " if self.samples != SAMPLES else "")
                + f"temperature={self.temperature:g}, "
                f"{len(self.kb.rules)} rules, {len(self.kb.constraints)} constraints")
        if self.kb.networks:   # which networks read standardised table inputs
            text += f", scale_inputs={list(self.scaled_networks) or False}"
        if self.residual is not None:
            text += ", residual reads standardised inputs"
        return text

    def scales_inputs(self, network: str) -> bool:
        """Whether network ``network`` reads its table arguments standardised (see
        ``scale_inputs``); False: as they are in the data."""
        return network in self.scaled_networks

    @property
    def device(self) -> torch.device:
        """Where the model lives (every module moves its buffers along with it)."""
        return self.statistics.feature_center.device

    @property
    def is_crisp(self) -> bool:
        """Whether crisp evaluation is on (:meth:`crisp`)."""
        return self._crisp

    @property
    def compiled(self):
        """What the semantics compiled for this model (:class:`~greybox.semantics.Compiled`:
        smoothness and temperature of comparisons, arithmetic, value tensors); rebuilt
        when the model moves or is unpickled."""
        if self._compiled is None:
            from .semantics._compiled import Compiled

            self._compiled = Compiled(self)
        return self._compiled

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .double() ...: compiled tensors are rebuilt on the new device
        out = super()._apply(fn, *args, **kwargs)
        self._compiled = None
        return out

    # the forward pass ----------------------------------------------------------------------
    def batch(self, data) -> Batch:
        """Check ``data`` and turn it into tensors on the model's device."""
        return to_batch(self.kb, data, self.device)

    def forward(self, data, *, crisp: bool | None = None) -> Trace:
        """Run the model on a batch and return its :class:`Trace`.

        ``data`` is a DataFrame, or a mapping of input name -> tensor/array/list (table
        columns and tensors such as images may be mixed: ``{**df, "img": images}``).
        ``crisp=True`` (or :meth:`crisp`) evaluates with plain booleans.
        """
        batch = self.batch(data)
        use_crisp = self._crisp if crisp is None else crisp
        sem = REGISTRY["crisp" if use_crisp else self.semantics]
        if self.inference == "approximate" and not use_crisp:
            sem = APPROXIMATE[self.semantics]
        return sem.trace(self, batch)

    def replace(self, *, kb=None, drop_residual=()) -> GreyBox:
        """A copy of the model with other rules (``kb``: a knowledge base or rule text):
        the same networks and residual (shared, not copied), semantics, temperature,
        input statistics and the biases of the outputs both decide; rule weights and
        thresholds come from the new rules. ``drop_residual`` names outputs whose
        residual network the copy leaves out (the rules alone decide them).

        Examples
        --------
        >>> import greybox as gb
        >>> model = gb.GreyBox("input x: real  output y: bool  rule r: x > 1 -> y",
        ...                    semantics="product")
        >>> other = model.replace(kb="input x: real  output y: bool  rule r: x > 2 -> y")
        >>> model.predict({"x": [1.5]})["y"].tolist(), other.predict({"x": [1.5]})["y"].tolist()
        ([True], [False])
        """
        if kb is None:
            kb = self.to_kb()
        elif isinstance(kb, str):
            kb = gr.parse(kb)
        if not isinstance(kb, gr.KnowledgeBase):
            raise ModelError(f"kb must be a KnowledgeBase or rule text, got {type(kb).__name__}")
        networks = {n: self.networks[_key(n)] for n in kb.networks if _key(n) in self.networks}
        if drop_residual is None:
            drop_residual = ()
        elif isinstance(drop_residual, str):
            drop_residual = (drop_residual,)
        for n in drop_residual:
            if self.residual is None or _key(n) not in self.residual:
                have = [d for d in self.kb.decided
                        if self.residual is not None and _key(d) in self.residual]
                raise ModelError(f"no residual network for {n!r} to drop (residuals: "
                                 f"{', '.join(map(repr, have)) or 'none'})")
        residual = None
        if self.residual is not None:
            residual = {n: self.residual[_key(n)] for n in kb.decided
                        if _key(n) in self.residual and n not in drop_residual} or None
        model = GreyBox(kb, networks, semantics=self.semantics, inference=self.inference,
                        samples=self.samples, residual=residual,
                        temperature=self.temperature,
                        scale_inputs=[n for n in self.scaled_networks if n in kb.networks])
        if model.feature_names == self.feature_names:
            with torch.no_grad():
                for name in STATISTICS:
                    getattr(model.statistics, name).copy_(getattr(self.statistics, name))
        with torch.no_grad():
            for n in kb.decided:
                if n in self.kb.variables and self.kb.variables[n].role == "decided" and \
                        self.kb.variables[n].type == kb.variables[n].type:
                    model.decisions_bias(n).copy_(self.decisions_bias(n))
        model.to(self.device)
        model.crisp(self._crisp)
        return model.train(self.training)

    def network(self, name: str) -> nn.Module:
        """The module registered for network ``name`` (as the rules name it)."""
        if _key(name) not in self.networks:
            raise ModelError(f"no network {name!r} (networks: {listed(self.kb.networks) or 'none'})")
        return self.networks[_key(name)]

    @contextlib.contextmanager
    def rule_mask(self, mask: torch.Tensor):
        """Within the block, each rule's weight is multiplied per row by ``mask`` (shape
        (rows, rules), rules in ``kb.rules`` order): 0 leaves a rule out (ablation,
        Shapley values over rules).

        Examples
        --------
        >>> import torch, greybox as gb
        >>> model = gb.GreyBox("input x: real  output y: bool  rule r weight 2: x > 1 -> y",
        ...                    semantics="product")
        >>> with model.rule_mask(torch.zeros(1, 1)):
        ...     round(float(model({"x": [3.0]}).values["y"][0]), 2)
        0.5
        """
        if mask.dim() != 2 or mask.shape[1] != len(self.kb.rules):
            raise ModelError(f"a rule mask has shape (rows, {len(self.kb.rules)}), got "
                             f"{list(mask.shape)}")
        saved, self._values.scale = self._values.scale, mask
        try:
            yield self
        finally:
            self._values.scale = saved

    @property
    def rule_scale(self) -> torch.Tensor | None:
        """The (rows, rules) multipliers of the rule weights while a :meth:`rule_mask` is
        set, else None."""
        return self._values.scale

    @property
    def _rule_scale(self) -> torch.Tensor | None:
        return self._values.scale

    @_rule_scale.setter
    def _rule_scale(self, mask: torch.Tensor | None) -> None:
        self._values.scale = mask

    def residual_for(self, output: str) -> nn.Module | None:
        """The residual network added to ``output``'s scores, or None."""
        return self._calls.residual_for(output)

    def crisp(self, mode: bool = True) -> GreyBox:
        """Switch crisp evaluation on (or off); returns the model, like ``eval()``."""
        self._crisp = bool(mode)
        return self

    # persistence --------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the rules, every parameter and a data-only description of standard
        ``torch.nn`` networks to ``path`` (atomically). Code is never saved: custom modules
        are given again to :func:`greybox.load`."""
        save_model(self, path)

    def fit(self, data, targets=None, **kwargs):
        """Train the model; see :func:`greybox.fit` for the arguments. Returns the
        :class:`~greybox.History`."""
        from ._train import fit

        return fit(self, data, targets, **kwargs)

    # rule parameters (RuleValues) ----------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Rule weights and thresholds back to the rule file's values, biases to 0."""
        self._values.reset_parameters()

    def rule_weight(self, name: str) -> torch.Tensor:
        """A rule's weight (times the per-row rule mask while one is set for ablation)."""
        return self._values.rule_weight(name)

    def shares_weight(self, rules) -> bool:
        """Whether the named rules all read one weight (members of one family)."""
        return self._values.index.shared("rule", rules)

    def shares_bias(self, names) -> bool:
        """Whether the named decided variables all read one bias (members of one family)."""
        return self._values.index.shared("var", names)

    def threshold(self, node) -> torch.Tensor:
        """The current value of a ``~`` threshold (an AST node of this model's rules)."""
        return self._values.threshold(node)

    def decisions_bias(self, name: str) -> torch.Tensor:
        """A decided variable's bias: a number for a bool, one per value otherwise (the
        members of an output family share one)."""
        return self._values.decisions_bias(name)

    def replace_bias(self, name: str, value: torch.Tensor) -> None:
        """Make ``value`` (a tensor of the same shape, of any float dtype, e.g. float64 where
        a decision needs the bias less a threshold exactly) the decided variable's bias
        parameter."""
        self._values.replace_bias(name, value)

    def to_kb(self) -> gr.KnowledgeBase:
        """The knowledge base with the learned weights and thresholds written in."""
        return self._values.to_kb()

    def bias_table(self, batch: Batch | None = None) -> dict:
        """Biases as :func:`greybox.rules.evaluate` takes them (per-row arrays when a
        residual network adds to the scores)."""
        res = self._calls.residual_scores(batch) if batch is not None else {}
        arrays = {}
        for name, r in res.items():
            r = r.detach().double().cpu().numpy()
            if not np.isfinite(r).all():
                raise overflow_error(self, name, r, batch)
            arrays[name] = r
        return self._values.bias_table(arrays)

    # table inputs (InputStatistics) ------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """The table inputs as features (enums one-hot: ``colour=red``), in order."""
        return self.statistics.feature_names

    def features(self, data, *, standardise: bool = True) -> torch.Tensor:
        """The table inputs as the residual and the networks in ``scaled_networks`` read
        them: standardised, enums one-hot, in :attr:`feature_names` order; shape (rows,
        features). ``standardise=False``: as the other networks read them (the values in
        the data, bools as 0/1, enums one-hot)."""
        batch = data if isinstance(data, Batch) else self.batch(data)
        return self.statistics.features(batch, standardise=standardise)

    def spread(self, name: str) -> float:
        """The spread of a table input (its standard deviation once calibrated): the unit
        of counterfactual distances and of smooth comparisons' temperature."""
        return self.statistics.spread(name)

    def scale_of(self, name: str) -> torch.Tensor | float:
        """:meth:`spread` as the semantics read it: a tensor for a feature (a buffer's
        element, on the model's device), else a number from the declared range."""
        return self.statistics.scale_of(name)

    def calibrate(self, data) -> GreyBox:
        """Set the table inputs' center and spread (mean, standard deviation) from
        ``data``: they standardise network and residual inputs and scale the temperature of
        smooth comparisons."""
        self.statistics.calibrate(self.batch(data))
        return self

    def input_range(self, name: str) -> tuple[float, float, bool]:
        """``(lo, hi, from_data)``: a table input's declared bounds, or, where it has
        none, the range seen by :meth:`calibrate` (``from_data`` True); infinite where
        neither is known."""
        return self.statistics.input_range(name)

    def input_step(self, name: str) -> float:
        """The precision of a table input in the calibration data (0.01 for values with two
        decimals, 1 for ints; 0 when not known)."""
        return self.statistics.input_step(name)

    feature_center = _statistic("feature_center", "Per feature, its standardising center.")
    feature_scale = _statistic("feature_scale", "Per feature, its standardising scale.")
    calibrated = _statistic("calibrated", "Whether :meth:`calibrate` has seen data.")
    feature_min = _statistic("feature_min", "Per feature, the least value seen.")
    feature_max = _statistic("feature_max", "Per feature, the greatest value seen.")
    feature_step = _statistic("feature_step", "Per feature, its precision in the data.")
    range_known = _statistic("range_known", "Whether the features' range was seen.")

    # networks (NetworkCalls) ----------------------------------------------------------------------
    def run_networks(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each neural variable's raw network output, checked against its type."""
        return self._calls.run_networks(batch)

    def residual_scores(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each decided output's residual logits (none without a residual)."""
        return self._calls.residual_scores(batch)

    # the objective (Objective) --------------------------------------------------------------------
    def loss(self, data, targets=None, *, trace: Trace | None = None) -> torch.Tensor:
        """The training loss on a batch: negative log-likelihood of every labelled variable
        (squared error for real ones), plus each soft constraint's weight times its
        violation (``-log P(holds)`` under the probabilistic semantics, ``1 - truth``
        under fuzzy ones) over every row.

        ``targets`` maps variable names (outputs, defined or neural variables) to labels
        (NaN or None = no label); a bare array labels the only output.
        """
        if trace is None:
            trace = self(data)
        index = data.index if isinstance(data, (pd.DataFrame, Batch)) else None
        labels = self.labels(targets, trace.n, index=index) if targets is not None else None
        return self.trace_loss(trace, labels)

    def labels(self, targets, n: int, *, index: pd.Index | None = None):
        """``targets`` read as labels of ``n`` rows on the model's device (a
        :class:`~greybox._batch.Targets`, as :meth:`trace_loss` takes them); a bad one is
        named by its row's label in ``index`` (the data's), else by its position."""
        return self._objective.targets(targets, n, index, self.device)

    def trace_loss(self, trace: Trace, labels) -> torch.Tensor:
        """:meth:`loss` of a trace already computed, against :meth:`labels` (or None)."""
        return self._objective.loss(trace, labels, self.device)

    def _targets(self, targets, n, index: pd.Index | None = None):
        return self.labels(targets, n, index=index)

    def _loss(self, trace: Trace, labels) -> torch.Tensor:
        return self.trace_loss(trace, labels)

    @property
    def regression_loss(self) -> str:
        """The loss of additive (regression) outputs: ``"squared"`` or ``"absolute"``
        error (set by :func:`greybox.fit`'s ``loss``)."""
        return self._objective.regression_loss

    @regression_loss.setter
    def regression_loss(self, loss: str) -> None:
        self._objective.regression_loss = loss

    @property
    def output_spread(self) -> dict[str, float]:
        """Per additive output, the spread (standard deviation) of the labels it was
        trained on: the unit of its loss and of its rule weights' and bias' learning rate
        (set by :func:`greybox.fit`; empty before)."""
        return self._objective.output_spread

    def prior_terms(self) -> list[tuple[nn.Parameter, float, float]]:
        """``(parameter, prior, scale)`` of every learnable rule weight and ``~`` threshold:
        the value written in the rules and the unit in which a move away from it is
        measured (see :meth:`~greybox._objective.Objective.prior_terms`)."""
        return self._objective.prior_terms(self.compiled, self.temperature)

    def prior_penalty(self, weight_decay: float) -> torch.Tensor:
        """``weight_decay / 2 * sum(((p - prior) / scale) ** 2)`` over :meth:`prior_terms`:
        weight decay of the rule weights and thresholds toward the values written in the
        rules rather than toward 0. Its gradient, ``weight_decay * (p - prior) / scale**2``,
        is what Adam's ``weight_decay`` adds for a network parameter (toward 0).

        Examples
        --------
        >>> import greybox as gb, torch
        >>> model = gb.GreyBox("input x: real[0, 40]  output y: bool  rule r: x > ~20 -> y",
        ...                    semantics="product")
        >>> model.prior_penalty(1.0).item()          # at the rule file's values
        0.0
        >>> with torch.no_grad():
        ...     _ = model.rules["r"].thresholds[0].fill_(30.0)   # 1 spread (40 / 4) away
        >>> model.prior_penalty(1.0).item()
        0.5
        """
        return self._objective.prior_penalty(weight_decay, self.compiled, self.temperature,
                                             self.device)

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups (see
        :meth:`~greybox._objective.Objective.parameter_groups`): thresholds learn at ``lr``
        times the spread of what they are compared with, an additive output's parameters
        at ``lr`` times its labels' spread; rule weights and thresholds get
        ``weight_decay=0`` (:meth:`prior_penalty` pulls them toward the rules' values)."""
        return self._objective.parameter_groups(lr, list(self.parameters()), self.compiled,
                                                self.temperature)
