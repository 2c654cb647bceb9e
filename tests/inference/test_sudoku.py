"""Visual 4x4 sudoku (issue 13): predict's repair is the most probable valid grid (MAP),
and the example learns digits from validity labels and solves puzzles."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import greybox as gb
import greybox._repair as repair_module
import greybox.rules as gr
from greybox.errors import SolverError
from tests.conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES))
from sudoku import SOLVER, UNITS, VALIDITY, solutions  # noqa: E402

#: The solver with 4-value "images" that a pass-through network returns as the logits.
LOGIT_SOLVER = SOLVER.replace("tensor[64]", "tensor[4]")
#: The validity model likewise.
LOGIT_VALIDITY = VALIDITY.replace("tensor[64]", "tensor[4]")


class _Logits(nn.Module):
    """A 'network' whose output is its input: each cell's logits are given."""

    def forward(self, x):
        return x


def _solver(extra: str = ""):
    return gb.GreyBox(LOGIT_SOLVER + extra, {"digit_net": _Logits()})


def _brute_force_map(logits: np.ndarray) -> np.ndarray:
    """The valid grid of highest total log-probability, by enumerating all 288."""
    sols = solutions()
    logp = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()
    scores = logp[:, np.arange(16)[None, :], sols - 1].sum(-1)       # (rows, 288)
    return sols[scores.argmax(1)]


def _grid(frame) -> np.ndarray:
    return frame[[f"solution[{c}]" for c in range(16)]].to_numpy()


def _validity(logits: torch.Tensor):
    """P(valid) under the probabilistic semantics for given cell logits (rows, 16, 4):
    (log P(valid), log P(not valid)) per row, and the logits' gradient of their sum."""
    model = gb.GreyBox(LOGIT_VALIDITY, {"digit_net": _Logits()}, semantics="probabilistic")
    x = logits.detach().clone().requires_grad_(True)
    trace = model({f"img[{c}]": x[:, c] for c in range(16)})
    n = len(logits)
    yes = trace.log_prob("valid", torch.ones(n, dtype=torch.long))
    no = trace.log_prob("valid", torch.zeros(n, dtype=torch.long))
    grads = [torch.autograd.grad(v.sum(), x, retain_graph=True)[0] for v in (yes, no)]
    return yes, no, grads


def _brute_validity(logits: torch.Tensor):
    """The same by summing over the 288 valid grids (float64)."""
    x = logits.detach().double().clone().requires_grad_(True)
    logp = torch.log_softmax(x, -1)
    sols = torch.as_tensor(solutions() - 1)
    yes = torch.logsumexp(logp[:, torch.arange(16), sols].sum(-1), 1)      # (rows,)
    no = torch.log(-torch.expm1(yes))
    grads = [torch.autograd.grad(v.sum(), x, retain_graph=True)[0] for v in (yes, no)]
    return yes, no, grads


@pytest.mark.parametrize("route", ["models", "elimination"])
def test_exact_probability_of_validity_is_the_sum_over_the_288_grids(route, monkeypatch):
    """``define valid`` (12 all_different units over 16 neural digits, 4^16 joint values)
    gets its exact probability, kept as a product of its 56 pairwise parts: summed over
    the 288 grids its crisp parts allow, or (forced) by variable elimination in log space;
    P(not valid) and the gradients of both as well."""
    import greybox.semantics._logspace as logspace

    if route == "elimination":
        monkeypatch.setattr(logspace, "MAX_MODELS", 0)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 4, generator=g) * 2
    sols = torch.as_tensor(solutions() - 1)
    logits[0] += 8 * nn.functional.one_hot(sols[7], 4)     # reads a valid grid, mostly
    yes, no, grads = _validity(logits)
    ref_yes, ref_no, ref_grads = _brute_validity(logits)
    assert torch.allclose(yes.double(), ref_yes, rtol=1e-5, atol=1e-6)
    assert torch.allclose(no.double(), ref_no, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got.double(), want, atol=1e-5)
    assert yes[0] > -1.0 > yes[1]


@pytest.mark.parametrize("route", ["models", "elimination"])
def test_confident_networks_do_not_underflow(route, monkeypatch):
    """Digits read with a margin of 30 or 200 logits (float32 probabilities down to 0):
    P(valid) of a misread grid is e^-200-ish, P(not valid) of a well read one 1e-12-ish;
    both are exact in log space, with finite gradients."""
    import greybox.semantics._logspace as logspace

    if route == "elimination":
        monkeypatch.setattr(logspace, "MAX_MODELS", 0)
    sols = torch.as_tensor(solutions() - 1)
    wrong = sols[3].clone()
    wrong[5] = (wrong[5] + 1) % 4                        # one cell misread: invalid
    logits = torch.stack([30.0 * nn.functional.one_hot(sols[3], 4),
                          200.0 * nn.functional.one_hot(wrong, 4)]).float()
    yes, no, grads = _validity(logits)
    ref_yes, ref_no, _ = _brute_validity(logits)
    assert torch.isfinite(yes).all() and torch.isfinite(no).all()
    assert yes[1].item() == pytest.approx(ref_yes[1].item(), rel=1e-6)    # about -200
    assert yes[1] < -150
    assert no[0].item() == pytest.approx(ref_no[0].item(), rel=1e-4)      # about -27
    assert all(torch.isfinite(g).all() for g in grads)


