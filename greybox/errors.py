"""Exceptions raised on purpose by greybox.

Every exception derives from :class:`GreyboxError` and from the fitting built-in, so
``except ValueError`` keeps working for callers who do not know greybox.

Examples
--------
>>> import greybox.rules as gr
>>> try:
...     gr.parse("input x: int 0..")
... except gr.RuleSyntaxError as err:
...     print(err.lineno, err.offset)
1 17
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CheckpointError",
    "DataError",
    "GreyboxError",
    "Location",
    "ModelError",
    "RuleError",
    "RuleSyntaxError",
    "SaveError",
    "SolverError",
]


@dataclass(frozen=True)
class Location:
    """A place in rule text: 1-based line and column, with the file name if known."""

    line: int
    column: int
    filename: str | None = None

    def __str__(self) -> str:
        return f"{self.filename or '<rules>'}:{self.line}:{self.column}"


def format_location(message: str, loc: Location | None, source: str | None) -> str:
    """Return ``file:line:col: message`` followed by the offending line and a caret."""
    if loc is None:
        return message
    text = f"{loc}: {message}"
    if source is not None:
        lines = source.splitlines()
        if 1 <= loc.line <= len(lines):
            line = lines[loc.line - 1].expandtabs(1)
            # Very long lines are cut around the column so the caret stays readable.
            start = max(0, loc.column - 60)
            snippet = line[start : start + 120]
            caret = " " * (loc.column - 1 - start) + "^"
            text += f"\n    {snippet}\n    {caret}"
    return text


def listed(items, *, limit: int = 20, sep: str = ", ") -> str:
    """``items`` (strings) joined by ``sep`` for a message: the first ``limit`` of a longer
    list, then how many there are in all, so that a model of 30,000 inputs does not make
    an error message of 300,000 characters.

    Examples
    --------
    >>> from greybox.errors import listed
    >>> listed(["a", "b", "c"])
    'a, b, c'
    >>> listed([f"x[{i}]" for i in range(30000)], limit=3)
    'x[0], x[1], x[2], ... (30000 in all)'
    """
    items = list(items)
    if len(items) <= limit:
        return sep.join(map(str, items))
    return sep.join(map(str, items[:limit])) + f"{sep}... ({len(items)} in all)"


class GreyboxError(Exception):
    """Root of every exception greybox raises on purpose."""


class RuleSyntaxError(GreyboxError, SyntaxError):
    """Rule text that the grammar does not accept.

    Carries ``filename``, ``lineno``, ``offset`` (column) and ``text`` (the line) like a
    :class:`SyntaxError`, and ``location``.
    """

    def __init__(self, message: str, loc: Location | None = None, source: str | None = None):
        full = format_location(message, loc, source)
        SyntaxError.__init__(self, full)
        self.reason = message
        self.location = loc
        self.full_message = full
        if loc is not None:
            self.filename = loc.filename
            self.lineno = loc.line
            self.offset = loc.column
            if source is not None:
                lines = source.splitlines()
                self.text = lines[loc.line - 1] if 1 <= loc.line <= len(lines) else None

    def __str__(self) -> str:
        return self.full_message


class RuleError(GreyboxError, ValueError):
    """A knowledge base that parses but is not valid (names, types, domains, cycles...).

    ``diagnostics`` lists every problem found, each a ``(message, location)`` pair; the
    exception message shows the first :attr:`SHOWN` of them and how many more there are,
    so that generated rules with hundreds of problems do not flood the terminal.

    Examples
    --------
    >>> from greybox.errors import RuleError
    >>> err = RuleError("", diagnostics=tuple((f"problem {i}", None) for i in range(30)))
    >>> len(err.diagnostics)
    30
    >>> print(str(err).splitlines()[0])
    30 problems in the rules (the first 10 shown):
    >>> str(err).splitlines()[-1]
    "... and 20 more (the error's .diagnostics lists all 30)"
    """

    #: how many diagnostics the exception message shows
    SHOWN = 10

    def __init__(
        self,
        message: str,
        loc: Location | None = None,
        source: str | None = None,
        *,
        diagnostics: tuple[tuple[str, Location | None], ...] | None = None,
    ):
        if diagnostics is None:
            diagnostics = ((message, loc),)
        self.diagnostics = diagnostics
        self.location = diagnostics[0][1]
        parts = [format_location(m, where, source) for m, where in diagnostics]
        if len(parts) == 1:
            full = parts[0]
        elif len(parts) <= self.SHOWN:
            full = f"{len(parts)} problems in the rules:\n" + "\n".join(parts)
        else:
            full = (f"{len(parts)} problems in the rules (the first {self.SHOWN} shown):\n"
                    + "\n".join(parts[: self.SHOWN])
                    + f"\n... and {len(parts) - self.SHOWN} more (the error's .diagnostics"
                    f" lists all {len(parts)})")
        super().__init__(full)


class DataError(GreyboxError, ValueError):
    """Data that does not fit the knowledge base: missing columns, NaN, wrong dtype, values
    outside a declared domain. The message names the column and the first offending row."""


class SolverError(GreyboxError, RuntimeError):
    """The constraint solver could not answer (timeout, resource limit, unsupported term)."""


class ModelError(GreyboxError, ValueError):
    """A grey-box model that cannot be built or run as asked: a network missing or
    returning the wrong shape, arithmetic too large for exact inference, a model used
    before it was fitted."""


class CheckpointError(GreyboxError, ValueError):
    """A saved model that cannot be read: corrupted, truncated, foreign or from an
    incompatible version."""


class SaveError(GreyboxError, OSError):
    """A file greybox was asked to write that cannot be written where asked: its folder
    is missing, is not a folder, or does not accept new files."""
