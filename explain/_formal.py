"""Formal reasons with Z3: abductive explanations, counterfactuals, verification.

They speak about the model's *crisp* decision (what ``model.crisp()`` returns): the rules
with the learned weights and thresholds, the networks' most probable values, and the
residual network's logit for the row held at its value. The facts of a row are its table
inputs and its neural concepts' values (tensor inputs such as images are represented by
the concepts a network read from them).
"""

from __future__ import annotations

import html
import time
import weakref
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import torch
import z3
from greybox.rules import Entailment, Z3Encoding, entails
from greybox.rules import _ast as A
from greybox.rules._decisions import closure, plan
from greybox.rules._z3 import real_value

from greybox.errors import ModelError, SolverError

__all__ = ["Counterfactual", "Reason", "counterfactual", "reason", "verify"]


# ------------------------------------------------------------------------ the row as facts


def _show(kb, name, code):
    if name.startswith("residual:"):
        return float(code)
    t = kb.variables[name].type
    if isinstance(t, A.EnumType):
        return t.values[int(code)]
    if isinstance(t, A.BoolType):
        return bool(code)
    if isinstance(t, A.IntType):
        return int(code)
    return float(code)


def _facts(model, batch, row: int) -> dict:
    """The row's facts: name -> code (enum index, int value, bool, float)."""
    kb = model.kb
    facts = {}
    for name in kb.inputs:
        if name in batch.columns:
            v = batch.columns[name][row]
            facts[name] = v.item() if hasattr(v, "item") else v
    sub = batch.take(torch.as_tensor([row]))
    with torch.no_grad():
        logits = model.run_networks(sub)
    for name, out in logits.items():
        t = kb.variables[name].type
        if isinstance(t, A.BoolType):
            facts[name] = bool(out[0] > 0)
        elif isinstance(t, A.IntType):
            facts[name] = int(out[0].argmax()) + t.lo
        elif isinstance(t, A.EnumType):
            facts[name] = int(out[0].argmax())
        else:
            facts[name] = float(out[0])
    return facts


def _num(value) -> float:
    return float(value) if not isinstance(value, str) else 0.0


def _z3_value(kb, name, code):
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        return z3.BoolVal(bool(code))
    if isinstance(t, (A.IntType, A.EnumType)):
        return z3.IntVal(int(code))
    return z3.RealVal(Fraction(float(code)))


#: per model: the Z3 background of its current knowledge base and biases
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _background(model, kb, bias: dict, level: str, max_relus: int, residual: str = "fixed"):
    """Z3 background of a model's crisp decision: types, hard constraints over non-decided
    variables, the decision; at the input level also each neural concept tied to its
    network's exact encoding. A residual network is ``"fixed"`` (its logit is in
    ``bias``), ``"free"`` (any logit) or ``"encoded"`` (exactly, from the inputs). Cached
    per model, knowledge base, biases, level and residual mode."""
    if model.residual is None:
        residual = "fixed"
    key = (repr(sorted(bias.items())), level, max_relus, residual)
    cache = _CACHE.setdefault(model, {})
    if cache.get("kb") is kb and cache.get("key") == key:   # the same object, not an id
        return cache["enc"], cache["background"]
    enc = _ResidualEncoding(kb, bias=bias)
    enc.residual = {}
    if residual != "fixed":
        # the residual network's logit: exactly encoded from the inputs, or a free real
        # (whatever the network says)
        terms = _residual_terms(model, kb, enc, max_relus) if residual == "encoded" else None
        for name in model.kb.decided:
            if (name.replace(".", "\u2024")) in model.residual:
                enc.residual[name] = terms[name] if terms else _residual_vars(kb, name)
    background = list(enc.domain(("input", "neural")))
    for c in plan(kb).fixed_constraints:
        background.append(enc.expr(c.formula))
    background += enc.decision()
    if level == "input":
        background += _network_links(model, kb, enc, max_relus)
    cache.clear()
    cache.update(kb=kb, key=key, enc=enc, background=background)
    return enc, background


def _residual_vars(kb, name: str) -> list:
    """Free Z3 reals for a residual network's logits: one for a bool (added to the score
    of True), one per value otherwise."""
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        return [z3.Real(f"residual:{name}")]
    return [z3.Real(f"residual:{name}={v}") for v in A.domain_values(t)]


def residual_facts(model, batch, row: int) -> dict:
    """The residual networks' logits on a row, as named facts (``residual:NAME`` for a
    bool, ``residual:NAME=VALUE`` per value otherwise)."""
    if model.residual is None:
        return {}
    sub = batch.take(torch.as_tensor([row]))
    with torch.no_grad():
        res = model.residual_scores(sub)
    out = {}
    for name, r in res.items():
        r = r.detach().double().cpu().reshape(-1)
        t = model.kb.variables[name].type
        if isinstance(t, A.BoolType):
            out[f"residual:{name}"] = float(r[0])
        else:
            for k, v in enumerate(A.domain_values(t)):
                out[f"residual:{name}={v}"] = float(r[k])
    return out


class _ResidualEncoding(Z3Encoding):
    """The rules' Z3 encoding with a residual network's logits added to the scores."""

    residual: dict = {}

    def score(self, name, value):
        total = super().score(name, value)
        r = self.residual.get(name)
        if r is None:
            return total
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType):
            return total + r[0] if value is True else total
        return total + r[list(A.domain_values(t)).index(value)]

    def residual_const(self, fact: str):
        """The Z3 term of a residual fact name (``residual:NAME[=VALUE]``)."""
        name, _, value = fact[len("residual:"):].partition("=")
        t = self.kb.variables[name].type
        k = 0 if isinstance(t, A.BoolType) else \
            [str(v) for v in A.domain_values(t)].index(value)
        return self.residual[name][k]


