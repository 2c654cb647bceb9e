"""A model's decision function in Z3 for the Z3 backend: the background of types, hard
constraints and decisions (built once per model and learned state in a template context,
translated into each call's own), the residual network's logits added to the scores, and
each network's exact encoding over the table inputs (weights as exact rationals, each ReLU
an ``If``)."""

from __future__ import annotations

import hashlib
import weakref
from fractions import Fraction

import torch
import z3

from greybox.errors import ModelError
from greybox.rules import Z3Encoding
from greybox.rules import ast as A
from greybox.rules.engine import call_cache, in_context, not_false, plan

from ._networks import propagate

__all__ = ["encode_network"]


def encode_network(net, inputs: list, *, max_relus: int = 64, what: str = "the network"
                   ) -> list:
    """The network's outputs as Z3 terms of ``inputs`` (Z3 reals, one per input unit).

    Examples
    --------
    >>> import torch, z3
    >>> from torch import nn
    >>> from greybox.explain.formal.z3 import encode_network
    >>> net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.fill_(2.0), net[0].bias.fill_(-1.0)
    >>> x = z3.Real("x")
    >>> (y,) = encode_network(net, [x])
    >>> z3.simplify(z3.substitute(y, (x, z3.RealVal(3))))
    5
    """
    def affine(values, w, b):
        terms = [_rational(w[i]) * v for i, v in enumerate(values) if w[i] != 0.0]
        return z3.Sum(terms) + _rational(b) if terms else _rational(b)

    def relu(v, _unit):
        return z3.If(v > 0, v, z3.RealVal(0))

    return propagate(net, inputs, affine=affine, relu=relu, max_relus=max_relus, what=what)


def _rational(x: float) -> z3.RatNumRef:
    return z3.RealVal(Fraction(float(x)))


#: per model: the Z3 background of its current knowledge base and biases, built once in a
#: context of its own that nothing solves in (a template, only read)
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _background(model, kb, bias: dict, level: str, max_relus: int, residual: str = "fixed"):
    """Z3 background of a model's crisp decision: types, hard constraints over non-decided
    variables, the decision; at the input level also each neural concept tied to its
    network's exact encoding. A residual network is ``"fixed"`` (its logit is in
    ``bias``), ``"free"`` (any logit) or ``"encoded"`` (exactly, from the inputs).

    Built once per model, knowledge base, biases, level, residual mode and -- where it
    encodes networks -- their parameters' values, in a template
    context of the model's; each serialised call gets a copy translated into its own
    context (Z3's translation, one pass over the shared terms), so that calls share no
    state and their answers do not depend on earlier calls."""
    if model.residual is None:
        residual = "fixed"
    key = (repr(sorted(bias.items())), level, max_relus, residual,
           _networks_read(model, level, residual))
    cache = _CACHE.setdefault(model, {})
    if not (cache.get("kb") is kb and cache.get("key") == key):   # the same object
        template = z3.Context()
        with in_context(template):
            enc, background = _build_background(model, kb, bias, level, max_relus, residual)
        cache.clear()
        cache.update(kb=kb, key=key, enc=enc, background=background, ctx=template)
    here = z3.main_ctx()
    if here is cache["ctx"]:   # pragma: no cover - only serialised calls get here
        return cache["enc"], cache["background"]
    copies = call_cache()
    held = copies.get(("background", model))
    if held is None or held[0] is not cache["enc"]:
        held = copies[("background", model)] = (cache["enc"], *_translated(cache, here))
    return held[1], held[2]


