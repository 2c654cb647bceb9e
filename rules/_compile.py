"""Formulas and expressions compiled to numpy closures ``f(env)``: the float evaluator
crisp evaluation runs (its exact counterpart is :mod:`._exact`, which shares the
connectives)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _ast as A
from ._domain import domain
from ._kb import KnowledgeBase
from ._missing import missing_key

__all__ = ["compile_conjunctions", "compile_connective", "compile_count", "compile_expr"]

_Fn = Callable[["object"], object]


def _enum_of(e, kb) -> A.EnumType | None:
    if isinstance(e, A.Var):
        t = kb.variables[e.name].type
        return t if isinstance(t, A.EnumType) else None
    return None


def compile_expr(e, kb: KnowledgeBase, enum: A.EnumType | None = None) -> _Fn:
    """Turn a validated expression into ``f(env) -> ndarray | scalar``.

    Enum values are integer codes (their position in the enum's declaration).
    """
    if isinstance(e, A.Num):
        value = float(e.value)
        return lambda env: value
    if isinstance(e, A.BoolConst):
        value = bool(e.value)
        return lambda env: value
    if isinstance(e, A.Var):
        name = e.name
        return lambda env: env[name]
    if isinstance(e, A.IsMissing):
        key = missing_key(e.operand.name)
        return lambda env: env[key]
    if isinstance(e, A.Sym):
        code = domain(enum).code(e.name)
        return lambda env: code
    if isinstance(e, A.Neg):
        f = compile_expr(e.operand, kb)
        return lambda env: -f(env)
    if isinstance(e, A.Sum):
        fs = [compile_expr(a, kb) for a in e.args]
        signs = [1.0] + [1.0 if op == "+" else -1.0 for op in e.ops]

        def total(env, fs=fs, signs=signs):
            acc = fs[0](env)
            for f, s in zip(fs[1:], signs[1:]):
                acc = acc + f(env) if s > 0 else acc - f(env)
            return acc

        return total
    if isinstance(e, A.Mul):
        fl, fr = compile_expr(e.left, kb), compile_expr(e.right, kb)
        return lambda env: fl(env) * fr(env)
    if isinstance(e, A.Count):
        return compile_count([compile_expr(a, kb) for a in e.args])
    if isinstance(e, A.Arith):   # Python's floor semantics (numpy's on float64 agree)
        from ._intervals import apply

        fs, op = [compile_expr(a, kb) for a in e.args], e.op
        return lambda env: apply(op, [f(env) for f in fs])
    if isinstance(e, (A.Compare, A.InSet)):
        return _compile_comparison(e, kb)
    f = compile_connective(e, lambda a: compile_expr(a, kb))
    if f is not None:
        return f
    raise TypeError(f"cannot evaluate {e!r}")


def _compile_comparison(e, kb: KnowledgeBase) -> _Fn:
    """A comparison or ``x in {..}`` (an enum's symbols read as its codes)."""
    if isinstance(e, A.Compare):
        ctx = _enum_of(e.left, kb) or _enum_of(e.right, kb)
        fl, fr = compile_expr(e.left, kb, ctx), compile_expr(e.right, kb, ctx)
        op = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
              "==": np.equal, "!=": np.not_equal}[e.op]
        return lambda env: op(fl(env), fr(env))
    ctx = _enum_of(e.operand, kb)   # x in {..}
    f = compile_expr(e.operand, kb)
    consts = [compile_expr(v, kb, ctx)(None) for v in e.values]

    def member(env, f=f, consts=consts):
        x = f(env)
        out = np.equal(x, consts[0])
        for c in consts[1:]:
            out = out | np.equal(x, c)
        return out

    return member


def compile_count(fs: list[_Fn]) -> _Fn:
    """``count``: how many of the compiled formulas ``fs`` hold, as float64 (exact: a
    whole number of at most ``len(fs)``)."""

    def count(env, fs=fs):
        acc = 0.0
        for f in fs:
            acc = acc + np.asarray(f(env), dtype=np.float64)
        return acc if np.ndim(acc) else float(acc)

    return count


def compile_connective(e, child: Callable[[A.Expr], _Fn]) -> _Fn | None:
    """``not``/``and``/``or``/``->``/``<->`` over children compiled by ``child`` (the
    float and the exact evaluators share it); None for any other node."""
    if isinstance(e, A.Not):
        f = child(e.operand)
        return lambda env: np.logical_not(f(env))
    if isinstance(e, (A.And, A.Or)):
        fs = [child(a) for a in e.args]
        op = np.logical_and if isinstance(e, A.And) else np.logical_or

        def chain(env, fs=fs, op=op):
            acc = fs[0](env)
            for f in fs[1:]:
                acc = op(acc, f(env))
            return acc

        return chain
    if isinstance(e, A.Implies):
        fl, fr = child(e.left), child(e.right)
        return lambda env: np.logical_or(np.logical_not(fl(env)), fr(env))
    if isinstance(e, A.Iff):
        fl, fr = child(e.left), child(e.right)
        return lambda env: np.equal(np.asarray(fl(env), bool), np.asarray(fr(env), bool))
    return None


#: the comparisons, and each one with its sides swapped
_NP_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
           "==": np.equal, "!=": np.not_equal}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _atom(e, kb: KnowledgeBase) -> tuple | None:
    """``(variable, op, constant)`` for a comparison of a required input or neural variable
    (real, int or enum) with a number or symbol; None for any other formula."""
    if not isinstance(e, A.Compare):
        return None
    left, right, op = e.left, e.right, e.op
    if not isinstance(left, A.Var):
        left, right, op = right, left, _FLIP[op]
    if not isinstance(left, A.Var) or not isinstance(right, (A.Num, A.Sym)):
        return None
    v = kb.variables.get(left.name)
    if v is None or v.role not in ("input", "neural") or v.optional \
            or not isinstance(v.type, (A.RealType, A.IntType, A.EnumType)):
        return None
    enum = _enum_of(left, kb)
    if isinstance(right, A.Sym) and enum is None:
        return None
    return left.name, op, compile_expr(right, kb, enum)(None)


