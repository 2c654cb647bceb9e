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

ROOT = pathlib.Path(__file__).resolve().parents[2]


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


#: what a user writes with: ``greybox.rules.__all__``, exactly (issue 22: a narrow face)
USER_NAMES = {
    # parsing, printing, the knowledge base and its items
    "parse", "load", "to_text", "parse_formula", "KnowledgeBase", "Variable", "FamilyInfo",
    # the Python builder
    "Builder", "Term", "implies", "iff", "count", "learnable", "maximum", "minimum",
    # rules learned from data
    "induce",
    # crisp evaluation (and the proof of a fact in a row: Evaluation.proof)
    "evaluate", "Evaluation", "Proof",
    # Z3 (Z3_LOCK: docs/reference.md tells users to hold it around their own to_z3 terms)
    "check", "CheckReport", "Finding", "entails", "Entailment", "to_z3", "Z3Encoding",
    "Z3_LOCK",
    # errors
    "GreyboxError", "RuleSyntaxError", "RuleError", "DataError", "SolverError",
    # the syntax tree: its nodes, traversal, domains
    "ast",
}


def test_the_rules_public_face_is_what_a_user_writes_with():
    assert len(gr.__all__) == len(set(gr.__all__))
    assert set(gr.__all__) == USER_NAMES
    assert all(hasattr(gr, name) for name in gr.__all__)


def test_the_rules_engine_module_is_declared_internal():
    import greybox.rules.engine as engine

    assert "internal to greybox" in engine.__doc__.lower()
    assert "compatibility promise" in engine.__doc__
    assert len(engine.__all__) == len(set(engine.__all__))
    assert not set(engine.__all__) & set(gr.__all__)
    assert all(hasattr(engine, name) for name in engine.__all__)


@pytest.mark.parametrize("name, home", [("show_value", "engine"), ("plan", "engine"),
                                        ("Z3_LOCK", None), ("Var", "ast"), ("Aggregate", "ast")])
def test_names_that_left_the_rules_face_still_resolve_with_a_warning(name, home):
    import warnings

    if home is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert getattr(gr, name) is getattr(sys.modules["greybox.rules._z3"], name)
        return
    with pytest.warns(DeprecationWarning, match=rf"greybox\.rules\.{name} .*"
                                                rf"greybox\.rules\.{home}\.{name}"):
        assert getattr(gr, name) is getattr(getattr(gr, home), name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = gr.nothing_here


@pytest.mark.parametrize("statement", ["from greybox.rules import Var",
                                       "from greybox.rules import plan, Aggregate"])
def test_a_name_that_left_the_rules_face_warns_once_per_import(statement):
    """``from greybox.rules import Var`` asks for the name twice (the import system's
    hasattr, then the statement): one warning per name, at the statement's line."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(statement, "<user>", "exec"), {})
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == statement.count(",") + 1
    assert {w.filename for w in deprecations} == {"<user>"}


def _rules_uses(tree: ast.AST):
    """``(line, how, module, name)`` of every use of a ``greybox.rules`` name in a module:
    ``from greybox.rules[.sub] import name``, ``ALIAS.name`` and ``ALIAS.engine.name``
    (``.ast.``) through any alias of the package (``import greybox.rules as gr``, ``from
    greybox import rules``, ``gb.rules``)."""
    aliases, packages = set(), set()   # names bound to greybox.rules; to greybox
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "greybox.rules" and a.asname:
                    aliases.add(a.asname)
                elif a.name.startswith("greybox"):
                    packages.add(a.asname or "greybox")
        elif isinstance(node, ast.ImportFrom) and node.module == "greybox":
            aliases |= {a.asname or a.name for a in node.names if a.name == "rules"}

    def is_rules(e) -> bool:
        return (isinstance(e, ast.Name) and e.id in aliases) or (
            isinstance(e, ast.Attribute) and e.attr == "rules"
            and isinstance(e.value, ast.Name) and e.value.id in packages)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "greybox.rules" or node.module.startswith("greybox.rules.")):
            for a in node.names:
                yield node.lineno, "import", node.module, a.name
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("greybox.rules."):
                    yield node.lineno, "import", a.name, ""
        elif isinstance(node, ast.Attribute) and is_rules(node.value):
            yield node.lineno, "attribute", "greybox.rules", node.attr
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr in ("ast", "engine") and is_rules(node.value.value):
            yield node.lineno, "attribute", f"greybox.rules.{node.value.attr}", node.attr


def _face_problems(folders, allowed_modules, through=("ast", "engine")) -> list[str]:
    """Uses of ``greybox.rules`` under ``folders`` outside its public face and the modules
    in ``allowed_modules`` (each with the names it may give); ``gr.SUB.x`` for a submodule
    in ``through`` is checked where ``greybox.rules.SUB`` is imported by name."""
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = path.relative_to(ROOT)
            for line, how, module, name in _rules_uses(ast.parse(path.read_text())):
                if module == "greybox.rules" and how == "attribute" and name in through:
                    continue   # gr.engine.x, gr.ast.X: their names are checked
                ok = allowed_modules.get(module)
                if ok is None or (name and name not in ok):
                    found.append(f"{where}:{line}: {how} {module} {name}")
    return found


def test_the_model_and_explanations_use_the_face_or_the_engine_module_only():
    """greybox/ and explain/ take what they need from greybox.rules' public face, its
    syntax tree (greybox.rules.ast) and the one internal module greybox.rules.engine --
    never a private module (greybox.rules._x) or a name outside those lists."""
    import greybox.rules.engine as engine

    allowed = {"greybox.rules": set(gr.__all__) | {"ast", "engine"},
               "greybox.rules.ast": set(gr.ast.__all__),
               "greybox.rules.engine": set(engine.__all__)}
    found = _face_problems(["greybox", "explain"], allowed)
    assert not found, found
    # and no greybox.rules._x anywhere in their text (strings, docstrings, lazy imports)
    found = _lines_matching(["greybox", "explain"],
                            r"greybox\.rules\._|from greybox\.rules import _|rules\._[a-z]+ import")
    assert not found, found


def test_examples_use_the_rules_public_face_only():
    """What users read (examples/) writes with greybox.rules' public names and its syntax
    tree only: no internal module, no private one."""
    allowed = {"greybox.rules": set(gr.__all__), "greybox.rules.ast": set(gr.ast.__all__)}
    found = _face_problems(["examples"], allowed, through=("ast",))
    assert not found, found


def test_explanations_import_no_private_module_of_the_model():
    """explain/ reads what it needs from the model's public names (greybox.Batch,
    greybox.functional, greybox.write_atomic, greybox.rules), never greybox._* modules."""
    found = _lines_matching(["explain"], r"from greybox\._|import greybox\._|from greybox import _")
    assert not found, found


def test_the_crisp_semantics_old_evaluation_name_warns_and_works():
    """``greybox.semantics.crisp.crisp_evaluation`` (another name for the model's decision,
    removed by the renovation) still answers, with a warning naming its replacement."""
    import greybox as gb
    import greybox.semantics.crisp as crisp

    model = gb.GreyBox("input x: real  output y: bool  rule r weight 2: x > 1 -> y",
                       semantics="product")
    batch = model.batch({"x": [0.0, 3.0]})
    with pytest.warns(DeprecationWarning, match=r"model\.decision\.evaluate\(batch\)"):
        old = crisp.crisp_evaluation
    ev, _ = old(model, batch)
    assert ev.decisions["y"].tolist() == model.predict({"x": [0.0, 3.0]})["y"].tolist()
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = crisp.no_such_name