def _feature_terms(model, kb, enc, name: str) -> list:
    """Table input ``name`` as the model feeds it to networks, in Z3: standardised by the
    model's statistics, an enum one-hot."""
    t = kb.variables[name].type
    x = enc.const(name)
    if isinstance(t, A.EnumType):
        return [z3.If(x == k, z3.RealVal(1), z3.RealVal(0)) for k in range(t.size)]
    i = model.feature_names.index(name)
    center = z3.RealVal(Fraction(float(model.feature_center[i])))
    scale = z3.RealVal(Fraction(float(model.feature_scale[i])))
    value = z3.If(x, z3.RealVal(1), z3.RealVal(0)) if isinstance(t, A.BoolType) else \
        (z3.ToReal(x) if isinstance(t, A.IntType) else x)
    return [(value - center) / scale]


def _standardised_features(model, kb, enc) -> list:
    """The model's standardised table inputs (``model.feature_names``) as Z3 terms."""
    feats = []
    for a in kb.inputs:
        if not isinstance(kb.variables[a].type, A.TensorType):
            feats += _feature_terms(model, kb, enc, a)
    return feats


def _residual_terms(model, kb, enc, max_relus: int) -> dict:
    from ._relu import encode_network

    feats = _standardised_features(model, kb, enc)
    out = {}
    for key, net in model.residual.items():
        name = key.replace("\u2024", ".")
        logits = encode_network(net, feats, max_relus=max_relus)
        t = kb.variables[name].type
        want = 1 if isinstance(t, A.BoolType) else len(A.domain_values(t))
        if len(logits) != want:
            raise ModelError(f"the residual of {name!r} has {len(logits)} outputs; "
                             f"{want} expected")
        out[name] = logits
    return out


def _network_links(model, kb, enc, max_relus: int) -> list:
    """Each neural concept equal to what its (encoded) network computes from the table
    inputs, standardised as the model feeds them."""
    from ._relu import encode_network

    links = []
    for name in kb.neural:
        var = kb.variables[name]
        feats = []
        for a in var.args:
            if isinstance(kb.variables[a].type, A.TensorType):
                raise ModelError(f"neural {name!r} reads the tensor input {a!r}: input-level "
                                 "reasoning needs networks over table inputs (use "
                                 "level='concept')")
            feats += _feature_terms(model, kb, enc, a)
        net = model.networks[var.network.replace(".", "\u2024")]
        out = encode_network(net, feats, max_relus=max_relus)
        c = enc.const(name)
        t = var.type
        if isinstance(t, A.BoolType):
            links.append(c == (out[0] > 0))
        elif A.is_finite_type(t):
            lo = t.lo if isinstance(t, A.IntType) else 0
            for k in range(len(out)):   # argmax, ties to the first value
                wins = [out[k] > out[j] for j in range(k)] + \
                       [out[k] >= out[j] for j in range(k + 1, len(out))]
                links.append(z3.Implies(c == lo + k, z3.And(wins) if wins else z3.BoolVal(True)))
        else:
            links.append(c == out[0])
    return links


class _Problem:
    """The crisp decision of one row in Z3: background (types, hard constraints, the
    decision) and the facts as named equalities."""

    def __init__(self, model, batch, row: int, output: str, timeout: float,
                 level: str = "concept", max_relus: int = 64):
        if level not in ("concept", "input"):
            raise ModelError(f"level must be 'concept' or 'input', got {level!r}")
        kb = model.to_kb()
        self.kb = kb
        self.output = output
        sub = batch.take(torch.as_tensor([row]))
        # a residual network is never held silently: at the input level it is encoded
        # from the inputs, at the concept level its logits are named facts of the row
        # (free when a reason drops them)
        bias = {}
        for name, b in model.bias_table().items():
            bias[name] = {k: float(v) for k, v in b.items()} if isinstance(b, dict) \
                else float(b)
        self.bias = bias
        mode = "fixed" if model.residual is None else \
            "encoded" if level == "input" else "free"
        self.enc, self.background = _background(model, kb, bias, level, max_relus, mode)
        self.facts = _facts(model, batch, row)
        if level == "input":  # the networks' values follow from the inputs
            self.facts = {n: v for n, v in self.facts.items()
                          if kb.variables[n].role != "neural"}
        else:
            self.facts.update(residual_facts(model, batch, row))
        from greybox.semantics.crisp import crisp_evaluation

        ev, _ = crisp_evaluation(model, sub)
        if bool(ev.infeasible.iloc[0]):
            raise ModelError(f"row {batch.index[row]!r}: no decision satisfies the hard "
                             "constraints, so there is no decision to explain")
        value = ev.decisions[output].iloc[0] if output in ev.decisions else \
            ev.values[output].iloc[0]
        self.decision = value.item() if hasattr(value, "item") else value
        t = kb.variables[output].type
        target = self.enc.var(output)
        if isinstance(t, A.BoolType):
            self.goal = target == z3.BoolVal(bool(self.decision))
        elif A.is_finite_type(t):
            self.goal = target == self.enc.value_of(output, self.decision)
        else:
            raise ModelError(f"{output!r} is real-valued; reasons explain finite decisions")
        self.timeout = timeout
        self.names = [n for n in self.facts if n.startswith("residual:")
                      or not isinstance(kb.variables[n].type, A.TensorType)]

    def const(self, name):
        if name.startswith("residual:"):
            return self.enc.residual_const(name)
        return self.enc.const(name)

    def value(self, name, code):
        if name.startswith("residual:"):
            return z3.RealVal(Fraction(float(code)))
        return _z3_value(self.kb, name, code)

    def equality(self, name):
        return self.const(name) == self.value(name, self.facts[name])

    def solver(self) -> z3.Solver:
        s = z3.Solver()
        s.set("timeout", max(1, int(self.timeout * 1000)))
        s.add(*self.background)
        return s

    def check(self, s, *assumptions):
        try:
            result = s.check(*assumptions)
        except z3.Z3Exception as err:  # pragma: no cover
            raise SolverError(f"Z3 failed: {err}") from None
        if result == z3.unknown:
            raise SolverError(f"Z3 could not decide within {self.timeout} s "
                              f"({s.reason_unknown()}); raise the timeout")
        return result




