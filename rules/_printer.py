"""AST -> rule text. ``parse(to_text(kb)) == kb`` for every knowledge base."""

from __future__ import annotations

from . import _ast as A

__all__ = ["expr_to_text", "name_to_text", "statement_to_text", "type_to_text"]

# binding strength: larger binds tighter
_QUANT, _IFF, _IMPLIES, _OR, _AND, _NOT, _CMP, _SUM, _MUL, _UNARY, _POW, _ATOM = range(12)


def name_to_text(name: str) -> str:
    return name if A.is_plain_name(name) else f"`{name}`"


def _num(value) -> str:
    return repr(value) if isinstance(value, float) else str(int(value))


def _level(e) -> int:
    if isinstance(e, A.Quantified):
        return _QUANT
    if isinstance(e, A.Pow):
        return _POW
    if isinstance(e, A.Iff):
        return _IFF
    if isinstance(e, A.Implies):
        return _IMPLIES
    if isinstance(e, A.Or):
        return _OR
    if isinstance(e, A.And):
        return _AND
    if isinstance(e, A.Not) and not isinstance(e.operand, A.IsMissing):
        return _NOT
    if isinstance(e, (A.Compare, A.InSet, A.IsMissing, A.Not)):
        return _CMP
    if isinstance(e, A.Sum):
        return _SUM
    if isinstance(e, A.Mul) or (isinstance(e, A.Arith) and e.op in ("//", "%")):
        return _MUL
    if isinstance(e, A.Neg):
        return _UNARY
    if isinstance(e, A.Num) and (e.value < 0 or str(e.value).startswith("-")) and not e.learnable:
        return _UNARY  # printed as "-5", which parses as unary minus
    return _ATOM


def _wrap(e, need: int) -> str:
    text = expr_to_text(e)
    return f"({text})" if _level(e) < need else text


def expr_to_text(e) -> str:
    """The text of one expression."""
    if isinstance(e, A.Num):
        return ("~" if e.learnable else "") + _num(e.value)
    if isinstance(e, A.BoolConst):
        return "true" if e.value else "false"
    if isinstance(e, (A.Var, A.Sym)):
        return name_to_text(e.name)
    if isinstance(e, A.Neg):
        inner = _wrap(e.operand, _UNARY)
        return "- " + inner if inner.startswith("-") else "-" + inner
    if isinstance(e, A.Sum):
        parts = [_wrap(e.args[0], _SUM + 1)]
        for op, arg in zip(e.ops, e.args[1:]):
            parts.append(f"{op} {_wrap(arg, _SUM + 1)}")
        return " ".join(parts)
    if isinstance(e, A.Mul):
        return f"{_wrap(e.left, _MUL)} * {_wrap(e.right, _UNARY)}"
    if isinstance(e, A.Compare):
        return f"{_wrap(e.left, _SUM)} {e.op} {_wrap(e.right, _SUM)}"
    if isinstance(e, A.InSet):
        values = ", ".join(expr_to_text(v) for v in e.values)
        return f"{_wrap(e.operand, _SUM)} in {{{values}}}"
    if isinstance(e, A.IsMissing):
        return f"{_wrap(e.operand, _SUM)} is missing"
    if isinstance(e, A.Not):
        if isinstance(e.operand, A.IsMissing):
            return f"{_wrap(e.operand.operand, _SUM)} is not missing"
        return "not " + _wrap(e.operand, _NOT)
    if isinstance(e, A.And):
        return " and ".join(_wrap(a, _AND + 1) for a in e.args)
    if isinstance(e, A.Or):
        return " or ".join(_wrap(a, _OR + 1) for a in e.args)
    if isinstance(e, A.Implies):
        return f"{_wrap(e.left, _OR)} -> {_wrap(e.right, _IMPLIES)}"
    if isinstance(e, A.Iff):
        return f"{_wrap(e.left, _IFF)} <-> {_wrap(e.right, _IMPLIES)}"
    if isinstance(e, A.Count):
        return _ref("count", e.args, True)
    if isinstance(e, A.Arith):
        if e.op in ("//", "%") and len(e.args) == 2:
            return f"{_wrap(e.args[0], _MUL)} {e.op} {_wrap(e.args[1], _UNARY)}"
        return _ref(e.op, e.args, True)
    if isinstance(e, A.Index):
        return _ref(e.name, e.args, e.paren)
    if isinstance(e, A.Aggregate):
        args = ", ".join(expr_to_text(a) for a in e.args)
        return f"{name_to_text(e.name)}({args} for {_binders(e.binders)})"
    if isinstance(e, A.Quantified):
        return f"{e.kind} {_binders(e.binders)}: {expr_to_text(e.body)}"
    if isinstance(e, A.Pow):
        return f"{_wrap(e.left, _ATOM)}^{_wrap(e.right, _UNARY)}"
    raise TypeError(f"not an expression: {e!r}")


