"""What the smooth semantics compile once per model: smoothness and temperature of each
comparison, linear forms of defines, value tensors and compiled arithmetic.

One :class:`Compiled` per model (``model.compiled``), rebuilt when the model moves to
another device or is unpickled; the semantics own it, so adding a semantics touches only
``greybox/semantics/``.
"""

from __future__ import annotations

import numpy as np
import torch

from greybox import functional as F
from greybox._batch import kb_cached
from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import closure, exact_in_float64

from .._linear import compile_linear, linear_form

__all__ = ["Compiled", "magnitude", "smooth_truth"]

#: integers up to this magnitude are exact in float32; beyond, float64 (up to 2**53)
EXACT_FLOAT32 = 2 ** 24
EXACT_FLOAT64 = 2 ** 53


def wide_int(t) -> bool:
    """Whether type ``t`` is an integer range beyond float32's exact integers (2**24)."""
    return isinstance(t, A.IntType) and max(abs(t.lo), abs(t.hi)) > EXACT_FLOAT32


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
        if isinstance(node, A.Num):   # (an integer beyond float64's range: inf)
            return abs(float(node.value)) if abs(node.value) < 1e308 else float("inf")
        if isinstance(node, A.Var):
            var = kb.variables.get(node.name)
            t = None if var is None else var.type
            if isinstance(t, A.IntType):
                m = max(abs(t.lo), abs(t.hi))
                return float(m) if m < 1e308 else float("inf")
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
        if isinstance(node, A.Arith):     # |a // d| <= |a|, |a % d| < |d|
            bounds = [bound(a) for a in node.args]
            return bounds[1] if node.op == "%" else max(bounds)
        if isinstance(node, A.Compare):
            return max(bound(node.left), bound(node.right))
        if isinstance(node, A.InSet):
            return max([bound(node.operand)] + [bound(v) for v in node.values])
        return 1.0      # a formula: a truth value
    return bound(e)


def nonlinear(kb, e) -> bool:
    """Whether sum ``e`` holds a product of variables or an operation of
    :class:`~greybox.rules.ast.Arith` (its partial sums are then variables of their own)."""
    cache = kb_cached(kb, "probabilistic/nonlinear", lambda kb: {})
    found = cache.get(id(e))
    if found is None:
        found = cache[id(e)] = any(
            isinstance(n, A.Arith) or (isinstance(n, A.Mul) and not (
                A.is_constant(n.left) or A.is_constant(n.right))) for n in A.walk(e))
    return found


def int_leaves(kb, compiled, name) -> tuple[tuple[str, ...], frozenset] | None:
    """The variables an integer define is linear in (in order, and as a set), when they
    are all int or bool variables; else None (computed once per knowledge base)."""
    cache = kb_cached(kb, "probabilistic/int_leaves", lambda kb: {})
    if name not in cache:
        form = compiled.linear_form(name)
        leaves = tuple(form[1]) if form is not None else ()
        cache[name] = (leaves, frozenset(leaves)) if leaves and all(
            isinstance(kb.variables[k].type, (A.IntType, A.BoolType)) for k in leaves) \
            else None
    return cache[name]


def smooth_truth(op: str, left, right, temperature: torch.Tensor) -> torch.Tensor:
    """:func:`greybox.functional.smooth_compare` of ``left OP right`` whose margin is
    computed in the sides' precision (float64 where ``predict`` reads float64) and only
    then rounded to the temperature's dtype: the truth is above 1/2 only where
    ``predict``'s comparison holds, below only where it does not (rounding the sides first
    could put a value on the wrong side of its threshold)."""
    margin = left - right
    if not isinstance(margin, torch.Tensor) or op not in ("<", "<=", ">", ">="):
        if isinstance(margin, torch.Tensor) and margin.dtype != temperature.dtype:
            margin = margin.to(temperature.dtype)
        return F.smooth_compare(op, margin, 0.0, temperature)
    if margin.dtype != temperature.dtype:
        margin = margin.to(temperature.dtype)
    # smooth_compare's sigmoid(margin / temperature), the sign on the scalar for < (one
    # pass fewer); in place on the margin, a tensor of this function's own, where the
    # temperature takes no gradient (division's backward then needs only it)
    scale = temperature if op in (">", ">=") else -temperature
    if temperature.requires_grad:
        return torch.sigmoid(margin / scale)
    return margin.div_(scale).sigmoid_()


def stated_threshold(model, e: A.Num, offsets: dict) -> torch.Tensor:
    """A ``~`` threshold as the smooth traces read it: the parameter (the gradient path)
    moved by the float64 difference to the value the rules state and ``predict`` decides
    with (:func:`~greybox._parameters.learned_value`: the shortest decimal naming the
    float32 parameter, within half a float32 step of it), so that a margin's sign is
    ``predict``'s comparison. ``offsets``: the differences of one forward pass by
    parameter (filled here: every threshold's in one transfer). A threshold that is not
    the model's parameter (``functional_call`` swaps in other values) is read as is."""
    t = model.threshold(e)
    if not isinstance(t, torch.nn.Parameter) or t.dtype != torch.float32 or t.is_meta:
        return t
    found = offsets.get(id(t))
    if found is None:
        params = [p for group in (model.rules, model.constraints) for m in group.values()
                  for p in getattr(m, "thresholds", ()) if p.dtype == torch.float32
                  and not p.is_meta]
        values = torch.stack([p.detach() for p in params]).cpu().tolist() if params else []
        for p, v in zip(params, values):   # learned_value's decimal, minus the float32
            offsets[id(p)] = float(str(np.float32(v))) - v
        found = offsets.get(id(t), 0.0)
    return t.double() + found if found else t