def test_rules_read_the_factored_validity_exactly():
    """``valid`` kept factored is read by rules through a negation and a disjunction with
    another formula: their bodies are the brute-force probabilities over the 288 grids."""
    model = gb.GreyBox(LOGIT_VALIDITY + "output alarm: bool\n"
                       "rule r1 weight 2.0: not valid -> alarm\n"
                       "rule r2 weight 1.0: valid or digit[0] == 1 -> alarm\n",
                       {"digit_net": _Logits()}, semantics="probabilistic")
    sols = torch.as_tensor(solutions() - 1)
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 16, 4, generator=g) + 4 * nn.functional.one_hot(sols[11], 4)
    trace = model({f"img[{c}]": logits[:, c] for c in range(16)})
    logp = torch.log_softmax(logits.double(), -1)
    per_grid = logp[:, torch.arange(16), sols].sum(-1).exp()          # (rows, 288)
    valid = per_grid.sum(1)
    first_is_1 = logp[:, 0, 0].exp()
    both = per_grid[:, sols[:, 0] == 0].sum(1)
    assert 0.05 < valid.min() and valid.max() < 0.95
    assert torch.allclose(trace.bodies["r1"].double(), 1 - valid, atol=1e-6)
    assert torch.allclose(trace.bodies["r2"].double(), valid + first_is_1 - both, atol=1e-6)


def test_one_forall_constraint_is_factored_for_the_map(monkeypatch):
    """The 12 units written as one hard constraint (one conjunction over all 16 digits)
    are conditioned on part by part: predict's repair is the brute-force MAP, by
    elimination (Z3 not asked), as with the family of 12 constraints."""
    def no_z3(*args, **kwargs):
        raise AssertionError("the elimination should have decided")

    monkeypatch.setattr(repair_module, "_by_z3", no_z3)
    units = VALIDITY.split("define valid: bool = ")[1]
    text = LOGIT_SOLVER.split("constraint rows")[0] + "constraint units: " + units + (
        "output solution[cell]: int 1..4\ndefine solution[c in cell]: int 1..4 = digit[c]\n")
    g = np.random.default_rng(3)
    logits = g.normal(size=(4, 16, 4)).astype(np.float32)
    model = gb.GreyBox(text, {"digit_net": _Logits()})
    assert list(model.kb.constraints) == ["units"]
    got = _grid(model.predict({f"img[{c}]": logits[:, c] for c in range(16)}))
    assert (got == _brute_force_map(logits)).all()


def test_there_are_288_valid_grids():
    sols = solutions()
    assert sols.shape == (288, 16) and len({tuple(s) for s in sols}) == 288
    kb = gr.parse(SOLVER)
    ev = gr.evaluate(kb, {f"digit[{c}]": sols[:, c] for c in range(16)})
    assert not ev.infeasible.any()


def _route(exact: str, monkeypatch) -> None:
    """Force the repair's route: elimination, the 0/1 linear programme or Z3."""
    if exact != "elimination":   # no table is small enough
        monkeypatch.setattr(repair_module, "MAX_TABLE", 0)
    if exact == "z3":
        monkeypatch.setattr(repair_module, "_by_milp", lambda *args: None)
    else:
        monkeypatch.setattr(repair_module, "_by_z3", None)


@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
@pytest.mark.parametrize("signal", [0.0, 2.0])
def test_predict_repairs_to_the_most_probable_valid_grid(exact, signal, monkeypatch):
    """Noisy readings of valid grids (signal 0: pure noise) whose argmax breaks a
    constraint: predict's grid is the brute-force MAP over the 288 valid grids."""
    _route(exact, monkeypatch)
    rng = np.random.default_rng(1)
    sols = solutions()
    rows = 16
    truth = sols[rng.integers(0, len(sols), size=rows)]
    logits = np.eye(4)[truth - 1] * signal + rng.normal(size=(rows, 16, 4)) * 1.5
    argmax = logits.argmax(-1) + 1
    assert not any(all(len(set(g[u])) == 4 for u in UNITS) for g in argmax)
    model = _solver()
    data = model.kb.families["img"].split(torch.as_tensor(logits, dtype=torch.float32))
    got = _grid(model.predict(data))
    assert (got == _brute_force_map(logits)).all()


