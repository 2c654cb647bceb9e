"""The Z3 backend: the decision function over exact rationals.

Types, hard constraints over non-decided variables and the decision (argmax of the
scores under the hard constraints, ties in domain order) are one background per learned
state (cached); at the input level each neural concept and the residual are tied to their
networks' exact encodings (weights as exact rationals, each ReLU an ``If``); at the
concept level neural values are facts and residual logits free reals that the row's facts
pin. Reasons use unsat cores; counterfactuals one fact at a time first, then Z3
``Optimize`` (lexicographic count and L1).
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import z3

from greybox.errors import ModelError, SolverError
from greybox.rules import ast as A
from greybox.rules.engine import (
    MISSING,
    not_false,
    real_value,
    witness_row,
    z3_milliseconds,
    z3_serialised,
)

from ._protocol import NO_WISHES, Backend, Problem, Wishes
from ._row import residual_facts, row_state
from ._z3_encoding import _background, encode_network

__all__ = ["Z3Backend", "encode_network"]


class Z3Problem(Problem):
    """One row's decision in Z3: the background (types, hard constraints, the decision)
    and the facts as named equalities, switched on by assumption literals."""

    def __init__(self, model, batch, row: int, output: str, *, level: str, max_relus: int,
                 timeout: float):
        kb = model.to_kb()
        self.kb, self.output, self.level, self.timeout = kb, output, level, timeout
        #: the context of the call that built it: its terms live there, and its methods
        #: (serialised calls of their own) work there
        self.z3_context = z3.main_ctx()
        # a residual network is never held silently: at the input level it is encoded
        # from the inputs, at the concept level its logits are named facts of the row
        # (free when a reason drops them)
        bias = {}
        for name, b in model.bias_table().items():
            bias[name] = {k: float(v) for k, v in b.items()} if isinstance(b, dict) \
                else float(b)
        mode = "fixed" if model.residual is None else \
            "encoded" if level == "input" else "free"
        self.enc, self.background = _background(model, kb, bias, level, max_relus, mode)
        facts, self.decision = row_state(model, batch, row, output)
        if level == "input":  # the networks' values follow from the inputs
            facts = {n: v for n, v in facts.items() if kb.variables[n].role != "neural"}
        else:
            facts.update(residual_facts(model, batch, row))
        self.facts = facts
        target = self.enc.var(output)
        self.goal = target == A.domain(kb.variables[output].type).z3_value(self.decision)
        self.names = list(facts)
        self._lits = {n: z3.Bool(f"fact__{n}") for n in self.names}
        self._solver = None
        self._core: list = []

    # the protocol -------------------------------------------------------------------
    @z3_serialised
    def differs(self, fixed: dict):
        if self.forces(fixed):
            return None
        m = self._model = self._differs_solver().model()
        return {n: self._code(n, m.eval(self.const(n), model_completion=True))
                for n in self.names}

    @z3_serialised
    def forces(self, fixed: dict) -> bool:
        """:meth:`differs` without reading the witness (a reason's drops only ask
        whether there is one): one check, and where none is, its unsat core kept."""
        s = self._differs_solver()
        for n in fixed:
            if fixed[n] != self.facts[n]:
                raise ModelError(f"Z3 problems fix facts at the row's values ({n!r})")
        if self.check(s, *[self._lits[n] for n in fixed]) == z3.unsat:
            core = {c.get_id() for c in s.unsat_core()}   # asked once, not per fact
            self._core = [n for n in self.names if self._lits[n].get_id() in core]
            return True
        return False

    @z3_serialised
    def core(self, fixed: dict) -> dict:
        return {n: fixed[n] for n in fixed if n in self._core}

    @z3_serialised
    def holds_at(self, values: dict) -> bool:
        """Whether the decision differs with every fact at ``values``."""
        s = self.solver()
        s.add(z3.Not(self.goal))
        s.add(*[self.is_(k, v) for k, v in values.items()])
        return self.check(s) == z3.sat

    @z3_serialised
    def closest(self, *, minimize: str, immutable, spreads: dict, wishes: Wishes = NO_WISHES):
        """Fewest changes: one fact at a time first (:meth:`_single`, the other facts
        held, as the MILP backend does), the closest single change winning and ties going
        to the earlier fact -- cheap where hard constraints make the whole optimisation
        slow, and the same answer on every call; the whole optimisation only when no
        single change was found. ``"l1"``: the whole optimisation (but for one mutable
        fact, where the closest single change is the answer).

        ``timeout`` bounds the whole search, every solver call together (wall clock).
        The single-fact calls share half of it, each its fair share of what is left
        (time one does not use passes on to the next); a call that runs out answers
        "unknown" -- that fact is skipped, never the whole counterfactual lost -- and
        the whole optimisation gets the rest.

        ``wishes`` (:class:`Wishes`): the decision wanted, where facts may move, the
        weights of their changes and earlier answers' change sets to keep apart from --
        all part of every solver call."""
        deadline = time.monotonic() + self.timeout
        self._wishes = wishes
        self._wish_solver = None
        mutable = [n for n in self.names if n not in immutable and not self.held(n)]
        if mutable and (minimize == "count" or len(mutable) == 1):
            singles = []
            phase_end = time.monotonic() + self.timeout / 2
            for k, name in enumerate(mutable):
                share = (phase_end - time.monotonic()) / (len(mutable) - k)
                try:
                    found = self._single(name, spreads, until=time.monotonic() + share)
                except SolverError:
                    continue              # unknown within its share: skipped
                if found is not None:
                    # gaps equal but for solver noise tie: the earlier fact wins
                    w = wishes.weight(name)
                    singles.append((w if minimize == "count" else 0.0,
                                    round(self._gap(name, found[name], spreads) * w, 9),
                                    k, found))
            if singles:
                best = min(singles, key=lambda c: c[:3])
                # with costs, two cheap changes may cost less than one dear one
                if minimize != "count" or best[0] <= _two_cheapest(mutable, wishes):
                    return best[3]
        return self._optimise(mutable=mutable, minimize=minimize, spreads=spreads,
                              until=deadline)

    def _single(self, name: str, spreads: dict, *, until: float):
        """The closest facts with only ``name`` changed whose decision differs; None when
        none; SolverError when the solver cannot say by ``until`` (a
        :func:`time.monotonic` time). First one incremental check (every other fact held
        by its assumption literal) says whether any value of ``name`` changes the
        decision; then a real input's (or a wide int's) closest value by optimisation;
        an int of at most :data:`ENUMERATED` values tried value by value, nearest first
        (ties: the lower), and a bool's, enum's or neural class's first value in domain
        order that does (each counts 1). Value by value, each check is one cheap
        satisfiability question; Z3's optimiser over an int read through ReLUs can take
        minutes on the same question."""
        s = self._search_solver()
        others = [self._lits[n] for n in self.names if n != name]
        if self.check(s, *others, until=until) == z3.unsat:
            return None
        t = self.kb.variables[name].type
        d = A.domain(t)
        if self.facts[name] is MISSING or _measured(self.kb, name) and not (
                isinstance(t, A.IntType) and d.size <= ENUMERATED):
            return self._optimise(mutable=[name], minimize="l1", spreads=spreads,
                                  until=until)
        values = list(d.values)
        if _measured(self.kb, name):   # an int: nearest first
            values.sort(key=lambda v: (abs(v - self.facts[name]), v))
        for value in values:
            code = d.code(value)
            if code == self.facts[name]:
                continue
            s.push()
            s.add(self.is_(name, code))
            try:
                found = self.check(s, *others, until=until) == z3.sat
            finally:
                s.pop()
            if found:
                return {**self.facts, name: code}
        return None   # pragma: no cover (the first check found a value)

    def _optimise(self, *, mutable: list, minimize: str, spreads: dict, until: float):
        """The closest facts (only ``mutable`` ones changed) whose decision differs, by
        Z3's ``Optimize`` (lexicographic: ``minimize`` first, the other measure breaking
        ties); None when there are none; SolverError when Z3 cannot say by ``until``."""
        opt = z3.Optimize()
        opt.set("timeout", _ms(until - time.monotonic()))
        opt.add(*self.background)
        opt.add(self._want(), *self._wish_terms())
        counts, dists = [], []
        for n in self.names:
            if n not in mutable:
                opt.add(self.equality(n))
                continue
            changed, dist = self._distance(n, spreads)
            w = self._wishes.weight(n)
            if w != 1.0:
                w = z3.RealVal(Fraction(w).limit_denominator(10**9))
                changed, dist = w * changed, w * dist
            counts.append(changed)
            dists.append(dist)
        zero = z3.RealVal(0)
        count_total = z3.Sum(counts) if counts else zero
        dist_total = z3.Sum(dists) if dists else zero
        # lexicographic: the chosen measure first, the other one breaks ties
        first, second = (count_total, dist_total) if minimize == "count" else \
            (dist_total, count_total)
        opt.minimize(first)
        opt.minimize(second)
        try:
            result = opt.check()
        except z3.Z3Exception as err:  # pragma: no cover
            raise SolverError(f"Z3 failed: {err}") from None
        if result == z3.unknown:
            raise SolverError(f"Z3 could not find a counterfactual within {self.timeout} s; "
                              "raise the timeout")
        if result == z3.unsat:
            return None
        m = self._model = opt.model()
        return {n: self.facts[n] if n not in mutable else
                self._moved(n, m.eval(self.const(n), model_completion=True))
                for n in self.names}

    def _distance(self, n: str, spreads: dict):
        """Z3 terms of whether fact ``n`` changed (0 or 1) and how far (in units of its
        spread for a real or int input; a changed bool, enum or neural class counts 1)."""
        if self.facts[n] is MISSING:   # a value filled in counts 1
            changed = z3.If(self.equality(n), z3.RealVal(0), z3.RealVal(1))
            return changed, changed
        x, v = self.const(n), self.value(n, self.facts[n])
        t = self.kb.variables[n].type
        changed = z3.If(x == v, z3.RealVal(0), z3.RealVal(1))
        if not _measured(self.kb, n):
            return changed, changed
        xr = z3.ToReal(x) if isinstance(t, A.IntType) else x
        vr = z3.ToReal(v) if isinstance(t, A.IntType) else v
        w = z3.RealVal(Fraction(1.0 / max(spreads.get(n, 1.0), 1e-12))
                       .limit_denominator(10**12))
        return changed, w * z3.If(xr >= vr, xr - vr, vr - xr)

    def _gap(self, n: str, code, spreads: dict) -> float:
        """How far a single change of ``n`` to ``code`` goes (as :meth:`_distance`)."""
        if not _measured(self.kb, n) or MISSING in (code, self.facts[n]):
            return 1.0
        return abs(float(code) - float(self.facts[n])) / max(spreads.get(n, 1.0), 1e-12)

    def why_none(self) -> str:
        held = [n for n in self.names if self.held(n)]
        if not held:
            return ""
        return (f" with the residual's logits held at the row's values ({', '.join(held)}); "
                "at the input level the residual follows the inputs")

    # helpers --------------------------------------------------------------------------
    _wishes = NO_WISHES
    _wish_solver = None

    def _want(self):
        """The decision a counterfactual must reach: ``wishes.target``, or any other than
        the row's."""
        target = self._wishes.target
        if target is None:
            return z3.Not(self.goal)
        return self.enc.var(self.output) == \
            A.domain(self.kb.variables[self.output].type).z3_value(target)

    def _wish_terms(self) -> list:
        """The wishes' constraints on the facts: ranges, allowed values, and each earlier
        change set keeping one of its facts unchanged."""
        terms = []
        w = self._wishes
        for n, (lo, hi) in w.ranges.items():
            x = self.const(n)
            if isinstance(self.kb.variables[n].type, A.IntType):
                x = z3.ToReal(x)
            inside = []
            if lo is not None and np.isfinite(lo):
                inside.append(x >= z3.RealVal(Fraction(float(lo))))
            if hi is not None and np.isfinite(hi):
                inside.append(x <= z3.RealVal(Fraction(float(hi))))
            if inside:
                terms.append(z3.Or(self.equality(n), z3.And(inside)))
        for n, codes in w.values.items():
            terms.append(z3.Or(self.equality(n),
                               *[self.const(n) == self.value(n, c) for c in codes]))
        for changed in w.exclude:
            terms.append(z3.Or([self.equality(n) for n in changed if n in self.facts]))
        for n in self.names:   # a counterfactual never erases a value
            if n in self.kb.variables and self.kb.variables[n].optional:
                if self.facts[n] is not MISSING:
                    terms.append(z3.Not(self.enc.missing(n)))
                elif not w.fill_missing:
                    terms.append(self.enc.missing(n))
        return terms

    def _search_solver(self) -> z3.Solver:
        """The solver counterfactuals search with: :meth:`_differs_solver` where nothing
        is wished, otherwise one with the wishes added (built once per search)."""
        if self._wishes == NO_WISHES and not any(
                n in self.kb.variables and self.kb.variables[n].optional for n in self.names):
            return self._differs_solver()
        if self._wish_solver is None:
            s = self.solver()
            s.add(self._want(), *self._wish_terms())
            s.add(*[z3.Implies(self._lits[n], self.equality(n)) for n in self.names])
            self._wish_solver = s
        return self._wish_solver

    def _differs_solver(self) -> z3.Solver:
        if self._solver is None:
            s = self.solver()
            s.add(z3.Not(self.goal))
            s.add(*[z3.Implies(self._lits[n], self.equality(n)) for n in self.names])
            self._solver = s
        return self._solver

    def _moved(self, name, value):
        """The code of a changeable fact's value in a solver's answer. A real that differs
        from the row's value stays on its side when rounded to a float: a change smaller
        than half a float's step (a sum exactly on a decimal threshold) would otherwise
        round back to the row's value and vanish."""
        code = self._code(name, value)
        t = self.kb.variables[name].type
        if code is MISSING or self.facts[name] is MISSING:
            return code
        if isinstance(t, A.RealType) and z3.is_rational_value(value):
            before = float(self.facts[name])
            exact, at = value.as_fraction(), Fraction(before)
            if exact != at and code == before:
                code = float(np.nextafter(before, np.inf if exact > at else -np.inf))
        return code

    def _code(self, name, value):
        if self.held(name):
            return real_value(value)
        if self._missing_in(name):
            return MISSING
        d = A.domain(self.kb.variables[name].type)
        return d.code(d.z3_decode(value))

    def const(self, name):
        if name.startswith("residual:"):
            return self.enc.residual_const(name)
        return self.enc.const(name)

    def value(self, name, code):
        if name.startswith("residual:"):
            return z3.RealVal(Fraction(float(code)))
        return A.domain(self.kb.variables[name].type).z3_code(code)

    def equality(self, name):
        return self.is_(name, self.facts[name])

    def is_(self, name, code):
        """Fact ``name`` has ``code``: an optional input missing (``MISSING``) or present
        with that value."""
        var = None if name.startswith("residual:") else self.kb.variables[name]
        if var is None or not var.optional:
            return self.const(name) == self.value(name, code)
        if code is MISSING:
            return self.enc.missing(name)
        return z3.And(z3.Not(self.enc.missing(name)),
                      self.const(name) == self.value(name, code))

    #: the model a fact's value is being read from (see _code)
    _model = None

    def _missing_in(self, name) -> bool:
        """Whether optional input ``name`` is missing in the model being read."""
        if self._model is None or not self.kb.variables[name].optional:
            return False
        return z3.is_true(self._model.eval(self.enc.missing(name), model_completion=True))

    def solver(self) -> z3.Solver:
        s = z3.Solver()
        s.set("timeout", _ms(self.timeout))
        s.add(*self.background)
        return s

    def check(self, s, *assumptions, until: float | None = None):
        """``s.check(*assumptions)``, within ``self.timeout`` or by ``until`` (a
        :func:`time.monotonic` time); SolverError when Z3 cannot say."""
        if until is not None:
            s.set("timeout", _ms(until - time.monotonic()))
        try:
            result = s.check(*assumptions)
        except z3.Z3Exception as err:  # pragma: no cover
            raise SolverError(f"Z3 failed: {err}") from None
        finally:
            if until is not None:
                s.set("timeout", _ms(self.timeout))
        if result == z3.unknown:
            raise SolverError(f"Z3 could not decide within {self.timeout} s "
                              f"({s.reason_unknown()}); raise the timeout")
        return result


