"""The rule language's syntax tree (``greybox.rules.ast``): nodes, traversal, domains.

Nodes are frozen dataclasses with structural equality (source spans do not take part).
:func:`walk` visits an expression, :func:`rewrite` rebuilds one with some nodes replaced,
:func:`variables` lists the names it reads, :func:`domain_values` enumerates a finite
type's values (ints by value, enums by name, bools False then True), and :func:`domain`
gives a type's :class:`Domain`: its values, each value's index (place in domain order) and
code (what arithmetic and solvers see), and every conversion between them.

Examples
--------
>>> from greybox.rules import ast, parse_formula, parse
>>> kb = parse("input x: real  output y: bool  rule r: x > ~2 -> y")
>>> e = kb.rules["r"].body
>>> sorted(ast.variables(e)), [n.value for n in ast.walk(e) if isinstance(n, ast.Num)]
(['x'], [2])
>>> ast.domain_values(ast.IntType(1, 3))
range(1, 4)
>>> d = ast.domain(ast.EnumType(("low", "high")))
>>> d.size, d.index("high"), d.value(0), d.decode(1)
(2, 1, 'low', 'high')
"""

from . import _ast
from ._ast import *  # noqa: F403 -- the node classes: _ast.__all__, their one list
from ._ast import (
    RELATIONAL_EXPRS,
    Expr,
    Node,
    children,
    depth,
    domain_values,
    is_constant,
    is_finite_type,
    is_plain_name,
    is_relational,
    name_problem,
    neg,
    number_problem,
    rewrite,
    variables,
    walk,
)
from ._domain import BIG_INT, Domain, big_int, domain

__all__ = [
    *_ast.__all__,  # the node classes
    "Node",
    "Expr",
    "RELATIONAL_EXPRS",
    "is_relational",
    "BIG_INT",
    "Domain",
    "big_int",
    "children",
    "depth",
    "domain",
    "domain_values",
    "is_constant",
    "is_finite_type",
    "is_plain_name",
    "name_problem",
    "neg",
    "number_problem",
    "rewrite",
    "variables",
    "walk",
]
del _ast
