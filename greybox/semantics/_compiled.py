"""What the smooth semantics compile once per model: smoothness and temperature of each
comparison, linear forms of defines, value tensors and compiled arithmetic.

One :class:`Compiled` per model (``model.compiled``), rebuilt when the model moves to
another device or is unpickled; the semantics own it, so adding a semantics touches only
``greybox/semantics/``.
"""

from __future__ import annotations

import torch

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules import closure

from .._linear import compile_linear, linear_form

__all__ = ["Compiled", "magnitude"]

#: integers up to this magnitude are exact in float32; beyond, float64 (up to 2**53)
EXACT_FLOAT32 = 2 ** 24
EXACT_FLOAT64 = 2 ** 53


def magnitude(e, kb) -> float:
    r"""A bound on the magnitude of ``e`` and of every intermediate result of its
    arithmetic, from the ranges of the finite variables and the numbers it reads (real
    variables count 0: their values are not exact integers in any dtype, and a define
    counts its declared range, its own expression being bounded where it is computed).

    Examples
    --------
    >>> import greybox.rules as gr
    >>> from greybox.semantics._compiled import magnitude
    >>> kb = gr.parse("input a: int 0..9\ninput b: int -5..5\noutput y: bool\n"
    ...               "rule r: 1000 * a - b >= 3 -> y")
    >>> magnitude(kb.rules["r"].body, kb)
    9005.0
    """
    def bound(node) -> float:
        if isinstance(node, A.Num):
            return abs(float(node.value))
        if isinstance(node, A.Var):
            var = kb.variables.get(node.name)
            t = None if var is None else var.type
            if isinstance(t, A.IntType):
                return float(max(abs(t.lo), abs(t.hi)))
            if isinstance(t, A.EnumType):
                return float(len(t.values))
            return 1.0 if isinstance(t, A.BoolType) else 0.0
        if isinstance(node, A.Neg):
            return bound(node.operand)
        if isinstance(node, A.Sum):
            return sum(bound(a) for a in node.args)
        if isinstance(node, A.Mul):
            return bound(node.left) * bound(node.right)
        if isinstance(node, A.Count):
            return float(len(node.args))
        if isinstance(node, A.Compare):
            return max(bound(node.left), bound(node.right))
        if isinstance(node, A.InSet):
            return max([bound(node.operand)] + [bound(v) for v in node.values])
        return 1.0      # a formula: a truth value
    return bound(e)


class Compiled:
    """Caches keyed by the AST nodes of ``model.kb`` (by identity) and by variable names."""

    def __init__(self, model):
        self.model = model
        self._smooth: dict[tuple, bool] = {}
        self._spread: dict[int, list] = {}
        self._linear: dict[str, object] = {}
        self._tensors: dict = {}
        self._wide: dict[int, bool] = {}
        self._owners: dict[int, str] | None = None

    def wide(self, e, *, define: str | None = None) -> bool:
        """Whether comparison ``e`` (or the expression of ``define``) must be computed in
        float64 to agree with the crisp decision: its integer arithmetic of observed
        values may exceed float32's exact integers (2**24). Raises ModelError where
        float64 cannot hold it either (beyond 2**53): the smooth trace would then disagree
        with ``predict``, which evaluates it exactly."""
        if define is not None:
            e = self.model.kb.variables[define].expr
        found = self._wide.get(id(e))
        if found is None:
            size = magnitude(e, self.model.kb)
            if size > EXACT_FLOAT64:
                where = f"define {define!r}" if define is not None else self._owner(e)
                raise ModelError(
                    f"{where}: its arithmetic may reach about {size:.3g} in magnitude, beyond the "
                    f"integers float64 holds exactly (2**53 = {EXACT_FLOAT64:.4g}); the "
                    "torch semantics would round it where predict decides exactly -- "
                    "declare tighter ranges or smaller coefficients")
            found = self._wide[id(e)] = size > EXACT_FLOAT32
        return found

    def _owner(self, e) -> str:
        """The rule, constraint or define whose formula holds node ``e`` (for messages)."""
        if self._owners is None:
            kb, owners = self.model.kb, {}
            for kind, items in (("rule", kb.rules), ("constraint", kb.constraints)):
                for name, item in items.items():
                    for node in A.walk(item.body if kind == "rule" else item.formula):
                        owners.setdefault(id(node), f"{kind} {name!r}")
            for name, var in kb.variables.items():
                if var.role == "defined":
                    for node in A.walk(var.expr):
                        owners.setdefault(id(node), f"define {name!r}")
            self._owners = owners
        return self._owners.get(id(e), "a comparison")

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
