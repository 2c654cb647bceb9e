"""Tables larger than memory: :func:`predict_partitions`, :func:`evaluate_partitions` and
:func:`explain_partitions` map a Dask DataFrame partition by partition (metadata declared,
the row labels kept), so only a few partitions are in memory at a time."""

from __future__ import annotations

import os

import pandas as pd

from greybox.errors import ModelError

from ._explain import explain
from ._parallel import _one_thread

__all__ = ["evaluate_partitions", "explain_partitions", "predict_partitions"]


def _dask_frame(data, what: str):
    try:
        import dask.dataframe as dd
    except ImportError as err:   # pragma: no cover - the extra is optional
        raise ModelError(f"{what} needs dask: pip install 'greybox-nesy[dask]'") from err
    if not isinstance(data, dd.DataFrame):
        raise ModelError(f"{what} maps a dask.dataframe.DataFrame partition by partition, "
                         f"got {type(data).__name__} (a pandas table: call the model "
                         "directly)")
    return data


def _predict_part(part: pd.DataFrame, model, options: dict, parent: int) -> pd.DataFrame:
    _one_thread(parent)
    return model.predict(part, **options)


def predict_partitions(model, data, **options):
    """:meth:`GreyBox.predict` of a Dask DataFrame, partition by partition: a lazy Dask
    DataFrame with the same index (row labels) and divisions, one column per output
    (plus ``infeasible`` with ``on_infeasible="flag"``). Its metadata is declared from
    ``predict`` of no rows, so nothing is computed until asked; a partition is all
    that one worker holds at a time.

    Parameters
    ----------
    model : GreyBox
    data : dask.dataframe.DataFrame
        The inputs, one column per table input.
    **options
        As :meth:`GreyBox.predict` (``on_infeasible``, ``batch_size``).

    Returns
    -------
    dask.dataframe.DataFrame

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd, greybox as gb
    >>> model = gb.GreyBox("input x: real[0, 10]  output high: bool  rule r: x > 5 -> high",
    ...                    semantics="product")
    >>> table = dd.from_pandas(pd.DataFrame({"x": [1.0, 7.0, 9.0]}, index=[10, 11, 12]),
    ...                        npartitions=2)
    >>> out = gb.explain.predict_partitions(model, table)
    >>> out.compute()["high"].to_dict()
    {10: False, 11: True, 12: True}
    """
    data = _dask_frame(data, "predict_partitions")
    meta = model.predict(data._meta, **options)
    return data.map_partitions(_predict_part, model, options, os.getpid(), meta=meta,
                               align_dataframes=False)


def _evaluate_part(part: pd.DataFrame, kb) -> pd.DataFrame:
    from greybox.rules import evaluate

    ev = evaluate(kb, part)
    out = ev.decisions.copy()
    out["infeasible"] = ev.infeasible.to_numpy()
    out.index = part.index
    return out


def evaluate_partitions(kb, data):
    """Crisp evaluation (:func:`greybox.rules.evaluate`) of a Dask DataFrame, partition by
    partition: a lazy Dask DataFrame of the decisions after the hard constraints, and
    ``infeasible``, with the data's index; its metadata is declared from the evaluation
    of no rows.

    Parameters
    ----------
    kb : KnowledgeBase or str
        The rules (a model's learned rules: ``model.to_kb()``).
    data : dask.dataframe.DataFrame

    Returns
    -------
    dask.dataframe.DataFrame

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd, greybox as gb
    >>> kb = gb.rules.parse("input x: real  output high: bool  rule r: x > 5 -> high")
    >>> table = dd.from_pandas(pd.DataFrame({"x": [1.0, 7.0]}, index=["a", "b"]),
    ...                        npartitions=2)
    >>> gb.explain.evaluate_partitions(kb, table).compute()["high"].to_dict()
    {'a': False, 'b': True}
    """
    from greybox.rules import KnowledgeBase, parse

    data = _dask_frame(data, "evaluate_partitions")
    if not isinstance(kb, KnowledgeBase):
        kb = parse(kb)
    meta = _evaluate_part(data._meta, kb)
    return data.map_partitions(_evaluate_part, kb, meta=meta, align_dataframes=False)