def _networks_read(model, level: str, residual: str) -> str | None:
    """A digest of the values of the networks the background encodes (the concept networks
    at the input level, an encoded residual), so that a network changed in place (its
    weights edited, trained further) is encoded again; None where none is encoded."""
    modules = []
    if level == "input":
        modules += [model.networks[k] for k in sorted(model.networks)]
    if residual == "encoded":
        modules.append(model.residual)
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    if not tensors:
        return None
    digest = hashlib.blake2b(digest_size=16)
    for t in tensors:
        digest.update(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _build_background(model, kb, bias: dict, level: str, max_relus: int, residual: str):
    enc = _ResidualEncoding(kb, bias=bias)
    enc.residual = {}
    if residual != "fixed":
        # the residual network's logit: exactly encoded from the inputs, or a free real
        # (whatever the network says)
        terms = _residual_terms(model, kb, enc, max_relus) if residual == "encoded" else None
        for name in model.kb.decided:
            if model.residual_for(name) is not None:
                enc.residual[name] = terms[name] if terms else _residual_vars(kb, name)
    background = list(enc.domain(("input", "neural")))
    for c in plan(kb).fixed_constraints:
        background.append(enc.expr(not_false(kb, c.formula)))
    background += enc.decision()
    if level == "input":
        background += _network_links(model, kb, enc, max_relus)
    return enc, background


def _translated(cache: dict, ctx: z3.Context) -> tuple:
    """A copy of the cached encoding and background in ``ctx`` (translated together)."""
    return cache["enc"].translated(ctx, cache["background"])


def _residual_vars(kb, name: str) -> list:
    """Free Z3 reals for a residual network's logits: one for a bool (added to the score
    of True), one per value otherwise."""
    t = kb.variables[name].type
    if isinstance(t, A.BoolType) or name in kb.additive:   # one number a row
        return [z3.Real(f"residual:{name}")]
    return [z3.Real(f"residual:{name}={v}") for v in A.domain_values(t)]


class _ResidualEncoding(Z3Encoding):
    """The rules' Z3 encoding with a residual network's logits added to the scores."""

    residual: dict = {}

    def _held(self) -> dict:
        held = super()._held()
        held.update({("residual", (k, i)): t for k, v in self.residual.items()
                     for i, t in enumerate(v)})
        return held

    def _hold(self, slot: tuple, term) -> None:
        kind, key = slot
        if kind != "residual":
            return super()._hold(slot, term)
        self.residual[key[0]][key[1]] = term

    def _emptied(self):
        copy = super()._emptied()
        copy.residual = {k: [None] * len(v) for k, v in self.residual.items()}
        return copy

    def score(self, name, value):
        total = super().score(name, value)
        r = self.residual.get(name)
        if r is None:
            return total
        t = self.kb.variables[name].type
        if isinstance(t, A.BoolType) or name in self.kb.additive:
            return total + r[0] if value is True else total
        return total + r[A.domain(t).index(value)]

    def residual_const(self, fact: str):
        """The Z3 term of a residual fact name (``residual:NAME[=VALUE]``)."""
        name, _, value = fact[len("residual:"):].partition("=")
        t = self.kb.variables[name].type
        k = 0 if isinstance(t, A.BoolType) else \
            [str(v) for v in A.domain_values(t)].index(value)
        return self.residual[name][k]


def _feature_terms(model, kb, enc, name: str, *, standardise: bool = True) -> list:
    """Table input ``name`` as the model feeds it to networks, in Z3: standardised by the
    model's statistics (the residual, networks in ``model.scaled_networks``) or as it is,
    an enum one-hot."""
    t = kb.variables[name].type
    x = enc.const(name)
    if isinstance(t, A.EnumType):
        return [z3.If(x == k, z3.RealVal(1), z3.RealVal(0)) for k in range(t.size)]
    value = z3.If(x, z3.RealVal(1), z3.RealVal(0)) if isinstance(t, A.BoolType) else \
        (z3.ToReal(x) if isinstance(t, A.IntType) else x)
    if not standardise:
        return [value]
    i = model.feature_names.index(name)
    center = z3.RealVal(Fraction(float(model.feature_center[i])))
    scale = z3.RealVal(Fraction(float(model.feature_scale[i])))
    return [(value - center) / scale]


def _standardised_features(model, kb, enc) -> list:
    """The model's standardised table inputs (``model.feature_names``) as Z3 terms."""
    feats = []
    for a in kb.inputs:
        if not isinstance(kb.variables[a].type, A.TensorType):
            feats += _feature_terms(model, kb, enc, a)
    return feats


def _residual_terms(model, kb, enc, max_relus: int) -> dict:
    feats = _standardised_features(model, kb, enc)
    out = {}
    for name in kb.decided:
        net = model.residual_for(name)
        if net is None:
            continue
        logits = encode_network(net, feats, max_relus=max_relus,
                                what=f"the residual of {name!r}")
        t = kb.variables[name].type
        want = 1 if isinstance(t, A.BoolType) or name in kb.additive else A.domain(t).size
        if len(logits) != want:
            raise ModelError(f"the residual of {name!r} has {len(logits)} outputs; "
                             f"{want} expected")
        out[name] = logits
    return out


def _network_links(model, kb, enc, max_relus: int) -> list:
    """Each neural concept equal to what its (encoded) network computes from the table
    inputs, standardised as the model feeds them."""
    links = []
    for name in kb.neural:
        var = kb.variables[name]
        feats = []
        for a in var.args:
            if isinstance(kb.variables[a].type, A.TensorType):
                raise ModelError(f"neural {name!r} reads the tensor input {a!r}: input-level "
                                 "reasoning needs networks over table inputs (use "
                                 "level='concept')")
            feats += _feature_terms(model, kb, enc, a,
                                    standardise=model.scales_inputs(var.network))
        net = model.network(var.network)
        out = encode_network(net, feats, max_relus=max_relus, what=f"the network of {name!r}")
        c = enc.const(name)
        t = var.type
        if isinstance(t, A.BoolType):
            links.append(c == (out[0] > 0))
        elif A.is_finite_type(t):
            d = A.domain(t)
            for k in range(len(out)):   # argmax, ties to the first value
                wins = [out[k] > out[j] for j in range(k)] + \
                       [out[k] >= out[j] for j in range(k + 1, len(out))]
                links.append(z3.Implies(c == d.z3_value(d.value(k)),
                                        z3.And(wins) if wins else z3.BoolVal(True)))
        else:
            links.append(c == out[0])
    return links
