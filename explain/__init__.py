"""Explanations and debugging of grey-box decisions (``greybox.explain``).

This package sits on top of :mod:`greybox.rules` and the model. Its contents (``explain``,
``verify``, ``Debugger``) arrive with the model; see the project's issues for the plan.
"""

__all__: list[str] = []
