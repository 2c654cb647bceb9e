"""What the smooth semantics compile once per model: smoothness and temperature of each
comparison, linear forms of defines, value tensors and compiled arithmetic.

One :class:`Compiled` per model (``model.compiled``), rebuilt when the model moves to
another device or is unpickled; the semantics own it, so adding a semantics touches only
``greybox/semantics/``.
"""

from __future__ import annotations

import torch

from greybox.rules import ast as A
from greybox.rules import closure

from .._linear import compile_linear, linear_form

__all__ = ["Compiled"]


class Compiled:
    """Caches keyed by the AST nodes of ``model.kb`` (by identity) and by variable names."""

    def __init__(self, model):
        self.model = model
        self._smooth: dict[tuple, bool] = {}
        self._spread: dict[int, list] = {}
        self._linear: dict[str, object] = {}
        self._tensors: dict = {}

    def smooth(self, e: A.Compare, *, neural: bool) -> bool:
        """Whether comparison ``e`` is smooth: it has a ``~`` threshold or reads a real
        network output (or, with ``neural=True``, any network output: the t-norm
        semantics give finite concepts truth degrees too)."""
        key = (id(e), neural)
        found = self._smooth.get(key)
        if found is None:
            kb = self.model.kb
            learn = any(isinstance(n, A.Num) and n.learnable for n in A.walk(e))
            names = closure(kb, A.variables(e))
            net = [n for n in names if kb.variables[n].role == "neural"]
            real_net = any(not A.is_finite_type(kb.variables[n].type) for n in net)
            found = self._smooth[key] = learn or real_net or (neural and bool(net))
        return found

    def temperature(self, e: A.Compare) -> torch.Tensor:
        """``temperature * spread`` of a comparison: the spread of what it compares (sum of
        |coefficient| x each variable's spread; a formula that ``count`` counts has spread
        1, as a bool variable has)."""
        model = self.model
        terms = self._spread.get(id(e))
        if terms is None:
            terms = []
            for side in (e.left, e.right):
                form = linear_form(side, model.kb, inline=True, formulas=True)
                if form is not None:
                    terms += [(n, abs(c)) for n, c in form[1].items()]
            self._spread[id(e)] = terms
        spread = sum(c * (1.0 if n is None else model._feature_scale(n)) for n, c in terms)
        if not isinstance(spread, torch.Tensor):
            spread = torch.tensor(float(spread) if spread else 1.0, device=model.device)
        return model.temperature * spread

    def linear_form(self, name: str):
        """A define's expression as a linear form over non-defined variables."""
        if name not in self._linear:
            self._linear[name] = linear_form(self.model.kb.variables[name].expr,
                                             self.model.kb, inline=True)
        return self._linear[name]

    def value_tensor(self, values: tuple) -> torch.Tensor:
        """A variable's values as a float tensor on the model's device."""
        key = ("values", values)
        found = self._tensors.get(key)
        if found is None:
            found = self._tensors[key] = torch.tensor([float(v) for v in values],
                                                      device=self.model.device)
        return found

    def arithmetic(self, name: str, leaves: tuple):
        """The compiled arithmetic of an integer define over the random variables
        ``leaves`` (on the model's device)."""
        key = (name, leaves)
        if key not in self._tensors:
            kb, device = self.model.kb, self.model.device
            domains = {k: [int(v) for v in A.domain_values(kb.variables[k].type)]
                       for k in leaves}
            arith = compile_linear(name, kb, domains)
            if arith is not None:
                arith.factors = [(s, f.to(device)) for s, f in arith.factors]
                # whether each factor is a function of the variables before it (sums to 1
                # over those it introduces): then it needs no normalisation
                seen: set = set()
                arith.conditionals, arith.made = [], []
                for scope, f in arith.factors:
                    made = [v for v in scope if v not in seen and v not in domains]
                    seen.update(scope)
                    arith.conditionals.append(arith.conditional(scope, f, made))
                    arith.made.append(tuple(made))
            self._tensors[key] = arith
        return self._tensors[key]
