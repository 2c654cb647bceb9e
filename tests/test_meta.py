"""Project-wide rules: import direction, exception roots, no eval, package layout."""

import ast
import inspect
import pathlib
import subprocess
import sys

import pytest

import greybox
import greybox.errors as errors
import greybox.rules as gr

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_importing_rules_does_not_import_torch_or_model_code():
    code = ("import sys, greybox.rules; "
            "bad = [m for m in ('torch', 'captum', 'greybox.explain') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rules_package_source_imports_no_model_code():
    for path in (ROOT / "rules").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith(("torch", "captum", "greybox.explain")), (path, name)
                if name.startswith("greybox.") :
                    assert name in ("greybox.errors",), (path, name)


def test_no_eval_or_exec_in_the_library():
    for folder in ("greybox", "rules", "explain"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("eval", "exec", "compile"), path


@pytest.mark.parametrize("exc", [errors.RuleSyntaxError, errors.RuleError, errors.DataError,
                                 errors.SolverError])
def test_exception_roots(exc):
    assert issubclass(exc, errors.GreyboxError)
    assert issubclass(exc, (SyntaxError, ValueError, RuntimeError))
    assert getattr(gr, exc.__name__) is exc and getattr(greybox, exc.__name__) is exc


@pytest.mark.parametrize("exc", [errors.ModelError, errors.CheckpointError])
def test_model_exception_roots(exc):
    assert issubclass(exc, errors.GreyboxError) and issubclass(exc, ValueError)
    assert getattr(greybox, exc.__name__) is exc


def test_save_error_roots():
    assert issubclass(errors.SaveError, errors.GreyboxError)
    assert issubclass(errors.SaveError, OSError)
    assert greybox.SaveError is errors.SaveError


def test_importing_greybox_is_light_until_the_model_is_used():
    code = ("import sys, greybox; light = 'torch' not in sys.modules; "
            "greybox.GreyBox; print(light, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_every_public_model_name_is_documented():
    for name in greybox.__all__:
        obj = getattr(greybox, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name


def test_every_public_name_is_documented():
    for name in gr.__all__:
        obj = getattr(gr, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, name


def test_subpackages_installed_under_greybox_only():
    import importlib.util

    assert importlib.util.find_spec("greybox.rules") is not None
    assert importlib.util.find_spec("greybox.explain") is not None
    for top in ("rules", "explain"):
        spec = importlib.util.find_spec(top)
        assert spec is None or "site-packages" not in str(spec.origin)


def _lines_matching(folders, pattern: str) -> list[str]:
    """``folder/file:line: text`` of every source line under ``folders`` matching."""
    import re

    base = pathlib.Path(greybox.__file__).resolve().parent.parent
    found = []
    for folder in folders:
        for path in (base / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(pattern, line):
                    found.append(f"{folder}/{path.name}:{i}: {line.strip()}")
    return found


def test_explanations_use_the_models_public_accessors_only():
    """explain/ reads a model through its public names (network, residual_for, features,
    spread, rule_mask, replace, ...), never its private members."""
    found = _lines_matching(["explain"], r"\bmodel\._[a-z]")
    assert not found, found


def test_the_model_and_explanations_use_the_rules_public_names_only():
    """greybox/ and explain/ import what they need from greybox.rules' public names
    (greybox.rules.ast, plan, read_column, ...), never its private modules."""
    found = _lines_matching(["greybox", "explain"],
                            r"greybox\.rules\._|from greybox\.rules import _|rules\._[a-z]+ import")
    assert not found, found


def test_explanations_import_no_private_module_of_the_model():
    """explain/ reads what it needs from the model's public names (greybox.Batch,
    greybox.functional, greybox.write_atomic, greybox.rules), never greybox._* modules."""
    found = _lines_matching(["explain"], r"from greybox\._|import greybox\._|from greybox import _")
    assert not found, found
