"""The grey-box model: a knowledge base and networks as one ``torch.nn.Module``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from greybox import rules as gr
from greybox.errors import DataError, GreyboxError, ModelError
from greybox.rules import ast as A

from ._batch import Batch, to_batch, to_targets
from ._trace import Trace
from .semantics import REGISTRY

__all__ = ["GreyBox"]


def _key(name: str) -> str:
    """A module-dict key for a rule or variable name (dots are not allowed there)."""
    return name.replace(".", "\u2024")


class RuleParameters(nn.Module):
    """A rule's weight (a buffer when the rule is ``fixed``) and its ``~`` thresholds."""

    def __init__(self, weight: float, thresholds: list[float], fixed: bool = False):
        super().__init__()
        w = torch.tensor(float(weight))
        if fixed:
            self.register_buffer("weight", w)
        else:
            self.weight = nn.Parameter(w)
        if thresholds:
            self.thresholds = _thresholds(thresholds)
        self._init = (float(weight), list(thresholds))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(self._init[0])
            for p, v in zip(self.thresholds if self._init[1] else (), self._init[1]):
                p.fill_(v)

    def extra_repr(self) -> str:
        fixed = "" if isinstance(self.weight, nn.Parameter) else ", fixed"
        th = (f", thresholds={[round(p.item(), 6) for p in self.thresholds]}"
              if self._init[1] else "")
        return f"weight={self.weight.item():g}{fixed}{th}"


class DecisionParameters(nn.Module):
    """A decided variable's bias: one number for a bool (added to the score of True), one
    per value otherwise."""

    def __init__(self, size: int | None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()) if size is None else torch.zeros(size))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bias.zero_()


