"""The knowledge base: validated, immutable statements and their concept graph."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

import networkx as nx

from greybox.errors import Location, RuleError, RuleSyntaxError

from . import _ast as A
from ._checker import _Checker
from ._ground import FamilyInfo, Program, ground, ground_formula
from ._parser import parse_fragment, parse_statements, paused_gc
from ._printer import statement_to_text
from ._recursion import written
from ._typecheck import check_expr
from ._validate import validate

__all__ = ["KnowledgeBase", "load", "parse", "parse_formula", "to_text"]


class KnowledgeBase:
    """A validated, immutable set of declarations, rules and constraints.

    Build one with :func:`parse`, :func:`load` or :class:`~greybox.rules.Builder`. Two
    knowledge bases are equal when their statements are (source positions do not count).

    Attributes
    ----------
    statements : tuple
        The AST statements, in source order, as written: a recursive define reads itself
        (its unrolling is in :attr:`variables` and :attr:`recursion`), so a knowledge base
        built from them is an equal one.
    variables : Mapping[str, Variable]
        Every declared variable with its type and role.
    rules, constraints : Mapping[str, Rule], Mapping[str, Constraint]
        By name, in source order.
    graph : networkx.DiGraph
        The concept graph (read-only): inputs -> neural -> defined -> rules -> decided
        variables. Variables are nodes named as themselves; rules are ``"rule:NAME"`` and
        constraints ``"constraint:NAME"``. Node attribute ``kind`` tells which. A
        recursive define reads itself (an edge around a cycle; its hidden layers are no
        nodes).
    recursion : Recursion or None
        The recursive defines and their unrolling (``.components``, the hidden
        ``.layers``, each define's ``.original`` expression), or None.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse('''
    ... input age: int 0..120
    ... output approve: bool
    ... rule adult: age >= 18 -> approve
    ... ''')
    >>> kb.inputs, kb.outputs, list(kb.rules)
    (('age',), ('approve',), ['adult'])
    >>> sorted(kb.depends_on("approve"))
    ['age', 'rule:adult']
    """

    __slots__ = ("statements", "variables", "rules", "constraints", "source", "filename",
                 "program", "recursion", "_graph", "_hash", "_decided", "_heads", "_memo",
                 "__weakref__")

    def __init__(self, statements: Iterable[A.Statement], *, source: str | None = None,
                 filename: str | None = None, sets: Mapping[str, Iterable] | None = None):
        statements = list(statements)
        program = None
        shared = _shared_numbers(statements)
        if shared is None:   # relational
            statements, program = ground(statements, sets, filename=filename, source=source)
        elif sets:
            raise RuleError(f"sets= gives members of {', '.join(map(repr, sets))}, but the "
                            "rules declare no set")
        elif shared:
            statements = _own_numbers(statements, shared)
        object.__setattr__(self, "program", program)
        resolved, variables, recursion = validate(
            statements, filename=filename, source=source,
            families=None if program is None else program.families)
        #: the recursive defines, unrolled (:class:`~greybox.rules._recursion.Recursion`)
        object.__setattr__(self, "recursion", recursion)
        # as written: a recursive define with its own expression, without the layers of
        # its unrolling (which :attr:`variables` holds); a KB rebuilt from them recurses
        object.__setattr__(self, "statements", tuple(written(resolved, recursion)))
        object.__setattr__(self, "variables", MappingProxyType(variables))
        object.__setattr__(self, "rules", MappingProxyType(
            {s.name: s for s in resolved if isinstance(s, A.Rule)}))
        object.__setattr__(self, "constraints", MappingProxyType(
            {s.name: s for s in resolved if isinstance(s, A.Constraint)}))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "filename", filename)
        object.__setattr__(self, "_graph", None)
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_decided", None)
        object.__setattr__(self, "_heads", None)
        #: what evaluation derives from this object alone (see rules._decisions.memo)
        object.__setattr__(self, "_memo", {})

    def __setattr__(self, name, value):
        raise AttributeError("KnowledgeBase is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KnowledgeBase):
            return NotImplemented
        return self.statements == other.statements

    def __hash__(self) -> int:
        if self._hash is None:  # the statements are immutable: hash them once
            object.__setattr__(self, "_hash", hash(self.statements))
        return self._hash

    def __repr__(self) -> str:
        return (f"KnowledgeBase({len(self.variables) - len(self.layers)} variables, "
                f"{len(self.rules)} rules, {len(self.constraints)} constraints)")

    def __str__(self) -> str:
        return to_text(self)

    def __getstate__(self):
        return {"text": to_text(self), "filename": self.filename}

    def __setstate__(self, state):
        other = parse(state["text"], filename=state.get("filename"))
        for slot in KnowledgeBase.__slots__:
            if slot != "__weakref__":
                object.__setattr__(self, slot, getattr(other, slot))
        object.__setattr__(self, "_memo", {})

    @property
    def families(self) -> Mapping[str, FamilyInfo]:
        """The families of a relational knowledge base, by name (rule and constraint
        families as ``"rule:NAME"`` / ``"constraint:NAME"``), each with its members'
        names by index; empty for a propositional one.

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("set cell: 0..3  input x[cell]: bool  output y: bool  "
        ...               "rule any: (exists c in cell: x[c]) -> y")
        >>> kb.families["x"].member(2), kb.inputs
        ('x[2]', ('x[0]', 'x[1]', 'x[2]', 'x[3]'))
        """
        return MappingProxyType({}) if self.program is None else self.program.families

    # -------------------------------------------------------------- variable groups
    def _names(self, role: str | None = None, output: bool | None = None) -> tuple[str, ...]:
        return tuple(
            v.name for v in self.variables.values()
            if (role is None or v.role == role) and (output is None or v.output == output)
        )

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the ``input`` variables."""
        return self._names("input")

    @property
    def neural(self) -> tuple[str, ...]:
        """Names of the ``neural`` variables."""
        return self._names("neural")

    @property
    def layers(self) -> frozenset[str]:
        """The hidden layer defines a recursion's unrolling added to :attr:`variables`
        (``reach(a, d)@2``; empty without recursion): what user-facing output leaves out."""
        return self.recursion.layers if self.recursion is not None else frozenset()

    @property
    def defined(self) -> tuple[str, ...]:
        """Names of the variables defined by an expression (not the hidden layers of a
        recursive definition's unrolling, which :attr:`variables` holds)."""
        return tuple(n for n in self._names("defined") if n not in self.layers)

    @property
    def decided(self) -> tuple[str, ...]:
        """Names of the variables decided by rules (outputs and ``define`` without ``=``),
        in dependency order."""
        if self._decided is None:  # immutable: computed once
            order = {n: i for i, n in enumerate(self.topological_order())}
            object.__setattr__(self, "_decided",
                               tuple(sorted(self._names("decided"), key=order.__getitem__)))
        return self._decided

    @property
    def additive(self) -> tuple[str, ...]:
        """Names of the decided variables whose value is their score (regression outputs):
        every decided ``real``, and a decided ``int`` whose rules add to it (``-> y``),
        rounded to the nearest whole number (halves up) within its bounds.

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input x: real  output y: real  rule big weight 25: x > 1 -> y")
        >>> kb.additive, gr.evaluate(kb, {"x": [0.0, 2.0]}).decisions["y"].tolist()
        (('y',), [0.0, 25.0])
        """
        if "additive" not in self._memo:
            from ._validate import additive

            self._memo["additive"] = additive(self.variables, self.rules.values())
        return self._memo["additive"]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the ``output`` variables."""
        return self._names(output=True)

    @property
    def networks(self) -> Mapping[str, tuple[str, ...]]:
        """Each network name with the neural variables it predicts."""
        nets: dict[str, list[str]] = {}
        for v in self.variables.values():
            if v.role == "neural":
                nets.setdefault(v.network, []).append(v.name)
        return MappingProxyType({k: tuple(v) for k, v in nets.items()})

    def rules_for(self, name: str) -> tuple[A.Rule, ...]:
        """The rules whose head is variable ``name``."""
        if self._heads is None:  # immutable: indexed once (relational KBs have many rules)
            heads: dict[str, list] = {}
            for r in self.rules.values():
                heads.setdefault(r.head.name, []).append(r)
            object.__setattr__(self, "_heads", {k: tuple(v) for k, v in heads.items()})
        found = self._heads.get(name)
        if found is None:
            self._require(name)
            return ()
        return found

    def learnable_thresholds(self) -> tuple[tuple[str, int, A.Num], ...]:
        """Every ``~`` number as ``(rule_or_constraint_name, index, Num)``, the index counting
        the learnable numbers of that rule or constraint in reading order."""
        found = []
        for st in self.statements:
            if isinstance(st, (A.Rule, A.Constraint)):
                expr = st.body if isinstance(st, A.Rule) else st.formula
                nums = [n for n in A.walk(expr) if isinstance(n, A.Num) and n.learnable]
                found.extend((st.name, i, n) for i, n in enumerate(nums))
        return tuple(found)

    # ------------------------------------------------------------------ the graph
    @property
    def graph(self) -> nx.DiGraph:
        if self._graph is None:
            object.__setattr__(self, "_graph", nx.freeze(self._build_graph()))
        return self._graph

    def _build_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        hidden = self.layers
        original = self.recursion.original if self.recursion is not None else {}
        shown = [v for v in self.variables.values() if v.name not in hidden]
        for v in shown:
            g.add_node(v.name, kind=v.role, type=v.type, output=v.output)
        for v in shown:
            if v.role == "neural":
                g.nodes[v.name]["network"] = v.network
                g.add_edges_from((a, v.name) for a in v.args)
            elif v.role == "defined":   # a recursive define as written: it reads itself
                expr = original.get(v.name, v.expr)
                g.add_edges_from((a, v.name) for a in A.variables(expr))
        for r in self.rules.values():
            node = "rule:" + r.name
            g.add_node(node, kind="rule", weight=r.weight, fixed=r.fixed)
            g.add_edges_from((a, node) for a in A.variables(r.body))
            g.add_edge(node, r.head.name, value=r.head.value)
        for c in self.constraints.values():
            node = "constraint:" + c.name
            g.add_node(node, kind="constraint", hard=c.hard, weight=c.weight)
            for a in A.variables(c.formula):
                if self.variables[a].role == "decided":
                    g.add_edge(node, a)  # the constraint conditions this decision
                else:
                    g.add_edge(a, node)
        return g

    def _require(self, name: str) -> None:
        if name not in self.graph:
            raise RuleError(f"{name!r} is not a variable, 'rule:NAME' or 'constraint:NAME' of "
                            "this knowledge base")

    def depends_on(self, name: str) -> set[str]:
        """Every node ``name`` depends on (its ancestors in :attr:`graph`)."""
        self._require(name)
        return nx.ancestors(self.graph, name)

    def affects(self, name: str) -> set[str]:
        """Every node that depends on ``name`` (its descendants in :attr:`graph`)."""
        self._require(name)
        return nx.descendants(self.graph, name)

    def topological_order(self) -> list[str]:
        """Variables in an order where each comes after everything it depends on."""
        g = nx.DiGraph()
        g.add_nodes_from(self.variables)
        for v in self.variables.values():
            deps = v.args if v.role == "neural" else A.variables(v.expr) if v.expr else []
            g.add_edges_from((a, v.name) for a in deps)
        for r in self.rules.values():
            g.add_edges_from((a, r.head.name) for a in A.variables(r.body))
        # ties broken by declaration order, looked up in a dict (list.index is linear:
        # 200,000 grounded inputs took 558 s)
        position = {name: i for i, name in enumerate(self.variables)}
        return list(nx.lexicographical_topological_sort(g, key=position.__getitem__))

    def to_dot(self) -> str:
        """The concept graph in Graphviz DOT (outputs drawn with a double border).

        Examples
        --------
        >>> import greybox.rules as gr
        >>> kb = gr.parse("input x: bool  output y: bool  rule r: x -> not y")
        >>> print(kb.to_dot())  # doctest: +NORMALIZE_WHITESPACE
        digraph greybox {
          rankdir=LR;
          "x" [label="x: bool", shape=box];
          "y" [label="y: bool", shape=ellipse, peripheries=2];
          "rule:r" [label="rule:r\\nweight 1", shape=note];
          "x" -> "rule:r";
          "rule:r" -> "y" [style=dashed, label="not"];
        }
        """
        from ._graph_dot import dot_text

        return dot_text(self.graph)


def parse(text: str, *, filename: str | None = None,
          sets: Mapping[str, Iterable] | None = None) -> KnowledgeBase:
    """Parse and validate rule text.

    Parameters
    ----------
    text : str
        Rule-language text (see the language guide).
    filename : str, optional
        Used in error messages.
    sets : mapping, optional
        Members of the sets the text declares without members (``set person``): a list of
        names such as ``df["name"].unique()``, or an entity table (a DataFrame: one member
        per row, named by its index label). Relational rules are grounded over them.

    Returns
    -------
    KnowledgeBase

    Raises
    ------
    RuleSyntaxError
        The text does not follow the grammar (with file:line:column and a caret).
    RuleError
        It parses, but names, types, domains, heads or definitions are wrong.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input x: real\\noutput y: bool\\nrule r weight 2.0: x > ~1.5 -> y")
    >>> kb.rules["r"].weight
    2.0
    >>> gr.parse("input x: real\\noutput y: bool\\nrule r: z > 1 -> y")
    Traceback (most recent call last):
    ...
    greybox.errors.RuleError: <rules>:3:9: undeclared name 'z'
        rule r: z > 1 -> y
                ^
    """
    with paused_gc():
        statements = parse_statements(text, filename=filename)
        return KnowledgeBase(statements, source=text, filename=filename, sets=sets)



def _shared_numbers(statements: list) -> set[int] | None:
    """None when a statement is relational (:func:`~greybox.rules.ast.is_relational`),
    else the positions of the rules and constraints that hold a ``~`` number node an
    earlier one holds (see :func:`_own_numbers`): both read on one walk of each
    expression (was two, with ``A.walk``)."""
    first: dict[int, int] = {}
    clash = set()
    children = A._CHILDREN.get
    for i, st in enumerate(statements):
        if isinstance(st, A.Rule):
            if st.head.index:
                return None
            e, own = st.body, True
        elif isinstance(st, A.Constraint):
            e, own = st.formula, True
        elif isinstance(st, A.DefineDecl) and st.expr is not None:
            e, own = st.expr, False
        elif A.is_relational(st):
            return None
        else:
            continue
        stack = [e]
        pop, extend = stack.pop, stack.extend
        while stack:
            node = pop()
            t = type(node)
            found = _KIND.get(t)
            if found is None:
                found = _kind_of(t)
            if found is _RELATIONAL:
                return None
            if found is _NUM:
                if own and node.learnable and first.setdefault(id(node), i) != i:
                    clash.add(i)
                continue
            kids = (children(t) or A._children_of(t))(node)
            if kids:
                extend(kids)
    return clash


_RELATIONAL, _NUM, _OTHER = "relational", "number", "other"
#: which of the above each kind of node is (subclasses included, as ``isinstance`` tells)
_KIND: dict = {}


def _kind_of(t):
    found = (_RELATIONAL if issubclass(t, A.RELATIONAL_EXPRS) else
             _NUM if issubclass(t, A.Num) else _OTHER)
    _KIND[t] = found
    return found


def _own_numbers(statements: list, clash: set[int]) -> list:
    """``statements`` where no two hold the same ``~`` number node (``clash``: the positions
    of those that hold an earlier one's, from :func:`_shared_numbers`). Statements taken
    out of a relational program (a family's members, as the debugger's grounding edits do)
    share their template's nodes; without the program each is a statement of its own,
    whose numbers a model gives parameters of their own -- one node is one parameter,
    so a shared one left all but one statement's dead."""

    def fresh(node):
        if isinstance(node, A.Num) and node.learnable:
            return A.Num(node.value, True, span=node.span)
        return None

    out = list(statements)
    for i in clash:
        st = out[i]
        out[i] = (dataclasses.replace(st, body=A.rewrite(st.body, fresh))
                  if isinstance(st, A.Rule) else
                  dataclasses.replace(st, formula=A.rewrite(st.formula, fresh)))
    return out


#: Largest rule file :func:`load` reads, in bytes; it reads no further than this (so
#: ``/dev/zero`` or a huge file is refused without filling memory).
MAX_FILE_BYTES = 10_000_000

_BOM = b"\xef\xbb\xbf"


def _decode(raw: bytes, filename: str) -> str:
    """UTF-8 text of ``raw`` without a leading byte-order mark; bytes that are not UTF-8
    are reported at their line and column."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        line = raw.count(b"\n", 0, err.start) + 1
        column = len(raw[line_start:err.start].decode("utf-8")) + 1
        shown = raw.decode("utf-8", errors="replace")
        raise RuleSyntaxError(f"not UTF-8 text: byte 0x{raw[err.start]:02x} cannot be decoded "
                              "(save the file as UTF-8)", Location(line, column, filename),
                              shown) from None


def load(path: str | Path, *, sets: Mapping[str, Iterable] | None = None) -> KnowledgeBase:
    """Read and parse a ``.rules`` file (UTF-8, with or without a byte-order mark, at most
    :data:`MAX_FILE_BYTES` bytes).

    Raises
    ------
    OSError
        The file cannot be read.
    RuleSyntaxError
        The file is larger than 10 MB, is not UTF-8 (the first bad byte's line and column
        are given) or does not follow the grammar.
    RuleError
        It parses, but is not valid (see :func:`parse`).

    Examples
    --------
    >>> import greybox.rules as gr, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.rules")
    >>> _ = open(path, "w").write("input x: bool\\noutput y: bool\\nrule r: x -> y\\n")
    >>> gr.load(path).outputs
    ('y',)
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise RuleSyntaxError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes, the limit for a "
                              "rule file")
    return parse(_decode(raw, str(path)), filename=str(path), sets=sets)


def to_text(kb: KnowledgeBase | A.Node) -> str:
    """The rule text of ``kb``: one statement per line, parseable back to an equal KB.

    Given a single statement, type or expression instead, its text alone.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input `years at address`: real  output ok: bool  "
    ...               "rule r: `years at address` > 3 -> ok")
    >>> print(gr.to_text(kb))
    input `years at address`: real
    output ok: bool
    rule r: `years at address` > 3 -> ok
    <BLANKLINE>
    >>> gr.parse(gr.to_text(kb)) == kb
    True
    >>> gr.to_text(kb.rules["r"].body)
    '`years at address` > 3'
    """
    if isinstance(kb, A.Node) and not isinstance(kb, KnowledgeBase):
        from ._printer import expr_to_text, head_to_text, type_to_text

        if isinstance(kb, A.Head):
            return head_to_text(kb)
        if isinstance(kb, A.Type.__args__):
            return type_to_text(kb)
        if isinstance(kb, (*A.Statement.__args__, A.SetDecl, A.Family)):
            return statement_to_text(kb)
        return expr_to_text(kb)
    if not isinstance(kb, KnowledgeBase):
        raise TypeError(f"to_text needs a KnowledgeBase or an AST node, got {type(kb).__name__}")
    if kb.program is not None:
        return _program_text(kb.program)
    return "".join(statement_to_text(s) + "\n" for s in kb.statements)


def _program_text(program: Program) -> str:
    """A relational knowledge base's own text; sets that took their members from the data
    list them, so that the text grounds alone to the same statements."""
    lines = []
    for t in program.templates:
        if isinstance(t, A.SetDecl) and t.members is None:
            t = A.SetDecl(t.name, program.sets[t.name], span=t.span)
        lines.append(statement_to_text(t) + "\n")
    return "".join(lines)


def parse_formula(text: str | A.Node, kb: KnowledgeBase | None = None) -> A.Expr:
    """Parse (and, given ``kb``, type-check) one formula such as ``"age < 18 -> not approve"``.

    Examples
    --------
    >>> import greybox.rules as gr
    >>> kb = gr.parse("input age: int 0..120  output approve: bool")
    >>> gr.parse_formula("age < 18 -> not approve", kb)
    Implies(left=Compare(op='<', left=Var(name='age'), right=Num(value=18, learnable=False)), right=Not(operand=Var(name='approve')))
    """
    expr = parse_fragment(text, "expr", filename="<formula>") if isinstance(text, str) else text
    if any(isinstance(n, A.RELATIONAL_EXPRS) for n in A.walk(expr)):
        if kb is None or kb.program is None:
            raise RuleError("this formula uses families, quantifiers or aggregates: it needs "
                            "the relational knowledge base that declares them",
                            expr.span, text if isinstance(text, str) else None)
        expr = ground_formula(expr, kb.program, filename="<formula>",
                              source=text if isinstance(text, str) else None)
    if kb is not None:
        ck = _Checker("<formula>")
        expr = check_expr(expr, dict(kb.variables), ck, expect=A.BoolType(), learnable_ok=True,
                          what="the formula")
        if ck.problems:
            raise RuleError("", diagnostics=ck.diagnostics(),
                            source=text if isinstance(text, str) else None)
    return expr