@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
def test_confident_misreads_are_repaired_never_called_infeasible(exact, monkeypatch):
    """Networks sure of a wrong digit (logit gaps of 200: probabilities below 1e-86,
    zero in float32): the valid grid that changes the fewest, least sure cells."""
    _route(exact, monkeypatch)
    sol = solutions()[7]
    read = sol.copy()
    read[5] = read[4]                                  # a clash in row 1 and box 0
    logits = np.eye(4)[read - 1] * 200.0
    logits[5] *= 0.5                                   # cell 5 is the least sure
    model = _solver()
    data = model.kb.families["img"].split(torch.as_tensor(logits[None], dtype=torch.float32))
    got = _grid(model.predict(data))
    assert (got == _brute_force_map(logits[None])).all()
    assert (got[0] != read).sum() >= 1 and all(len(set(got[0][u])) == 4 for u in UNITS)


@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
def test_a_valid_argmax_is_kept_and_givens_as_inputs_are_respected(exact, monkeypatch):
    _route(exact, monkeypatch)
    keep = ("input given[cell]: int 0..4\n"
            "constraint keep[c in cell]: given[c] > 0 -> digit[c] == given[c]\n")
    model = _solver(keep)
    sols = solutions()
    clean = np.eye(4)[sols[:2] - 1] * 5.0            # confident and valid: kept as is
    noisy = np.zeros((2, 16, 4))                     # no idea at all: the givens decide
    given = np.zeros((4, 16), dtype=np.int64)
    given[2:, :8] = sols[2:4, :8]                    # the top two rows of two grids given
    data = model.kb.families["img"].split(torch.as_tensor(np.concatenate([clean, noisy]),
                                                          dtype=torch.float32))
    data.update(model.kb.families["given"].split(given))
    got = _grid(model.predict(data))
    assert (got[:2] == sols[:2]).all()
    assert (got[2:, :8] == sols[2:4, :8]).all()
    ev = gr.evaluate(model.kb, {**{f"digit[{c}]": got[:, c] for c in range(16)},
                                **{f"given[{c}]": given[:, c] for c in range(16)}})
    assert not ev.infeasible.any() and not ev.violations.to_numpy().any()
    assert all(len(set(g[u])) == 4 for g in got for u in UNITS)


@pytest.mark.parametrize("exact", ["elimination", "milp", "z3"])
def test_contradictory_givens_are_infeasible_not_violated(exact, monkeypatch):
    _route(exact, monkeypatch)
    model = _solver("input given[cell]: int 0..4\n"
                    "constraint keep[c in cell]: given[c] > 0 -> digit[c] == given[c]\n")
    given = np.zeros((1, 16), dtype=np.int64)
    given[0, :2] = 1                                  # two 1s in the first row
    data = model.kb.families["img"].split(torch.zeros(1, 16, 4))
    data.update(model.kb.families["given"].split(given))
    with pytest.raises(gb.DataError, match="no decision satisfying the hard constraints"):
        model.predict(data)
    assert model.predict(data, on_infeasible="flag")["infeasible"].tolist() == [True]


def test_z3_running_out_of_time_is_an_error_never_infeasible(monkeypatch):
    import z3

    _route("z3", monkeypatch)
    monkeypatch.setattr(z3.Optimize, "check", lambda self, *args: z3.unknown)  # time out
    model = _solver()
    logits = torch.as_tensor(np.random.default_rng(0).normal(size=(1, 16, 4)) * 1.5,
                             dtype=torch.float32)
    data = model.kb.families["img"].split(logits)
    with pytest.raises(SolverError, match="within 5 s .*not known to be infeasible"):
        model.predict(data, on_infeasible="flag")