# ------------------------------------------------------------------------- MILP backend


def _level(level: str, model, max_relus: int) -> str:
    """``"auto"``: the input level where every network of the model (neural concepts and
    residual) is a Linear/ReLU network over table inputs within ``max_relus`` -- then
    reasons, counterfactuals and verification speak about the whole model, inputs to
    decision -- and the concept level otherwise."""
    if level not in ("auto", "concept", "input"):
        raise ModelError(f"level must be 'auto', 'concept' or 'input', got {level!r}")
    if level != "auto":
        return level
    from ._relu import count_relus

    kb = model.kb
    nets = []
    for name in kb.neural:
        var = kb.variables[name]
        if any(isinstance(kb.variables[a].type, A.TensorType) for a in var.args):
            return "concept"
        nets.append(model.networks[var.network.replace(".", "\u2024")])
    nets += list(model.residual.values()) if model.residual is not None else []
    if not nets:
        return "concept"       # rules alone: both levels are the same
    try:
        relus = sum(count_relus(n) for n in nets)
    except ModelError:
        return "concept"
    return "input" if relus <= max_relus else "concept"


def _milp_applies(model) -> bool:
    """Whether the MILP encoding covers the model: table inputs (bounded, or bounded by
    the data the model was calibrated on), one decision per component."""
    kb = model.kb
    for name in kb.inputs:
        t = kb.variables[name].type
        if isinstance(t, A.TensorType):
            return False
        if isinstance(t, A.RealType):
            lo, hi, _ = model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return False
    for comp in plan(kb).components:
        if len(comp.variables) != 1:
            return False
        t = kb.variables[comp.variables[0]].type
        if not isinstance(t, A.BoolType) and len(A.domain_values(t)) > 256:
            return False
    return True


def _choose(backend: str, level: str, model, *, optimise: bool = False) -> str:
    """``auto``: HiGHS at the input level wherever the MILP encoding applies (it encodes
    networks, residual and int/enum decisions; Z3's optimiser is occasionally very slow
    on L1 objectives through ReLUs), Z3 otherwise."""
    if backend not in ("auto", "z3", "milp"):
        raise ModelError(f"backend must be 'auto', 'z3' or 'milp', got {backend!r}")
    if backend != "auto":
        return backend
    if level != "input":
        return "z3"
    if not _milp_applies(model):
        return "z3"
    from ._relu import count_relus

    nets = [model.networks[model.kb.variables[n].network.replace(".", "\u2024")]
            for n in model.kb.neural]
    nets += list(model.residual.values()) if model.residual is not None else []
    relus = 0
    for net in nets:
        try:
            relus += count_relus(net)
        except ModelError:
            return "z3"
    return "milp" if optimise or relus > 16 or model.residual is not None else "z3"


def _milp_row(model, batch, row: int, output: str, max_relus: int):
    """The MILP program of the model's decision and the row's input facts and decision."""
    from greybox.semantics.crisp import crisp_evaluation

    from ._milp import compile_decision

    kb = model.to_kb()
    if not A.is_finite_type(kb.variables[output].type):
        raise ModelError(f"{output!r} is real-valued; reasons explain finite decisions")
    sub = batch.take(torch.as_tensor([row]))
    # the residual is encoded from the inputs: the biases alone here
    comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus)
    facts = {n: v for n, v in _facts(model, batch, row).items()
             if kb.variables[n].role == "input"}
    ev, _ = crisp_evaluation(model, sub)
    if bool(ev.infeasible.iloc[0]):
        raise ModelError(f"row {batch.index[row]!r}: no decision satisfies the hard "
                         "constraints, so there is no decision to explain")
    value = ev.decisions[output].iloc[0] if output in ev.decisions else \
        ev.values[output].iloc[0]
    value = value.item() if hasattr(value, "item") else value
    return kb, comp, facts, value


# ------------------------------------------------------------------------------- reason


@dataclass(frozen=True)
class Reason:
    """An abductive explanation: facts that guarantee the decision.

    ``facts`` (name -> value) is subset-minimal: with these values fixed, every
    completion of the other facts within their types and the hard constraints gets the
    same decision, and dropping any one of them admits a completion that does not.
    ``verified``: an independent Z3 query confirmed the guarantee.
    """

    row: object
    output: str
    decision: object
    facts: dict
    verified: bool
    seconds: float
    #: ``"input"`` (the reason holds through the networks, for every value of the other
    #: inputs) or ``"concept"`` (neural concepts and residual logits are facts)
    level: str = "concept"
    #: what the guarantee assumes beyond the declared types, e.g. an input declared
    #: without bounds held within the range seen in training
    assumptions: tuple = ()

    def __str__(self) -> str:
        facts = " and ".join(f"{k} = {v!r}" for k, v in self.facts.items()) or "nothing"
        extra = "".join(f"; {a}" for a in self.assumptions)
        return (f"{self.output} = {self.decision!r} for row {self.row} because {facts} "
                f"(minimal; {'verified' if self.verified else 'NOT verified'}{extra})")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"fact": list(self.facts), "value": list(self.facts.values())})


