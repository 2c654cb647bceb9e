"""``explain(model, data)``: everything behind a batch of decisions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from greybox.errors import ModelError
from greybox.functional import probability_of
from greybox.rules import ast as A
from greybox.rules.engine import closure, compile_expr

from ._explanation import Explanation, _numeric_inputs, labelled
from ._methods import METHODS, attribute
from ._params import parameter_attributions
from ._paths import recursive_proofs

__all__ = ["explain"]

#: values per parent tried when looking for the assignments behind a derived value
PROOF_BEAM = 3


class _Derived(dict):
    """Values by name for crisp evaluation of definitions on candidate assignments."""

    def __init__(self, kb, base):
        super().__init__(base)
        self.kb = kb

    def __missing__(self, name):
        var = self.kb.variables[name]
        if var.role != "defined":
            raise KeyError(name)
        enum = var.type if isinstance(var.type, A.EnumType) else None
        value = compile_expr(var.expr, self.kb, enum)(self)
        self[name] = value
        return value


def _proofs(kb, name: str, value_index: int, dists: dict, row: int, top: int = 3) -> str:
    """'total=7 because d1=3 (p=0.97) and d2=4 (p=0.95)': the most probable assignments of
    the network-predicted variables a derived value rests on."""
    var = kb.variables[name]
    reads = closure(kb, A.variables(var.expr))
    leaves = [n for n in kb.neural if n in reads]      # declaration order: digit[2] < digit[10]
    if not leaves or any(n not in dists or dists[n].dim() != 2 for n in leaves):
        return ""
    beam = PROOF_BEAM
    while beam > 1 and beam ** len(leaves) > 20000:    # many leaves (a family): narrower
        beam -= 1
    beams = []
    for n in leaves:
        p = dists[n][row]
        k = min(beam, p.numel())
        probs, idx = p.topk(k)
        beams.append([(int(i), float(q)) for i, q in zip(idx, probs)])
    if math.prod(len(b) for b in beams) > 20000:
        return ""
    combos = list(itertools.product(*beams))
    base = {}
    for j, n in enumerate(leaves):
        d = A.domain(kb.variables[n].type)
        base[n] = d.codes([d.value(c[j][0]) for c in combos])
    values = np.broadcast_to(np.asarray(_Derived(kb, base)[name], dtype=float), (len(combos),))
    target = float(A.domain(var.type).code_at(value_index))
    hits = [(math.prod(q for _, q in c), c) for c, v in zip(combos, values) if v == target]
    hits.sort(key=lambda h: -h[0])
    texts = []
    for _, c in hits[:top]:
        parts = [f"{n}={A.domain(kb.variables[n].type).value(i)} (p={q:.2f})"
                 for n, (i, q) in zip(leaves, c)]
        texts.append(" and ".join(parts))
    if not texts:
        return ""
    shown = A.domain(var.type).value(value_index)
    return f"{name}={shown} because " + "; or ".join(texts)


def _input_attributions(model, batch, trace, output, target, method):
    """Attributions of each neural concept to its network's inputs, of the residual to
    the table inputs, and of the output (through rules and residual) to the numeric table
    inputs: ``(attributions, deltas, methods used)``, each by name."""
    found = ({}, {}, {})
    feats = model.features(batch).detach()
    for name in model.kb.neural:
        _concept_attribution(model, batch, trace, feats, name, method, found)
    if model.residual is not None:
        _residual_attributions(model, trace, feats, output, target, method, found)
    if _numeric_inputs(model.kb) and output in trace.values:
        _output_attribution(model, batch, output, target, method, found)
    return found


def _keep(found, name: str, attr, delta, used: str) -> None:
    attributions, deltas, methods = found
    attributions[name] = attr.detach()
    deltas[name] = None if delta is None else delta.detach()
    methods[name] = used


def _network_input(model, batch, feats, var):
    """What a concept's network reads: its one tensor input, or its table inputs as the
    model feeds them (standardised if it scales them, enums one-hot); None for several
    tensors."""
    kb = model.kb
    tensors = [a for a in var.args if isinstance(kb.variables[a].type, A.TensorType)]
    if len(tensors) == 1 and len(var.args) == 1:
        return batch.values[var.args[0]]
    if tensors:
        return None  # several tensor arguments: not attributed here
    if not model.scales_inputs(var.network):
        feats = model.features(batch, standardise=False).detach()
    cols = []
    for a in var.args:
        t = kb.variables[a].type
        if isinstance(t, A.EnumType):
            start = model.feature_names.index(f"{a}={t.values[0]}")
            cols.extend(range(start, start + t.size))
        else:
            cols.append(model.feature_names.index(a))
    return feats[:, cols]


def _concept_attribution(model, batch, trace, feats, name, method, found) -> None:
    """Neural concept ``name`` attributed to its network's inputs (towards its most
    probable value)."""
    from greybox.functional import input_for

    var = model.kb.variables[name]
    net = model.network(var.network)
    x = _network_input(model, batch, feats, var)
    if x is None:
        return
    x = input_for(net, x)     # in the network's own dtype, as the model feeds it
    logits = trace.logits[name].detach()
    if logits.dim() == 2:
        tgt = logits.argmax(1)
    else:
        tgt = None
        if not isinstance(x, torch.Tensor):
            return
    probe = net(x[:1])
    if tgt is None and probe.dim() == 2:
        tgt = 0
    try:
        attr, delta = attribute(method, net, x, target=tgt, module=net)
    except RuntimeError as err:  # e.g. a network that indexes with its input
        found[2][name] = f"not attributable: {str(err).splitlines()[0]}"
        return
    _keep(found, name, attr, delta, method)


def _residual_attributions(model, trace, feats, output, target, method, found) -> None:
    """Each decided variable's residual network attributed to the table inputs."""
    for out in model.kb.decided:
        res = model.residual_for(out)
        if res is None:
            continue
        t = model.kb.variables[out].type
        tgt = None if isinstance(t, A.BoolType) else target if out == output else \
            trace.scores[out].argmax(1)
        if isinstance(t, A.BoolType) and res(feats[:1]).dim() == 2:
            tgt = 0
        attr, delta = attribute(method, res, feats, target=tgt, module=res)
        _keep(found, f"residual:{out}", attr, delta, method)


