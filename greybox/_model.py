"""The grey-box model: a knowledge base and networks as one ``torch.nn.Module``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import ModelError, listed

from ._batch import Batch, to_batch
from ._calls import NetworkCalls
from ._names import _key
from ._objective import Objective

# RuleParameters and DecisionParameters lived here: models pickled then still name them here
from ._parameters import DecisionParameters, RuleParameters, RuleValues  # noqa: F401
from ._predictions import Predictions
from ._statistics import InputStatistics
from ._trace import Trace
from .semantics import REGISTRY

__all__ = ["GreyBox"]


class GreyBox(RuleValues, InputStatistics, NetworkCalls, Objective, Predictions, nn.Module):
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

    def __init__(self, kb, networks: Mapping[str, nn.Module] | None = None, *,
                 semantics: str = "probabilistic",
                 residual: nn.Module | Mapping[str, nn.Module] | None = None,
                 temperature: float = 0.1, scale_inputs: bool | Iterable[str] = False):
        super().__init__()
        self.kb = _as_kb(kb)
        # decisions too large to enumerate are refused here, naming the statement, rather
        # than at the first fit or predict
        gr.plan(self.kb)
        _check_options(semantics, temperature)
        self.semantics = semantics
        self.temperature = float(temperature)
        self._crisp = False
        self.networks = _network_modules(self.kb, networks)
        #: the networks that read their table arguments standardised (sorted names)
        self.scaled_networks: tuple[str, ...] = _scaled_networks(self.kb, scale_inputs)
        self._init_rule_parameters()    # rules, constraints, decisions (RuleValues)
        self._init_statistics()         # feature names and their buffers (InputStatistics)
        self.residual = _residual_modules(self.kb, residual)
        self._compiled = None
        #: (rows, rules) multipliers of the rule weights, set while rules are ablated
        self._rule_scale: torch.Tensor | None = None
        self._kb_cache: tuple | None = None

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        state = dict(state)
        state["_compiled"] = None          # rebuilt on first use
        return state

    def __setstate__(self, state) -> None:
        # the knowledge base comes back re-parsed (new AST objects): re-index its numbers
        super().__setstate__(state)
        if "scaled_networks" not in self.__dict__:   # pickled before the switch: scaled
            self.scaled_networks = tuple(sorted(self.kb.networks))
        self._index_numbers()
        self._compiled, self._kb_cache = None, None

    def extra_repr(self) -> str:
        text = (f"semantics={self.semantics!r}, temperature={self.temperature:g}, "
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
        return self.feature_center.device

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
        model = GreyBox(kb, networks, semantics=self.semantics, residual=residual,
                        temperature=self.temperature,
                        scale_inputs=[n for n in self.scaled_networks if n in kb.networks])
        if model.feature_names == self.feature_names:
            with torch.no_grad():
                for name in self.STATISTICS:
                    getattr(model, name).copy_(getattr(self, name))
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
        saved, self._rule_scale = self._rule_scale, mask
        try:
            yield self
        finally:
            self._rule_scale = saved

    def residual_for(self, output: str) -> nn.Module | None:
        """The residual network added to ``output``'s scores, or None."""
        if self.residual is None or _key(output) not in self.residual:
            return None
        return self.residual[_key(output)]

    def crisp(self, mode: bool = True) -> GreyBox:
        """Switch crisp evaluation on (or off); returns the model, like ``eval()``."""
        self._crisp = bool(mode)
        return self

    # persistence --------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the rules, every parameter and a data-only description of standard
        ``torch.nn`` networks to ``path`` (atomically). Code is never saved: custom modules
        are given again to :func:`greybox.load`."""
        from ._io import save

        save(self, path)

    def fit(self, data, targets=None, **kwargs):
        """Train the model; see :func:`greybox.fit` for the arguments. Returns the
        :class:`~greybox.History`."""
        from ._train import fit

        return fit(self, data, targets, **kwargs)



# what a model is built from, checked ----------------------------------------------------------
def _as_kb(kb) -> gr.KnowledgeBase:
    """A knowledge base from a parsed one, rule text or a ``.rules`` path."""
    if isinstance(kb, Path) or (isinstance(kb, str) and kb.endswith(".rules")
                                and "\n" not in kb):
        kb = gr.load(kb)
    elif isinstance(kb, str):
        kb = gr.parse(kb)
    if not isinstance(kb, gr.KnowledgeBase):
        raise ModelError(f"kb must be a KnowledgeBase, rule text or a .rules path, got "
                         f"{type(kb).__name__}")
    return kb


def _check_options(semantics: str, temperature: float) -> None:
    if semantics not in REGISTRY or semantics == "crisp":
        raise ModelError(f"unknown semantics {semantics!r}; expected one of "
                         "'probabilistic', 'product', 'godel', 'lukasiewicz' (crisp "
                         "evaluation is model.crisp())")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ModelError(f"temperature must be a positive number, got {temperature!r}")


def _network_modules(kb: gr.KnowledgeBase, networks) -> nn.ModuleDict:
    """One module per network the rules name, neither missing nor extra."""
    networks = dict(networks or {})
    missing = [n for n in kb.networks if n not in networks]
    if missing:
        raise ModelError(f"no module given for network {missing[0]!r} (used by "
                         f"{listed(kb.networks[missing[0]])}); pass networks="
                         f"{{{missing[0]!r}: module}}")
    extra = [n for n in networks if n not in kb.networks]
    if extra:
        raise ModelError(f"network {extra[0]!r} is not used by the rules (networks: "
                         f"{listed(kb.networks) or 'none'})")
    for n, m in networks.items():
        if not isinstance(m, nn.Module):
            raise ModelError(f"network {n!r} must be a torch.nn.Module, got {type(m).__name__}")
    return nn.ModuleDict({_key(n): m for n, m in networks.items()})


def _scaled_networks(kb: gr.KnowledgeBase, scale_inputs) -> tuple[str, ...]:
    """The networks ``scale_inputs`` names (True: all, False: none), checked."""
    if isinstance(scale_inputs, bool):
        return tuple(sorted(kb.networks)) if scale_inputs else ()
    if isinstance(scale_inputs, str) or not isinstance(scale_inputs, Iterable):
        raise ModelError(f"scale_inputs must be True, False or a list of network names, "
                         f"got {scale_inputs!r}")
    names = list(scale_inputs)
    unknown = [n for n in names if n not in kb.networks]
    if unknown:
        raise ModelError(f"scale_inputs names {unknown[0]!r}, which is not a network of the "
                         f"rules (networks: {', '.join(kb.networks) or 'none'})")
    return tuple(sorted(set(names)))


def _residual_modules(kb: gr.KnowledgeBase, residual) -> nn.ModuleDict | None:
    """The residual networks by decided output (a single module: the only one)."""
    if residual is None:
        return None
    if isinstance(residual, nn.Module):
        if len(kb.decided) != 1:
            raise ModelError("a single residual network needs exactly one decided "
                             f"output; this model decides {listed(kb.decided)}: "
                             "pass residual={output: module}")
        residual = {kb.decided[0]: residual}
    for name, m in residual.items():
        if name not in kb.decided:
            raise ModelError(f"residual given for {name!r}, which is not decided by "
                             f"rules (decided: {listed(kb.decided) or 'none'})")
        if not isinstance(m, nn.Module):
            raise ModelError(f"residual for {name!r} must be an nn.Module")
    return nn.ModuleDict({_key(k): m for k, m in residual.items()})