def reason(model, batch, row: int = 0, output: str | None = None, *,
           level: str = "auto", max_relus: int = 64, backend: str = "auto",
           timeout: float = 10.0) -> Reason:
    """A subset-minimal set of the row's facts that guarantees its crisp decision.

    Deletion-based: starting from all facts, each is dropped when Z3 proves the decision
    still follows from the rest (unsat cores skip many checks at once). The result is
    re-proved from scratch.

    The decision is the one :meth:`GreyBox.predict` returns, and the reason is a statement
    about that function: with the named facts fixed, ``predict`` decides the same for
    every value of the other inputs (within their types, the hard constraints, and --
    for inputs declared without bounds -- the training range, listed in
    ``assumptions``).

    ``level="auto"`` (default): the input level where every network (neural concepts and
    residual) is a Linear/ReLU network over table inputs within ``max_relus``, the
    concept level otherwise. ``level="concept"``: facts are table inputs, neural concept
    values and residual logits (``residual:NAME``), each free when dropped.
    ``level="input"``: networks and residual are encoded exactly, so the facts are inputs
    only and the reason holds *through* the networks (``timeout`` bounds each solver
    call). ``backend``: ``"z3"``, ``"milp"`` (HiGHS through ``scipy.optimize.milp``; input
    level) or ``"auto"`` (HiGHS at the input level where its encoding applies).

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input age: int 0..120
    ... input income: real[0, 100000]
    ... output approve: bool
    ... rule earns: income > 30000 -> approve
    ... constraint minors: age < 18 -> not approve
    ... ''', semantics="product")
    >>> r = gb.explain.reason(model, model.batch({"age": [15], "income": [50000.0]}))
    >>> r.decision, r.facts
    (False, {'age': 15})
    """
    t0 = time.perf_counter()
    output = output or model.kb.outputs[0]
    batch = model.batch(batch)
    level = _level(level, model, max_relus)
    if _choose(backend, level, model) == "milp":
        return _reason_milp(model, batch, row, output, max_relus, timeout, t0)
    p = _Problem(model, batch, row, output, timeout, level, max_relus)
    s = p.solver()
    s.add(z3.Not(p.goal))
    lits = {n: z3.Bool(f"fact__{n}") for n in p.names}
    s.add(*[z3.Implies(lits[n], p.equality(n)) for n in p.names])
    keep = list(p.names)
    if p.check(s, *[lits[n] for n in keep]) != z3.unsat:
        raise SolverError(f"row {batch.index[row]!r}: the facts do not determine the "
                          "decision (a network value or the residual may sit exactly on a "
                          "threshold)")
    core = {str(c) for c in s.unsat_core()}
    keep = [n for n in keep if f"fact__{n}" in core]
    # try dropping facts the output depends on least directly first
    direct = closure(p.kb, [v for r in p.kb.rules_for(output) for v in A.variables(r.body)])
    order = sorted(keep, key=lambda n: (n in direct, keep.index(n)))
    for n in order:
        if n not in keep:
            continue
        trial = [m for m in keep if m != n]
        if p.check(s, *[lits[m] for m in trial]) == z3.unsat:
            core = {str(c) for c in s.unsat_core()}
            keep = [m for m in trial if f"fact__{m}" in core]
    # independent re-proof
    s2 = p.solver()
    s2.add(*[p.equality(n) for n in keep])
    s2.add(z3.Not(p.goal))
    verified = p.check(s2) == z3.unsat
    facts = {n: _show(p.kb, n, p.facts[n]) for n in p.names if n in keep}
    return Reason(batch.index[row], output, p.decision, facts, verified,
                  time.perf_counter() - t0, level)


# ------------------------------------------------------------------------ counterfactual


@dataclass(frozen=True)
class Counterfactual:
    """A minimal change of a row's facts that changes its decision.

    ``changes`` lists each changed fact (``fact``, ``before``, ``after``); ``row_after``
    is the changed row's facts; ``new_decision`` what the rules decide there;
    ``verified``: the model, run on the changed row (networks overridden where a neural
    concept changed), decides ``new_decision``.
    """

    row: object
    output: str
    decision: object
    new_decision: object
    changes: pd.DataFrame
    row_after: dict
    distance: float
    verified: bool
    seconds: float
    #: ``"input"`` (only inputs change; networks and residual follow) or ``"concept"``
    level: str = "concept"
    #: what the search assumed beyond the declared types (training ranges)
    assumptions: tuple = ()

    def __str__(self) -> str:
        moves = ", ".join(f"{c.fact}: {c.before!r} -> {c.after!r}"
                          for c in self.changes.itertuples())
        return (f"{self.output} would be {self.new_decision!r} instead of "
                f"{self.decision!r} (row {self.row}) if {moves} "
                f"({'verified' if self.verified else 'NOT verified'} by predict)")

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>" + self.changes._repr_html_()

    def to_frame(self) -> pd.DataFrame:
        return self.changes


