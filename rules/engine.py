"""The rules engine's internals that the model and the explanations build on.

**Internal to greybox.** ``greybox`` (the model, its semantics, the command line) and
``greybox.explain`` (explanations, formal reasons, the debugger) import what they need from
the rules engine here and from the public face :mod:`greybox.rules`, never from its private
modules (``greybox.rules._x``). Nothing here is covered by the compatibility promise: names
change, move or go with the code that needs them. Users write with :mod:`greybox.rules`
(``parse``, ``evaluate``, ``check``, ``entails``, ``KnowledgeBase``, ``Builder``, ``ast``,
...).

The names, by what they serve:

* the decision structure: :func:`plan` → :class:`DecisionPlan` of :class:`Component`,
  :func:`closure`, :func:`constrains_networks`, :func:`kb_cached` (a per-knowledge-base
  cache);
* the evaluation's code entry: :func:`evaluate_codes` (what the model's decision function
  and the formal layer call with columns already read as codes);
* columns and values of the crisp evaluation: :func:`read_column`, :func:`read_masked`,
  :func:`first_row`, :func:`show_value`, :func:`missing_values`, :func:`decode_bools`,
  :func:`align_labels`, :func:`compile_expr`, :func:`crisp_truth`, :func:`exact_in_float64`;
* missing values: :data:`MISSING`, :func:`missing_key`, :func:`definite`, :func:`not_false`,
  :func:`placeholder`;
* integer arithmetic and ranges: :func:`apply_arith`, :func:`op_interval`, :func:`value_set`;
* relational families: :func:`family_columns`, :func:`member_name`;
* text: :func:`parse_statements`, :func:`expr_to_text`, :func:`type_to_text`;
* Z3 and time limits: :func:`z3_serialised` (a Z3 context per outermost call),
  :func:`in_context`, :func:`call_cache`, :func:`real_value`, :func:`witness_row`,
  :func:`timeout_seconds`, :func:`z3_milliseconds`;
* the search behind ``induce`` and the debugger's rule proposals:
  :func:`search_conjunctions` → :class:`Conjunction` of :class:`Condition`.
"""

from ._deadline import timeout_seconds, z3_milliseconds
from ._decisions import Component, DecisionPlan, closure, constrains_networks, kb_cached, plan
from ._evaluate import (
    align_labels,
    compile_expr,
    crisp_truth,
    decode_bools,
    evaluate_codes,
    first_row,
    missing_values,
    read_column,
    read_masked,
    show_value,
)
from ._exact import exact_in_float64
from ._ground import family_columns, member_name
from ._induce import Condition, Conjunction, search_conjunctions
from ._intervals import apply as apply_arith
from ._intervals import op_interval, value_set
from ._missing import MISSING, definite, missing_key, not_false, placeholder
from ._parser import parse_statements
from ._printer import expr_to_text, type_to_text
from ._z3 import call_cache, in_context, real_value, witness_row, z3_serialised

__all__ = [
    # the decision structure
    "plan",
    "DecisionPlan",
    "Component",
    "closure",
    "constrains_networks",
    "kb_cached",
    # the evaluation's code entry (columns already read as codes)
    "evaluate_codes",
    # columns and values of the crisp evaluation
    "read_column",
    "read_masked",
    "first_row",
    "show_value",
    "missing_values",
    "decode_bools",
    "align_labels",
    "compile_expr",
    "crisp_truth",
    "exact_in_float64",
    # missing values
    "MISSING",
    "missing_key",
    "definite",
    "not_false",
    "placeholder",
    # integer arithmetic and ranges
    "apply_arith",
    "op_interval",
    "value_set",
    # relational families
    "family_columns",
    "member_name",
    # text
    "parse_statements",
    "expr_to_text",
    "type_to_text",
    # Z3 and time limits
    "z3_serialised",
    "in_context",
    "call_cache",
    "real_value",
    "witness_row",
    "timeout_seconds",
    "z3_milliseconds",
    # the search behind induce and the debugger's rule proposals
    "search_conjunctions",
    "Conjunction",
    "Condition",
]
