"""Rooms of one idea (issue 22, item 4): module and function sizes, no import cycles.

Three checks over the library's source (greybox/, rules/ = greybox.rules, explain/ =
greybox.explain), each printing its offenders:

- no module over ``MAX_MODULE_LINES`` lines;
- no function (method, nested function) whose body, its docstring not counted, is over
  ``MAX_FUNCTION_LINES`` lines;
- no import cycle among greybox modules, counting every import statement in a file
  (function-local ones included, those under ``if TYPE_CHECKING:`` excluded).

Each check has a ``KNOWN_*`` allowlist of the offenders left when the check was written; an
entry that no longer offends fails the check too (a stale entry), so the lists only shrink.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx

ROOT = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
# folder -> the dotted package it is installed as (pyproject.toml's package-dir)
PACKAGES = {"greybox": "greybox", "rules": "greybox.rules", "explain": "greybox.explain"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

# Allowed offenders: none since the renovation (issue 22, item 4). An entry added here must
# say why; the checks fail on entries already fixed, so the lists only shrink.
KNOWN_MODULES: set[str] = set()      # folder/file.py
KNOWN_FUNCTIONS: set[str] = set()    # folder/file.py:Class.method (nested: outer.inner)
KNOWN_CYCLES: set[str] = set()       # dotted names of modules allowed in an import cycle


def _sources() -> dict[str, pathlib.Path]:
    """``folder/file.py`` -> path of every library module."""
    found = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[path.relative_to(ROOT).as_posix()] = path
    return found


def _module_name(rel: str) -> str:
    """The dotted name of ``folder/.../file.py`` (``rules/_ast.py`` -> ``greybox.rules._ast``)."""
    folder, *rest = pathlib.PurePosixPath(rel).with_suffix("").parts
    parts = PACKAGES[folder].split(".") + rest
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _compare(kind: str, found: dict[str, str], known: set[str]) -> list[str]:
    """Lines reporting new offenders (not in ``known``) and stale entries of ``known``."""
    lines = [f"{kind}: {key}: {why}" for key, why in sorted(found.items()) if key not in known]
    lines += [f"{kind}: {key}: fixed, remove it from the allowlist (stale entry)"
              for key in sorted(known - found.keys())]
    return lines


def _report(problems: list[str]) -> str:
    text = "\n".join(problems)
    print(text)
    return text


def module_sizes() -> dict[str, str]:
    """``folder/file.py`` -> why, for every module over ``MAX_MODULE_LINES`` lines."""
    found = {}
    for rel, path in _sources().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            found[rel] = f"{n} lines (at most {MAX_MODULE_LINES})"
    return found


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = node.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]
    if not body:
        return 0
    first = min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
    return body[-1].end_lineno - first + 1


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function, method and nested function."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            yield name, child
            yield from _functions(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, prefix + child.name + ".")
        else:
            yield from _functions(child, prefix)


def function_sizes() -> dict[str, str]:
    """``folder/file.py:qualname`` -> why, for every function body over the limit."""
    found = {}
    for rel, path in _sources().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for name, node in _functions(tree):
            n = _body_lines(node)
            if n > MAX_FUNCTION_LINES:
                found[f"{rel}:{name}"] = (f"body of {n} lines at line {node.lineno} "
                                          f"(at most {MAX_FUNCTION_LINES}, docstring excluded)")
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, except those in the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif _is_type_checking(child):
            for other in child.orelse:  # the ``else:`` branch runs
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _imports(child)


def import_graph() -> nx.DiGraph:
    """Module -> module it imports, among greybox modules, function-local imports included.

    ``import a.b`` is an edge to ``a.b``; ``from pkg import name`` an edge to ``pkg.name``
    when that is a module, else to ``pkg``; relative imports resolved against the package.
    """
    sources = _sources()
    modules = {_module_name(rel): rel for rel in sources}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, rel in modules.items():
        package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
        tree = ast.parse(sources[rel].read_text(encoding="utf-8"), filename=rel)
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # import a.b.c of a non-module c
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def import_cycles() -> dict[str, str]:
    """Module -> a cycle through it, for every module in a strongly connected component."""
    graph = import_graph()
    found = {}
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        sub = graph.subgraph(component)
        for module in sorted(component):
            # the shortest way back to the module, through one of its imports
            back = min((nx.shortest_path(sub, target, module) for target in sub.successors(module)),
                       key=len)
            found[module] = (f"in the cycle {' -> '.join([module, *back])} "
                             f"(a component of {len(component)}: {', '.join(sorted(component))})")
    return found


def test_no_module_over_the_size_limit():
    problems = _compare("module", module_sizes(), KNOWN_MODULES)
    assert not problems, _report(problems)


def test_no_function_over_the_size_limit():
    problems = _compare("function", function_sizes(), KNOWN_FUNCTIONS)
    assert not problems, _report(problems)


def test_no_import_cycle():
    problems = _compare("import cycle", import_cycles(), KNOWN_CYCLES)
    assert not problems, _report(problems)


def test_the_checks_find_what_they_look_for():
    """The measures on a small made-up source: docstring excluded, nested and methods found."""
    source = ('def f():\n    """Doc\n    string."""\n    x = 1\n    return x\n'
              "class C:\n    def m(self):\n        def inner():\n            pass\n"
              "        return inner\n")
    tree = ast.parse(source)
    sizes = {name: _body_lines(node) for name, node in _functions(tree)}
    assert sizes == {"f": 2, "C.m": 3, "C.m.inner": 1}
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
                        "else:\n    import b\ndef g():\n    import c\n")
    assert sorted(getattr(a, "module", None) or a.names[0].name for a in _imports(guarded)) == ["b", "c", "typing"]
    assert _compare("x", {"new": "why", "old": "why"}, {"old", "gone"}) == [
        "x: new: why", "x: gone: fixed, remove it from the allowlist (stale entry)"]