def counterfactual(model, batch, row: int = 0, output: str | None = None, *,
                   minimize: str = "count", immutable=(), level: str = "auto",
                   max_relus: int = 64, backend: str = "auto",
                   timeout: float = 10.0) -> Counterfactual:
    """The closest variant of the row whose crisp decision differs.

    ``minimize="count"`` changes as few facts as possible; ``"l1"`` minimises the sum of
    absolute changes, each in units of the fact's spread (a changed bool, enum or neural
    class counts 1). Facts named in ``immutable`` keep their values; types and hard
    constraints are respected. The result is checked by running the model on it.
    ``level="input"`` goes through Linear/ReLU networks over table inputs (see
    :func:`reason`): only inputs change, and the networks' values follow.

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input age: int 0..120
    ... input income: real[0, 100000]
    ... output approve: bool
    ... rule earns: income > 30000 -> approve
    ... constraint minors: age < 18 -> not approve
    ... ''', semantics="product")
    >>> cf = gb.explain.counterfactual(model, model.batch({"age": [40], "income": [20000.0]}))
    >>> cf.new_decision, list(cf.changes.fact), cf.verified
    (True, ['income'], True)
    """
    t0 = time.perf_counter()
    if minimize not in ("count", "l1"):
        raise ModelError(f"minimize must be 'count' or 'l1', got {minimize!r}")
    output = output or model.kb.outputs[0]
    batch = model.batch(batch)
    level = _level(level, model, max_relus)
    if _choose(backend, level, model, optimise=True) == "milp":
        return _counterfactual_milp(model, batch, row, output, minimize, immutable,
                                    max_relus, timeout, t0)
    p = _Problem(model, batch, row, output, timeout, level, max_relus)
    unknown = [n for n in immutable if n not in p.facts]
    if unknown:
        raise ModelError(f"immutable names {unknown[0]!r}, which is not a fact of the row "
                         f"(facts: {', '.join(p.names)})")
    opt = z3.Optimize()
    opt.set("timeout", max(1, int(timeout * 1000)))
    opt.add(*p.background)
    opt.add(z3.Not(p.goal))
    counts, dists = [], []
    for n in p.names:
        if n in immutable or n.startswith("residual:"):   # a residual logit is held
            opt.add(p.equality(n))
            continue
        x, v = p.enc.const(n), _z3_value(p.kb, n, p.facts[n])
        t = p.kb.variables[n].type
        changed = z3.If(x == v, z3.RealVal(0), z3.RealVal(1))
        counts.append(changed)
        if not isinstance(t, (A.RealType, A.IntType)) or \
                p.kb.variables[n].role == "neural" and isinstance(t, A.IntType):
            dists.append(changed)
        else:
            scale = float(model._feature_scale(n)) if n in model.feature_names else 1.0
            xr = z3.ToReal(x) if isinstance(t, A.IntType) else x
            vr = z3.ToReal(v) if isinstance(t, A.IntType) else v
            w = z3.RealVal(Fraction(1.0 / max(scale, 1e-12)).limit_denominator(10**12))
            dists.append(w * z3.If(xr >= vr, xr - vr, vr - xr))
    zero = z3.RealVal(0)
    count_total = z3.Sum(counts) if counts else zero
    dist_total = z3.Sum(dists) if dists else zero
    # lexicographic: the chosen measure first, the other one breaks ties (fewest changes,
    # and among them the smallest; or the smallest change, and among them the fewest)
    first, second = (count_total, dist_total) if minimize == "count" else \
        (dist_total, count_total)
    opt.minimize(first)
    opt.minimize(second)
    try:
        result = opt.check()
    except z3.Z3Exception as err:  # pragma: no cover
        raise SolverError(f"Z3 failed: {err}") from None
    if result == z3.unknown:
        raise SolverError(f"Z3 could not find a counterfactual within {timeout} s; raise "
                          "the timeout")
    if result == z3.unsat:
        held = [n for n in p.names if n.startswith("residual:")]
        why = (f" with the residual's logits held at the row's values ({', '.join(held)}); "
               "at the input level the residual follows the inputs") if held else ""
        raise ModelError(f"row {batch.index[row]!r}: no change of the mutable facts within "
                         f"their types and the hard constraints changes the decision{why}")
    m = opt.model()
    after, changes = {}, []
    for n in p.names:
        if n.startswith("residual:"):
            after[n] = p.facts[n]
            continue
        value = m.eval(p.enc.const(n), model_completion=True)
        t = p.kb.variables[n].type
        if isinstance(t, A.BoolType):
            code = bool(z3.is_true(value))
        elif isinstance(t, (A.IntType, A.EnumType)):
            code = value.as_long()
        else:
            code = real_value(value)
        after[n] = code
        if code != p.facts[n]:
            changes.append({"fact": n, "before": _show(p.kb, n, p.facts[n]),
                            "after": _show(p.kb, n, code)})
    # Optimize may stop at a point that also nudges facts it need not change (strict
    # thresholds have no attained optimum): put back every change that is not needed
    flips = p.solver()
    flips.add(z3.Not(p.goal))

    def still_flipped(trial: dict) -> bool:
        flips.push()
        flips.add(*[p.const(k) == p.value(k, v) for k, v in trial.items()])
        try:
            return p.check(flips) == z3.sat
        finally:
            flips.pop()

    for change in sorted(changes, key=lambda c: abs(_num(c["after"]) - _num(c["before"]))):
        n = change["fact"]
        trial = dict(after)
        trial[n] = p.facts[n]
        if still_flipped(trial):
            after = trial
    changes = [c for c in changes if after[c["fact"]] != p.facts[c["fact"]]]
    # strict thresholds have no closest point, and Optimize may stop short of their
    # infimum: pull each real change back towards the original value (bisection, each
    # step proved by Z3) while the decision stays changed
    _pull_back(p.kb, changes, p.facts, after, still_flipped, steps=24)
    # a person's values: rounded away from the original, on the decided side of each
    # threshold, and checked by the model's decision function (what predict returns)
    def applied(trial):
        got = _decision_on(model, batch, row, output, trial)
        return got is not None and got != p.decision

    _round_changes(model, p.kb, batch, row, output, p.facts, after, changes, applied)
    new_decision = _decision_on(model, batch, row, output, after)
    verified = new_decision is not None and new_decision != p.decision
    if not verified:   # what the solver's model of the decision says instead
        m_final = p.solver()
        m_final.add(*[p.const(k) == p.value(k, v) for k, v in after.items()])
        p.check(m_final)
        new_value = m_final.model().eval(p.enc.var(output), model_completion=True)
        new_decision = _show(p.kb, output, z3.is_true(new_value) if isinstance(
            p.kb.variables[output].type, A.BoolType) else new_value.as_long())
    distance = _distance(model, p.kb, changes, p.facts, after, minimize)
    return Counterfactual(batch.index[row], output, p.decision, new_decision,
                          pd.DataFrame(changes, columns=["fact", "before", "after"]),
                          {n: _show(p.kb, n, c) for n, c in after.items()}, distance,
                          verified, time.perf_counter() - t0, level)


def _pull_back(kb, changes: list, facts: dict, after: dict, still_changed, *,
               steps: int, precision=None) -> None:
    """Move each changed real fact back towards its original value, by bisection, as far
    as ``still_changed(values)`` allows (strict thresholds have no closest point, and
    solvers stop short of the infimum); updates ``after`` and ``changes`` in place.
    ``precision(name)``: a step below which bisection stops (the value is rounded to it
    afterwards)."""
    for change in changes:
        n = change["fact"]
        if n not in kb.variables or not isinstance(kb.variables[n].type, A.RealType):
            continue
        start, end = float(facts[n]), float(after[n])
        lo, hi = 0.0, 1.0     # fraction of the move: hi keeps the change, lo does not
        n_steps = steps
        step = precision(n) if precision is not None else 0.0
        if step > 0 and end != start:
            n_steps = min(steps, max(1, int(np.ceil(np.log2(abs(end - start) / step))) + 2))
        for _ in range(n_steps):
            mid = (lo + hi) / 2
            trial = dict(after)
            trial[n] = start + (end - start) * mid
            if still_changed(trial):
                hi = mid
            else:
                lo = mid
        after[n] = start + (end - start) * hi
        change["after"] = _show(kb, n, after[n])


