"""What :func:`~greybox.rules.induce` learns: the target's classes in the rule language
and the inputs' types, read from the data alone or from a knowledge base to add to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from greybox.errors import DataError

from . import _ast as A


@dataclass(frozen=True)
class _Target:
    """How the output's classes map to the rule language."""

    name: str
    type: A.BoolType | A.IntType | A.EnumType
    classes: tuple  # the values as the targets hold them, declaration order
    codes: np.ndarray  # each row's class index

    @property
    def k(self) -> int:
        return len(self.classes)

    def head(self, cls: int) -> A.Head:
        if isinstance(self.type, A.BoolType):
            return A.Head(self.name, bool(cls))
        if isinstance(self.type, A.IntType):
            return A.Head(self.name, A.Num(int(self.classes[cls])))
        return A.Head(self.name, A.Sym(str(self.type.values[cls])))


def _name_ok(name, what: str) -> str:
    problem = A.name_problem(name)
    if problem is not None:
        raise DataError(f"{what} {name!r} cannot be a variable: {problem}")
    return name


def _input_type(name: str, s: pd.Series) -> A.Node:
    if pd.api.types.is_bool_dtype(s.dtype):
        return A.BoolType()
    if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        if pd.isna(s).any():
            row = s.index[int(np.argmax(pd.isna(s).to_numpy()))]
            raise DataError(f"column {name!r}: missing value at row {row!r}; expected one "
                            "of its categories (fill or drop missing values first)")
        values = (list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                  else sorted(set(s.tolist()), key=str))
        for v in values:
            if not isinstance(v, str) or A.name_problem(v) is not None:
                raise DataError(f"column {name!r}: category {v!r} cannot be an enum value "
                                "(expected strings without back-quotes or control characters)")
        return A.EnumType(tuple(values))
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = s.index[int(np.argmax(bad))]
        raise DataError(f"column {name!r}: {float(values[bad][0])!r} at row {row!r}; expected "
                        "finite numbers (NaN is a missing value: fill or drop it first)")
    return A.RealType()


def _target_from_values(name: str, y: pd.Series) -> _Target:
    if pd.isna(y).any():
        row = y.index[int(np.argmax(pd.isna(y).to_numpy()))]
        raise DataError(f"targets: missing value at row {row!r}")
    if isinstance(y.dtype, pd.CategoricalDtype):
        classes = tuple(c for c in y.cat.categories if (y == c).any())
    else:
        classes = tuple(sorted(set(y.tolist()), key=lambda v: (str(type(v)), v)))
    if len(classes) < 2:
        raise DataError(f"targets: one class only ({classes[0]!r} on all {len(y)} rows); "
                        "rules need at least two classes to tell apart")
    if pd.api.types.is_bool_dtype(y.dtype) or set(classes) <= {0, 1}:
        typ: A.Node = A.BoolType()
        classes = (False, True) if pd.api.types.is_bool_dtype(y.dtype) else (0, 1)
    elif (pd.api.types.is_integer_dtype(y.dtype)
          and list(classes) == list(range(int(classes[0]), int(classes[-1]) + 1))):
        typ = A.IntType(int(classes[0]), int(classes[-1]))
    else:
        for v in classes:
            if A.name_problem(str(v)) is not None:
                raise DataError(f"targets: class {v!r} cannot be an enum value: "
                                f"{A.name_problem(str(v))}")
        typ = A.EnumType(tuple(str(v) for v in classes))
    index = {v: i for i, v in enumerate(classes)}
    codes = np.array([index[v] for v in y.tolist()], dtype=np.int64)
    return _Target(name, typ, classes, codes)


