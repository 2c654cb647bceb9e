"""Rule text -> AST, with a Lark LALR(1) parser. Nothing here is ever evaluated as code.

The transformer only builds nodes; names, types and domains are checked afterwards by
:mod:`greybox.rules._validate`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import re
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args

from greybox.errors import Location, RuleSyntaxError

from . import _ast as A
from ._fastparse import Fallback, parse_start

__all__ = ["MAX_BRACKETS", "MAX_DEPTH", "MAX_LENGTH", "parse_statements", "parse_fragment"]

#: Deepest nesting of an expression we accept (chains like ``a and b and c`` are flat).
MAX_DEPTH = 100
#: Deepest nesting of brackets we accept, redundant parentheses included: checked on the
#: text before parsing, so ``((((...x...))))`` a million deep is refused at once.
MAX_BRACKETS = 10_000
#: Longest rule text we accept, in characters (a guard against runaway input).
MAX_LENGTH = 10_000_000

# Comments and back-quoted names (whose brackets are text, not structure), as the lexer
# reads them: whichever starts first.
_VERBATIM = re.compile(r"`[^`\x00-\x1f\x7f]+`|#[^\n]*")
_BRACKET = re.compile(r"[()\[\]{}]")
_NOT_BRACKET = re.compile(r"[^()\[\]{}]+")
_STEP = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
# MAX_DEPTH + 1 prefix `not`s in a row nest deeper than MAX_DEPTH whatever follows. The
# pattern opens with the literal `not` (the check that no name character or back-quote
# stands before it comes after), so that `re` looks for it with its fast literal search
# rather than trying the pattern at every offset of the text.
_NOT_RUN = re.compile(rf"not(?<![\w`]not)(?!\w)\s*(?:not(?!\w)\s*){{{MAX_DEPTH}}}")
# Chains of a binary operator that nests (`->`, `<->`, `*`, `^`; `+`, `and`, `or` are
# flat): MAX_DEPTH of them in a row, with nothing that binds more loosely in between, nest
# the expression deeper than MAX_DEPTH (a leaf is 1 deep). Found on the text, before the
# parser builds the tree. Brackets end a run (a chain of bracketed operands is found after
# parsing), so the runs found are chains for sure, never flat text.
_NUM = r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
_OPERAND = rf"(?>\s*+(?:-\s*+)*+(?:[A-Za-z_]\w*+|{_NUM}|~\s*+-?\s*+{_NUM})?+\s*+)"
_CHAINS = (
    ("->", "'->'", re.compile(
        rf"->(?:[^:()\[\]{{}}\x00-]*+(?:-(?!>)[^:()\[\]{{}}\x00-]*+)*+->){{{MAX_DEPTH - 1}}}")),
    ("<->", "'<->'", re.compile(
        rf"<->(?:[^:()\[\]{{}}<]*+(?:<(?!->)[^:()\[\]{{}}<]*+)*+<->){{{MAX_DEPTH - 1}}}")),
    ("*", "'*'", re.compile(rf"\*(?:{_OPERAND}(?:\^{_OPERAND})*+\*){{{MAX_DEPTH - 1}}}")),
    ("^", "'^'", re.compile(rf"\^(?:{_OPERAND}\^){{{MAX_DEPTH - 1}}}")),
    ("//", "'//'", re.compile(rf"//(?:{_OPERAND}(?:\^{_OPERAND})*+//){{{MAX_DEPTH - 1}}}")),
    ("%", "'%'", re.compile(rf"%(?:{_OPERAND}(?:\^{_OPERAND})*+%){{{MAX_DEPTH - 1}}}")),
)


def _loc(item) -> Location | None:
    """The location of a token, or of the first child in a list that has one."""
    if isinstance(item, list):
        for child in item:
            found = _loc(child)
            if found is not None:
                return found
        return None
    if isinstance(item, Token):
        if item.line is None or item.column is None:
            return None
        return Location(item.line, item.column)
    return getattr(item, "span", None)


def _name(tok: Token) -> str:
    s = str(tok)
    return s[1:-1] if s.startswith("`") else s


def _number(tok: Token) -> int | float:
    s = str(tok)
    if tok.type == "INT":
        if len(s) > 4000:  # (Python reads at most 4300 digits): reported by validation
            return float("inf")
        return int(s)
    return float(s)


@v_args(inline=False)
class _ToAst(Transformer):
    """Builds AST nodes as the LALR parser reduces (no tree, no recursion)."""

    # ---- names and numbers
    def name(self, c):
        return _Named(_name(c[0]), _loc(c[0]))

    def signed_number(self, c):
        sign, tok = c
        value = _number(tok)
        return _Signed(-value if sign is not None else value, _loc(sign or tok))

    def number(self, c):
        return A.Num(_number(c[0]), span=_loc(c[0]))

    def set_item(self, c):
        item = c[0]
        if isinstance(item, _Signed):
            return A.Num(item.value, span=item.span)
        return A.Sym(item.name, span=item.span)

    # ---- types
    def bool_type(self, c):
        return A.BoolType(span=_loc(c))

    def real_type(self, c):
        return A.RealType(span=_loc(c))

    def real_range(self, c):
        return A.RealType(float(c[0].value), float(c[1].value), span=_loc(c))

    def int_type(self, c):
        return _IntTypeDraft(c[0], c[1], _loc(c))

    def enum_type(self, c):
        return A.EnumType(tuple(n.name for n in c), span=_loc(c))

    def tensor_type(self, c):
        dims = tuple(int(t) if len(t) < 19 else -1 for t in c if t is not None)
        return A.TensorType(dims or None, span=_loc(c))

    # ---- expressions
    def var(self, c):
        return A.Var(c[0].name, span=c[0].span)

    def learnable(self, c):
        return A.Num(c[0].value, learnable=True, span=_loc(c))

    def true(self, c):
        return A.BoolConst(True, span=_loc(c))

    def false(self, c):
        return A.BoolConst(False, span=_loc(c))

    def neg_op(self, c):
        return A.neg(c[1], span=_loc(c))

    def mul(self, c):
        return A.Mul(c[0], c[1], span=_loc(c))

    def floordiv(self, c):
        return A.Arith("//", (c[0], c[1]), span=_loc(c))

    def mod(self, c):
        return A.Arith("%", (c[0], c[1]), span=_loc(c))

    def sum(self, c):
        return A.Sum(tuple(c[0::2]), tuple(str(t) for t in c[1::2]), span=_loc(c))

    def compare(self, c):
        return A.Compare(str(c[1]), c[0], c[2], span=_loc(c[1]))

    def inset(self, c):
        return A.InSet(c[0], tuple(c[1:]), span=_loc(c))

    def is_missing(self, c):
        test = A.IsMissing(c[0], span=_loc(c[0]))
        return test if c[1] is None else A.Not(test, span=_loc(c[1]))

    def not_op(self, c):
        return A.Not(c[1], span=_loc(c))

    def and_expr(self, c):
        return A.And(tuple(c), span=_loc(c))

    def or_expr(self, c):
        return A.Or(tuple(c), span=_loc(c))



    def pow_op(self, c):
        return A.Pow(c[0], c[1], span=_loc(c))

    # ---- relational
    def index_ref(self, c):
        return A.Index(c[0].name, tuple(c[1:]), span=c[0].span)

    def call_ref(self, c):
        if c[0].name == "count":  # the aggregate over listed formulas (a core node)
            return A.Count(tuple(c[1:]), span=c[0].span)
        if c[0].name in A.ARITH_FUNCTIONS:  # min(a, b), max(a, b), abs(a): core nodes too
            return A.Arith(c[0].name, tuple(c[1:]), span=c[0].span)
        return A.Index(c[0].name, tuple(c[1:]), paren=True, span=c[0].span)

    def aggregate(self, c):
        args = tuple(x for x in c[1:] if not isinstance(x, A.Binder))
        binders = tuple(x for x in c[1:] if isinstance(x, A.Binder))
        return A.Aggregate(c[0].name, args, binders, span=c[0].span)

    def quantified(self, c):
        return A.Quantified(str(c[0]), tuple(c[1:-1]), c[-1], span=_loc(c[0]))

    def binder(self, c):
        return A.Binder(c[0].name, c[1], span=c[0].span)

    def param(self, c):
        name, domain = c
        return A.Binder(name.name, name.name if domain is None else domain, span=name.span)

    def domain_set(self, c):
        return c[0].name

    def domain_range(self, c):
        return A.Range(c[0], c[1], span=_loc(c))

    def bracket_params(self, c):
        return _Params(tuple(c), False)

    def paren_params(self, c):
        return _Params(tuple(c), True)

    def set_range(self, c):
        return A.Range(c[0], c[1], span=_loc(c))

    def set_names(self, c):
        return tuple(n.name for n in c if n is not None)

    def set_decl(self, c):
        return A.SetDecl(c[0].name, c[1], span=c[0].span)

    def implies_op(self, c):
        return A.Implies(c[0], c[1], span=_loc(c))

    def iff_op(self, c):
        return A.Iff(c[0], c[1], span=_loc(c))

    # ---- statements
    def head_pos(self, c):
        return _head(c[0], True)

    def head_neg(self, c):
        return _head(c[0], False)

    def head_eq(self, c):
        return _head(c[0], c[1])

    def input_decl(self, c):
        name, params, optional, typ = c
        st = A.InputDecl(name.name, _finish_type(typ), optional is not None, span=name.span)
        return _family(params, st)

    def neural_decl(self, c):
        name, params, typ, net, *args = c
        args = tuple(a.name if isinstance(a, _Named) else _reference(a)
                     for a in args if a is not None)
        st = A.NeuralDecl(name.name, _finish_type(typ), net.name, args, span=name.span)
        return _family(params, st)

    def define_decl(self, c):
        name, params, typ, expr = c
        return _family(params, A.DefineDecl(name.name, _finish_type(typ), expr, span=name.span))

    def output_decl(self, c):
        name, params, typ = c
        return _family(params, A.OutputDecl(name.name, _finish_type(typ), span=name.span))

    def rule(self, c):
        name, params, weight, fixed, body, head = c
        w = 1.0 if weight is None else float(weight.value)
        st = A.Rule(name.name, body, head, w, fixed is not None, span=name.span)
        return _family(params, st)

    def constraint(self, c):
        name, params, weight, formula = c
        w = None if weight is None else float(weight.value)
        return _family(params, A.Constraint(name.name, formula, w, span=name.span))

    def start(self, c):
        return list(c)


class _Named:
    __slots__ = ("name", "span")

    def __init__(self, name: str, span: Location | None):
        self.name, self.span = name, span


class _Params:
    __slots__ = ("binders", "paren")

    def __init__(self, binders: tuple, paren: bool):
        self.binders, self.paren = binders, paren


def _family(params: _Params | None, st):
    if params is None:
        return st
    return A.Family(params.binders, st, params.paren, span=st.span)


def _reference(e):
    """``count(p)`` where only a family member can stand (a head, a network's argument):
    a member of a family named ``count``."""
    if isinstance(e, A.Count):
        return A.Index("count", e.args, paren=True, span=e.span)
    if isinstance(e, A.Arith) and e.op in A.ARITH_FUNCTIONS:
        return A.Index(e.op, e.args, paren=True, span=e.span)
    return e


def _head(target, value) -> A.Head:
    target = _reference(target)
    if isinstance(target, A.Index):
        return A.Head(target.name, value, target.args, target.paren, span=target.span)
    return A.Head(target.name, value, span=target.span)


class _Signed:
    __slots__ = ("value", "span")

    def __init__(self, value: int | float, span: Location | None):
        self.value, self.span = value, span


class _IntTypeDraft:
    """An ``int lo..hi`` whose bounds still have to be checked to be integers."""

    __slots__ = ("lo", "hi", "span")

    def __init__(self, lo: _Signed, hi: _Signed, span: Location | None):
        self.lo, self.hi, self.span = lo, hi, span


def _finish_type(t):
    if isinstance(t, _IntTypeDraft):
        for bound in (t.lo, t.hi):
            if not isinstance(bound.value, int):
                raise _DeferredSyntaxError(
                    f"int bounds must be whole numbers, got {bound.value!r}", bound.span
                )
        return A.IntType(t.lo.value, t.hi.value, span=t.span)
    return t


class _DeferredSyntaxError(Exception):
    def __init__(self, message: str, span: Location | None):
        super().__init__(message)
        self.message, self.span = message, span


@functools.cache
def _parser() -> Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text("utf-8")
    return Lark(
        grammar,
        parser="lalr",
        transformer=_ToAst(),
        start=["start", "expr", "type", "head"],
        maybe_placeholders=True,
    )


_FRIENDLY = {
    "NAME": "a name",
    "QNAME": "a `back-quoted name`",
    "INT": "an integer",
    "FLOAT": "a number",
    "COMPOP": "a comparison (< <= > >= == !=)",
    "ADDOP": "'+' or '-'",
    "$END": "end of input",
}


def _describe_terminal(name: str) -> str:
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    try:
        term = _parser().get_terminal(name)
    except (KeyError, AttributeError):
        return name
    if isinstance(term.pattern, lark.lexer.PatternStr):
        return repr(term.pattern.value)
    return name.lower()


def _expected(names) -> str:
    shown = sorted({_describe_terminal(n) for n in names})
    if not shown:
        return ""
    if len(shown) > 12:
        shown = shown[:12] + ["..."]
    return "; expected " + (shown[0] if len(shown) == 1 else "one of " + ", ".join(shown))


def _end_location(text: str) -> Location:
    """Just after the last non-blank character (so the caret shows the unfinished line)."""
    lines = text.rstrip().split("\n")
    return Location(len(lines), len(lines[-1]) + 1)


def _acceptable(text: str, start: str, pos: int, given) -> set:
    """The terminals that can stand at offset ``pos`` of ``text``: the parser is run again
    up to there and asked. The set a Lark error carries (``given``) is read from the LALR
    state where the error surfaced, whose lookaheads are merged over every context (the
    statement keywords that may follow a whole rule are listed inside a formula), and,
    when reductions ran before the error, it is a narrower state's."""
    try:
        ip = _parser().parse_interactive(text, start=start)
        tokens = ip.lexer_thread.lex(ip.parser_state)
        while True:
            try:
                tok = next(tokens)
            except (StopIteration, lark.exceptions.UnexpectedInput):
                break
            if tok.start_pos >= pos:
                break
            ip.feed_token(tok)
        return ip.accepts()
    except (lark.exceptions.LarkError, _DeferredSyntaxError):
        return set(given)   # not reached: the text up to pos parsed the first time


def _syntax_error(err: lark.exceptions.LarkError, text: str, filename: str | None,
                  start: str = "start"):
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        loc = Location(err.line, err.column, filename)
        char = text[err.pos_in_stream] if 0 <= err.pos_in_stream < len(text) else "?"
        allowed = _acceptable(text, start, err.pos_in_stream, err.allowed or ())
        msg = f"unexpected character {char!r}" + _expected(allowed)
        return RuleSyntaxError(msg, loc, text)
    if isinstance(err, (lark.exceptions.UnexpectedToken, lark.exceptions.UnexpectedEOF)):
        tok = getattr(err, "token", None)
        if tok is None or tok.type == "$END" or getattr(tok, "line", None) in (None, -1):
            end = _end_location(text)
            loc = Location(end.line, end.column, filename)
            what = "unexpected end of input"
            pos = len(text)
        elif tok.start_pos >= 1 and text[tok.start_pos - 1:tok.start_pos + 1] == "->" \
                and text[tok.start_pos - 2:tok.start_pos - 1] != "<":
            # an arrow where none fits is read as a minus, then a '>' that does not fit
            pos = tok.start_pos - 1
            loc = _location_of(text, pos, filename)
            what = "unexpected '->'"
        else:
            loc = Location(tok.line, tok.column, filename)
            what = f"unexpected {str(tok)!r}"
            pos = tok.start_pos
        expected = _acceptable(text, start, pos, getattr(err, "expected", ()) or ())
        return RuleSyntaxError(what + _expected(expected), loc, text)
    return RuleSyntaxError(f"cannot parse the rules: {err}", None, text)


def _parse(text: str, start: str, filename: str | None):
    if not isinstance(text, str):
        raise RuleSyntaxError(f"rule text must be a str, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise RuleSyntaxError(f"rule text is too long ({len(text)} characters, limit {MAX_LENGTH})")
    _prescan(text, filename)
    if start == "start":
        try:   # ordinary files, several times faster than Lark's runtime (see _fastparse)
            result, longest = parse_start(text)
        except Fallback:
            pass
        else:
            if longest > MAX_DEPTH:   # else no expression can nest deeper
                _check_depth(result, text, filename)
            return result
    try:
        result = _parser().parse(text, start=start)
        if start == "type":
            result = _finish_type(result)
    except _DeferredSyntaxError as err:
        span = err.span or Location(1, 1)
        raise RuleSyntaxError(err.message, Location(span.line, span.column, filename), text) from None
    except lark.exceptions.VisitError as err:  # raised from a transformer callback
        orig = err.orig_exc
        if isinstance(orig, _DeferredSyntaxError):
            span = orig.span or Location(1, 1)
            raise RuleSyntaxError(orig.message, Location(span.line, span.column, filename), text) from None
        raise RuleSyntaxError(f"cannot parse the rules: {orig}", None, text) from None
    except lark.exceptions.LarkError as err:
        raise _syntax_error(err, text, filename, start) from None
    _check_depth(result, text, filename)
    return result


#: Promoted to the oldest generation by :func:`paused_gc` past this many new objects
_PROMOTE = 10_000


@contextlib.contextmanager
def paused_gc():
    """The cyclic garbage collector paused: parsing and validating a large file allocate
    hundreds of thousands of nodes and locations, none in a reference cycle, and each full
    collection on the way walks all of them (a third of the time of a 10,000-rule file).
    Freed by reference counting as ever; the collector runs again after, unless the
    caller had it off.

    What a large file built is long-lived (a knowledge base holds it): on success it is
    moved to the collector's oldest generation at once (``gc.freeze`` then
    ``gc.unfreeze``, which splice lists and touch no object), where two collections would
    have moved it; else the first young collection after walks every new node only to find
    nothing to free (0.1 s of 0.6 s for 10,000 rules). Only past :data:`_PROMOTE` new
    objects (a small file's few are left to a young collection), and not when the caller
    has frozen objects of its own (``gc.freeze`` before a fork): those stay frozen."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    except BaseException:
        if was:
            gc.enable()
        raise
    if gc.get_count()[0] > _PROMOTE and gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    if was:
        gc.enable()


def _location_of(text: str, pos: int, filename: str | None) -> Location:
    line_start = text.rfind("\n", 0, pos) + 1
    return Location(text.count("\n", 0, pos) + 1, pos - line_start + 1, filename)


def _prescan(text: str, filename: str | None) -> None:
    """Refuse nesting far beyond the limits before the parser spends time on it: brackets
    deeper than :data:`MAX_BRACKETS` and runs of more than :data:`MAX_DEPTH` ``not``.
    Linear in the text, at the speed of :mod:`re` (no Python loop over characters)."""
    if "`" in text or "#" in text:  # blank out comments and quoted names, keeping offsets
        text_ = _VERBATIM.sub(lambda m: " " * len(m.group()), text)
    else:
        text_ = text
    brackets = _NOT_BRACKET.sub("", text_)
    if brackets.count("(") + brackets.count("[") + brackets.count("{") > MAX_BRACKETS:
        depths = itertools.accumulate(map(_STEP.__getitem__, brackets))
        k = next((i for i, d in enumerate(depths) if d > MAX_BRACKETS), None)
        if k is not None:
            pos = next(itertools.islice(_BRACKET.finditer(text_), k, None)).start()
            raise RuleSyntaxError(f"brackets nested more than {MAX_BRACKETS} levels deep",
                                  _location_of(text, pos, filename), text)
    if "not" in text_:
        m = _NOT_RUN.search(text_)
        if m is not None:
            raise RuleSyntaxError(f"expression nested more than {MAX_DEPTH} levels deep "
                                  f"({MAX_DEPTH + 1} 'not' in a row)",
                                  _location_of(text, m.start(), filename), text)
    for op, shown, pattern in _CHAINS:
        if text_.count(op) < MAX_DEPTH:
            continue
        # `<->` is not a `->` chain's link: blanked out for that search (offsets kept)
        m = pattern.search(text_.replace("<->", "\x00\x00\x00") if op == "->" else text_)
        if m is not None:
            raise RuleSyntaxError(f"expression nested more than {MAX_DEPTH} levels deep (a "
                                  f"chain of {MAX_DEPTH} or more {shown}; group it with "
                                  "brackets or split it into defines)",
                                  _location_of(text, m.start(), filename), text)


def _exprs_of(item):
    if isinstance(item, A.Family):
        return _exprs_of(item.statement)
    if isinstance(item, A.Rule):
        return [item.body]
    if isinstance(item, A.Constraint):
        return [item.formula]
    if isinstance(item, A.DefineDecl):
        return [item.expr] if item.expr is not None else []
    if isinstance(item, (A.Head, *A.Type.__args__)) or not isinstance(item, A.Node):
        return []
    return [item]  # a bare expression


def _check_depth(result, text: str, filename: str | None) -> None:
    items = result if isinstance(result, list) else [result]
    for item in items:
        for expr in _exprs_of(item):
            if A.depth(expr) > MAX_DEPTH:
                span = expr.span or getattr(item, "span", None) or Location(1, 1)
                raise RuleSyntaxError(
                    f"expression nested more than {MAX_DEPTH} levels deep",
                    Location(span.line, span.column, filename),
                    text,
                )


def parse_statements(text: str, *, filename: str | None = None) -> list[A.Statement]:
    """Parse a whole rule file into its statements (no semantic checks)."""
    return _parse(text, "start", filename)


def parse_fragment(text: str, kind: str, *, filename: str | None = None):
    """Parse a formula (``kind="expr"``), a type (``"type"``) or a head (``"head"``)."""
    return _parse(text, kind, filename)
