"""The rule language and symbolic engine of greybox (``greybox.rules``).

Parse rule text into a validated :class:`KnowledgeBase`, print it back, evaluate it crisply
on data, and analyse or prove things about it with Z3. This package imports neither torch
nor the model code.

Examples
--------
>>> import greybox.rules as gr
>>> kb = gr.parse('''
... input age: int 0..120
... input income: real[0, 1000000]
... output approve: bool
... rule poor weight 2.0: income < ~20000 -> not approve
... rule earns: income >= 30000 -> approve
... constraint minors: age < 18 -> not approve
... ''')
>>> gr.entails(kb, "age < 18 -> not approve").holds
True
>>> gr.evaluate(kb, {"age": [30, 15], "income": [50000, 50000]}).decisions["approve"].tolist()
[True, False]
"""

from greybox.errors import DataError, GreyboxError, RuleError, RuleSyntaxError, SolverError

from . import ast
from ._ast import (
    And,
    BoolConst,
    BoolType,
    Compare,
    Constraint,
    DefineDecl,
    EnumType,
    Head,
    Iff,
    Implies,
    InputDecl,
    InSet,
    IntType,
    Mul,
    Neg,
    NeuralDecl,
    Not,
    Num,
    Or,
    OutputDecl,
    RealType,
    Rule,
    Sum,
    Sym,
    TensorType,
    Var,
)
from ._boost import induce
from ._builder import Builder, Term, count, iff, implies, learnable, maximum, minimum
from ._check import CheckReport, Finding, check
from ._deadline import timeout_seconds, z3_milliseconds
from ._decisions import Component, DecisionPlan, closure, constrains_networks, plan
from ._entails import Entailment, entails
from ._evaluate import (
    Evaluation,
    align_labels,
    compile_expr,
    crisp_truth,
    decode_bools,
    evaluate,
    first_row,
    missing_values,
    read_column,
    read_masked,
    show_value,
)
from ._exact import exact_in_float64
from ._ground import FamilyInfo, family_columns, member_name
from ._induce import Condition, Conjunction, search_conjunctions
from ._intervals import apply as apply_arith
from ._intervals import op_interval, value_set
from ._kb import KnowledgeBase, load, parse, parse_formula, to_text
from ._missing import MISSING, definite, missing_key, not_false
from ._parser import parse_statements
from ._printer import expr_to_text, type_to_text
from ._validate import Variable
from ._z3 import (
    Z3_LOCK,
    Z3Encoding,
    call_cache,
    in_context,
    real_value,
    to_z3,
    witness_row,
    z3_serialised,
)

__all__ = [
    "op_interval",
    "value_set",
    # parsing, printing, building
    "parse",
    "load",
    "to_text",
    "parse_formula",
    "induce",
    "search_conjunctions",
    "Conjunction",
    "Condition",
    "KnowledgeBase",
    "FamilyInfo",
    "family_columns",
    "member_name",
    "Variable",
    # crisp evaluation
    "evaluate",
    "Evaluation",
    # Z3
    "check",
    "CheckReport",
    "Finding",
    "entails",
    "Entailment",
    "to_z3",
    "Z3Encoding",
    "Z3_LOCK",
    "z3_serialised",
    "call_cache",
    "in_context",
    "timeout_seconds",
    "z3_milliseconds",
    "Builder",
    "Term",
    "implies",
    "iff",
    "count",
    "learnable",
    "maximum",
    "minimum",
    # what the model and explanations build on
    "ast",
    "plan",
    "constrains_networks",
    "apply_arith",
    "closure",
    "DecisionPlan",
    "Component",
    "compile_expr",
    "crisp_truth",
    "exact_in_float64",
    "read_column",
    "read_masked",
    "definite",
    "MISSING",
    "missing_key",
    "not_false",
    "first_row",
    "show_value",
    "missing_values",
    "decode_bools",
    "align_labels",
    "parse_statements",
    "expr_to_text",
    "type_to_text",
    "real_value",
    "witness_row",
    # errors
    "GreyboxError",
    "RuleSyntaxError",
    "RuleError",
    "DataError",
    "SolverError",
    # AST
    "And",
    "BoolConst",
    "BoolType",
    "Compare",
    "Constraint",
    "DefineDecl",
    "EnumType",
    "Head",
    "Iff",
    "Implies",
    "InSet",
    "InputDecl",
    "IntType",
    "Mul",
    "Neg",
    "NeuralDecl",
    "Not",
    "Num",
    "Or",
    "OutputDecl",
    "RealType",
    "Rule",
    "Sum",
    "Sym",
    "TensorType",
    "Var",
]

# ---- the engine's code entry (issue 22 item 2, branch "codes"): what the model's decision
# function and the formal layer call with columns already read as codes
from ._decisions import kb_cached  # noqa: E402
from ._evaluate import evaluate_codes  # noqa: E402
from ._missing import placeholder  # noqa: E402

__all__ += ["evaluate_codes", "kb_cached", "placeholder"]
