"""Compiling integer arithmetic over finite variables into small factors.

A ``define v: int lo..hi = EXPR`` whose expression is linear in finite integer variables
(``d1 + d2``, ``10*a1 + a0``, ``n1 + n2`` over such numbers) becomes one of:

- **dense**: one indicator factor over the parents and ``v`` (small cases);
- **chain**: a chain of partial sums ``p_j = p_{j-1} + c_j x_j``, each factor over three
  variables, so the cost grows polynomially in the number of terms;
- **positional**: when the coefficients are powers of a base (digits of numbers), the sum
  is computed column by column with carries, as on paper. ``v`` is then never enumerated:
  it is represented by its digits and the last carry, so sums of 15-digit numbers cost a
  few thousand entries per column.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from greybox.functional import safe_log
from greybox.rules import ast as A

__all__ = ["Arithmetic", "CarryPlan", "count_chain", "count_chain_size", "linear_form",
           "compile_linear"]

#: Largest factor (entries) built for one piece of arithmetic.
FACTOR_LIMIT = 1 << 22
#: Most entries the tables of one ``count``'s chain of partial sums hold together (an
#: elimination through them costs about as many operations per row).
CHAIN_LIMIT = 1 << 26


def linear_form(e, kb, *, inline: bool = True, formulas: bool = False
                ) -> tuple[int | float, dict[str | None, int | float]] | None:
    """``e`` as ``const + sum(coef * var)``, or None when it is not linear arithmetic.

    With ``inline``, variables defined by linear integer expressions are replaced by
    their definitions (so ``n1 + n2`` over ``n1 = 10*a1 + a0`` reaches the digits). A
    ``count`` of bool variables is their sum; with ``formulas``, the other formulas it
    counts are terms too, all under the key None (for spreads: each one is 0 or 1).
    """
    if isinstance(e, A.Num):   # integers stay Python ints: exact beyond 2**53
        return (e.value if isinstance(e.value, int) else float(e.value)), {}
    if isinstance(e, A.Var):
        v = kb.variables[e.name]
        if inline and v.role == "defined" and isinstance(v.type, A.IntType):
            inner = linear_form(v.expr, kb, inline=True, formulas=formulas)
            if inner is not None:
                return inner
        return 0, {e.name: 1}
    if isinstance(e, A.Neg):
        inner = linear_form(e.operand, kb, inline=inline, formulas=formulas)
        if inner is None:
            return None
        return -inner[0], {k: -c for k, c in inner[1].items()}
    if isinstance(e, A.Sum):
        const, terms = 0, {}
        for i, arg in enumerate(e.args):
            part = linear_form(arg, kb, inline=inline, formulas=formulas)
            if part is None:
                return None
            sign = 1 if i == 0 or e.ops[i - 1] == "+" else -1
            const += sign * part[0]
            for k, c in part[1].items():
                terms[k] = terms.get(k, 0) + sign * c
        return const, {k: c for k, c in terms.items() if c != 0}
    if isinstance(e, A.Mul):
        left = linear_form(e.left, kb, inline=inline, formulas=formulas)
        right = linear_form(e.right, kb, inline=inline, formulas=formulas)
        if left is None or right is None:
            return None
        if not left[1]:
            left, right = right, left
        if right[1]:
            return None
        k = right[0]
        return left[0] * k, {n: c * k for n, c in left[1].items()}
    if isinstance(e, A.Count):   # a count of bool variables is their sum (as 0/1)
        const, terms = 0, {}
        for arg in e.args:
            if isinstance(arg, A.BoolConst):
                const += int(arg.value)
            elif isinstance(arg, A.Var) and isinstance(kb.variables[arg.name].type, A.BoolType):
                terms[arg.name] = terms.get(arg.name, 0) + 1
            elif formulas:
                terms[None] = terms.get(None, 0) + 1
            else:
                return None
        return const, terms
    return None


@dataclass
class Arithmetic:
    """The compiled form of one integer define.

    ``factors`` are batch-free factors (leading dimension 1); ``aux`` names the auxiliary
    variables they introduce with their value lists. ``kind`` is dense, chain or
    positional. A positional define is not a variable of the graph: ``digits`` (lowest
    first), ``carry`` and ``base`` give ``value - offset = sum(base**k * digit_k) +
    base**len(digits) * carry``.
    """

    name: str
    kind: str
    factors: list = field(default_factory=list)
    aux: dict = field(default_factory=dict)
    digits: tuple[str, ...] = ()
    carry: str | None = None
    base: int = 0
    offset: int = 0
    #: positional (and dense plain sums, as one column): per column (lowest first), the
    #: variables summed there with their values, and the values of the carry out of it
    columns: list = field(default_factory=list)
    carries: list = field(default_factory=list)
    _plans: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def summed(self) -> frozenset:
        """The variables summed in the columns."""
        return frozenset(name for col in self.columns for name, _ in col)

    @staticmethod
    def conditional(scope, factor: torch.Tensor, made) -> bool:
        """True when ``factor`` is a function of its inputs: it sums to 1 over ``made``."""
        dims = [1 + scope.index(v) for v in made]
        return bool((factor.sum(dim=dims) == 1).all()) if dims else False

    def evidence(self, target: torch.Tensor) -> list:
        """Unary factors saying ``value == target`` (an integer tensor of shape (B,), or
        big integers' :class:`~greybox._bigint.BigLabels`)."""
        ncarry = len(self.aux[self.carry])
        if not isinstance(target, torch.Tensor):     # exact digits of Python ints
            digits, rest = target.digits(self.offset, base=self.base, npos=len(self.digits),
                                         cap=ncarry)
            ok = torch.tensor([int(v) - self.offset >= 0 for v in target.indices],
                              dtype=torch.bool)
            out = [((d,), torch.nn.functional.one_hot(digits[p], self.base).to(torch.float32))
                   for p, d in enumerate(self.digits)]
        else:
            rest = target.long() - self.offset
            out = []
            ok = rest >= 0
            for d in self.digits:
                digit = torch.remainder(rest, self.base)
                out.append(((d,), torch.nn.functional.one_hot(digit.clamp(0, self.base - 1),
                                                              self.base).to(torch.float32)))
                rest = torch.div(rest, self.base, rounding_mode="floor")
        ok = ok & (rest < ncarry)
        hot = torch.nn.functional.one_hot(rest.clamp(0, ncarry - 1), ncarry).to(torch.float32)
        out.append(((self.carry,), hot * ok[:, None]))
        return out

    def log_prob(self, stacked, target: torch.Tensor, device) -> torch.Tensor:
        """``log P(value == target)`` per row (``target``: integer values, (B,)) of a
        positional sum whose summed variables are independent: ``stacked(names)`` gives
        their distributions over their values, stacked, (len(names), B, K). The carries
        are summed column by column (see :class:`CarryPlan`)."""
        plan = self._plans.get(device)
        if plan is None:
            plan = self._plans[device] = CarryPlan(self, device)
        return plan.log_prob(stacked, target if target.device == device else target.to(device))


def _integral(x) -> bool:
    """Whether number ``x`` (a Python int, exact at any size, or a float) is an integer."""
    return isinstance(x, int) or float(x).is_integer()


def _values(t) -> list[int]:
    return list(range(t.lo, t.hi + 1)) if isinstance(t, A.IntType) else [0, 1]


def _indicator(parts: list[tuple[list[int], int]], const: int, target: list[int],
               carry_base: int | None = None, carry: list[int] | None = None) -> torch.Tensor:
    """Indicator over (parts..., target[, carry]) of ``const + sum(c*x) == t (+ b*carry)``."""
    # compiled once on the CPU, then moved to the model's device (GreyBox._arithmetic)
    cpu = torch.device("cpu")
    total = torch.tensor(float(const), dtype=torch.float64, device=cpu)
    for i, (vals, c) in enumerate(parts):
        shape = [1] * len(parts)
        shape[i] = len(vals)
        total = total + c * torch.tensor(vals, dtype=torch.float64, device=cpu).view(shape)
    t = torch.tensor(target, dtype=torch.float64, device=cpu)
    if carry is None:
        ind = total.unsqueeze(-1) == t
    else:
        rhs = t.view(-1, 1) + carry_base * torch.tensor(carry, dtype=torch.float64,
                                                        device=cpu).view(1, -1)
        ind = total.unsqueeze(-1).unsqueeze(-1) == rhs
    return ind.to(torch.float32).unsqueeze(0)


def compile_linear(name: str, kb, domains: dict[str, list[int]]) -> Arithmetic | None:
    """Compile ``define name: int ...`` over finite random variables (their value lists in
    ``domains``), or return None when its expression is not linear in them."""
    var = kb.variables[name]
    form = linear_form(var.expr, kb, inline=True)
    if form is None or any(k not in domains for k in form[1]):
        form = linear_form(var.expr, kb, inline=False)
        if form is None or any(k not in domains for k in form[1]):
            return None
    const, terms = form
    if not _integral(const) or not all(_integral(c) for c in terms.values()):
        return None
    const = int(const)
    terms = {k: int(c) for k, c in terms.items()}
    names = list(terms)
    nvalues = var.type.size if isinstance(var.type, A.IntType) else 2
    size = nvalues * math.prod(len(domains[k]) for k in names)
    if size <= FACTOR_LIMIT // 16 or len(names) <= 1:
        if size > FACTOR_LIMIT:
            return None
        f = _indicator([(domains[k], terms[k]) for k in names], const, _values(var.type))
        out = Arithmetic(name, "dense", [((*names, name), f)])
        if len(names) > 1 and all(terms[k] == 1 for k in names) and \
                all(min(domains[k]) >= 0 for k in names):
            # a plain sum: also one column of a positional sum (a base above any sum)
            out.columns = [[(k, list(domains[k])) for k in names]]
            out.carries = [[0]]
            out.base = sum(max(domains[k]) for k in names) + 1
            out.offset = const
        return out
    positional = _positional(name, terms, const, domains)
    if positional is not None:
        return positional
    if nvalues > FACTOR_LIMIT:
        return None
    return _chain(name, terms, const, domains, _values(var.type))


def _chain(name, terms, const, domains, target) -> Arithmetic | None:
    names = sorted(terms, key=lambda k: (abs(terms[k]) * (max(domains[k]) - min(domains[k]))))
    out = Arithmetic(name, "chain")
    lo = hi = const
    prev = None
    for j, k in enumerate(names):
        c, vals = terms[k], domains[k]
        lo_k, hi_k = min(c * v for v in vals), max(c * v for v in vals)
        lo, hi = lo + lo_k, hi + hi_k
        last = j == len(names) - 1
        nxt = name if last else f"{name}#sum{j}"
        nxt_vals = target if last else list(range(lo, hi + 1))
        if prev is None:
            f = _indicator([(vals, c)], const, nxt_vals)
            scope = (k, nxt)
        else:
            f = _indicator([(out.aux[prev], 1), (vals, c)], 0, nxt_vals)
            scope = (prev, k, nxt)
        if f.numel() > FACTOR_LIMIT:
            return None
        out.factors.append((scope, f))
        if not last:
            out.aux[nxt] = nxt_vals
        prev = nxt
    return out


def count_chain_size(n: int) -> int:
    """Entries of the tables of :func:`count_chain` over ``n`` formulas (the j-th partial
    sum's table is ``j x 2 x (j + 1)``, its first ``1 x 2 x 2``).

    Examples
    --------
    >>> from greybox._linear import count_chain_size
    >>> count_chain_size(3)          # 1*2*2 + 2*2*3 + 3*2*4
    40
    """
    return sum(2 * j * (j + 1) for j in range(1, n + 1))


def count_chain(name: str, atoms: list[str]) -> Arithmetic | None:
    """The number of the bool variables ``atoms`` (at least one) that hold, as a chain of
    partial sums: ``name`` takes the values ``0..len(atoms)`` and is the last factor's last
    variable. None when a factor would exceed :data:`FACTOR_LIMIT`, or the chain's
    tables together :data:`CHAIN_LIMIT` (they hold about ``2 n^3 / 3`` entries: 1,000
    formulas took 3.0 GB and 28 s for 16 rows)."""
    if count_chain_size(len(atoms)) > CHAIN_LIMIT:
        return None
    values = list(range(len(atoms) + 1))
    return _chain(name, {a: 1 for a in atoms}, 0, {a: [0, 1] for a in atoms}, values)


def _positional(name, terms, const, domains) -> Arithmetic | None:
    coefs = sorted(set(terms.values()))
    if len(coefs) < 2 or coefs[0] != 1 or any(min(domains[k]) < 0 for k in terms):
        return None
    base = coefs[1]
    if base < 2:
        return None
    power = {}
    for c in coefs:
        k = round(math.log(c, base))
        if base ** k != c:
            return None
        power[c] = k
    npos = max(power.values()) + 1
    columns = [[k for k in terms if power[terms[k]] == p] for p in range(npos)]
    out = Arithmetic(name, "positional", base=base, offset=const)
    carry, carry_vals = None, [0]
    digits = []
    for p, col in enumerate(columns):
        items = ([(carry, carry_vals)] if carry is not None else []) + [(k, domains[k]) for k in col]
        if not items:
            items = [(carry, carry_vals)]
        top = sum(max(v) for _, v in items)
        digit = f"{name}#digit{p}"
        new_carry = f"{name}#carry{p + 1}"
        new_carry_vals = list(range(0, top // base + 1))
        digits.append(digit)
        out.aux[digit] = list(range(base))
        partial, partial_vals = items[0]
        for j, (k, vals) in enumerate(items[1:-1] if len(items) > 2 else []):
            nxt = f"{name}#col{p}_{j}"
            nxt_vals = list(range(min(partial_vals) + min(vals), max(partial_vals) + max(vals) + 1))
            f = _indicator([(partial_vals, 1), (vals, 1)], 0, nxt_vals)
            out.factors.append(((partial, k, nxt), f))
            out.aux[nxt] = nxt_vals
            partial, partial_vals = nxt, nxt_vals
        if len(items) == 1:
            f = _indicator([(partial_vals, 1)], 0, out.aux[digit], base, new_carry_vals)
            out.factors.append(((partial, digit, new_carry), f))
        else:
            k, vals = items[-1]
            f = _indicator([(partial_vals, 1), (vals, 1)], 0, out.aux[digit], base, new_carry_vals)
            out.factors.append(((partial, k, digit, new_carry), f))
        if out.factors[-1][1].numel() > FACTOR_LIMIT:
            return None
        out.aux[new_carry] = new_carry_vals
        out.columns.append([(k, list(domains[k])) for k in col])
        out.carries.append(new_carry_vals)
        carry, carry_vals = new_carry, new_carry_vals
    out.digits = tuple(digits)
    out.carry = carry
    return out


class CarryPlan:
    """Exact ``log P(sum == target)`` of a positional sum over independent variables,
    as on paper and without enumerating the sum: each column's sum of its variables
    ``S_p`` (one einsum per variable across all columns with the same variables' domains),
    then, given the target's digit ``t_p``, the 2-D transition of the carry
    ``P(c_{p+1} | c_p) = P(S_p = t_p + base * c_{p+1} - c_p)``, and the product of the
    transitions from the lowest column up (rescaled at each column).

    Everything that depends only on the arithmetic (indicator tensors of the column sums,
    the carry index tables) is built once, on ``device``.
    """

    def __init__(self, arith: Arithmetic, device):
        # built on the CPU, then moved (never on the default device)
        cpu = torch.device("cpu")
        self.device = device
        self.base, self.offset = arith.base, arith.offset
        cols = arith.columns
        self.npos = len(cols)
        groups: dict = {}
        for p, col in enumerate(cols):
            sig = tuple(tuple(vals) for _, vals in col)
            groups.setdefault(sig, []).append(p)
        # (columns, [names per item], [indicators], low value, length)
        self.groups = [_column_group(sig, ps, cols, device) for sig, ps in groups.items()]
        self.width = max([1] + [length for *_, length in self.groups])
        self._pad_last_indicators()
        self.blank = any(not names for _, names, *_ in self.groups)   # batch dimension 1
        # the variables of a group whose domains are all as long, read in one call
        self.together = []
        for sig, (_, names, *_r) in zip(groups, self.groups):
            same = len(names) > 1 and len({len(dom) for dom in sig}) == 1
            self.together.append((tuple(n for col in names for n in col), len(sig[0]))
                                 if same else None)
        order = [p for ps, *_ in self.groups for p in ps]
        self.order = None if order == list(range(self.npos)) else \
            torch.tensor([order.index(p) for p in range(self.npos)], device=cpu).to(device)
        lows = {p: lo for ps, _, _, lo, _ in self.groups for p in ps}
        self._carry_tables(arith, lows)
        # one column and no carry (a plain sum): P(S = rest) is read at rest - low + 1
        self.single = self.npos == 1 and self.c == 1 and self.ncarry == 1
        self.first = 1 - lows[0]
        # the target's digits: rest // base**p % base, and the last carry rest // base**npos
        self.top_place = self.base ** self.npos
        fits = self.top_place < 2 ** 62
        self.places = (torch.tensor([[self.base ** p] for p in range(self.npos)],
                                    device=cpu).to(device) if fits else None)

    def _pad_last_indicators(self) -> None:
        """Each group's last indicator writes the sums into place: a 0 on either side
        (where impossible carries' indices land) and the width of the widest column."""
        self.padded = []
        for _, names, inds, _, length in self.groups:
            last = bool(inds) and len(inds) >= len(names) - 1 and bool(names)
            if last:
                inds[-1] = torch.nn.functional.pad(inds[-1], (1, self.width + 1 - length))
            self.padded.append(last)

    def _carry_tables(self, arith: Arithmetic, lows: dict) -> None:
        """The carries into and out of each column as indices into its sums (``shift1``,
        ``c`` carries at most, ``ncarry`` out of the top column)."""
        cpu = torch.device("cpu")
        carries = [[0]] + [list(c) for c in arith.carries]
        c = max(len(v) for v in carries)
        self.ncarry = len(carries[-1])
        shift = torch.zeros(self.npos, c, c, dtype=torch.long, device=cpu)
        valid = torch.zeros(self.npos, c, c, dtype=torch.bool, device=cpu)
        for p in range(self.npos):
            for i, cin in enumerate(carries[p]):
                for j, cout in enumerate(carries[p + 1]):
                    shift[p, i, j] = self.base * cout - cin - lows[p]
                    valid[p, i, j] = True
        # index into a column's sums padded with a 0 on either side; impossible carries
        # (columns with fewer of them) land on the 0
        shift = torch.where(valid, shift + 1, -(self.base + self.width + 2))
        self.shift1, self.c = shift.view(self.npos, 1, c * c).to(self.device), c

    def _column_sums(self, stacked) -> torch.Tensor:
        """(npos, B, width + 2): each column's distribution of the sum of its variables,
        with a 0 on either side."""
        parts = []
        for (ps, names, inds, _lo, length), padded, together in zip(
                self.groups, self.padded, self.together):
            if not names:
                s = torch.ones(len(ps), 1, 1, device=self.device)
            else:
                dists = (stacked(together[0]).reshape(len(names), len(ps), -1, together[1])
                         .unbind(0) if together else [stacked(col) for col in names])
                s = dists[0]
                for j in range(1, len(names)):
                    pair = s.unsqueeze(3) * dists[j].unsqueeze(2)               # (k, B, i, j)
                    ind = inds[j - 1]
                    s = pair.flatten(2) @ (ind if ind.dtype == pair.dtype else ind.to(pair.dtype))
                if len(inds) == len(names):      # one variable, its values spread out
                    s = s @ inds[-1].to(s.dtype)
            if not padded:
                s = torch.nn.functional.pad(s, (1, self.width + 1 - length))
            parts.append(s)
        if len(parts) == 1:
            s = parts[0]
        else:
            b = max(t.shape[1] for t in parts)
            dtype = next(t.dtype for t, (_, names, *_r) in zip(parts, self.groups) if names)
            s = torch.cat([t.to(dtype).expand(-1, b, -1) for t in parts])
        return s if self.order is None else s.index_select(0, self.order)

    def _digits(self, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's digits (npos, B), lowest first, and what is left (the last carry;
        negative where ``rest`` is)."""
        if self.places is not None:
            digits = torch.div(rest, self.places, rounding_mode="floor") % self.base
            return digits, torch.div(rest, self.top_place, rounding_mode="floor")
        out = []
        for _ in range(self.npos):
            out.append(torch.remainder(rest, self.base))
            rest = torch.div(rest, self.base, rounding_mode="floor")
        return torch.stack(out), rest

    def log_prob(self, stacked, target: torch.Tensor) -> torch.Tensor:
        # each column's sums, with a 0 on either side where impossible indices land
        s = self._column_sums(stacked)
        n = target.shape[0]
        big = not isinstance(target, torch.Tensor)    # BigLabels: Python ints
        if not big:
            rest = target if target.dtype == torch.long else target.long()
            rest = rest - self.offset if self.offset else rest
        if self.blank and s.shape[1] != n:
            s = s.expand(-1, n, -1)
        if self.single:
            # beyond the sums (a negative rest, or one of base or more) lands on a 0
            if big:
                rest = torch.tensor([min(max(int(v) - self.offset, -2), self.width + 1)
                                     for v in target.indices], device=self.device)
            idx = (rest + self.first).clamp(0, self.width + 1)
            return safe_log(s[0].gather(1, idx.view(-1, 1)).view(-1))
        # (floor division: a negative rest has digits in 0..base-1 and a negative top)
        if big:    # the digits computed exactly outside torch; the top clamped to -1..c
            digits, top = target.digits(self.offset, base=self.base, npos=self.npos,
                                        cap=self.c, device=self.device)
        else:
            digits, top = self._digits(rest)
        # the transitions P(S_p = t_p + base * c' - c): (npos, B, c, c')
        idx = (digits.unsqueeze(2) + self.shift1).clamp(0, self.width + 1)
        m = s.gather(2, idx).view(self.npos, n, self.c, self.c)
        # the carry's distribution column by column, in float64: an unlikely carry that
        # the last column needs may be 1e-13 times less likely than another, column after
        # column (confidently wrong digits), far below float32's range. Rescaled to a
        # maximum of 1 (the scales summed in logs at the end) every few columns: as many
        # as float64 holds products of the smallest positive entries of s's dtype
        every = _rescale_every(m.dtype)
        if self.npos > 1:
            m = m.double()
        columns = m.unbind(0)
        alpha = columns[0][:, :1]                                          # (B, 1, c')
        scales = []
        for p in range(1, self.npos):
            if p % every == 0:
                scale = alpha.detach().amax(dim=2, keepdim=True).clamp_min(_TINY)
                scales.append(scale)
                alpha = alpha / scale
            alpha = alpha @ columns[p]
        # the last carry is the sum's top digit; a 0 on either side where the target
        # cannot be reached (top below 0 or beyond the last carry's values)
        alpha = torch.nn.functional.pad(alpha.view(n, self.c), (1, 1))
        index = (top + 1).clamp(0, self.c + 1)
        out = safe_log(alpha.gather(1, index.view(-1, 1)).view(-1))
        if scales:
            out = out + torch.log(torch.cat(scales, 1)).sum(1).view(-1)
        return out.to(s.dtype)


def _column_group(sig: tuple, ps: list, cols, device) -> tuple:
    """``(columns, [names per item], [indicators], low value, length)`` of the columns
    ``ps`` whose variables have the domains ``sig``: the indicator tensors that add
    their variables one by one into consecutive sums (float32, built on the CPU and
    moved to ``device``)."""
    dtype, cpu = torch.float32, torch.device("cpu")
    names = [[cols[p][j][0] for p in ps] for j in range(len(sig))]
    inds, lo, vals = [], 0, [0]
    if sig:
        lo = min(sig[0])
        vals = list(sig[0])
        for dom in sig[1:]:
            new = sorted({a + b for a in vals for b in dom})
            ind = torch.zeros(len(vals), len(dom), new[-1] - new[0] + 1, dtype=dtype,
                              device=cpu)
            for i, a in enumerate(vals):
                for j, b in enumerate(dom):
                    ind[i, j, a + b - new[0]] = 1.0
            inds.append(ind.flatten(0, 1).to(device))     # (i * j, sums)
            vals = list(range(new[0], new[-1] + 1))
        lo = vals[0]
        # a first variable whose values are not 0, 1, 2...: to consecutive sums
        first = list(sig[0])
        if len(sig) == 1 and first != list(range(first[0], first[-1] + 1)):
            ind = torch.zeros(len(first), first[-1] - first[0] + 1, dtype=dtype, device=cpu)
            for i, a in enumerate(first):
                ind[i, a - first[0]] = 1.0
            inds.append(ind.to(device))
            vals = list(range(first[0], first[-1] + 1))
    return ps, names, inds, lo, len(vals)


@functools.cache
def _rescale_every(dtype: torch.dtype) -> int:
    """How many columns of entries of ``dtype`` (the column sums) a float64 product holds
    without leaving float64's normal range: every nonzero entry is at least the
    smallest subnormal of ``dtype`` (2**-149 for float32: 6 columns), so a nonzero carry
    probability rescaled to 1 stays above 2**-1022 that many columns on."""
    info = torch.finfo(dtype)
    bits = -math.log2(info.tiny * info.eps)
    return max(1, int(1022 // bits))


_TINY = 1e-300
