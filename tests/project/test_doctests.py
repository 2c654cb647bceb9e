"""The examples in docstrings run and show what they claim."""

import doctest
import importlib
import pkgutil

import pytest


def _modules():
    import greybox.semantics

    names = ["greybox", "greybox.errors", "greybox.cli", "greybox.functional", "greybox._model",
             "greybox._io", "greybox._sklearn", "greybox._factors", "greybox._train",
             "greybox._linear", "greybox._names", "greybox._bigint", "greybox._architecture",
             "greybox._history", "greybox._parameters", "greybox._statistics"]
    import greybox.explain

    for pkg in (greybox.rules, greybox.semantics, greybox.explain):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            names.append(info.name)
    finder = doctest.DocTestFinder()
    return [n for n in names
            if any(t.examples for t in finder.find(importlib.import_module(n)))]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