@pytest.mark.parametrize("semantics", ["product", "probabilistic"])
def test_explanations_over_groundings_name_grounded_facts(semantics):
    """On the validity model, with cell 6 of a valid grid misread (a 1 where a 2 is):
    reasons, counterfactuals, the debugger and verify speak of members such as digit[6]
    (validity trained by the product t-norm, or kept factored by exact inference)."""
    sol = solutions()[0].copy()
    read = sol.copy()
    read[6] = 1 if sol[6] != 1 else 2
    logits = np.eye(4)[read - 1] * 4.0
    model = gb.GreyBox(VALIDITY.replace("tensor[64]", "tensor[4]"), {"digit_net": _Logits()},
                       semantics=semantics)
    data = model.kb.families["img"].split(torch.as_tensor(logits[None], dtype=torch.float32))
    assert model.predict(data)["valid"].tolist() == [False]
    clash = next(c for u in UNITS if 6 in u for c in u if c != 6 and sol[c] == read[6])
    reason = gb.explain.reason(model, data)
    assert set(reason.facts) == {"digit[6]", f"digit[{clash}]"}
    assert f"digit[6] = {read[6]}" in str(reason)
    cf = gb.explain.counterfactual(model, data)
    assert cf.verified and cf.new_decision is True and len(cf.changes) == 1
    assert cf.changes["fact"].iloc[0] in {"digit[6]", f"digit[{clash}]"}
    ex = gb.explain.explain(model, data, parameters=False, n_steps=2)
    assert f"concept: digit[6] = {read[6]}" in str(ex)
    proof = ex.concepts.set_index("concept").loc["valid", "proof"]   # 16 leaves: beam 1
    assert proof.startswith("valid=False because digit[0]=") and f"digit[6]={read[6]}" in proof
    dbg = gb.explain.Debugger(model, {**data, "valid": [True]})
    blame = dbg.blame(0)
    assert "digit[6]" in str(blame)
    assert gb.explain.verify(model, "digit[0] == digit[1] -> not valid").holds
    solver = _solver()
    assert gb.explain.verify(solver, "solution[0] != solution[5]").holds
    refuted = gb.explain.verify(solver, "solution[0] != solution[10]")
    assert not refuted.holds and refuted.confirmed


def test_a_reason_with_free_cells_names_the_givens_that_force_a_blank_cell():
    """Which givens force a blank cell: the blank cells are free, so the reason for
    solution[c] is the givens that, through the constraints, leave it one value."""
    sols = solutions()
    sol = sols[5]
    # the givens: the fewest cells whose values leave sol the only completion
    for k in range(4, 17):
        given = np.arange(16)[np.random.default_rng(k).permutation(16)][:k]
        if ((sols[:, given] == sol[given]).all(axis=1)).sum() == 1:
            break
    blank = [c for c in range(16) if c not in set(given)]
    logits = np.zeros((16, 4))
    logits[given] = np.eye(4)[sol[given] - 1] * 5.0          # read with confidence
    model = _solver()
    data = model.kb.families["img"].split(torch.as_tensor(logits[None], dtype=torch.float32))
    cell = blank[0]
    assert _grid(model.predict(data))[0, cell] == sol[cell]
    free = [f"digit[{c}]" for c in blank]
    r = gb.explain.reason(model, data, output=f"solution[{cell}]", free=free)
    assert r.decision == sol[cell] and r.free == tuple(free) and r.verified
    named = [int(f[6:-1]) for f in r.facts]
    assert set(named) <= set(given) and all(r.facts[f"digit[{c}]"] == sol[c] for c in named)
    assert f", whatever digit[{cell}]" in str(r)

    def forced(cells):   # every valid grid agreeing on these cells has sol[cell] there
        agree = (sols[:, cells] == sol[cells]).all(axis=1)
        return bool((sols[agree, cell] == sol[cell]).all())

    assert forced(named)                                        # it is a reason
    assert not any(forced([c for c in named if c != d]) for d in named)   # and minimal
    # the cell's own (decided) value alone is the reason when it is not free
    own = gb.explain.reason(model, data, output=f"solution[{cell}]")
    assert own.facts == {f"digit[{cell}]": sol[cell]} and not own.free
    # with every cell free, nothing forces it: said, with a value that differs
    with pytest.raises(gb.ModelError, match=rf"do not force solution\[{cell}\] = "):
        gb.explain.reason(model, data, output=f"solution[{cell}]",
                          free=[f"digit[{c}]" for c in range(16)])
    with pytest.raises(gb.ModelError, match="free names 'digit\\[99\\]'"):
        gb.explain.reason(model, data, output=f"solution[{cell}]", free="digit[99]")


@pytest.mark.slow
def test_the_example_learns_digits_from_validity_alone_and_solves_puzzles():
    import sudoku

    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny tensors: one thread is fastest, and robust to load
    try:
        r = sudoku.run(puzzles=50, progress=False)      # the example's defaults, seed 0
    finally:
        torch.set_num_threads(threads)
    # learned from validity labels only: chance is 0.25 (about 0.3 under the best naming)
    assert r["digit_accuracy_up_to_naming"] > 0.9 and r["digit_accuracy"] > 0.9
    assert r["validity_accuracy"] > 0.85          # half the 1,000 unseen grids are valid
    assert r["solve_accuracy"] > 0.9
    grid = r["solved"]
    kb = r["solver"].kb
    ev = gr.evaluate(kb, {f"digit[{c}]": grid[:, c] for c in range(16)})
    assert len(ev.violations.columns) == 12 and not ev.violations.to_numpy().any()
    shown = r["shown"]
    assert (grid[shown > 0] == shown[shown > 0]).mean() > 0.98   # givens kept (MAP may fix a misread)