def _target_from_kb(kb, name: str, y: pd.Series) -> _Target:
    t = kb.variables[name].type
    if isinstance(t, A.BoolType):
        classes: tuple = (False, True)
        lookup = {False: 0, True: 1}  # also 0 and 1, which hash as False and True
    elif isinstance(t, A.IntType):
        if t.size > 10_000:
            raise DataError(f"output {name!r}: int {t.lo}..{t.hi} has {t.size} values; induce "
                            "learns outputs of at most 10,000 values")
        classes = tuple(t.values)
        lookup = {v: i for i, v in enumerate(classes)}
    elif isinstance(t, A.EnumType):
        classes = t.values
        lookup = {v: i for i, v in enumerate(classes)}
    else:
        raise DataError(f"output {name!r} is {t}; induce learns bool, int and enum outputs")
    codes = []
    for row, v in zip(y.index, y.tolist()):
        key = v.item() if isinstance(v, np.generic) else v
        if key not in lookup:
            raise DataError(f"targets: {key!r} at row {row!r} is not a value of output "
                            f"{name!r} ({t})")
        codes.append(lookup[key])
    return _Target(name, t, classes, np.array(codes, dtype=np.int64))


def _aligned_targets(data: pd.DataFrame, targets) -> pd.Series:
    """``targets`` as a Series on ``data``'s index (a Series aligned by row label)."""
    n = len(data)
    if isinstance(targets, pd.Series):
        from ._evaluate import align_labels

        y = align_labels("targets", targets, data.index)  # by row label where both have them
    else:
        y = pd.Series(np.asarray(targets))
    if len(y) != n:
        raise DataError(f"targets: {len(y)} values for {n} rows of data; expected one "
                        "target per row")
    return y.set_axis(data.index)


def _start_from_data(data: pd.DataFrame, y: pd.Series):
    """``(target, frame, f0, columns, head, taken)`` with no knowledge base: an input per
    column, an output named after the targets, every score starting at 0."""
    name = y.name if isinstance(y.name, str) and A.name_problem(y.name) is None \
        else "target"
    if name in data.columns:
        raise DataError(f"targets are named {name!r} like a column of the data; name "
                        "the targets (a Series' name) after something that is not a column")
    inputs = [A.InputDecl(str(col), _input_type(str(col), data[col]))
              for col in data.columns]
    target = _target_from_values(name, y)
    head = [*inputs, A.OutputDecl(name, target.type)]
    return target, data, None, list(data.columns), head, {s.name for s in head}


def _start_from_kb(kb, data: pd.DataFrame, y: pd.Series, output):
    """``(target, frame, f0, columns, head, taken)`` adding to ``kb``: the output the
    targets label, its table inputs, the scores its rules give to start from."""
    n = len(data)
    decided = list(kb.decided)
    if output is None:
        output = y.name if isinstance(y.name, str) and y.name in decided else None
    if output is None:
        outs = list(kb.outputs)
        if len(outs) != 1:
            raise DataError(f"the knowledge base decides {', '.join(outs) or 'nothing'}; "
                            "say which output the targets label with output=")
        output = outs[0]
    if output not in decided:
        raise DataError(f"output={output!r} is not a variable the rules decide "
                        f"(decided: {', '.join(decided)})")
    target = _target_from_kb(kb, output, y)
    if len(set(target.codes.tolist())) < 2:
        raise DataError(f"targets: one class only ({y.iloc[0]!r} on all {n} rows); "
                        "rules need at least two classes to tell apart")
    columns = [v for v in kb.inputs if v in data.columns
               and not isinstance(kb.variables[v].type, A.TensorType)]
    for col in columns:
        _input_type(col, data[col])  # missing values named
    from ._evaluate import evaluate

    sc = evaluate(kb, data).scores
    if isinstance(target.type, A.BoolType):
        f0 = np.column_stack([np.zeros(n), sc[output].to_numpy(dtype=np.float64)])
    else:
        f0 = np.column_stack([sc[f"{output}={v}"].to_numpy(dtype=np.float64)
                              if f"{output}={v}" in sc.columns else np.zeros(n)
                              for v in target.classes])
    taken = set(kb.variables) | set(kb.rules) | set(kb.constraints)
    return target, data[columns], f0, columns, list(kb.statements), taken