def _explain_part(part: pd.DataFrame, model, output, options: dict,
                  parent: int) -> pd.DataFrame:
    _one_thread(parent)
    if len(part) == 0:
        return _explain_meta(model, output, part.index)
    ex = explain(model, part, output, **options)
    frame = ex.decision.copy()
    rules = ex.rules
    top = rules.drop_duplicates("row", keep="first").set_index("row") \
        if len(rules) else pd.DataFrame(columns=["rule", "contribution"])
    frame["top_rule"] = pd.Series([top["rule"].get(r) if r in top.index else None
                                   for r in frame.index], index=frame.index, dtype=object)
    frame["top_contribution"] = [float(top["contribution"].get(r)) if r in top.index
                                 else float("nan") for r in frame.index]
    return frame


def _explain_meta(model, output, index) -> pd.DataFrame:
    """The columns and dtypes of :func:`_explain_part`, from a decision frame of no rows
    (the columns a decision frame has depend on the model, not on the rows)."""
    from greybox.rules import ast as A

    kb = model.kb
    var = kb.variables[output]
    if output in kb.additive:   # a number: explain's float64 frame of the decision function
        kind = "int64" if isinstance(var.type, A.IntType) else "float64"
        cols = {"value": kind, "infeasible": bool, "score": "float64", "bias": "float64"}
        if model.residual_for(output) is not None:
            cols["residual"] = "float64"
        cols.update({"preferred": kind, "changed_by_constraints": bool, "gap": "float64",
                     "top_rule": object, "top_contribution": "float64"})
        return pd.DataFrame({k: pd.Series([], dtype=d).to_numpy() for k, d in cols.items()},
                            index=index)
    finite = A.is_finite_type(var.type)
    kind = bool if isinstance(var.type, A.BoolType) else "int64" \
        if isinstance(var.type, A.IntType) else object if finite else float
    cols: dict = {"value": pd.Series([], dtype=kind)}
    if finite:   # torch's float32, as the explanation holds them
        cols["probability"] = pd.Series([], dtype="float32")
    if var.role == "decided":
        cols["score"] = pd.Series([], dtype="float32")
        cols["bias"] = pd.Series([], dtype=float if isinstance(var.type, A.BoolType)
                                 else "float32")
        if model.residual_for(output) is not None:
            cols["residual"] = pd.Series([], dtype="float32")
        cols["preferred"] = pd.Series([], dtype=kind)
        cols["changed_by_constraints"] = pd.Series([], dtype=bool)
    cols["infeasible"] = pd.Series([], dtype=bool)
    cols["top_rule"] = pd.Series([], dtype=object)
    cols["top_contribution"] = pd.Series([], dtype=float)
    return pd.DataFrame({k: v.to_numpy() for k, v in cols.items()}, index=index)


def explain_partitions(model, data, output: str | None = None, *, parameters: bool = False,
                       **options):
    """:func:`explain` of a Dask DataFrame, partition by partition, kept as a score table:
    a lazy Dask DataFrame with the data's index and, per row, the decision frame of the
    explanation (``value``, ``probability``, ``score``, ``bias``, ...) and the rule that
    contributed most (``top_rule``, ``top_contribution``). The metadata is declared
    from the model (no rows computed).

    Parameters
    ----------
    model : GreyBox
    data : dask.dataframe.DataFrame
    output : str, optional
    parameters : bool
        Parameter attributions (off by default here: the table keeps none of them).
    **options
        As :func:`explain` (``method``, ``n_steps``, ...).

    Returns
    -------
    dask.dataframe.DataFrame

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd, greybox as gb
    >>> model = gb.GreyBox('''
    ... input x: real[0, 10]
    ... output high: bool
    ... rule big weight 2: x > 5 -> high
    ... rule small: x < 2 -> not high
    ... ''', semantics="product")
    >>> table = dd.from_pandas(pd.DataFrame({"x": [8.0, 1.0, 3.0]}), npartitions=2)
    >>> scored = gb.explain.explain_partitions(model, table).compute()
    >>> scored[["value", "top_rule"]].values.tolist()
    [[True, 'big'], [False, 'small'], [False, 'big']]
    """
    data = _dask_frame(data, "explain_partitions")
    output = output or model.kb.outputs[0]
    if output not in model.kb.variables or not model.kb.variables[output].output:
        raise ModelError(f"{output!r} is not an output (outputs: "
                         f"{', '.join(model.kb.outputs)})")
    options = {**options, "parameters": parameters}
    meta = _explain_meta(model, output, data._meta.index)
    return data.map_partitions(_explain_part, model, output, options, os.getpid(), meta=meta,
                               align_dataframes=False)