class Compiled:
    """Caches keyed by the AST nodes of ``model.kb`` (by identity) and by variable names."""

    def __init__(self, model):
        self.model = model
        self._smooth: dict[tuple, bool] = {}
        self._spread: dict[int, list] = {}
        self._linear: dict[str, object] = {}
        self._tensors: dict = {}
        self._wide: dict[int, bool] = {}
        self._float64: dict[int, bool] = {}
        self._observed: dict[int, bool] = {}
        self._owners: dict[int, str] | None = None

    def float64(self, e) -> bool:
        """Whether comparison or membership test ``e`` is computed in float64 in the smooth
        traces, as ``predict`` computes it: it reads a real variable, a number that is not
        an integer, or integer arithmetic beyond float32's exact integers (:meth:`wide`,
        which refuses arithmetic beyond float64's). Integer tests of integer and enum
        values stay in float32, where they are exact."""
        found = self._float64.get(id(e))
        if found is None:
            kb = self.model.kb
            wide = self.wide(e)
            names = A.variables(e)
            if not all(n in kb.variables for n in names):   # a stacked shape: by its kind
                found = True
            else:
                found = wide or any(
                    isinstance(kb.variables[n].type, A.RealType) for n in closure(kb, names)) \
                    or any(isinstance(n, A.Num) and not n.learnable
                           and float(n.value) != int(n.value) for n in A.walk(e))
            self._float64[id(e)] = found
        return found

    def single(self, e) -> tuple[str, A.Num, bool] | None:
        """``(input, threshold, input first)`` where smooth comparison ``e`` compares a
        real table input with a ``~`` threshold (``x > ~0.3``): the smooth traces read the
        input's float32 rounding (:meth:`greybox.Batch.float32`, once per batch) against
        the float32 parameter. The margin's float32 sign is never the opposite of
        ``predict``'s comparison (rounding is monotone and both round to float32 alike): a
        row within float32 rounding of the threshold gets a margin of 0 (truth 1/2) at
        worst. None for any other comparison (computed in float64)."""
        key = ("single", id(e))
        if key not in self._observed:
            found = None
            kb = self.model.kb
            for var, num, first in ((e.left, e.right, True), (e.right, e.left, False)):
                if isinstance(var, A.Var) and isinstance(num, A.Num) and num.learnable:
                    v = kb.variables.get(var.name)
                    if v is not None and v.role == "input" and isinstance(v.type, A.RealType):
                        found = (var.name, num, first)
            self._observed[key] = found
        return self._observed[key]

    def observed(self, e) -> bool:
        """Whether crisp comparison or membership test ``e`` is read from ``predict``'s
        own evaluation (:meth:`greybox.Batch.crisp_truth`): it reads observed table inputs
        only (through defines too), no learnable number, and float64 may round its
        arithmetic (where it cannot, the traces' float64 comparison is already exact)."""
        found = self._observed.get(id(e))
        if found is None:
            kb = self.model.kb
            names = A.variables(e)
            found = False
            if all(n in kb.variables for n in names) and not exact_in_float64(e, kb):
                reached = closure(kb, names)
                exprs = [e] + [kb.variables[n].expr for n in reached
                               if kb.variables[n].role == "defined"]
                found = all(kb.variables[n].role in ("input", "defined") and not isinstance(
                    kb.variables[n].type, A.TensorType) for n in reached) and not any(
                    isinstance(node, A.Num) and node.learnable
                    for x in exprs for node in A.walk(x))
            self._observed[id(e)] = found
        return found

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
                    "declare tighter ranges or smaller coefficients" + (
                        "; exact inference computes integers beyond 2**53 only as positional "
                        "sums (coefficients powers of one base, as digits' places) of "
                        "network outputs" if define is not None and A.big_int(
                            self.model.kb.variables[define].type) else ""))
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
                    terms += [(n, abs(float(c))) for n, c in form[1].items()]
            self._spread[id(e)] = terms
        spread = sum(c * (1.0 if n is None else model.scale_of(n)) for n, c in terms)
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
        """A variable's values as a float tensor on the model's device (float64 where
        they go beyond float32's exact integers, 2**24)."""
        key = ("values", values)
        found = self._tensors.get(key)
        if found is None:
            wide = any(abs(float(v)) > EXACT_FLOAT32 for v in values)
            found = self._tensors[key] = torch.tensor(
                [float(v) for v in values], device=self.model.device,
                dtype=torch.float64 if wide else None)
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
