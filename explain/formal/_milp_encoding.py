"""The crisp decision of a model as a mixed-integer program over its table inputs: each
input a variable (an enum one-hot, an optional input's "is missing" binary), each network
propagated through its ReLUs (:func:`~._networks.propagate`, big-M from interval bounds),
each comparison in a rule an indicator, and each decision its score's sign or argmax."""

from __future__ import annotations

import numpy as np

from greybox.errors import ModelError
from greybox.rules import ast as A
from greybox.rules.engine import definite, not_false, plan

from ._milp_program import Lin, Program, _lin
from ._networks import propagate

__all__ = ["compile_decision"]


class _Compiler:
    """The crisp decision of a model as a Program over its table inputs."""

    def __init__(self, model, kb, bias: dict, max_relus: int, margin: float = 0.0,
                 row: dict | None = None):
        self.model, self.kb, self.bias = model, kb, bias
        self.p = Program(margin)
        #: the row's own values of the table inputs (codes): each input ranges over its
        #: range *and* its row value, which may lie outside the training range
        self.row = dict(row or {})
        #: inputs whose row value lies outside their range: (the binary "within the
        #: range", the range's ends, the row value)
        self.outside: dict[str, tuple[int, float, float, float]] = {}
        self.inputs: dict[str, Lin] = {}
        self.onehot: dict[str, list[Lin]] = {}
        self.values: dict[str, Lin] = {}
        #: optional inputs: the binary "is missing" (their value variable is read only
        #: where it is 0: see the rule language, missing values)
        self.missing: dict[str, Lin] = {}
        self.max_relus = max_relus
        #: inputs declared without bounds, bounded by the range seen in the data
        self.assumed: dict[str, tuple[float, float]] = {}
        for name, var in kb.variables.items():
            if A.big_int(var.type):
                raise ModelError(f"{name!r} is int {var.type.lo}..{var.type.hi}, beyond "
                                 "±2**53: the MILP backend (HiGHS, in float64) cannot hold "
                                 "it exactly (use backend='z3', exact with any integer)")
        for name in kb.inputs:
            self._input(name)
        for name in kb.neural:
            self._neural(name)
        self.residual: dict[str, list[Lin]] = {}
        if model.residual is not None and self.missing:
            raise ModelError(f"the residual network reads the optional input(s) "
                             f"{', '.join(self.missing)}, held at a placeholder where missing; "
                             "the MILP backend does not encode that (use backend='z3')")
        if model.residual is not None:
            feats = self._features()
            for name in kb.decided:
                net = model.residual_for(name)
                if net is not None:
                    self.residual[name] = self._network(net, feats, f"residual:{name}")
        self.decisions: dict[str, Lin] = {}
        for comp in plan(kb).components:
            if len(comp.variables) != 1:
                raise ModelError(f"hard constraints tie {', '.join(comp.variables)} together; "
                                 "the MILP backend decides one variable at a time "
                                 "(use backend='z3')")
            if comp.dynamic:
                raise ModelError(f"rule(s) {', '.join(sorted(comp.dynamic))} read the decision "
                                 f"of {comp.variables[0]!r} they conclude; the MILP backend "
                                 "cannot encode that (use backend='z3')")
            self._decide(comp)
        for c in plan(kb).fixed_constraints:
            self.p.add(self.truth(not_false(kb, c.formula)), lo=1.0)

    # variables -------------------------------------------------------------------------
    def _input(self, name):
        t = self.kb.variables[name].type
        if self.kb.variables[name].optional:
            self.missing[name] = self.p.binary(f"{name}.missing")
        if isinstance(t, A.TensorType):
            raise ModelError(f"input {name!r} is a tensor; the MILP backend reasons over "
                             "table inputs")
        if isinstance(t, A.BoolType):
            self.values[name] = self.inputs[name] = self.p.binary(name)
        elif isinstance(t, A.EnumType):
            hots = [self.p.binary(f"{name}={v}") for v in t.values]
            total = _lin(0.0)
            code = _lin(0.0)
            for k, h in enumerate(hots):
                total = total + h
                code = code + h.scale(k)
            self.p.add(total, 1.0, 1.0)
            self.onehot[name] = hots
            self.values[name] = self.inputs[name] = code
        else:
            lo, hi, from_data = self.model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ModelError(f"input {name!r} has no bounds (declared `real`) and the "
                                 "model has seen no data for it: declare `real[lo, hi]`, or "
                                 "calibrate/fit the model so its training range bounds it "
                                 "(or use backend='z3')")
            if from_data:
                self.assumed[name] = (lo, hi)
            integer = isinstance(t, A.IntType)
            at = self.row.get(name)
            at = float(at) if at is not None else None
            if at is None or not np.isfinite(at) or lo <= at <= hi:
                i = self.p.var(name, lo, hi, integer)
                self.values[name] = self.inputs[name] = Lin({i: 1.0}, 0.0, integer)
                return
            # the row's value lies outside the range (an input declared without bounds,
            # beyond the training range): the input is that value, or within the range.
            # Its variable's bounds -- and so every big-M derived from them (ReLUs,
            # comparisons, distances) -- cover both
            vlo, vhi = min(lo, at), max(hi, at)
            i = self.p.var(name, vlo, vhi, integer)
            x = Lin({i: 1.0}, 0.0, integer)
            inside = self.p.binary(f"{name}.in_range")
            self.p.add(x - inside.scale(vhi - at), hi=at)    # inside = 0 -> x = at
            self.p.add(x - inside.scale(vlo - at), lo=at)
            self.p.add(x - inside.scale(lo - vlo), lo=vlo)   # inside = 1 -> lo <= x <= hi
            self.p.add(x - inside.scale(hi - vhi), hi=vhi)
            self.values[name] = self.inputs[name] = x
            self.outside[name] = (next(iter(inside.terms)), lo, hi, at)

    def _feature(self, a, standardise: bool = True) -> list[Lin]:
        """Table input ``a`` as networks read it: standardised (the residual, networks
        in ``model.scaled_networks``) or as it is, an enum one-hot."""
        t = self.kb.variables[a].type
        if isinstance(t, A.TensorType):
            raise ModelError(f"the tensor input {a!r} is read by a network; the MILP backend "
                             "needs networks over table inputs")
        if isinstance(t, A.EnumType):
            return list(self.onehot[a])
        if not standardise:
            return [self.values[a]]
        i = self.model.feature_names.index(a)
        center = float(self.model.feature_center[i])
        scale = float(self.model.feature_scale[i])
        return [(self.values[a] - center).scale(1.0 / scale)]

    def _features(self) -> list[Lin]:
        """Every table input as the residual network reads them (``feature_names``)."""
        out = []
        for a in self.kb.inputs:
            if not isinstance(self.kb.variables[a].type, A.TensorType):
                out += self._feature(a)
        return out

    def _neural(self, name):
        var = self.kb.variables[name]
        feats = []
        scaled = self.model.scales_inputs(var.network)
        for a in var.args:
            feats += self._feature(a, scaled)
        net = self.model.network(var.network)
        out = self._network(net, feats, name)
        t = var.type
        if isinstance(t, A.BoolType):
            self.values[name] = self.p.indicator(out[0], strict=True, name=f"{name}")
        elif A.is_finite_type(t):
            hots = [self.p.binary(f"{name}#{k}") for k in range(len(out))]
            total, code = _lin(0.0), _lin(0.0)
            d = A.domain(t)
            for k, h in enumerate(hots):
                total = total + h
                code = code + h.scale(float(d.code_at(k)))
                for j in range(len(out)):   # chosen k beats j (strictly for j < k: ties)
                    if j == k:
                        continue
                    diff = out[k] - out[j]
                    dlo, _ = self.p.bounds(diff)
                    need = self.p.margin if j < k else 0.0   # ties to the first value
                    # h = 1 -> diff >= need
                    self.p.add(diff - h.scale(need - dlo), lo=dlo)
            self.p.add(total, 1.0, 1.0)
            self.onehot[name] = hots
            self.values[name] = code
        else:
            self.values[name] = out[0]

    def _network(self, net, feats: list[Lin], name) -> list[Lin]:
        def affine(values, w, b):
            e = _lin(b)
            for i, x in enumerate(values):
                if w[i] != 0.0:
                    e = e + x.scale(float(w[i]))
            e.integral = False
            return e

        def relu(x, k):
            lo, hi = self.p.bounds(x)
            if lo >= 0:
                return x
            if hi <= 0:
                return _lin(0.0)
            y = Lin({self.p.var(f"{name}.relu{k}", 0.0, hi): 1.0}, 0.0, False)
            z = self.p.binary(f"{name}.on{k}")
            self.p.add(y - x, lo=0.0)                     # y >= x
            self.p.add(y - x - z.scale(lo), hi=-lo)       # y <= x - lo (1 - z)
            self.p.add(y - z.scale(hi), hi=0.0)           # y <= hi z
            return y

        return propagate(net, feats, affine=affine, relu=relu, max_relus=self.max_relus,
                         what=f"the network for {name!r}")

    # formulas ---------------------------------------------------------------------------
    def expr(self, e) -> Lin:
        if isinstance(e, A.Num):
            if e.learnable:
                return _lin(float(e.value))
            return _lin(float(e.value))
        if isinstance(e, A.Var):
            var = self.kb.variables[e.name]
            if var.role == "defined":
                return self.expr(var.expr)
            if var.role == "decided":
                return self.decisions[e.name]
            return self.values[e.name]
        if isinstance(e, A.Neg):
            return -self.expr(e.operand)
        if isinstance(e, A.Sum):
            acc = self.expr(e.args[0])
            for op, arg in zip(e.ops, e.args[1:]):
                acc = acc + self.expr(arg) if op == "+" else acc - self.expr(arg)
            return acc
        if isinstance(e, A.Mul):
            left, right = self.expr(e.left), self.expr(e.right)
            if not left.terms:
                return right.scale(left.const)
            if not right.terms:
                return left.scale(right.const)
            return self.p.product(left, right)   # two integer expressions
        if isinstance(e, A.Arith):
            return self.p.arith(e.op, [self.expr(a) for a in e.args])
        if isinstance(e, A.Count):   # the formulas' indicators (binaries or constants)
            acc = _lin(0.0)
            for a in e.args:
                acc = acc + self.truth(a)
            return acc
        return self.truth(e)

    def _enum_code(self, e, other):
        if isinstance(e, A.Sym):
            t = self.kb.variables[other.name].type
            return _lin(float(A.domain(t).code(e.name)))
        return self.expr(e)

    def truth(self, e) -> Lin:
        p = self.p
        if isinstance(e, A.BoolConst):
            return _lin(1.0 if e.value else 0.0)
        if isinstance(e, A.Var):
            return self.expr(e)
        if isinstance(e, A.Not):
            return p.not_(self.truth(e.operand))
        if isinstance(e, A.IsMissing):
            return self.missing[e.operand.name]
        if isinstance(e, A.And):
            return p.and_([self.truth(a) for a in e.args])
        if isinstance(e, A.Or):
            return p.or_([self.truth(a) for a in e.args])
        if isinstance(e, A.Implies):
            return p.or_([p.not_(self.truth(e.left)), self.truth(e.right)])
        if isinstance(e, A.Iff):
            a, b = self.truth(e.left), self.truth(e.right)
            return p.or_([p.and_([a, b]), p.and_([p.not_(a), p.not_(b)])])
        if isinstance(e, A.InSet):
            return p.or_([self.truth(A.Compare("==", e.operand, v)) for v in e.values])
        if isinstance(e, A.Compare):
            hot = self._onehot_compare(e)
            if hot is not None:
                return hot
            left = self._enum_code(e.left, e.right)
            right = self._enum_code(e.right, e.left)
            d = left - right
            if e.op == ">":
                return p.indicator(d, strict=True)
            if e.op == ">=":
                return p.indicator(d, strict=False)
            if e.op == "<":
                return p.indicator(-d, strict=True)
            if e.op == "<=":
                return p.indicator(-d, strict=False)
            eq = p.and_([p.indicator(d, strict=False), p.indicator(-d, strict=False)])
            return eq if e.op == "==" else p.not_(eq)
        raise ModelError(f"the MILP backend cannot encode {type(e).__name__}")

    def _onehot_compare(self, e):
        """``kind == a`` on an enum (or a finite neural concept): its one-hot binary."""
        if e.op not in ("==", "!=") or not isinstance(e.left, A.Var):
            return None
        hots = self.onehot.get(e.left.name)
        if hots is None:
            return None
        t = self.kb.variables[e.left.name].type
        if isinstance(e.right, A.Sym):
            k = A.domain(t).index(e.right.name)
        elif isinstance(e.right, A.Num) and isinstance(t, A.IntType):
            k = A.domain(t).index(e.right.value)
            if not 0 <= k < len(hots):
                return _lin(0.0 if e.op == "==" else 1.0)
        else:
            return None
        return hots[k] if e.op == "==" else self.p.not_(hots[k])

    # decisions --------------------------------------------------------------------------
    def _decide(self, comp):
        (name,) = comp.variables
        t = self.kb.variables[name].type
        if not isinstance(t, A.BoolType):
            self._decide_finite(comp)
            return
        score = _lin(float(self.bias.get(name, 0.0)))
        score.integral = False
        if name in self.residual:
            score = score + self.residual[name][0]
        for r in self.kb.rules_for(name):
            w = -r.weight if r.head.value is False else r.weight
            score = score + self.truth(definite(self.kb, r.body)).scale(w)
        score.integral = False
        prefer = self.p.indicator(score, strict=True, name=f"{name}.score")
        if not comp.constraints:
            self.decisions[name] = prefer
            return
        feasible = {}
        for value in (0.0, 1.0):
            self.decisions[name] = _lin(value)
            feasible[value] = self.p.and_([self.truth(not_false(self.kb, c.formula))
                                           for c in comp.constraints])
        self.p.add(self.p.or_([feasible[0.0], feasible[1.0]]), lo=1.0)   # a decision exists
        # True when True is allowed and preferred, or False is not allowed
        self.decisions[name] = self.p.and_(
            [feasible[1.0], self.p.or_([prefer, self.p.not_(feasible[0.0])])])

    def _decide_finite(self, comp):
        """An int or enum decision: one binary per value, the chosen value's score at
        least every allowed value's (strictly above those earlier in domain order: ties
        go to the first value), only allowed values chosen."""
        (name,) = comp.variables
        t = self.kb.variables[name].type
        d = A.domain(t)
        values = list(d.values)
        if len(values) > 256:
            raise ModelError(f"{name!r} has {len(values)} values; the MILP backend decides "
                             "finite outputs of at most 256 values (use backend='z3')")
        bias = self.bias.get(name, {})
        scores = []
        for k, v in enumerate(values):
            s = _lin(float(bias.get(v, 0.0)) if isinstance(bias, dict) else 0.0)
            if name in self.residual:
                s = s + self.residual[name][k]
            for r in self.kb.rules_for(name):
                if _pushes(r, v):
                    s = s + self.truth(definite(self.kb, r.body)).scale(float(r.weight))
            s.integral = False
            scores.append(s)
        allowed = []
        for v in values:
            if comp.constraints:
                self.decisions[name] = _lin(float(d.code(v)))
                allowed.append(self.p.and_([self.truth(not_false(self.kb, c.formula))
                                            for c in comp.constraints]))
            else:
                allowed.append(_lin(1.0))
        hots = [self.p.binary(f"{name}#{k}") for k in range(len(values))]
        total = _lin(0.0)
        code = _lin(0.0)
        for k, h in enumerate(hots):
            total = total + h
            code = code + h.scale(float(d.code(values[k])))
            self.p.add(h - allowed[k], hi=0.0)           # only allowed values are chosen
            for j in range(len(values)):
                if j == k:
                    continue
                diff = scores[k] - scores[j]
                dlo, dhi = self.p.bounds(diff)
                need = self.p.margin * max(1.0, abs(dlo), abs(dhi)) if j < k else 0.0
                big = need - min(dlo, 0.0) + 1.0
                # h_k = 1 and j allowed -> diff >= need
                self.p.add(diff - h.scale(big) - allowed[j].scale(big), lo=need - 2 * big)
        self.p.add(total, 1.0, 1.0)
        self.onehot[name] = hots
        self.decisions[name] = code


def _pushes(rule, value) -> bool:
    v = rule.head.value
    target = v.value if isinstance(v, A.Num) else v.name
    return target == value


def compile_decision(model, kb, bias: dict, *, max_relus: int = 64,
                     margin: float = 0.0, row: dict | None = None) -> _Compiler:
    """The decision function of ``model`` over its table inputs as a mixed-integer program
    (``margin``: see :class:`Program`). ``row``: a row's input values (codes); each input
    then ranges over its range and its row value (which may lie outside the range)."""
    return _Compiler(model, kb, bias, max_relus, margin, row)