def _conjuncts(e) -> list:
    """The conjuncts of ``e`` (nested ``and`` flattened; ``e`` itself otherwise)."""
    if isinstance(e, A.And):
        return [c for a in e.args for c in _conjuncts(a)]
    return [e]


def compile_conjunctions(formulas: list, kb: KnowledgeBase) -> tuple[list, _Fn | None]:
    """The formulas that are conjunctions of comparisons of required input or neural
    variables with constants (None: a formula left out), compiled together: ``(positions, f)``
    where ``f(env)`` is a read-only (len(positions), n) bool array, every comparison made
    in one numpy call per operator (the same values as :func:`compile_expr`'s, one formula
    at a time), or None where a column is not a plain float64 (an enum's: integer) array
    of the rows (the caller then evaluates them one by one)."""
    atoms, starts, positions = [], [], []
    for i, f in enumerate(formulas):
        found = [None] if f is None else [_atom(c, kb) for c in _conjuncts(f)]
        if None not in found:
            positions.append(i)
            starts.append(len(atoms))
            atoms.extend(found)
    if not positions:
        return positions, None
    names = list(dict.fromkeys(a[0] for a in atoms))
    column = {name: k for k, name in enumerate(names)}
    kinds = ["iu" if isinstance(kb.variables[v].type, A.EnumType) else "f" for v in names]
    groups = []
    for op in _NP_OPS:
        at = [k for k, a in enumerate(atoms) if a[1] == op]
        if at:
            groups.append((_NP_OPS[op], np.array(at), np.array([column[atoms[k][0]] for k in at]),
                           np.array([float(atoms[k][2]) for k in at])[:, None]))
    starts = np.array(starts)

    def together(env):
        n = env.n
        x = np.empty((len(names), n))
        for k, name in enumerate(names):
            v = env[name]
            if not (isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype.kind in kinds[k]
                    and (kinds[k] != "f" or v.dtype == np.float64)):
                return None
            x[k] = v
        held = np.empty((len(atoms), n), bool)
        for op, at, cols, consts in groups:
            held[at] = op(x[cols], consts)
        out = np.logical_and.reduceat(held, starts, axis=0)
        out.flags.writeable = False
        return out

    return positions, together