class GreyBox(nn.Module):
    """Networks and rules composed into one differentiable model.

    Parameters
    ----------
    kb : KnowledgeBase, str or path
        The rules (a parsed knowledge base, rule text, or a ``.rules`` file).
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
                 temperature: float = 0.1):
        super().__init__()
        if isinstance(kb, Path) or (isinstance(kb, str) and kb.endswith(".rules")
                                    and "\n" not in kb):
            kb = gr.load(kb)
        elif isinstance(kb, str):
            kb = gr.parse(kb)
        if not isinstance(kb, gr.KnowledgeBase):
            raise ModelError(f"kb must be a KnowledgeBase, rule text or a .rules path, got "
                             f"{type(kb).__name__}")
        if semantics not in REGISTRY or semantics == "crisp":
            raise ModelError(f"unknown semantics {semantics!r}; expected one of "
                             "'probabilistic', 'product', 'godel', 'lukasiewicz' (crisp "
                             "evaluation is model.crisp())")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ModelError(f"temperature must be a positive number, got {temperature!r}")
        self.kb = kb
        self.semantics = semantics
        self.temperature = float(temperature)
        self._crisp = False
        networks = dict(networks or {})
        missing = [n for n in kb.networks if n not in networks]
        if missing:
            raise ModelError(f"no module given for network {missing[0]!r} (used by "
                             f"{', '.join(kb.networks[missing[0]])}); pass networks="
                             f"{{{missing[0]!r}: module}}")
        extra = [n for n in networks if n not in kb.networks]
        if extra:
            raise ModelError(f"network {extra[0]!r} is not used by the rules (networks: "
                             f"{', '.join(kb.networks) or 'none'})")
        for n, m in networks.items():
            if not isinstance(m, nn.Module):
                raise ModelError(f"network {n!r} must be a torch.nn.Module, got {type(m).__name__}")
        self.networks = nn.ModuleDict({_key(n): m for n, m in networks.items()})

        # rule weights, thresholds, biases -----------------------------------------------
        self._nums: dict[int, tuple[str, str, int]] = {}
        rules = {}
        for r in kb.rules.values():
            ths = self._collect(r.body, "rules", r.name)
            rules[_key(r.name)] = RuleParameters(r.weight, ths, r.fixed)
        self.rules = nn.ModuleDict(rules)
        cons = {}
        for c in kb.constraints.values():
            ths = self._collect(c.formula, "constraints", c.name)
            if ths:
                m = nn.Module()
                m.thresholds = _thresholds(ths)
                cons[_key(c.name)] = m
        self.constraints = nn.ModuleDict(cons)
        self.decisions = nn.ModuleDict({
            _key(v): DecisionParameters(None if isinstance(kb.variables[v].type, A.BoolType)
                                        else len(A.domain_values(kb.variables[v].type)))
            for v in kb.decided})

        # table inputs: names and statistics ------------------------------------------------
        self.feature_names: list[str] = []
        centers, scales = [], []
        for name in kb.inputs:
            t = kb.variables[name].type
            if isinstance(t, A.TensorType):
                continue
            if isinstance(t, A.EnumType):
                for v in t.values:
                    self.feature_names.append(f"{name}={v}")
                    centers.append(0.0)
                    scales.append(1.0)
                continue
            self.feature_names.append(name)
            lo, hi = (t.lo, t.hi) if isinstance(t, (A.IntType, A.RealType)) else (0, 1)
            if lo is None or hi is None or hi <= lo:
                centers.append(0.0)
                scales.append(1.0)
            else:
                centers.append((lo + hi) / 2)
                scales.append((hi - lo) / 4)
        self.register_buffer("feature_center", torch.tensor(centers, dtype=torch.float32))
        self.register_buffer("feature_scale", torch.tensor(scales, dtype=torch.float32))
        self.register_buffer("calibrated", torch.tensor(False))
        # the range and precision seen in the data (calibrate): formal reasoning bounds an
        # input declared without bounds by its range, and rounds counterfactual values to
        # its precision (a step of 0: not known)
        n_feat = len(self.feature_names)
        self.register_buffer("feature_min", torch.zeros(n_feat, dtype=torch.float64))
        self.register_buffer("feature_max", torch.zeros(n_feat, dtype=torch.float64))
        self.register_buffer("feature_step", torch.zeros(n_feat, dtype=torch.float64))
        self.register_buffer("range_known", torch.tensor(False))

        # residual -------------------------------------------------------------------------
        if residual is None:
            self.residual = None
        else:
            if isinstance(residual, nn.Module):
                if len(kb.decided) != 1:
                    raise ModelError("a single residual network needs exactly one decided "
                                     f"output; this model decides {', '.join(kb.decided)}: "
                                     "pass residual={output: module}")
                residual = {kb.decided[0]: residual}
            for name, m in residual.items():
                if name not in kb.decided:
                    raise ModelError(f"residual given for {name!r}, which is not decided by "
                                     f"rules (decided: {', '.join(kb.decided) or 'none'})")
                if not isinstance(m, nn.Module):
                    raise ModelError(f"residual for {name!r} must be an nn.Module")
            self.residual = nn.ModuleDict({_key(k): m for k, m in residual.items()})
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
        self._nums = {}
        for r in self.kb.rules.values():
            self._collect(r.body, "rules", r.name)
        for c in self.kb.constraints.values():
            self._collect(c.formula, "constraints", c.name)
        self._compiled, self._kb_cache = None, None

    # construction helpers ---------------------------------------------------------------
    def _collect(self, e, group: str, owner: str) -> list[float]:
        out = []
        for node in A.walk(e):
            if isinstance(node, A.Num) and node.learnable:
                self._nums[id(node)] = (group, owner, len(out))
                out.append(float(node.value))
        return out

    def extra_repr(self) -> str:
        return (f"semantics={self.semantics!r}, temperature={self.temperature:g}, "
                f"{len(self.kb.rules)} rules, {len(self.kb.constraints)} constraints")

    def reset_parameters(self) -> None:
        """Rule weights and thresholds back to the rule file's values, biases to 0."""
        for m in (*self.rules.values(), *self.decisions.values()):
            m.reset_parameters()

    @property
    def device(self) -> torch.device:
        """Where the model lives (every module moves its buffers along with it)."""
        return self.feature_center.device

    # parameters as the semantics read them ------------------------------------------------
    def rule_weight(self, name: str) -> torch.Tensor:
        """A rule's weight (times the per-row rule mask while one is set for ablation)."""
        w = self.rules[_key(name)].weight
        if self._rule_scale is not None:
            w = w * self._rule_scale[:, list(self.kb.rules).index(name)]
        return w

    def threshold(self, node: A.Num) -> torch.Tensor:
        """The current value of a ``~`` threshold (an AST node of this model's rules)."""
        group, owner, i = self._nums[id(node)]
        return getattr(self, group)[_key(owner)].thresholds[i]

    def decisions_bias(self, name: str) -> torch.Tensor:
        """A decided variable's bias: a number for a bool, one per value otherwise."""
        return self.decisions[_key(name)].bias

    def _feature_scale(self, name: str) -> torch.Tensor | float:
        if name in self.feature_names:
            return self.feature_scale[self.feature_names.index(name)]
        var = self.kb.variables[name]
        if isinstance(var.type, A.IntType):
            return max(1.0, (var.type.hi - var.type.lo) / 4)
        return 1.0

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

    # networks and residual ------------------------------------------------------------------
    def _features(self, batch: Batch) -> torch.Tensor:
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
            return torch.zeros(batch.n, 0, device=self.device)
        return (torch.cat(cols, 1) - self.feature_center) / self.feature_scale

    def run_networks(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each neural variable's raw network output, checked against its type."""
        kb = self.kb
        out: dict[str, torch.Tensor] = {}
        feats = None
        groups: dict[tuple, list[str]] = {}
        for name in kb.neural:
            var = kb.variables[name]
            tensors = all(isinstance(kb.variables[a].type, A.TensorType) for a in var.args)
            if tensors and len(var.args) == 1:
                x = batch.values[var.args[0]]
                groups.setdefault((var.network, tuple(x.shape[1:])), []).append(name)
                continue
            if tensors:
                args = [batch.values[a] for a in var.args]
            else:
                if feats is None:
                    feats = self._features(batch)
                args = []
                for a in var.args:
                    t = kb.variables[a].type
                    if isinstance(t, A.TensorType):
                        args.append(batch.values[a])
                    elif isinstance(t, A.EnumType):
                        i = self.feature_names.index(f"{a}={t.values[0]}")
                        args.append(feats[:, i:i + t.size])
                    else:
                        i = self.feature_names.index(a)
                        args.append(feats[:, i:i + 1])
                if not any(isinstance(kb.variables[a].type, A.TensorType) for a in var.args):
                    args = [torch.cat(args, 1)]
            y = self._call(self.networks[_key(var.network)], args,
                           f"network {var.network!r} (for {name!r})")
            out[name] = self._check_output(name, y, batch.n)
        for (network, _), names in groups.items():
            xs = [batch.values[kb.variables[n].args[0]] for n in names]
            y = self._call(self.networks[_key(network)],
                           [torch.cat(xs, 0) if len(xs) > 1 else xs[0]],
                           f"network {network!r} (for {', '.join(map(repr, names))}"
                           + (", their inputs stacked in one call)" if len(xs) > 1 else ")"))
            parts = torch.split(y, batch.n, 0) if len(xs) > 1 and isinstance(y, torch.Tensor) \
                and y.shape[0] == batch.n * len(xs) else None
            if parts is None and len(xs) > 1:
                self._check_output(names[0], y, batch.n * len(xs))
            for i, n in enumerate(names):
                out[n] = self._check_output(n, parts[i] if parts is not None else y, batch.n)
        out.update(batch.overrides)
        return {n: out[n] for n in kb.neural}

    @staticmethod
    def _call(module: nn.Module, args: list, what: str):
        """``module(*args)``, floating-point inputs first converted to the dtype of the
        module's first floating-point parameter (float64 arrays meet float32 weights);
        an error raised inside the module becomes a :class:`ModelError` naming ``what``
        (the network and the variables it serves) and the input shapes."""
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        if dtype is not None:
            args = [a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point()
                    and a.dtype != dtype else a for a in args]
        try:
            return module(*args)
        except (GreyboxError, torch.OutOfMemoryError):
            raise
        except Exception as err:
            shapes = ", ".join(str(list(a.shape)) if isinstance(a, torch.Tensor)
                               else type(a).__name__ for a in args)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            many = "s" if len(args) > 1 else ""
            raise ModelError(f"{what} failed on its input{many} of shape{many} {shapes}: "
                             f"{type(err).__name__}: {first}") from err

    def _check_output(self, name: str, y, n: int) -> torch.Tensor:
        var = self.kb.variables[name]
        t = var.type
        if not isinstance(y, torch.Tensor):
            raise ModelError(f"network {var.network!r} for {name!r} returned "
                             f"{type(y).__name__}, expected a tensor")
        if A.is_finite_type(t) and not isinstance(t, A.BoolType):
            k = len(A.domain_values(t))
            if tuple(y.shape) != (n, k):
                raise ModelError(f"network {var.network!r} for {name!r} ({_type(t)}) returned "
                                 f"shape {list(y.shape)}; expected [{n}, {k}] (one logit per "
                                 "value)")
            return y
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if tuple(y.shape) != (n,):
            what = "one logit" if isinstance(t, A.BoolType) else "one value"
            raise ModelError(f"network {var.network!r} for {name!r} ({_type(t)}) returned shape "
                             f"{list(y.shape)}; expected [{n}] or [{n}, 1] ({what} per row)")
        return y

    def residual_scores(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.residual is None:
            return {}
        feats = self._features(batch)
        out = {}
        for name in self.kb.decided:
            if _key(name) not in self.residual:
                continue
            y = self._call(self.residual[_key(name)], [feats],
                           f"the residual network for {name!r} (its input: the "
                           f"{feats.shape[1]} standardised table inputs, model.feature_names)")
            t = self.kb.variables[name].type
            k = len(A.domain_values(t))
            if isinstance(t, A.BoolType) and y.dim() == 2 and y.shape[1] == 1:
                y = y[:, 0]
            want = (batch.n,) if isinstance(t, A.BoolType) else (batch.n, k)
            if tuple(y.shape) != want:
                raise ModelError(f"residual for {name!r} returned shape {list(y.shape)}; "
                                 f"expected {list(want)}")
            out[name] = y
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

    def replace(self, *, kb=None) -> GreyBox:
        """A copy of the model with other rules (``kb``: a knowledge base or rule text):
        the same networks and residual (shared, not copied), semantics, temperature,
        input statistics and the biases of the outputs both decide; rule weights and
        thresholds come from the new rules.

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
        residual = None
        if self.residual is not None:
            residual = {n: self.residual[_key(n)] for n in kb.decided
                        if _key(n) in self.residual} or None
        model = GreyBox(kb, networks, semantics=self.semantics, residual=residual,
                        temperature=self.temperature)
        if model.feature_names == self.feature_names:
            with torch.no_grad():
                for name in ("feature_center", "feature_scale", "calibrated", "feature_min",
                             "feature_max", "feature_step", "range_known"):
                    getattr(model, name).copy_(getattr(self, name))
        with torch.no_grad():
            for n in kb.decided:
                if _key(n) in self.decisions and n in self.kb.variables and \
                        self.kb.variables[n].type == kb.variables[n].type:
                    model.decisions[_key(n)].bias.copy_(self.decisions[_key(n)].bias)
        model.to(self.device)
        model.crisp(self._crisp)
        return model.train(self.training)

    def network(self, name: str) -> nn.Module:
        """The module registered for network ``name`` (as the rules name it)."""
        if _key(name) not in self.networks:
            raise ModelError(f"no network {name!r} (networks: {', '.join(self.kb.networks) or 'none'})")
        return self.networks[_key(name)]

    def features(self, data) -> torch.Tensor:
        """The table inputs as networks and the residual read them: standardised, enums
        one-hot, in :attr:`feature_names` order; shape (rows, features)."""
        return self._features(data if isinstance(data, Batch) else self.batch(data))

    def spread(self, name: str) -> float:
        """The spread of a table input (its standard deviation once calibrated): the unit
        of counterfactual distances and of smooth comparisons' temperature."""
        return float(self._feature_scale(name))

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

    # parameters as rules ---------------------------------------------------------------------
    def to_kb(self) -> gr.KnowledgeBase:
        """The knowledge base with the learned weights and thresholds written in."""
        state = tuple(x.item() for m in (*self.rules.values(), *self.constraints.values())
                      for x in m.parameters())
        state += tuple(m.weight.item() for m in self.rules.values())
        if self._kb_cache is not None and self._kb_cache[0] == state:
            return self._kb_cache[1]
        stmts = []
        for s in self.kb.statements:
            if isinstance(s, A.Rule):
                m = self.rules[_key(s.name)]
                s = dataclasses.replace(s, weight=learned_value(m.weight),
                                        body=self._written(s.body))
            elif isinstance(s, A.Constraint):
                s = dataclasses.replace(s, formula=self._written(s.formula))
            stmts.append(s)
        kb = gr.KnowledgeBase(stmts, filename=self.kb.filename)
        self._kb_cache = (state, kb)
        return kb

    def _written(self, e):
        """``e`` with each ``~`` number replaced by its learned value."""
        def learned(node):
            if isinstance(node, A.Num) and node.learnable:
                return A.Num(learned_value(self.threshold(node)), True, span=node.span)
            return None

        return A.rewrite(e, learned)

    def bias_table(self, batch: Batch | None = None) -> dict:
        """Biases as :func:`greybox.rules.evaluate` takes them (per-row arrays when a
        residual network adds to the scores)."""
        res = self.residual_scores(batch) if batch is not None else {}
        out = {}
        for name in self.kb.decided:
            b = self.decisions[_key(name)].bias.detach().double().cpu()
            r = res.get(name)
            r = None if r is None else r.detach().double().cpu().numpy()
            if b.dim() == 0:
                out[name] = float(b) if r is None else float(b) + r
            else:
                values = A.domain_values(self.kb.variables[name].type)
                out[name] = {v: (float(b[i]) if r is None else float(b[i]) + r[:, i])
                             for i, v in enumerate(values)}
        return out

    # statistics -------------------------------------------------------------------------------
    def calibrate(self, data) -> GreyBox:
        """Set the table inputs' center and spread (mean, standard deviation) from
        ``data``: they standardise network and residual inputs and scale the temperature of
        smooth comparisons."""
        batch = self.batch(data)
        if batch.n < 2:
            raise DataError("calibrate needs at least 2 rows")
        feats = self._features(batch) * self.feature_scale + self.feature_center
        center = feats.mean(0)
        scale = feats.std(0)
        for i, name in enumerate(self.feature_names):
            if "=" in name and name not in self.kb.variables:  # one-hot enum columns
                center[i], scale[i] = 0.0, 1.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        raw = self._raw_features(batch)
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

    def _raw_features(self, batch: Batch) -> np.ndarray:
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
                cols.append(x.astype(np.float64).reshape(-1, 1))
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

    # losses and predictions -------------------------------------------------------------------
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
        labels = self._targets(targets, trace.n) if targets is not None else None
        return self._loss(trace, labels)

    def _targets(self, targets, n):
        if hasattr(targets, "values") and hasattr(targets, "mask") and not isinstance(
                targets, (pd.DataFrame, pd.Series, Mapping)):
            return targets.to(self.device)
        default = self.kb.outputs[0] if len(self.kb.outputs) == 1 else None
        return to_targets(self.kb, targets, n, default=default).to(self.device)

    def _loss(self, trace: Trace, labels) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        if labels is not None:
            for name, y in labels.values.items():
                mask = labels.mask[name]
                if not bool(mask.any()):
                    continue
                var = self.kb.variables[name]
                if A.is_finite_type(var.type):
                    lp = trace.log_prob(name, y)
                    # rows whose label is impossible (probability 0) teach nothing
                    ok = mask & torch.isfinite(lp)
                    if bool(ok.all()):
                        total = total - lp.mean()
                    elif bool(ok.any()):
                        total = total - lp[ok].mean()
                else:
                    pred = trace.values[name]
                    total = total + ((pred[mask] - y[mask]) ** 2).mean()
        for c in self.kb.constraints.values():
            if c.hard:
                continue
            t = trace.constraints[c.name]
            if trace.semantics == "probabilistic":
                v = -torch.log(t.clamp_min(1e-12))
            else:
                v = 1.0 - t
            total = total + c.weight * v.mean()
        return total

    def predict(self, data, *, on_infeasible: str = "raise", batch_size: int = 4096
                ) -> pd.DataFrame:
        """The decision of every output, one row per example: the model's one decision
        function (see :mod:`greybox._decide`), which every formal result speaks about.

        The networks' most probable values are taken, the rules score the decided outputs
        with the learned weights, thresholds, biases and residual, and the best-scoring
        values allowed by the hard constraints win. Hard constraints hold in every row
        returned: where the networks' most probable values violate one, the most probable
        values that satisfy it are used (Z3 Optimize). Where no value satisfies them,
        ``on_infeasible="raise"`` (default) raises :class:`~greybox.DataError` naming the
        rows; ``"flag"`` returns them with a True ``infeasible`` column instead.
        """
        if on_infeasible not in ("raise", "flag"):
            raise ModelError(f"on_infeasible must be 'raise' or 'flag', got {on_infeasible!r}")
        batch = self.batch(data)
        parts, flags = [], []
        for _sub, ev, logits in self._decisions(batch, batch_size):
            parts.append({name: _decided(self.kb, name, ev, logits)
                          for name in self.kb.outputs})
            flags.append(ev.infeasible.to_numpy())
        infeasible = np.concatenate(flags) if flags else np.zeros(0, bool)
        if on_infeasible == "raise" and infeasible.any():
            rows = np.flatnonzero(infeasible)
            labels = [batch.index[i] for i in rows[:5]]
            raise DataError(f"{len(rows)} row(s) have no decision satisfying the hard "
                            f"constraints (first: {labels}); predict(..., on_infeasible='flag') "
                            "returns them flagged")
        cols = {}
        for name in self.kb.outputs:
            v = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
            cols[name] = _decode(self.kb.variables[name].type, v)
        df = pd.DataFrame(cols, index=batch.index)
        if on_infeasible == "flag":
            df["infeasible"] = infeasible
        return df

    def _decisions(self, batch: Batch, batch_size: int):
        """``(sub-batch, Evaluation, logits)`` of the decision function, chunk by chunk."""
        from ._decide import decide

        was = self.training
        self.eval()
        try:
            for start in range(0, batch.n, batch_size):
                sub = batch.take(torch.arange(start, min(batch.n, start + batch_size)))
                ev, logits = decide(self, sub)
                yield sub, ev, logits
        finally:
            self.train(was)

    def predict_proba(self, data, output: str | None = None, *, batch_size: int = 4096
                      ) -> pd.DataFrame:
        """The probability of each value of a finite output (default: the only output), one
        column per value (``False``/``True`` for a bool); the most probable value is the
        decision :meth:`predict` returns.

        For an output decided by rules: the softmax of its crisp scores (bias, residual
        and the weights of the rules that fire) over the values the hard constraints
        allow. For a defined or neural output: its exact distribution under the
        networks' distributions (probabilistic semantics; its mode can differ from the
        decision, which takes each network's most probable value).
        """
        if output is None:
            if len(self.kb.outputs) != 1:
                raise ModelError(f"name the output: one of {', '.join(self.kb.outputs)}")
            output = self.kb.outputs[0]
        var = self.kb.variables.get(output)
        if var is None or not var.output or not A.is_finite_type(var.type):
            raise ModelError(f"{output!r} is not a finite output")
        batch = self.batch(data)
        values = list(A.domain_values(var.type))
        parts = []
        if var.role == "decided":
            from ._decide import decision_scores

            for sub, ev, logits in self._decisions(batch, batch_size):
                s = decision_scores(self, ev.kb, sub, logits, ev, output)
                s = torch.as_tensor(s, dtype=torch.float64)
                parts.append(torch.softmax(s, 1).numpy())
        else:
            was = self.training
            self.eval()
            try:
                with torch.no_grad():
                    for start in range(0, batch.n, batch_size):
                        rows = torch.arange(start, min(batch.n, start + batch_size))
                        tr = self(batch.take(rows))
                        if output not in tr.values:
                            raise ModelError(f"{output!r} has too many values to enumerate "
                                             "its distribution")
                        p = tr.values[output]
                        if p.dim() == 1:
                            p = torch.stack([1 - p, p], 1)
                        parts.append(p.cpu().numpy())
            finally:
                self.train(was)
        p = np.concatenate(parts) if parts else np.zeros((0, len(values)))
        return pd.DataFrame(p, index=batch.index, columns=values)

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

    def prior_terms(self) -> list[tuple[nn.Parameter, float, float]]:
        """``(parameter, prior, scale)`` of every learnable rule weight and ``~`` threshold:
        the value written in the rules and the unit in which a move away from it is
        measured (1 for a weight, which is in logits; for a threshold, the spread of what
        it is compared with, as in :meth:`parameter_groups`)."""
        terms: list[tuple[nn.Parameter, float, float]] = []
        for m in self.rules.values():
            if isinstance(m.weight, nn.Parameter):
                terms.append((m.weight, m._init[0], 1.0))
        seen: set[int] = set()
        for s in (*self.kb.rules.values(), *self.kb.constraints.values()):
            body = s.body if isinstance(s, A.Rule) else s.formula
            for node in A.walk(body):
                if not isinstance(node, A.Compare):
                    continue
                spread = float(self.compiled.temperature(node)) / self.temperature
                for num in A.walk(node):
                    if isinstance(num, A.Num) and num.learnable and id(num) in self._nums:
                        p = self.threshold(num)
                        if id(p) not in seen:
                            seen.add(id(p))
                            # self.kb keeps the rule file's numbers: the prior
                            terms.append((p, float(num.value), max(spread, 1e-12)))
        return terms

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
        return _prior_penalty(self.prior_terms(), weight_decay, self.device)

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups: thresholds learn at ``lr`` times the spread of what
        they are compared with (so a threshold on an area and one on a ratio move alike);
        everything else at ``lr``. Rule weights and thresholds get ``weight_decay=0``:
        they are regularised toward the rules' values by :meth:`prior_penalty`, not toward
        0; biases, networks and the residual keep the optimiser's weight decay."""
        terms = self.prior_terms()
        weights = {id(m.weight) for m in self.rules.values()}
        seen = {id(p) for p, _, _ in terms}
        groups = [{"params": [p for p in self.parameters() if id(p) not in seen], "lr": lr}]
        rule_weights = [p for p, _, _ in terms if id(p) in weights]
        if rule_weights:
            groups.append({"params": rule_weights, "lr": lr, "weight_decay": 0.0})
        groups += [{"params": [p], "lr": lr * scale, "weight_decay": 0.0}
                   for p, _, scale in terms if id(p) not in weights]
        return groups


def _prior_penalty(terms, weight_decay: float, device) -> torch.Tensor:
    """``weight_decay / 2 * sum(((p - prior) / scale) ** 2)`` over ``(p, prior, scale)``."""
    total = torch.zeros((), device=device)
    if not weight_decay:
        return total
    for p, prior, scale in terms:
        total = total + ((p - prior) / scale) ** 2
    return 0.5 * weight_decay * total


def learned_value(p: torch.Tensor) -> float:
    """A learned weight or threshold as the rules state it: the shortest decimal that
    names the parameter's value in its own precision (``1.6``, not the float32's
    ``1.600000023841858``). The decision function, the solvers and exported rule files
    all use this value."""
    x = p.detach().cpu()
    if x.dtype == torch.float64:
        return float(x.item())
    return float(str(np.float32(x.item())))


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


def _thresholds(values: list[float]) -> nn.ParameterList:
    return nn.ParameterList([nn.Parameter(torch.tensor(float(v))) for v in values])


def _type(t) -> str:
    from greybox.rules import type_to_text

    return type_to_text(t)


def _decided(kb, name: str, ev, logits) -> np.ndarray:
    """An output's decision as value codes (enum index, int offset from ``lo``, bool,
    real value), from the decision function's evaluation."""
    from ._decide import output_codes

    codes = output_codes(kb, name, ev, logits)
    return codes.astype(bool) if isinstance(kb.variables[name].type, A.BoolType) else codes


def _decode(t, v: np.ndarray) -> pd.Series | np.ndarray:
    if isinstance(t, A.EnumType):
        return pd.Categorical.from_codes(v.astype(np.int64), categories=list(t.values))
    if isinstance(t, A.IntType):
        return v.astype(np.int64) + t.lo
    if isinstance(t, A.BoolType):
        return v.astype(bool)
    return v.astype(np.float64)