def _decision_on(model, batch, row, output, after: dict):
    """The model's decision function (what ``predict`` returns) on the row with the facts
    in ``after`` (table inputs changed; neural concepts overridden where they are facts);
    None when no decision satisfies the hard constraints there."""
    from greybox._batch import Batch
    from greybox.semantics.crisp import crisp_evaluation

    kb = model.kb
    sub = batch.take(torch.as_tensor([row]))
    values = dict(sub.values)
    columns = dict(sub.columns)
    for n, code in after.items():
        var = kb.variables.get(n)
        if var is None or var.role != "input":
            continue
        if isinstance(var.type, A.EnumType):
            columns[n] = np.asarray([int(code)])
            values[n] = torch.as_tensor([int(code)], device=model.device)
        else:
            columns[n] = np.asarray([code], dtype=bool if isinstance(var.type, A.BoolType)
                                    else np.float64)
            values[n] = torch.as_tensor([float(code)], device=model.device)
    changed = Batch(values, 1, sub.index, columns)
    with torch.no_grad():
        logits = model.run_networks(changed)
    overrides = {}
    for n, out in logits.items():
        var = kb.variables[n]
        code = after.get(n)
        if code is None:
            continue
        o = out.detach().clone()
        if isinstance(var.type, A.BoolType):
            o[0] = 1e4 if code else -1e4
        elif isinstance(var.type, A.IntType):
            o[0] = -1e4
            o[0, int(code) - var.type.lo] = 0.0
        elif isinstance(var.type, A.EnumType):
            o[0] = -1e4
            o[0, int(code)] = 0.0
        else:
            o[0] = float(code)
        overrides[n] = o
    changed.overrides = overrides
    ev, _ = crisp_evaluation(model, changed)
    if bool(ev.infeasible.iloc[0]):
        return None
    got = ev.decisions[output].iloc[0] if output in ev.decisions else ev.values[output].iloc[0]
    return got.item() if hasattr(got, "item") else got


def _check_on_model(model, batch, row, output, after: dict, expected) -> bool:
    """Whether the model decides ``expected`` on the changed row (see
    :func:`_decision_on`)."""
    got = _decision_on(model, batch, row, output, after)
    return got is not None and got == expected


def _person_step(model, name: str) -> float:
    """The step a counterfactual value of a real input is rounded to: the data's
    precision, coarsened to about a hundredth of the input's spread (``17.71``, not
    ``17.708656311035156``)."""
    step = model.input_step(name)
    spread = float(model._feature_scale(name))
    if spread > 0 and np.isfinite(spread):
        step = max(step, 10.0 ** np.floor(np.log10(spread / 100.0)))
    return step


def _decimals(step: float) -> int:
    return max(0, int(-np.floor(np.log10(step)))) if step > 0 else 12


def _round_changes(model, kb, batch, row, output, facts: dict, after: dict,
                   changes: list, differs) -> bool:
    """Round each changed real table input away from its original value to a person's
    precision (so it lands on the decided side of a threshold with a margin), pushing a
    step further while the model's decision does not differ; keeps the unrounded values
    when no rounding within 3 steps works. Returns whether the decision differs."""
    reals = [c["fact"] for c in changes if c["fact"] in kb.variables
             and isinstance(kb.variables[c["fact"]].type, A.RealType)
             and kb.variables[c["fact"]].role == "input"]
    if not reals:
        return differs(after)
    steps = {n: _person_step(model, n) for n in reals}
    for extra in range(4):
        trial = dict(after)
        for n in reals:
            step, before, value = steps[n], float(facts[n]), float(after[n])
            if step <= 0:
                continue
            up = value > before
            k = np.ceil(value / step - 1e-9) if up else np.floor(value / step + 1e-9)
            k += extra if up else -extra
            v = round(float(k * step), _decimals(step))
            lo, hi, _ = model.input_range(n)
            trial[n] = min(max(v, lo), hi)
        if differs(trial):
            after.update(trial)
            for c in changes:
                if c["fact"] in trial:
                    c["after"] = _show(kb, c["fact"], trial[c["fact"]])
            return True
    return differs(after)


def _distance(model, kb, changes: list, facts: dict, after: dict, minimize: str) -> float:
    total = 0.0
    for c in changes:
        n = c["fact"]
        t = kb.variables[n].type if n in kb.variables else None
        if minimize == "count" or not isinstance(t, (A.RealType, A.IntType)) or \
                kb.variables[n].role == "neural" and isinstance(t, A.IntType):
            total += 1.0
        else:
            spread = float(model._feature_scale(n)) if n in model.feature_names else 1.0
            total += abs(float(after[n]) - float(facts[n])) / max(spread, 1e-12)
    return total


# -------------------------------------------------------------------------------- verify


