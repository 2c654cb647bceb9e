"""Names as the model's module dicts hold them, and types as rule text shows them."""

from __future__ import annotations

__all__ = ["_key", "_type"]


def _key(name: str) -> str:
    """A module-dict key for a rule or variable name (dots are not allowed there)."""
    return name.replace(".", "\u2024")


def _type(t) -> str:
    from greybox.rules import type_to_text

    return type_to_text(t)