#: an int fact of at most this many values is changed alone value by value, not optimised
ENUMERATED = 64


def _ms(seconds: float) -> int:
    """A Z3 timeout (whole milliseconds, at least 1) of ``seconds``."""
    return z3_milliseconds(seconds)


def _two_cheapest(names, wishes) -> float:
    """The least weighted count of a change of two or more facts among ``names``."""
    w = sorted(wishes.weight(n) for n in names)
    return w[0] + w[1] if len(w) > 1 else float("inf")


def _measured(kb, n: str) -> bool:
    """Whether a change of fact ``n`` is measured by its size (a real or int input, a
    real neural value) rather than counted as 1."""
    t = kb.variables[n].type
    return isinstance(t, (A.RealType, A.IntType)) and not (
        kb.variables[n].role == "neural" and isinstance(t, A.IntType))


class Z3Backend(Backend):
    """Z3: every level, every model Z3 can encode (exact rationals)."""

    name = "z3"

    @z3_serialised
    def problem(self, model, batch, row, output, *, level, max_relus, timeout) -> Z3Problem:
        return Z3Problem(model, batch, row, output, level=level, max_relus=max_relus,
                         timeout=timeout)

    @z3_serialised
    def refute(self, model, formula, *, level, max_relus, timeout):
        kb = model.to_kb()
        enc, background = _background(model, kb, model.bias_table(), level, max_relus,
                                      "encoded" if level == "input" else "free")
        s = z3.Solver()
        s.set("timeout", _ms(timeout))
        s.add(*background)
        s.add(z3.Not(enc.expr(not_false(kb, formula))))   # known false somewhere
        result = s.check()
        if result == z3.unsat:
            return None, ()
        if result != z3.sat:
            raise SolverError(f"Z3 could not decide within {timeout} s "
                              f"({s.reason_unknown()}); raise the timeout or max_relus")
        inputs = [n for n in kb.inputs if not isinstance(kb.variables[n].type, A.TensorType)]
        if level == "input":
            return witness_row(enc, s.model(), inputs), ()
        # neural values and residual logits are part of the witness
        row = witness_row(enc, s.model(), inputs + list(kb.neural))
        for name, terms in enc.residual.items():
            logits = [real_value(s.model().eval(r, model_completion=True)) for r in terms]
            t = kb.variables[name].type
            if isinstance(t, A.BoolType):
                row[f"residual:{name}"] = logits[0]
            else:
                for v, logit in zip(A.domain_values(t), logits):
                    row[f"residual:{name}={v}"] = logit
        return row, ()