def _output_attribution(model, batch, output, target, method, found) -> None:
    """The output's probability (through rules and residual) attributed to the numeric
    table inputs, from their training means."""
    numeric = _numeric_inputs(model.kb)
    x = torch.stack([batch.values[n].float() for n in numeric], 1)
    others = [k for k in batch.values if k not in numeric]
    rest = tuple(batch.values[k] for k in others)
    base = torch.stack([model.feature_center[model.feature_names.index(n)] for n in numeric])

    def whole(xs, tgt, *rest_values):
        from greybox import Batch

        values = {n: xs[:, j] for j, n in enumerate(numeric)}
        values.update(dict(zip(others, rest_values)))
        tr = model(Batch(values, xs.shape[0], pd.RangeIndex(xs.shape[0]), {}), crisp=False)
        # rules without ~ thresholds compare crisply: the output is flat in the inputs
        # and their attributions are 0 (the zero term keeps the inputs in the graph)
        return probability_of(tr.values[output], tgt) + 0.0 * xs.sum(1)

    m = method if not METHODS[method].needs_module else "integrated_gradients"
    attr, delta = attribute(m, whole, x, baselines=base.expand_as(x).contiguous(),
                            extra=(target, *rest))
    _keep(found, output, attr, delta, m)


def _run(model, batch, output: str):
    """The model on the batch: its smooth trace (attributions are gradients, so they are
    taken through the semantics the model was trained under), its crisp trace (the
    decision, the rules' truths and contributions are those of the decision function,
    what predict returns), the residual's scores, and the values shown: the networks'
    distributions (a proof's p= figures) and the output's predict_proba."""
    kb = model.kb
    smooth = model(batch, crisp=False)   # whether or not the model is switched to crisp()
    trace = model(batch, crisp=True)
    residual = {k: v.detach() for k, v in model.residual_scores(batch).items()}
    values = {k: smooth.values[k].detach() for k in smooth.values}
    if kb.variables[output].role == "decided" and output not in kb.additive:
        proba = model.predict_proba(batch, output).to_numpy().copy()
        values[output] = torch.as_tensor(
            proba[:, 1] if proba.shape[1] == 2 and isinstance(
                kb.variables[output].type, A.BoolType) else proba,
            dtype=torch.float32)
    return smooth, trace, residual, values


