"""A fast path for ordinary rule files: the propositional statements of the grammar read
by a hand-written recursive-descent parser, several times faster than Lark's LALR runtime.

It builds exactly the statements the Lark parser and its transformer build (the same
nodes, the same source locations) for the text it takes, and takes only what it is sure
of: anything else -- relational statements (sets, families, indexed names, quantifiers,
aggregates, ``^``), a name spelled like a keyword, a syntax error, any token it does not
expect -- raises :class:`Fallback`, and the text is parsed by Lark, whose grammar
(``grammar.lark``) stays the definition of the language and whose errors are reported.
``tests/language/test_parser.py`` checks the two agree on text generated from the grammar.
"""

from __future__ import annotations

import bisect
import re

from greybox.errors import Location

from . import _ast as A

__all__ = ["Fallback", "parse_start"]


class Fallback(Exception):
    """The fast path does not take this text: Lark parses it."""


# A token (or the end) after any whitespace and comments; every character is read (one
# it does not know is ``bad``), so the tokens cover the text.
_TOKEN = re.compile(r"""
    (?:[ \t\f\r\n]+|\#[^\n]*)*
    (?:(?P<QNAME>`[^`\x00-\x1f\x7f]+`)
     | (?P<FLOAT>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)
     | (?P<INT>[0-9]+)
     | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
     | (?P<op><->|->|<=|>=|==|!=|\.\.|//|[<>()\[\]{}:,=+\-*^~%])
     | (?P<end>\Z)
     | (?P<bad>[\s\S]))
""", re.VERBOSE)

#: every word the grammar spells out: as a name it could be read otherwise by Lark's
#: contextual lexer, so a name spelled so is left to Lark
_KEYWORDS = frozenset("""input neural define output rule constraint set weight fixed
    forall exists not and or in for true false bool real int tensor optional is
    missing""".split())
_STATEMENTS = frozenset("input neural define output rule constraint".split())
_PRODUCT = frozenset(("*", "//", "%"))


def _tokens(text: str) -> tuple[list, list, list]:
    """The kinds, texts and offsets of the tokens of ``text``: the kind is the operator
    or keyword itself for those, else NAME, QNAME, INT or FLOAT."""
    kinds, values, offsets = [], [], []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        value = m[kind]
        if kind == "op" or (kind == "NAME" and value in _KEYWORDS):
            kind = value
        elif kind == "bad":
            raise Fallback
        elif kind == "end":
            break
        kinds.append(kind)
        values.append(value)
        offsets.append(m.start(m.lastindex))
    kinds.append("$END")
    values.append("")
    offsets.append(len(text))
    return kinds, values, offsets


