"""Monte Carlo blocks of the approximate route (greybox/semantics/_sampled.py): a formula
too large for exact inference is estimated from sampled worlds. Its estimate agrees with
exact inference within its standard error where both run, its IndeCateR gradient with
exact autograd, reachability past the exact route's limit with a networkx Monte Carlo
over the same edges; the exact route's refusals are unchanged."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

import greybox as gb
from greybox.errors import ModelError
from greybox.semantics import _approx, _sampled


def _text(n: int, extra: str = "") -> str:
    return f"""
set node: {{{', '.join(f'n{i}' for i in range(n))}}}
input feat(node, node): tensor
neural edge(x in node, y in node): bool = enet(feat(x, y))
define reach(x in node, y in node): bool =
    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))
output goal: bool
rule r: reach(n0, n{n - 1}) -> goal
{extra}"""


class _Logit(torch.nn.Module):
    """The feature is the edge's logit."""

    def forward(self, x):
        return x


def _probs(n: int, rows: int = 3, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.95, size=(rows, n * n))


def _truth(n, p, inference, *, grad=False, **options):
    """P(reach(n0, n_last)) per row, and the edge logits (a leaf when ``grad``)."""
    model = gb.GreyBox(_text(n), {"enet": _Logit()}, inference=inference, **options)
    logit = torch.logit(torch.tensor(p, dtype=torch.float32)).requires_grad_(grad)
    feats = {f"feat(n{i}, n{j})": logit[:, i * n + j].reshape(-1, 1)
             for i in range(n) for j in range(n)}
    return model(feats).bodies["r"].double(), logit


@pytest.fixture
def forced(monkeypatch):
    """Every query of the approximate route sampled (the block limit at 1), counted."""
    calls = []
    real = _approx.sampled_mean

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_approx, "COMPONENT_LIMIT", 1)
    monkeypatch.setattr(_approx, "sampled_mean", counted)
    return calls


@pytest.mark.parametrize("n, chunk", [(4, _sampled.CHUNK), (4, 64), (5, _sampled.CHUNK)])
def test_sampled_block_equals_exact_within_four_standard_errors(n, chunk, forced,
                                                                 monkeypatch):
    monkeypatch.setattr(_sampled, "CHUNK", chunk)     # 64: worlds drawn 21 at a time
    p = _probs(n)
    with torch.no_grad():
        exact = _truth(n, p, "exact")[0]
        est = _truth(n, p, "approximate")[0]
    assert forced, "the sampled block was not used"
    se = (exact * (1 - exact) / _sampled.SAMPLES).sqrt().clamp(min=1e-3)
    assert ((est - exact).abs() <= 4 * se).all(), (est, exact, se)


def test_sampled_prediction_is_reproducible(forced):
    p = _probs(4)
    with torch.no_grad():
        a, b = _truth(4, p, "approximate")[0], _truth(4, p, "approximate")[0]
    assert torch.equal(a, b)


def test_indecater_gradient_equals_exact_autograd(forced, monkeypatch):
    n, p = 3, _probs(3, rows=2, seed=3)
    got = []
    for seed in range(8):
        monkeypatch.setattr(_sampled, "SEED", seed)
        truth, logit = _truth(n, p, "approximate", grad=True)
        got.append(torch.autograd.grad(truth.sum(), logit)[0])
    truth, logit = _truth(n, p, "exact", grad=True)
    want = torch.autograd.grad(truth.sum(), logit)[0]
    mean = torch.stack(got).mean(0)
    assert torch.allclose(mean, want, atol=0.01), (mean - want).abs().max()