def explain(model, data, output: str | None = None, *,
            method: str = "integrated_gradients", parameters: bool = True,
            top_k: int = 10, n_steps: int = 32,
            parameter_baseline: str = "thresholds", n_jobs: int | None = None) -> Explanation:
    """Explain the decisions of ``model`` on every row of ``data``.

    Parameters
    ----------
    model : GreyBox
    data : DataFrame or mapping
        The rows to explain (as for ``model(data)``); computed batched, on the model's
        device.
    output : str, optional
        The output to explain (default: the only output, or the first).
    method : str
        Captum method for input attributions: ``integrated_gradients`` (default),
        ``saliency``, ``input_x_gradient``, ``deeplift``, ``gradient_shap``,
        ``occlusion``, ``feature_ablation``, ``shapley_value_sampling``.
    parameters : bool
        Compute parameter attributions (integrated gradients over the parameters).
    top_k : int
        Individual parameter entries reported per row.
    n_steps : int
        Integration steps of the parameter attributions.
    parameter_baseline : str
        ``"thresholds"`` (default): parameters start from 0 except ``~`` thresholds, which
        keep their values; ``"zero"``: all start from 0.
    n_jobs : int, optional
        Explain the rows in that many chunks through ``joblib.Parallel`` (worker
        processes by default; ``joblib.parallel_config`` picks Dask or Ray), put back
        together in row order. Default: in this process, all rows at once.

    Returns
    -------
    Explanation

    Examples
    --------
    >>> import greybox as gb
    >>> model = gb.GreyBox('''
    ... input x: real[0, 10]
    ... output high: bool
    ... rule big weight 2: x > ~5 -> high
    ... rule small: x < 2 -> not high
    ... ''', semantics="product")
    >>> ex = gb.explain.explain(model, {"x": [8.0, 1.0]})
    >>> ex.decision["value"].tolist()
    [True, False]
    >>> [(r.rule, round(r.contribution, 3)) for r in ex.rules.query("row == 1").itertuples()]
    [('small', -1.0), ('big', 0.0)]
    """
    output = _checked_output(model.kb, output, method)
    if n_jobs is not None:
        from ._parallel import explain_chunks

        return explain_chunks(explain, model, data, output, {
            "method": method, "parameters": parameters, "top_k": top_k, "n_steps": n_steps,
            "parameter_baseline": parameter_baseline}, n_jobs)
    batch = model.batch(data).own()   # kept by the explanation: not the caller's memory
    was = model.training
    model.eval()
    try:
        frames, attributions, deltas, used, values = _explained(
            model, batch, output, method=method, parameters=parameters, top_k=top_k,
            n_steps=n_steps, parameter_baseline=parameter_baseline)
    finally:
        model.train(was)
    decision, rules, concepts, per_tensor, top, completeness = frames
    # rows are shown (and taken by every method) by their label in the data's index
    index = batch.index
    decision.index = index
    rules, concepts, per_tensor, top, completeness = (
        labelled(f, index) for f in (rules, concepts, per_tensor, top, completeness))
    return Explanation(
        output=output, semantics=model.semantics, index=index, decision=decision,
        rules=rules, concepts=concepts, attributions=attributions, deltas=deltas,
        methods=used, parameters=per_tensor, top_parameters=top, completeness=completeness,
        _model=model, _batch=batch, _values=values,
    )


