"""The words of the rule language: what a name and a number may be (no syntax tree needed).

Read through ``greybox.rules.ast`` (``A.name_problem``, ``A.is_plain_name``, ...).
"""

from __future__ import annotations

import math
import re

#: Words of the language; a variable with one of these names is written back-quoted.
KEYWORDS = frozenset(
    "input neural define output rule constraint weight fixed and or not in true false "
    "bool real int tensor set forall exists for optional is missing".split()
)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BAD_NAME_CHARS = re.compile(r"[`\x00-\x1f\x7f]")


def is_plain_name(name: str) -> bool:
    """True when ``name`` can be written without back-quotes."""
    return bool(_PLAIN_NAME.match(name)) and name not in KEYWORDS


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a name in the language, or None when it can."""
    if not isinstance(name, str):
        return f"a name must be a string, got {type(name).__name__}"
    if not name.strip():
        return "a name must not be empty or blank"
    if _BAD_NAME_CHARS.search(name):
        return f"name {name!r} contains a back-quote or a control character"
    return None


def number_problem(value: object) -> str | None:
    """Why ``value`` cannot be a number of the language (a weight, a constant), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"numbers must be finite, got {value!r}"
    return None
