"""How the debugger shows values and tables: numbers, plain values and row labels in
messages, a titled table in a notebook."""

from __future__ import annotations

import html

import pandas as pd


def _frame_html(title: str, frame: pd.DataFrame, text: str = "") -> str:
    pre = f"<pre>{html.escape(text)}</pre>" if text else ""
    return f"<div><b>{html.escape(title)}</b>{pre}{frame.head(50)._repr_html_()}</div>"


def _short(x, *, sign: bool = True) -> str:
    """A number to 4 significant digits (with its sign where ``sign``)."""
    return f"{float(x):+.4g}" if sign else f"{float(x):.4g}"


def _py(value):
    """A numpy scalar as the plain Python value (for messages)."""
    return value.item() if hasattr(value, "item") else value


def _cell(value) -> str:
    """A target for a message: the plain value's repr, cut short."""
    text = repr(_py(value))
    return text if len(text) <= 60 else text[:57] + "..."