class _Parser:
    __slots__ = ("kinds", "values", "offsets", "starts", "line", "i")

    def __init__(self, text: str):
        self.kinds, self.values, self.offsets = _tokens(text)
        #: where each line starts (Lark's lines end at "\n"), then an end past the text
        self.starts = [0, *(m.end() for m in re.finditer("\n", text)), len(text) + 1]
        self.line = 1   # the line of the token located last
        self.i = 0

    # ---- tokens
    def loc(self, i: int) -> Location:
        """The location of token ``i``, as Lark gives it (1-based line and column)."""
        pos = self.offsets[i]
        starts, line = self.starts, self.line
        if not starts[line - 1] <= pos < starts[line]:   # not on the line located last
            self.line = line = bisect.bisect_right(starts, pos)
        return Location(line, pos - starts[line - 1] + 1)

    def peek(self) -> str:
        return self.kinds[self.i]

    def take(self, kind: str) -> int:
        """The position of the next token, which must be of ``kind``."""
        i = self.i
        if self.kinds[i] != kind:
            raise Fallback
        self.i = i + 1
        return i

    def name(self) -> tuple[str, Location]:
        i = self.i
        kind = self.kinds[i]
        if kind == "NAME":
            self.i = i + 1
            return self.values[i], self.loc(i)
        if kind == "QNAME":
            self.i = i + 1
            return self.values[i][1:-1], self.loc(i)
        raise Fallback   # a keyword where a name stands, or no name

    def number(self, i: int) -> int | float:
        value = self.values[i]
        if self.kinds[i] == "INT":
            return float("inf") if len(value) > 4000 else int(value)   # (as _parser)
        return float(value)

    def signed(self) -> tuple[int | float, Location]:
        sign = None
        if self.kinds[self.i] == "-":
            sign = self.take("-")
        kind = self.kinds[self.i]
        if kind not in ("INT", "FLOAT"):
            raise Fallback
        i = self.take(kind)
        value = self.number(i)
        return (-value if sign is not None else value), self.loc(i if sign is None else sign)

    # ---- statements
    def start(self) -> tuple[list, int]:
        out, longest = [], 0
        while True:
            kind = self.peek()
            if kind == "$END":
                return out, longest
            if kind not in _STATEMENTS:
                raise Fallback
            first = self.i
            self.i += 1
            out.append(getattr(self, "st_" + kind)())
            longest = max(longest, self.i - first)

    def head_of_decl(self) -> tuple[str, Location]:
        name = self.name()
        if self.peek() != ":":
            raise Fallback   # parameters (a family) or an error
        self.i += 1
        return name

    def st_input(self):
        (name, span) = self.head_of_decl()
        optional = self.peek() == "optional"
        if optional:
            self.i += 1
        return A.InputDecl(name, self.type(), optional, span=span)

    def st_output(self):
        (name, span) = self.head_of_decl()
        return A.OutputDecl(name, self.type(), span=span)

    def st_define(self):
        (name, span) = self.head_of_decl()
        typ = self.type()
        expr = None
        if self.peek() == "=":
            self.i += 1
            expr = self.expr()
        return A.DefineDecl(name, typ, expr, span=span)

    def st_neural(self):
        (name, span) = self.head_of_decl()
        typ = self.type()
        self.take("=")
        net, _ = self.name()
        self.take("(")
        args = []
        if self.peek() != ")":
            args.append(self.name()[0])
            while self.peek() == ",":
                self.i += 1
                args.append(self.name()[0])
        self.take(")")
        return A.NeuralDecl(name, typ, net, tuple(args), span=span)

    def weight(self):
        if self.peek() != "weight":
            return None
        self.i += 1
        return self.signed()[0]

    def st_rule(self):
        name, span = self.name()
        w = self.weight()
        fixed = False
        if self.peek() == "fixed":
            self.i += 1
            fixed = True
        self.take(":")
        body = self.or_expr()
        self.take("->")
        head = self.head()
        return A.Rule(name, body, head, 1.0 if w is None else float(w), fixed, span=span)

    def st_constraint(self):
        name, span = self.name()
        w = self.weight()
        self.take(":")
        formula = self.expr()
        return A.Constraint(name, formula, None if w is None else float(w), span=span)

    def head(self) -> A.Head:
        value: object = True
        if self.peek() == "not":
            self.i += 1
            value = False
        name, span = self.name()
        if self.peek() in ("[", "("):
            raise Fallback   # a family member
        if value is True and self.peek() == "=":
            self.i += 1
            value = self.set_item()
        return A.Head(name, value, span=span)

    def set_item(self):
        kind = self.peek()
        if kind in ("-", "INT", "FLOAT"):
            value, span = self.signed()
            return A.Num(value, span=span)
        name, span = self.name()
        return A.Sym(name, span=span)

    # ---- types
    def type(self):
        kind = self.peek()
        if kind == "bool":
            self.i += 1
            return A.BoolType(span=None)
        if kind == "real":
            self.i += 1
            if self.peek() != "[":
                return A.RealType(span=None)
            self.i += 1
            lo, span = self.signed()
            self.take(",")
            hi, _ = self.signed()
            self.take("]")
            return A.RealType(float(lo), float(hi), span=span)
        if kind == "int":
            self.i += 1
            lo, span = self.signed()
            self.take("..")
            hi, _ = self.signed()
            if not (isinstance(lo, int) and isinstance(hi, int)):
                raise Fallback   # Lark reports it
            return A.IntType(lo, hi, span=span)
        if kind == "{":
            self.i += 1
            values, span = [], None
            while True:
                value, at = self.name()
                span = span or at
                values.append(value)
                if self.peek() != ",":
                    break
                self.i += 1
            self.take("}")
            return A.EnumType(tuple(values), span=span)
        if kind == "tensor":
            self.i += 1
            dims, span = [], None
            if self.peek() == "[":
                self.i += 1
                while True:
                    i = self.take("INT")
                    span = span or self.loc(i)
                    value = self.values[i]
                    dims.append(int(value) if len(value) < 19 else -1)
                    if self.peek() != ",":
                        break
                    self.i += 1
                self.take("]")
            return A.TensorType(tuple(dims) or None, span=span)
        raise Fallback

    # ---- formulas, loosest binding first (the grammar's ?expr ... ?atom)
    def expr(self):
        if self.peek() in ("forall", "exists"):
            raise Fallback
        left = self.implies()
        while self.peek() == "<->":
            self.i += 1
            left = A.Iff(left, self.implies(), span=left.span)
        return left

    def implies(self):
        left = self.or_expr()
        if self.peek() != "->":
            return left
        self.i += 1
        return A.Implies(left, self.implies(), span=left.span)

    def or_expr(self):
        first = self.and_expr()
        if self.peek() != "or":
            return first
        args = [first]
        while self.peek() == "or":
            self.i += 1
            args.append(self.and_expr())
        return A.Or(tuple(args), span=first.span)

    def and_expr(self):
        first = self.not_expr()
        if self.peek() != "and":
            return first
        args = [first]
        while self.peek() == "and":
            self.i += 1
            args.append(self.not_expr())
        return A.And(tuple(args), span=first.span)

    def not_expr(self):
        if self.peek() == "not":
            i = self.take("not")
            return A.Not(self.not_expr(), span=self.loc(i))
        return self.comparison()

    def comparison(self):
        left = self.sum()
        kind = self.peek()
        if kind in ("<", "<=", ">", ">=", "==", "!="):
            i = self.take(kind)
            return A.Compare(kind, left, self.sum(), span=self.loc(i))
        if kind == "in":
            self.i += 1
            self.take("{")
            items = [self.set_item()]
            while self.peek() == ",":
                self.i += 1
                items.append(self.set_item())
            self.take("}")
            return A.InSet(left, tuple(items), span=left.span)
        if kind == "is":
            self.i += 1
            test = A.IsMissing(left, span=left.span)
            if self.peek() == "not":
                i = self.take("not")
                test = A.Not(test, span=self.loc(i))
            self.take("missing")
            return test
        return left

    def sum(self):
        first = self.product()
        if self.peek() not in ("+", "-"):
            return first
        args, ops = [first], []
        while self.peek() in ("+", "-"):
            ops.append(self.kinds[self.i])
            self.i += 1
            args.append(self.product())
        return A.Sum(tuple(args), tuple(ops), span=first.span)

    def product(self):
        left = self.unary()
        while self.peek() in _PRODUCT:
            op = self.kinds[self.i]
            self.i += 1
            right = self.unary()
            left = (A.Mul(left, right, span=left.span) if op == "*"
                    else A.Arith(op, (left, right), span=left.span))
        return left

    def unary(self):
        if self.peek() == "-":
            i = self.take("-")
            return A.neg(self.unary(), span=self.loc(i))
        atom = self.atom()
        if self.peek() == "^":
            raise Fallback   # a power: relational
        return atom

    def atom(self):
        i = self.i
        kind = self.kinds[i]
        if kind in ("INT", "FLOAT"):
            self.i = i + 1
            return A.Num(self.number(i), span=self.loc(i))
        if kind == "NAME" or kind == "QNAME":
            name, span = self.name()
            if self.peek() in ("[", "("):
                raise Fallback   # an indexed name, a call, an aggregate: relational
            return A.Var(name, span=span)
        if kind == "(":
            self.i += 1
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "~":
            self.i += 1
            value, span = self.signed()
            return A.Num(value, learnable=True, span=span)
        if kind == "true" or kind == "false":
            self.i = i + 1
            return A.BoolConst(kind == "true", span=self.loc(i))
        raise Fallback


def parse_start(text: str) -> tuple[list, int]:
    """The statements of ``text`` as the Lark parser builds them, and the number of tokens
    of the longest (an expression of n tokens is at most n deep); or :class:`Fallback`."""
    try:
        return _Parser(text).start()
    except RecursionError:   # brackets or signs nested deeper than this parser recurses
        raise Fallback from None