def verify(model, prop, *, level: str = "auto", max_relus: int = 64,
           backend: str = "auto", timeout: float = 30.0):
    """Prove ``prop`` for the whole model's crisp decisions, or find a counterexample.

    ``level="auto"`` (default): the input level where every network (neural concepts and
    residual) is a Linear/ReLU network over table inputs, the concept level otherwise.
    ``level="concept"``: the rules with the learned weights, thresholds and biases, every
    neural concept and residual logit free -- the property then holds whatever the
    networks say. ``level="input"``: networks over table inputs made of Linear/ReLU
    layers (and the residual) are encoded exactly, so the property is proved for the
    function ``predict`` computes over every input (``max_relus`` bounds the encoding,
    ``timeout`` the solver; inputs declared without bounds range over the training
    range). Returns a
    :class:`greybox.rules.Entailment`: a counterexample row when it fails, re-checked by
    running the model on it.

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input age: int 0..120
    ... input income: real[0, 100000]
    ... output approve: bool
    ... rule earns: income > ~30000 -> approve
    ... constraint minors: age < 18 -> not approve
    ... ''', semantics="product")
    >>> gb.explain.verify(model, "age < 18 -> not approve").holds
    True
    >>> gb.explain.verify(model, "income > 40000 -> approve").holds
    False
    """
    level = _level(level, model, max_relus)
    if level == "concept" and model.residual is None:
        return entails(model.to_kb(), prop, bias=model.bias_table(), timeout=timeout)
    if level == "input" and _choose(backend, level, model) == "milp":
        return _verify_milp(model, prop, max_relus, timeout)
    if level not in ("concept", "input"):
        raise ModelError(f"level must be 'concept' or 'input', got {level!r}")
    from greybox.rules import parse_formula
    from greybox.rules._printer import expr_to_text
    from greybox.rules._z3 import witness_row

    kb = model.to_kb()
    formula = parse_formula(prop, kb)
    text = prop if isinstance(prop, str) else expr_to_text(formula)
    enc, background = _background(model, kb, model.bias_table(), level, max_relus,
                                  "encoded" if level == "input" else "free")
    s = z3.Solver()
    s.set("timeout", max(1, int(timeout * 1000)))
    s.add(*background)
    s.add(z3.Not(enc.expr(formula)))
    result = s.check()
    if result == z3.unsat:
        return Entailment(text, True)
    if result != z3.sat:
        raise SolverError(f"Z3 could not decide {text!r} within {timeout} s "
                          f"({s.reason_unknown()}); raise the timeout or max_relus")
    inputs = [n for n in kb.inputs if not isinstance(kb.variables[n].type, A.TensorType)]
    if level == "concept":   # neural values and residual logits are part of the witness
        from greybox.rules import evaluate

        names = inputs + list(kb.neural)
        row = witness_row(enc, s.model(), names)
        bias = dict(model.bias_table())
        for name, terms in enc.residual.items():
            logits = [real_value(s.model().eval(r, model_completion=True)) for r in terms]
            t = kb.variables[name].type
            if isinstance(t, A.BoolType):
                row[f"residual:{name}"] = logits[0]
                bias[name] = bias.get(name, 0.0) + logits[0]
            else:
                base = bias.get(name) or {}
                bias[name] = {}
                for v, logit in zip(A.domain_values(t), logits):
                    row[f"residual:{name}={v}"] = logit
                    bias[name][v] = base.get(v, 0.0) + logit
        ev = evaluate(kb, row[names], bias=bias)   # re-checked by crisp evaluation
        confirmed = not bool(ev.holds(formula).iloc[0]) and not bool(ev.infeasible.iloc[0])
        return Entailment(text, False, row, confirmed)
    row = witness_row(enc, s.model(), inputs)
    # re-run the composed model (its real networks) on the counterexample
    from greybox.semantics.crisp import crisp_evaluation

    ev, _ = crisp_evaluation(model, model.batch(row))
    shown = row.copy()
    for name in kb.neural:   # what the real networks said on the counterexample
        shown[name] = ev._env[name]
    confirmed = not bool(ev.holds(formula).iloc[0]) and not bool(ev.infeasible.iloc[0])
    for name in kb.decided:
        shown[name] = ev.decisions[name].to_numpy()
    return Entailment(text, False, shown, confirmed)


def _assumptions(comp, fixed=()) -> tuple:
    """What a MILP result assumes: the inputs declared without bounds that it leaves free
    range over the training range."""
    free = [f"{n} in [{lo:.6g}, {hi:.6g}]" for n, (lo, hi) in comp.assumed.items()
            if n not in fixed]
    return (f"for inputs within the training range ({', '.join(free)})",) if free else ()


def _why_no_change(comp, output: str, decision) -> str:
    """Why no input change flips a bool decision, in terms of the model: the residual's
    logit bounds over the inputs' ranges against what the rules can add."""
    if output not in comp.residual or output not in comp.decisions or not isinstance(
            decision, bool):
        return ""
    lo, hi = comp.p.bounds(comp.residual[output][0])
    bias = float(comp.bias.get(output, 0.0))
    swing = sum(abs(float(r.weight)) for r in comp.kb.rules_for(output))
    if (decision and lo + bias - swing > 0) or (not decision and hi + bias + swing <= 0):
        return (f"; the residual network alone decides this: its logit stays within "
                f"[{lo:.3g}, {hi:.3g}] over the inputs' ranges, and the rules add at most "
                f"{swing:g}")
    return ""


def _sampled_differs(model, kb, facts: dict, fixed: dict, output: str, decision, rng,
                     n: int = 64) -> bool:
    """Whether one of ``n`` random completions of the inputs not in ``fixed`` (uniform
    within their ranges, the range's ends included) changes ``predict``'s decision."""
    cols = {}
    for name, code in facts.items():
        t = kb.variables[name].type
        if name in fixed:
            value = _show(kb, name, code)
            cols[name] = [value] * n
            continue
        if isinstance(t, A.BoolType):
            cols[name] = list(rng.integers(0, 2, n).astype(bool))
        elif isinstance(t, A.EnumType):
            cols[name] = list(rng.choice(list(t.values), n))
        else:
            lo, hi, _ = model.input_range(name)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return False
            if isinstance(t, A.IntType):
                v = rng.integers(int(lo), int(hi) + 1, n)
            else:
                v = rng.uniform(lo, hi, n)
                v[:2] = lo, hi
            cols[name] = list(v)
    frame = pd.DataFrame(cols)
    for name in facts:
        t = kb.variables[name].type
        if isinstance(t, A.EnumType):
            frame[name] = pd.Categorical(frame[name], categories=list(t.values))
    got = model.predict(frame, on_infeasible="flag")
    return bool(((got[output].to_numpy() != decision) & ~got["infeasible"].to_numpy()).any())


