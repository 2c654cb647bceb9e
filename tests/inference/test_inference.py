"""Exact inference: variable elimination, arithmetic compilation and the probabilistic
semantics, each checked against brute-force enumeration."""

import itertools
import math

import pytest
import torch
from torch import nn

import greybox as gb
from greybox._factors import contract, elimination_order, log_contract, mpe
from greybox._linear import compile_linear


def _brute(factors, sizes, keep=()):
    """Sum over all joint assignments (slow, obviously right)."""
    names = sorted({v for scope, _ in factors for v in scope} | set(keep))
    b = max(t.shape[0] for _, t in factors)
    out = torch.zeros(b, *[sizes[k] for k in keep], dtype=torch.float64)
    for values in itertools.product(*[range(sizes[k]) for k in names]):
        a = dict(zip(names, values))
        w = torch.ones(b, dtype=torch.float64)
        for scope, t in factors:
            w = w * t[(slice(None), *[a[v] for v in scope])].double()
        out[(slice(None), *[a[k] for k in keep])] += w
    return out


@pytest.mark.parametrize("seed", range(5))
def test_contract_matches_brute_force_on_random_graphs(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = {v: int(torch.randint(2, 4, (1,), generator=g)) for v in "abcde"}
    factors = []
    for _ in range(6):
        k = int(torch.randint(1, 4, (1,), generator=g))
        scope = tuple(sorted(set(list("abcde")[i] for i in torch.randperm(5, generator=g)[:k])))
        batch = int(torch.randint(1, 3, (1,), generator=g)) * 2 - 1  # 1 or 3 rows
        factors.append((scope, torch.rand(batch, *[sizes[v] for v in scope], generator=g)))
    present = sorted({v for scope, _ in factors for v in scope})
    for keep in [(), tuple(present[:1]), tuple(present[1:3])]:
        t, s = contract(factors, keep)
        got = t.double() * torch.exp(s.double()).view(-1, *[1] * len(keep))
        want = _brute(factors, sizes, keep)
        assert torch.allclose(got, want, rtol=1e-4)
        logs = [(scope, torch.log(t)) for scope, t in factors]     # the same, in log space
        assert torch.allclose(log_contract(logs, keep).exp(), want, rtol=1e-4)


def test_mpe_finds_the_best_assignment():
    g = torch.Generator().manual_seed(3)
    factors = [(("a", "b"), torch.rand(2, 3, 2, generator=g)),
               (("b", "c"), torch.rand(2, 2, 4, generator=g)),
               (("c",), torch.rand(1, 4, generator=g))]
    got, log_w = mpe(factors, 2)
    for row in range(2):
        best, arg = -1.0, None
        for a, b, c in itertools.product(range(3), range(2), range(4)):
            w = float(factors[0][1][row, a, b] * factors[1][1][row, b, c] * factors[2][1][0, c])
            if w > best:
                best, arg = w, (a, b, c)
        assert (int(got["a"][row]), int(got["b"][row]), int(got["c"][row])) == arg
        assert float(log_w[row].exp()) == pytest.approx(best, rel=1e-5)
    assert set(elimination_order((("a", "b"), ("b", "c")), ())) == {"a", "b", "c"}


def test_long_chains_do_not_underflow():
    # 400 factors of 0.1: the product is 1e-400, far below float32; the log stays exact
    factors = [((f"x{i}", f"x{i + 1}"), torch.full((1, 2, 2), 0.05)) for i in range(400)]
    t, s = contract(factors)
    expected = 401 * torch.log(torch.tensor(2.0, dtype=torch.float64)) + 400 * torch.log(
        torch.tensor(0.05, dtype=torch.float64))
    assert float(torch.log(t) + s) == pytest.approx(float(expected), rel=1e-5)


def _numbers_kb(n_digits):
    lines = []
    for side in "ab":
        terms = []
        for k in range(n_digits):
            lines.append(f"neural {side}{k}: int 0..9 = digit(img)")
            power = 10 ** (n_digits - 1 - k)
            terms.append(f"{power} * {side}{k}" if power > 1 else f"{side}{k}")
        lines.append(f"define n{side}: int 0..{10 ** n_digits - 1} = {' + '.join(terms)}")
    top = 2 * (10 ** n_digits - 1)
    return gb.rules.parse("input img: tensor\n" + "\n".join(lines)
                          + f"\noutput total: int 0..{top}\ndefine total: int 0..{top} = na + nb")


@pytest.mark.parametrize("n_digits,kind", [(1, "dense"), (2, "positional"), (3, "positional")])
def test_sums_of_numbers_compile_to_the_expected_form(n_digits, kind):
    kb = _numbers_kb(n_digits)
    domains = {v: list(range(10)) for v in kb.neural}
    arith = compile_linear("total", kb, domains)
    assert arith.kind == kind
    if kind == "positional":
        # one column factor per digit position, each small
        assert len(arith.digits) == n_digits
        assert max(f.numel() for _, f in arith.factors) <= 2 * 10 * 10 * 10 * 2


def test_many_single_digit_terms_make_a_chain():
    kb = gb.rules.parse("input img: tensor\n"
                        + "\n".join(f"neural d{i}: int 0..9 = digit(img)" for i in range(8))
                        + "\ndefine s: int 0..72 = " + " + ".join(f"d{i}" for i in range(8)))
    arith = compile_linear("s", kb, {f"d{i}": list(range(10)) for i in range(8)})
    assert arith.kind == "chain"
    assert max(f.numel() for _, f in arith.factors) < 10 ** 5


class _Table(nn.Module):
    """A 'network' that returns fixed logits per call position (for exact checks)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits[x.long().view(-1)]


@pytest.mark.parametrize("n_digits", [1, 2, 3])
def test_probability_of_a_sum_is_exact(n_digits):
    kb = _numbers_kb(n_digits)
    # each neural digit reads the same input; give each variable its own distribution
    # by routing through a per-variable table keyed on the row
    torch.manual_seed(n_digits)
    probs = {v: torch.softmax(torch.randn(10), 0) for v in kb.neural}
    tables = {}
    lines = ["input img: tensor"]
    for v in kb.neural:
        lines.append(f"neural {v}: int 0..9 = net_{v}(img)")
        tables[f"net_{v}"] = _Table(torch.log(probs[v]).view(1, 10))
    for stmt in kb.statements:
        if isinstance(stmt, (gb.rules.ast.DefineDecl, gb.rules.ast.OutputDecl)):
            lines.append(gb.rules.to_text(stmt))
    kb = gb.rules.parse("\n".join(lines))
    model = gb.GreyBox(kb, tables)
    targets = torch.tensor([0, 7, 10 ** n_digits - 1, 10 ** n_digits + 5 if n_digits > 1 else 11])
    img = torch.zeros(len(targets), 1)
    lp = model({"img": img}).log_prob("total", targets - 0)

    # brute force over all digits
    def value(side, digits):
        return sum(d * 10 ** (n_digits - 1 - k) for k, d in enumerate(digits))

    dist = torch.zeros(2 * 10 ** n_digits, dtype=torch.float64)
    pa = [probs[f"a{k}"].double() for k in range(n_digits)]
    pb = [probs[f"b{k}"].double() for k in range(n_digits)]
    na = torch.zeros(10 ** n_digits, dtype=torch.float64)
    nb = torch.zeros(10 ** n_digits, dtype=torch.float64)
    for digits in itertools.product(range(10), repeat=n_digits):
        v = value("a", digits)
        na[v] = torch.prod(torch.stack([pa[k][d] for k, d in enumerate(digits)]))
        nb[v] = torch.prod(torch.stack([pb[k][d] for k, d in enumerate(digits)]))
    for i in range(10 ** n_digits):
        dist[i: i + 10 ** n_digits] += na[i] * nb
    want = torch.log(dist[targets])
    assert torch.allclose(lp.double(), want, atol=1e-4)


def test_gradients_reach_the_network_through_a_sum():
    kb = _numbers_kb(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    model = gb.GreyBox(kb, {"digit": net})
    lp = model({"img": torch.randn(3, 4)}).log_prob("total", torch.tensor([3, 50, 120]))
    (-lp.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in net.parameters())


def _bools_model(extra: str, pa=0.7, pb=0.4):
    kb = gb.rules.parse("input x: tensor\nneural a: bool = fa(x)\nneural b: bool = fb(x)\n"
                        "output y: bool\n" + extra)
    logit = lambda p: torch.logit(torch.tensor([[p]]))  # noqa: E731
    return gb.GreyBox(kb, {"fa": _Table(logit(pa)), "fb": _Table(logit(pb))})


@pytest.mark.parametrize("body,expected", [
    ("a and not b", 0.7 * 0.6),
    ("a or a", 0.7),                        # exact: the product t-norm would give 0.91
    ("a and a", 0.7),
    ("a or b", 1 - 0.3 * 0.6),
    ("(a -> b) and a", 0.7 * 0.4),
    ("(a <-> b)", 0.7 * 0.4 + 0.3 * 0.6),
])
def test_rule_bodies_get_their_exact_probability(body, expected):
    model = _bools_model(f"rule r: {body} -> y")
    trace = model({"x": torch.zeros(1, 1)})
    assert trace.bodies["r"].item() == pytest.approx(expected, abs=1e-6)


def test_hard_constraints_condition_the_neural_variables():
    model = _bools_model("constraint not_both: not (a and b)\nrule r: a -> y")
    trace = model({"x": torch.zeros(1, 1)})
    z = 1 - 0.7 * 0.4
    assert trace.values["a"].item() == pytest.approx(0.7 * 0.6 / z, abs=1e-6)
    assert trace.bodies["r"].item() == pytest.approx(0.7 * 0.6 / z, abs=1e-6)
    lp = trace.log_prob("b", torch.tensor([1]))
    assert lp.exp().item() == pytest.approx(0.3 * 0.4 / z, abs=1e-6)


def test_rows_that_no_assignment_satisfies_are_flagged():
    model = _bools_model("constraint never: a and not a\nrule r: a -> y")
    trace = model({"x": torch.zeros(2, 1)})
    assert trace.infeasible.tolist() == [True, True]
    with pytest.raises(gb.DataError, match="no decision satisfying the hard constraints"):
        model.predict({"x": torch.zeros(2, 1)})
    flagged = model.predict({"x": torch.zeros(2, 1)}, on_infeasible="flag")
    assert flagged["infeasible"].tolist() == [True, True]


def test_a_sum_too_large_to_enumerate_is_refused_in_a_rule_with_a_clear_error():
    kb = gb.rules.parse(gb.rules.to_text(_numbers_kb(8)) + "\noutput big: bool\n"
                        "rule r: total > 5 -> big")
    model = gb.GreyBox(kb, {"digit": nn.Sequential(nn.Flatten(), nn.Linear(4, 10))})
    with pytest.raises(gb.ModelError, match="'total' is a sum that exact inference keeps digit"):
        model({"img": torch.randn(2, 4)})


def test_predicting_a_huge_sum_uses_the_most_probable_digits():
    kb = _numbers_kb(8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    model = gb.GreyBox(kb, {"digit": net})
    x = torch.randn(5, 4)
    digits = net(x).argmax(1)
    pred = model.predict({"img": x})["total"].to_numpy()
    want = [2 * int("".join(str(int(d)) for d in [digits[i]] * 8)) for i in range(5)]
    assert pred.tolist() == want


def test_the_distribution_of_a_positional_sum_is_exact_and_predict_decides_crisply():
    kb = _numbers_kb(2)
    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    model = gb.GreyBox(kb, {"digit": net})
    x = torch.randn(3, 4)
    trace = model({"img": x})
    dist = trace.values["total"]
    assert dist.shape == (3, 199)
    p = torch.softmax(net(x), 1).double()          # every digit reads the same image
    number = torch.einsum("ba,bc->bac", p, p).reshape(3, 100)   # 10*a0 + a1
    want = torch.zeros(3, 199, dtype=torch.float64)
    for i in range(100):
        want[:, i:i + 100] += number[:, i:i + 1] * number
    assert torch.allclose(dist.double(), want, atol=1e-5)
    # predict is the decision function: the sum at each network's most probable digit
    # (here an untrained network, so far from the distribution's mode) ...
    d = net(x).argmax(1)
    assert model.predict({"img": x})["total"].tolist() == (22 * d).tolist()
    # ... and predict_proba gives the exact distribution, whose mode may differ
    proba = model.predict_proba({"img": x}, "total")
    assert proba.to_numpy().argmax(1).tolist() == want.argmax(1).tolist()


def _two_digits(extra: str, semantics="probabilistic"):
    probs = {"d1": torch.softmax(torch.arange(10.0) / 3, 0),
             "d2": torch.softmax(-torch.arange(10.0) / 4, 0)}
    kb = gb.rules.parse("input x: tensor\nneural d1: int 0..9 = f1(x)\n"
                        "neural d2: int 0..9 = f2(x)\ndefine total: int 0..18 = d1 + d2\n"
                        + extra)
    nets = {"f1": _Table(torch.log(probs["d1"]).view(1, 10)),
            "f2": _Table(torch.log(probs["d2"]).view(1, 10))}
    return gb.GreyBox(kb, nets, semantics=semantics), probs


def test_rules_over_a_defined_sum_get_its_exact_probability():
    model, p = _two_digits("output big: bool\nrule r: total > 10 and d1 != d2 -> big")
    trace = model({"x": torch.zeros(1, 1)})
    want = sum(float(p["d1"][a] * p["d2"][b]) for a in range(10) for b in range(10)
               if a + b > 10 and a != b)
    assert trace.bodies["r"].item() == pytest.approx(want, abs=1e-6)


def test_a_hard_constraint_on_a_sum_conditions_the_digits():
    model, p = _two_digits("constraint small: total <= 3\noutput o: bool\nrule r: d1 == 0 -> o")
    trace = model({"x": torch.zeros(1, 1)})
    joint = {(a, b): float(p["d1"][a] * p["d2"][b]) for a in range(10) for b in range(10)
             if a + b <= 3}
    z = sum(joint.values())
    want_d1 = [sum(v for (a, _), v in joint.items() if a == k) / z for k in range(10)]
    assert torch.allclose(trace.values["d1"][0].double(), torch.tensor(want_d1).double(),
                          atol=1e-6)
    assert trace.values["total"][0, 4:].abs().max() < 1e-7


@pytest.mark.parametrize("semantics", ["product", "godel", "lukasiewicz"])
def test_fuzzy_comparisons_of_a_distribution_with_a_constant_are_its_exact_mass(semantics):
    model, p = _two_digits("output o: bool\nrule r: d1 < 5 -> o\nrule s: d2 in {1, 3} -> o",
                           semantics)
    trace = model({"x": torch.zeros(1, 1)})
    assert trace.bodies["r"].item() == pytest.approx(float(p["d1"][:5].sum()), abs=1e-6)
    assert trace.bodies["s"].item() == pytest.approx(float(p["d2"][1] + p["d2"][3]), abs=1e-6)


# ------------------------------------------------------------- factored conjunctions


_FOUR = {"a": 0.7, "b": 0.4, "c": 0.55, "d": 0.2}


@pytest.mark.parametrize("body,truth", [
    ("a and b and c", lambda a, b, c, d: a and b and c),
    ("(a and b) or (c and d)", lambda a, b, c, d: (a and b) or (c and d)),
    ("not (a and b and c)", lambda a, b, c, d: not (a and b and c)),
    ("(a and b) -> (c or d)", lambda a, b, c, d: (not (a and b)) or c or d),
    ("(a and b) <-> (c and not d)", lambda a, b, c, d: (a and b) == (c and not d)),
    ("a or b or c or d", lambda a, b, c, d: a or b or c or d),
    ("(a or b) and (c or not d) and (a -> d)",
     lambda a, b, c, d: (a or b) and (c or not d) and ((not a) or d)),
])
@pytest.mark.parametrize("constrained", [False, True])
def test_factored_formulas_get_the_probability_of_enumeration(body, truth, constrained,
                                                                monkeypatch):
    """Every connective kept factored (a sum of products of its parts, as for a conjunction
    too large to tabulate) gives the probability enumeration gives, as a rule body and as a
    labelled define, with and without a hard constraint conditioning the variables."""
    import greybox.semantics.probabilistic as prob

    monkeypatch.setattr(prob, "SMALL_JOINT", 1)       # factor every connective
    text = "input x: tensor\n" + "".join(f"neural {v}: bool = f{v}(x)\n" for v in _FOUR)
    text += f"output y: bool\nrule r: ({body}) -> y\noutput z: bool\ndefine z: bool = {body}\n"
    if constrained:
        text += "constraint k: a or d\n"
    nets = {f"f{v}": _Table(torch.logit(torch.tensor([[p]]))) for v, p in _FOUR.items()}
    trace = gb.GreyBox(gb.rules.parse(text), nets)({"x": torch.zeros(1, 1)})
    total = hit = 0.0
    for world in itertools.product([False, True], repeat=4):
        if constrained and not (world[0] or world[3]):
            continue
        w = math.prod(p if x else 1 - p for x, p in zip(world, _FOUR.values()))
        total += w
        hit += w * truth(*world)
    want = hit / total
    assert trace.bodies["r"].item() == pytest.approx(want, abs=1e-6)
    assert trace.values["z"].item() == pytest.approx(want, abs=1e-6)
    for label, p in ((1, want), (0, 1 - want)):
        lp = trace.log_prob("z", torch.tensor([label]))
        assert lp.exp().item() == pytest.approx(p, abs=1e-6)


def _people_model(text: str, logits: torch.Tensor):
    """A model over ``set k: 0..29`` whose neural bools ``s[k]`` have the given logits."""
    kb = gb.rules.parse("set k: 0..29\ninput f[k]: tensor[1]\n"
                        "neural s[i in k]: bool = net(f[i])\n" + text)
    model = gb.GreyBox(kb, {"net": nn.Flatten(0)})
    x = logits.detach().double().float().clone().requires_grad_(True)
    return model({f"f[{i}]": x[:, i:i + 1] for i in range(30)}), x


def _chain_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(s[i] -> s[i + 1] for every i), by hand: the worlds 0..0 1..1 (j zeros first)."""
    logp1, logp0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
    zeros = torch.cat([torch.zeros(len(logits), 1, dtype=logits.dtype),
                       logp0.cumsum(1)], 1)                      # sum of the first j
    ones = torch.cat([logp1.flip(1).cumsum(1).flip(1),
                      torch.zeros(len(logits), 1, dtype=logits.dtype)], 1)
    return torch.logsumexp(zeros + ones, 1)


def test_a_forall_over_30_people_gets_its_exact_probability_and_gradient():
    """``forall i in 0..28: s[i] -> s[i + 1]`` ties 30 people in a chain (2^30 joint values,
    31 of them satisfying it): exact as a labelled define, as a soft constraint and as a hard
    one that conditions each person, with the gradient of the hand-written probability."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, generator=g, dtype=torch.float64) * 3
    chain = "forall i in 0..28: s[i] -> s[i + 1]"
    trace, x = _people_model(f"output ok: bool\ndefine ok: bool = {chain}\n"
                             f"constraint soft weight 1.0: {chain}\n", logits)
    lp = trace.log_prob("ok", torch.ones(2, dtype=torch.long))
    want = _chain_probability(x.detach().double().requires_grad_(True))
    assert torch.allclose(lp.double(), want, atol=1e-5)
    assert torch.allclose(trace.constraints["soft"].double(), want.exp(), atol=1e-6)
    got, = torch.autograd.grad(lp.sum(), x)
    ref = x.detach().double().requires_grad_(True)
    wanted, = torch.autograd.grad(_chain_probability(ref).sum(), ref)
    assert torch.allclose(got.double(), wanted, atol=1e-5)
    hard, _ = _people_model(f"constraint hard: {chain}\n", logits)
    all_ones = nn.functional.logsigmoid(logits.float()).sum(1)
    p0 = (all_ones.double() - _chain_probability(logits.float().double())).exp()
    assert torch.allclose(hard.values["s[0]"].double(), p0, atol=1e-5)


def test_a_forall_over_independent_pairs_is_their_product():
    """``forall i: s[i] -> not s[29 - i]`` over 30 people: 15 independent pairs, exact."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 30, generator=g) * 2
    trace, x = _people_model("output ok: bool\n"
                             "define ok: bool = forall i in 0..14: s[i] -> not s[29 - i]\n",
                             logits)
    p = torch.sigmoid(logits.double())
    want = torch.log(1 - p[:, :15] * p[:, 15:].flip(1)).sum(1)
    got = trace.log_prob("ok", torch.ones(3, dtype=torch.long))
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_a_high_treewidth_forall_is_refused_naming_it_and_the_approximate_route():
    """Every pair of 30 people tied (a clique: 2^29 values at some step whatever the
    order, and too many satisfying assignments to list) is refused before anything is
    allocated; so are a conjunction of 30 large disjunctions (2^30 products by
    inclusion-exclusion) and a hard constraint that negates a large conjunction."""
    from greybox.errors import ModelError

    clique = "forall i in 0..29, j in 0..29: i != j -> (s[i] and t[j] -> s[j])"
    trace, _ = _people_model(f"neural t[i in k]: bool = net(f[i])\noutput ok: bool\n"
                             f"define ok: bool = {clique}\n", torch.zeros(1, 30))
    with pytest.raises(ModelError, match=r"exact inference of the formula at <rules>:6:\d+ "
                                         r"\(.*\) over s\[0\], t\[1\], .*\(60 variables\) "
                                         r"needs [\d,]+ joint values per row at the largest "
                                         r"step of its elimination.*use a fuzzy semantics "
                                         r"\(semantics='product'"):
        trace.log_prob("ok", torch.ones(1, dtype=torch.long))
    nested = "forall i in 0..29: exists j in 0..29: i != j and s[j] and t[i]"
    trace, _ = _people_model(f"neural t[i in k]: bool = net(f[i])\noutput ok: bool\n"
                             f"define ok: bool = {nested}\n", torch.zeros(1, 30))
    with pytest.raises(ModelError, match=r"would expand it into 1,073,741,824 products of "
                                         r"its parts .*use a fuzzy semantics"):
        trace.log_prob("ok", torch.ones(1, dtype=torch.long))
    with pytest.raises(ModelError, match=r"is a hard constraint that is not a conjunction "
                                         r"of small parts .* make it a soft constraint"):
        _people_model("constraint k: not (forall i in 0..28: s[i] -> s[i + 1])\n",
                      torch.zeros(1, 30))