def _checked_output(kb, output: str | None, method: str) -> str:
    """The output to explain (default the first), or a ModelError for an unknown
    ``method``, a name that is no output, or an output beyond ±2**53."""
    if method not in METHODS:
        raise ModelError(f"unknown attribution method {method!r}; choose one of "
                         f"{', '.join(METHODS)}")
    if output is None:
        output = kb.outputs[0]
    if output not in kb.variables or not kb.variables[output].output:
        raise ModelError(f"{output!r} is not an output (outputs: {', '.join(kb.outputs)})")
    if A.big_int(kb.variables[output].type):
        raise ModelError(f"{output!r} ranges beyond ±2**53 (a big integer): explanations "
                         "attribute a decision's probability value by value, which such an "
                         "output does not list; explain the variables it sums (predict gives "
                         "its exact value)")
    return output


def _explained(model, batch, output: str, *, method: str, parameters: bool, top_k: int,
               n_steps: int, parameter_baseline: str):
    """The explanation's parts for ``batch`` (the model in evaluation mode), rows by
    position: ``(decision, rules, concepts, parameters, top parameters, completeness)``,
    the input attributions, their deltas, the methods used, and the values shown."""
    kb = model.kb
    with torch.no_grad():
        smooth, trace, residual, values = _run(model, batch, output)
        target = trace.decisions()[output]
    finite = A.is_finite_type(kb.variables[output].type) and output not in kb.additive
    decision = _decision_frame(model, trace, output, target, values, residual, batch)
    # only what the output depends on: in a grounded model, the rules and concepts
    # of one member (cancer(anna)), not those of every other member
    needed = kb.depends_on(output) | {output}
    rules = _rules_frame(model, trace, batch.n, needed)
    if output in kb.additive:
        decision, rules = _additive_frames(model, batch, output, decision, rules)
    concepts = recursive_proofs(model, batch, _concepts_frame(model, values, batch.n, needed),
                                values)
    attributions, deltas, used = ({}, {}, {}) if not finite else \
        _input_attributions(model, batch, smooth, output, target, method)
    if parameters and finite and any(p.requires_grad for p in model.parameters()):
        per_tensor, top, completeness = parameter_attributions(
            model, batch, output, target, n_steps=n_steps, top_k=top_k,
            baseline=parameter_baseline)
    else:
        per_tensor = top = completeness = pd.DataFrame()
    return ((decision, rules, concepts, per_tensor, top, completeness), attributions, deltas,
            used, values)


def _decision_frame(model, trace, output, target, values, residual, batch) -> pd.DataFrame:
    kb = model.kb
    t = kb.variables[output].type
    n = batch.n
    frame = pd.DataFrame(index=range(n))
    if A.is_finite_type(t) and output not in kb.additive:
        frame["value"] = [A.domain(t).value(i) for i in target.tolist()]
        if output in values:
            frame["probability"] = probability_of(values[output], target).numpy()
    else:
        frame["value"] = target.numpy()
    if output in trace.scores and output not in kb.additive:   # additive: _additive_frames
        s = trace.scores[output].detach()
        if isinstance(t, A.BoolType):
            preferred = (s > 0).long()
            frame["score"] = s.numpy()
            frame["bias"] = model.decisions_bias(output).item()
        else:
            preferred = s.argmax(1)
            frame["score"] = s.gather(1, target.view(-1, 1)).squeeze(1).numpy()
            frame["bias"] = model.decisions_bias(output).detach()[target].numpy()
        r = residual.get(output)
        if r is not None:
            frame["residual"] = (r if r.dim() == 1 else r.gather(1, target.view(-1, 1))
                                 .squeeze(1)).numpy()
        frame["preferred"] = [A.domain(t).value(i) for i in preferred.tolist()]
        frame["changed_by_constraints"] = (preferred != target).numpy()
    frame["infeasible"] = trace.infeasible.cpu().numpy()
    return frame


