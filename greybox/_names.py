"""Names as the model's module dicts hold them, and types as rule text shows them."""

from __future__ import annotations

__all__ = ["_key", "_type"]


#: what a dot becomes in a module-dict key (dots are not allowed there): U+2024, one dot
#: leader
_DOT = "\u2024"
#: the escape: a backtick, which no name holds (the rule language refuses it even between
#: backticks). A one dot leader in a name is written with it before; a name that is an
#: attribute of ``nn.ModuleDict`` (``keys``, ``training``, ``forward``, ``_modules``...)
#: gets it at the end
_ESC = "`"
_reserved: frozenset | None = None


def _key(name: str) -> str:
    """A module-dict key for a rule or variable name: the state dict's
    ``rules.<key>.weight``. One key per name: ``a.b`` is ``a\u2024b``, ``a\u2024b`` (a
    name with a one dot leader) ``a`\u2024b``, ``keys`` (an attribute of
    :class:`torch.nn.ModuleDict`) ``keys``` and every other name itself. No name holds a
    backtick, so a backtick only ever stands before a one dot leader or at the end of an
    attribute's name: two names never share a key, hence a parameter. A key is its own
    key, except where the name holds a one dot leader.

    Examples
    --------
    >>> [_key(n) for n in ("age", "a.b", "a\u2024b", "keys")]
    ['age', 'a\u2024b', 'a`\u2024b', 'keys`']
    """
    global _reserved
    if _reserved is None:
        from torch import nn

        _reserved = frozenset(dir(nn.ModuleDict()))
    key = name.replace(_DOT, _ESC + _DOT).replace(".", _DOT)
    return key + _ESC if key in _reserved else key


def _type(t) -> str:
    from greybox.rules.engine import type_to_text

    return type_to_text(t)