def _reason_milp(model, batch, row, output, max_relus, timeout, t0) -> Reason:
    from ._milp import differs

    kb, comp, facts, decision = _milp_row(model, batch, row, output, max_relus)
    if differs(comp, output, decision, facts, time_limit=timeout) is not None:
        raise SolverError(f"row {batch.index[row]!r}: the facts do not determine the "
                          "decision (a value sits within the solver's tolerance of a "
                          "threshold)")
    keep = dict(facts)
    rng = np.random.default_rng(0)
    for name in list(facts):
        trial = {k: v for k, v in keep.items() if k != name}
        # a few sampled completions through predict refute most drops at once; the
        # program proves the others
        if _sampled_differs(model, kb, facts, trial, output, decision, rng):
            continue
        if differs(comp, output, decision, trial, time_limit=timeout) is None:
            keep = trial
    # every accepted set was proved by the program when accepted (the full set first)
    verified = True
    return Reason(batch.index[row], output, decision,
                  {n: _show(kb, n, v) for n, v in keep.items()}, verified,
                  time.perf_counter() - t0, "input", _assumptions(comp, keep))


def _counterfactual_milp(model, batch, row, output, minimize, immutable, max_relus,
                         timeout, t0) -> Counterfactual:
    from ._milp import closest_change

    kb, comp, facts, decision = _milp_row(model, batch, row, output, max_relus)
    unknown = [n for n in immutable if n not in facts]
    if unknown:
        raise ModelError(f"immutable names {unknown[0]!r}, which is not an input of the row "
                         f"(inputs: {', '.join(facts)})")
    spreads = {n: float(model._feature_scale(n)) for n in facts if n in model.feature_names}
    after = closest_change(comp, output, decision, facts, minimize=minimize,
                           immutable=set(immutable), spreads=spreads, time_limit=timeout)
    if after is None:
        ranges = "".join(f"; {a}" for a in _assumptions(comp))
        held = f", keeping {', '.join(immutable)}" if immutable else ""
        raise ModelError(f"row {batch.index[row]!r}: no change of the inputs within their "
                         f"types and the hard constraints{held} changes the decision of "
                         f"{output!r} (rules, networks and residual together decide "
                         f"{decision!r} everywhere there{ranges})"
                         f"{_why_no_change(comp, output, decision)}")
    changes = []
    for n, code in list(after.items()):
        if isinstance(code, float) and abs(code - float(facts[n])) <= 1e-9 * max(
                1.0, abs(float(facts[n]))):
            after[n] = code = facts[n]   # solver noise, not a change
        if code != facts[n]:
            changes.append({"fact": n, "before": _show(kb, n, facts[n]),
                            "after": _show(kb, n, code)})

    def applied(trial):
        got = _decision_on(model, batch, row, output, trial)
        return got is not None and got != decision

    # a real change that stops within the solver's tolerance of a threshold: push it
    # further in the same direction, a little more each time, until the model agrees
    reals = [c["fact"] for c in changes if isinstance(kb.variables[c["fact"]].type,
                                                      A.RealType)]
    for k in range(10):
        if not reals or applied(after):
            break
        for n in reals:
            step = float(after[n]) - float(facts[n])
            after[n] = float(after[n]) + np.sign(step) * max(abs(float(facts[n])), 1.0) \
                * 1e-9 * 10 ** k
    # the program keeps a margin around thresholds: pull each real change back towards
    # the original value while the model's decision still differs, then round it to a
    # person's precision on the decided side
    if applied(after):
        _pull_back(kb, changes, facts, after, applied, steps=20,
                   precision=lambda n: _person_step(model, n) / 4)
    _round_changes(model, kb, batch, row, output, facts, after, changes, applied)
    new_decision = _decision_on(model, batch, row, output, after)
    verified = new_decision is not None and new_decision != decision
    return Counterfactual(batch.index[row], output, decision, new_decision,
                          pd.DataFrame(changes, columns=["fact", "before", "after"]),
                          {n: _show(kb, n, c) for n, c in after.items()},
                          _distance(model, kb, changes, facts, after, minimize),
                          verified, time.perf_counter() - t0, "input",
                          _assumptions(comp, immutable))


@dataclass(frozen=True)
class Verification(Entailment):
    """The answer to :func:`verify`: an :class:`~greybox.rules.Entailment` that also says
    what the proof assumed beyond the declared types (``assumptions``: inputs declared
    without bounds range over the training range)."""

    assumptions: tuple = ()

    def __str__(self) -> str:
        return super().__str__() + "".join(f"\n  {a}" for a in self.assumptions)


def _verify_milp(model, prop, max_relus, timeout):
    from greybox.rules import parse_formula
    from greybox.rules._printer import expr_to_text

    from greybox.semantics.crisp import crisp_evaluation

    from ._milp import _decode, compile_decision

    kb = model.to_kb()
    formula = parse_formula(prop, kb)
    text = prop if isinstance(prop, str) else expr_to_text(formula)
    comp = compile_decision(model, kb, model.bias_table(), max_relus=max_relus)
    comp.p.add(comp.truth(formula), hi=0.0)
    x = comp.p.solve(None, time_limit=timeout)
    if x is None:
        return Verification(text, True, assumptions=_assumptions(comp))
    codes = _decode(comp, x)
    row = pd.DataFrame({n: [_show(kb, n, c)] for n, c in codes.items()})
    ev, _ = crisp_evaluation(model, model.batch(row))
    shown = row.copy()
    for name in kb.neural:
        shown[name] = ev._env[name]
    for name in kb.decided:
        shown[name] = ev.decisions[name].to_numpy()
    confirmed = not bool(ev.holds(formula).iloc[0]) and not bool(ev.infeasible.iloc[0])
    return Verification(text, False, shown, confirmed, _assumptions(comp))