def _ref(name: str, args, paren: bool) -> str:
    inner = ", ".join(expr_to_text(a) for a in args)
    return f"{name_to_text(name)}({inner})" if paren else f"{name_to_text(name)}[{inner}]"


def _domain(domain) -> str:
    if isinstance(domain, A.Range):
        return f"{_wrap(domain.lo, _SUM)}..{_wrap(domain.hi, _SUM)}"
    return name_to_text(domain)


def _binders(binders) -> str:
    return ", ".join(f"{name_to_text(b.var)} in {_domain(b.domain)}" for b in binders)


def _params(family: A.Family) -> str:
    inner = ", ".join(name_to_text(b.var) if b.var == b.domain
                      else f"{name_to_text(b.var)} in {_domain(b.domain)}"
                      for b in family.params)
    return f"({inner})" if family.paren else f"[{inner}]"


def _bound(value) -> str:
    """A type bound: whole floats print without ``.0`` (bounds are read back as floats)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return _num(value)


def type_to_text(t) -> str:
    """The text of a type (``int 0..120``, ``real[0.0, 1.0]``, ``{a, b}``...)."""
    if isinstance(t, A.BoolType):
        return "bool"
    if isinstance(t, A.IntType):
        return f"int {t.lo}..{t.hi}"
    if isinstance(t, A.RealType):
        return "real" if t.lo is None else f"real[{_bound(t.lo)}, {_bound(t.hi)}]"
    if isinstance(t, A.EnumType):
        return "{" + ", ".join(name_to_text(v) for v in t.values) + "}"
    if isinstance(t, A.TensorType):
        return "tensor" if not t.shape else "tensor[" + ", ".join(map(str, t.shape)) + "]"
    raise TypeError(f"not a type: {t!r}")


def head_to_text(h: A.Head) -> str:
    target = _ref(h.name, h.index, h.paren) if h.index else name_to_text(h.name)
    if h.value is True:
        return target
    if h.value is False:
        return "not " + target
    return f"{target} = {expr_to_text(h.value)}"


def statement_to_text(st) -> str:
    """The one-line text of a statement (relational templates included)."""
    if isinstance(st, A.SetDecl):
        if st.members is None:
            return f"set {name_to_text(st.name)}"
        if isinstance(st.members, A.Range):
            return f"set {name_to_text(st.name)}: {_domain(st.members)}"
        return f"set {name_to_text(st.name)}: {{{', '.join(map(name_to_text, st.members))}}}"
    if isinstance(st, A.Family):  # the parameters go right after the statement's name
        inner = statement_to_text(st.statement)
        cut = inner.index(" ") + 1 + len(name_to_text(st.statement.name))
        return inner[:cut] + _params(st) + inner[cut:]
    if isinstance(st, A.InputDecl):
        optional = "optional " if st.optional else ""
        return f"input {name_to_text(st.name)}: {optional}{type_to_text(st.type)}"
    if isinstance(st, A.OutputDecl):
        return f"output {name_to_text(st.name)}: {type_to_text(st.type)}"
    if isinstance(st, A.NeuralDecl):
        args = ", ".join(name_to_text(a) if isinstance(a, str) else expr_to_text(a)
                         for a in st.args)
        return (f"neural {name_to_text(st.name)}: {type_to_text(st.type)} = "
                f"{name_to_text(st.network)}({args})")
    if isinstance(st, A.DefineDecl):
        text = f"define {name_to_text(st.name)}: {type_to_text(st.type)}"
        return text if st.expr is None else f"{text} = {expr_to_text(st.expr)}"
    if isinstance(st, A.Rule):
        opts = "" if st.weight == 1.0 else f" weight {_num(st.weight)}"
        opts += " fixed" if st.fixed else ""
        return (f"rule {name_to_text(st.name)}{opts}: {_wrap(st.body, _OR)} -> "
                f"{head_to_text(st.head)}")
    if isinstance(st, A.Constraint):
        opts = "" if st.weight is None else f" weight {_num(st.weight)}"
        return f"constraint {name_to_text(st.name)}{opts}: {expr_to_text(st.formula)}"
    raise TypeError(f"not a statement: {st!r}")


def node_to_text(node) -> str:
    """The rule text of any node (statement, expression, type or head); its repr otherwise."""
    for show in (statement_to_text, expr_to_text, type_to_text, head_to_text):
        try:
            return show(node)
        except (TypeError, AttributeError):
            continue
    return repr(node)


A._node_text = node_to_text  # str(node) (the AST module cannot import its printer)