def _additive_frames(model, batch, output, decision, rules):
    """An additive (regression) output's decision and rule frames from the decision
    function itself, in float64: ``value`` what ``predict`` returns, ``score`` = ``bias``
    + the rules' contributions (weight * [body]) + ``residual``, and ``gap``, what that
    sum misses of the score (0 but for float64 rounding where a residual adds to the
    bias); an int output's value is its score rounded (halves up) within its bounds."""
    ev, _ = model.decision.evaluate(batch)
    frame = decision.copy()
    value = ev.decisions[output].to_numpy()
    frame["value"] = value.tolist()
    frame["score"] = ev.scores[output].to_numpy()
    frame["bias"] = float(model.decisions_bias(output).detach().double().cpu())
    r = model.residual_scores(batch).get(output) if model.residual_for(output) is not None \
        else None
    if r is not None:
        frame["residual"] = r.detach().double().cpu().numpy()
    frame["preferred"] = frame["value"]
    frame["changed_by_constraints"] = False
    own = [n for n, rule in ev.kb.rules.items() if rule.head.name == output]
    contrib = ev.contributions[own].to_numpy() if own else np.zeros((batch.n, 0))
    parts = np.column_stack([frame["bias"].to_numpy(), contrib]
                            + ([frame["residual"].to_numpy()] if r is not None else []))
    frame["gap"] = frame["score"].to_numpy() - np.array([math.fsum(p) for p in parts])
    rules = rules.copy()
    if len(rules):
        learned = {n: ev.kb.rules[n].weight for n in own}
        mine = rules["rule"].isin(own).to_numpy()
        pos = rules["row"].to_numpy().astype(int)
        col = {n: j for j, n in enumerate(own)}
        rules.loc[mine, "weight"] = [learned[n] for n in rules.loc[mine, "rule"]]
        rules.loc[mine, "contribution"] = [
            float(contrib[i, col[n]]) for i, n in zip(pos[mine], rules.loc[mine, "rule"])]
    return frame, rules


def _rules_frame(model, trace, n, needed) -> pd.DataFrame:
    kb = model.kb
    rows = []
    for name, r in kb.rules.items():
        if "rule:" + name not in needed:
            continue
        truth = trace.bodies[name].detach().expand(n)
        contrib = trace.contributions[name].detach().expand(n)
        w = model.rule_weight(name).item()
        head = _head_text(r.head)
        for i in range(n):
            rows.append({"row": i, "rule": name, "head": head, "weight": w,
                         "truth": float(truth[i]), "contribution": float(contrib[i]),
                         "fired": bool(truth[i] > 0.5)})
    frame = pd.DataFrame(rows, columns=["row", "rule", "head", "weight", "truth",
                                        "contribution", "fired"])
    if len(frame):
        frame = frame.assign(_k=frame.contribution.abs()).sort_values(
            ["row", "_k"], ascending=[True, False], kind="stable").drop(columns="_k")
    return frame.reset_index(drop=True)


def _head_text(head: A.Head) -> str:
    if head.value is True:
        return head.name
    if head.value is False:
        return f"not {head.name}"
    value = head.value.value if isinstance(head.value, A.Num) else head.value.name
    return f"{head.name} = {value}"


def _concepts_frame(model, values, n, needed) -> pd.DataFrame:
    kb = model.kb
    rows = []
    for name, var in kb.variables.items():
        if name not in needed:
            continue
        if var.role not in ("neural", "defined", "decided") or var.output and var.role == "decided":
            continue
        if name not in values:
            continue
        v = values[name]
        t = var.type
        for i in range(n):
            entry = {"row": i, "concept": name, "role": var.role}
            if isinstance(t, A.BoolType):
                p = float(v[i])
                entry.update(value=p > 0.5, probability=max(p, 1 - p),
                             proof=_proofs(kb, name, int(p > 0.5), values, i)
                             if var.role == "defined" else "")
            elif A.is_finite_type(t) and v.dim() == 2:
                k = int(v[i].argmax())
                entry.update(value=A.domain(t).value(k), probability=float(v[i, k]),
                             proof=_proofs(kb, name, k, values, i) if var.role == "defined"
                             else "")
            else:
                entry.update(value=float(v[i]), probability=float("nan"), proof="")
            rows.append(entry)
    return pd.DataFrame(rows, columns=["row", "concept", "role", "value", "probability",
                                       "proof"])