def _networkx(n: int, p: np.ndarray, samples: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    pairs = [(i, j) for i in range(n) for j in range(n)]
    out = []
    for row in p:
        hits = 0
        for on in rng.random((samples, len(pairs))) < row:
            g = nx.DiGraph()
            g.add_nodes_from(range(n))
            g.add_edges_from(pair for pair, o in zip(pairs, on) if o)
            hits += nx.has_path(g, 0, n - 1)
        out.append(hits / samples)
    return np.array(out)


@pytest.mark.parametrize("n", [6, 7])
def test_reach_past_the_exact_limit_runs_approximately(n):
    p = _probs(n, seed=5)
    p[:, [i * n + n - 1 for i in range(n)]] = 0.03      # edges into the target rare
    with torch.no_grad():
        est = _truth(n, p, "approximate")[0].numpy()
    want = _networkx(n, p, 4000)
    se = np.sqrt(want * (1 - want) * (1 / _sampled.SAMPLES + 1 / 4000)).clip(min=2e-3)
    assert (np.abs(est - want) <= 4 * se).all(), (est, want, se)


def test_exact_route_still_refuses_with_its_message():
    with pytest.raises(ModelError, match=r"would expand it into 729 products") as err:
        _truth(6, _probs(6), "exact")
    # named by the recursive define the user wrote, not its hidden layer (review), and
    # pointing at the route that runs it
    text = str(err.value)
    assert "@" not in text and "inference='approximate'" in text
    assert text.startswith("define 'reach(n0, n5)' (recursive: step ")


def test_gradient_flows_past_the_exact_limit():
    truth, logit = _truth(6, _probs(6), "approximate", grad=True)
    g = torch.autograd.grad(truth.sum(), logit)[0]
    assert torch.isfinite(g).all() and (g.abs() > 0).any()


def test_hard_constraint_on_a_sampled_formula_is_refused():
    model = gb.GreyBox(_text(6, "constraint c: reach(n0, n5)"), {"enet": _Logit()},
                       inference="approximate")
    logit = torch.zeros(2, 36)
    feats = {f"feat(n{i}, n{j})": logit[:, i * 6 + j].reshape(-1, 1)
             for i in range(6) for j in range(6)}
    with pytest.raises(ModelError, match=r"estimated by sampling.*hard constraints cannot"):
        model(feats)


def test_log_of_an_estimate_of_zero_is_the_floor():
    p = torch.zeros(3, requires_grad=True)
    held = _approx._at_least(p)
    assert torch.allclose(held.log(), torch.full((3,), np.log(0.5 / _sampled.SAMPLES)))
    assert torch.autograd.grad(held.sum(), p)[0].tolist() == [1.0, 1.0, 1.0]


def test_a_factored_block_exact_inference_refuses_is_sampled(monkeypatch):
    from greybox.semantics import _logspace
    clauses = " and ".join(f"(s[{i}] or not s[{(i + 3) % 12}] or s[{(i + 5) % 12}])"
                           for i in range(12))
    text = ("set k: 0..11\ninput f[k]: tensor[1]\nneural s[i in k]: bool = net(f[i])\n"
            f"output ok: bool\ndefine ok: bool = {clauses}\n")
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(3, 12)), dtype=torch.float32)
    data = {f"f[{i}]": x[:, i:i + 1] for i in range(12)}

    def p_ok(inference):
        model = gb.GreyBox(text, {"net": torch.nn.Flatten(0)}, inference=inference)
        with torch.no_grad():
            return model(data).log_prob("ok", torch.ones(3)).double().exp()

    exact = p_ok("exact")
    monkeypatch.setattr(_logspace, "FACTOR_LIMIT", 1)      # every elimination refused
    monkeypatch.setattr(_approx, "COMPONENT_LIMIT", 1)
    with pytest.raises(ModelError, match="inference='approximate'"):
        p_ok("exact")
    est = p_ok("approximate")
    se = (exact * (1 - exact) / _sampled.SAMPLES).sqrt().clamp(min=1e-3)
    assert ((est - exact).abs() <= 4 * se).all(), (est, exact, se)
    assert not torch.equal(est, exact)                   # (it was sampled)


def test_samples_option_is_kept_saved_and_checked(tmp_path):
    model = gb.GreyBox(_text(6), {"enet": _Logit()}, inference="approximate", samples=4000)
    assert "samples=4000" in repr(model) and model.replace().samples == 4000
    model.save(tmp_path / "m.gbx")
    assert gb.load(tmp_path / "m.gbx", networks={"enet": _Logit()}).samples == 4000
    p = _probs(6, seed=5)
    with torch.no_grad():
        few = _truth(6, p, "approximate")[0]
        many = _truth(6, p, "approximate", samples=8000)[0]
    se = (many * (1 - many) / 1000).sqrt().clamp(min=1e-3)
    assert not torch.equal(few, many) and ((few - many).abs() <= 4 * se).all()
    with pytest.raises(ModelError, match=r"samples must be a positive integer.*got 0"):
        gb.GreyBox(_text(4), {"enet": _Logit()}, inference="approximate", samples=0)
