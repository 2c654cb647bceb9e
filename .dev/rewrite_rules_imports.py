"""Point every use of a name that left ``greybox.rules`` at its home now (issue 22, item 3).

``greybox.rules.__all__`` is the user's face; the engine's internals live in
``greybox.rules.engine`` and the syntax-tree nodes in ``greybox.rules.ast``. This rewrites,
in greybox/, explain/, rules/ (docstrings), tests/, benchmarks/, examples/, docs/ and
README.md:

* ``from greybox.rules import a, b, Var`` (one line or parenthesised, in code, doctests
  and Markdown) into ``from greybox.rules import a`` + ``from greybox.rules.engine import
  b`` + ``from greybox.rules.ast import Var``, each only where it has names;
* ``gr.show_value(...)``, ``gb.rules.Var``, ``greybox.rules.first_row`` (through any alias
  of ``greybox.rules`` the file sets up) into ``gr.engine.show_value(...)``,
  ``gb.rules.ast.Var``, ``greybox.rules.engine.first_row``;

then sorts the changed Python files' imports with ruff (``--select I``) when it is there.
Idempotent: a second run changes nothing. Run it from the repository root with the
project's interpreter (it reads the lists from the installed package):

    .venv/bin/python .dev/rewrite_rules_imports.py [--check] [FILES...]

``--check`` only lists the files it would change (exit status 1 if any).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import greybox.rules as gr
import greybox.rules._ast as _ast
import greybox.rules.engine as engine

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("greybox", "explain", "rules", "tests", "benchmarks", "examples", "docs")
OWN = {"rules/__init__.py", "rules/engine.py", "rules/ast.py", ".dev/rewrite_rules_imports.py"}

PUBLIC = set(gr.__all__)
HOME = {**{n: "engine" for n in engine.__all__}, **{n: "ast" for n in _ast.__all__}}
assert not PUBLIC & set(HOME), PUBLIC & set(HOME)

# `from greybox.rules import ...` at the start of a line: indentation, a doctest prompt
# (`>>> ` or `... `) and the rest of the line
IMPORT = re.compile(r"^(?P<indent>[ \t]*)(?P<prompt>(?:>>>|\.\.\.) )?"
                    r"from greybox\.rules import (?P<rest>.*)$")
CONTINUATION = re.compile(r"^[ \t]*(?:\.\.\. ?)?")


def _split_names(text: str) -> tuple[list[str], str]:
    """The ``name [as alias]`` items of an import's name list, and a trailing comment."""
    comment = ""
    items = []
    for line in text.split("\n"):
        if "#" in line:
            line, c = line.split("#", 1)
            comment = comment or "#" + c.rstrip()
        items += [p.strip() for p in line.replace("(", " ").replace(")", " ").split(",")]
    return [i for i in items if i], comment


def _home(item: str) -> str | None:
    return HOME.get(item.split(" as ")[0].strip())


def rewrite_imports(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = IMPORT.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        rest, j = m["rest"], i
        if rest.lstrip().startswith("(") and ")" not in rest.split("#")[0]:
            while ")" not in lines[j].split("#")[0] or j == i:
                j += 1
                rest += "\n" + CONTINUATION.sub("", lines[j], count=1)
        items, comment = _split_names(rest)
        if not any(_home(it) for it in items):
            out += lines[i:j + 1]
            i = j + 1
            continue
        groups: dict[str, list[str]] = {}
        for it in items:
            home = _home(it)
            groups.setdefault("greybox.rules" + (f".{home}" if home else ""), []).append(it)
        prefix = m["indent"] + (m["prompt"] or "").replace("...", ">>>")
        for k, (module, names) in enumerate(groups.items()):
            tail = f"  {comment}" if comment and k == 0 else ""
            out.append(f"{prefix}from {module} import {', '.join(names)}{tail}")
        i = j + 1
    return "\n".join(out)


def aliases(text: str) -> set[str]:
    """The spellings of ``greybox.rules`` the text sets up (``gr``, ``gb.rules``, ...)."""
    found = {"greybox.rules"}
    found |= set(re.findall(r"\bimport greybox\.rules as (\w+)", text))
    found |= set(re.findall(r"\bfrom greybox import rules as (\w+)", text))
    if re.search(r"\bfrom greybox import (?:[\w ,]*, )?rules\b(?! as)", text):
        found.add("rules")
    found |= {g + ".rules" for g in re.findall(r"\bimport greybox as (\w+)", text)}
    return found


def rewrite_uses(text: str) -> str:
    for alias in sorted(aliases(text), key=len, reverse=True):
        pattern = re.compile(r"(?<![\w.])" + re.escape(alias) + r"\.(\w+)\b")

        def repl(m, alias=alias):
            home = HOME.get(m[1])
            return f"{alias}.{home}.{m[1]}" if home else m[0]

        text = pattern.sub(repl, text)
    return text


def rewrite(text: str) -> str:
    return rewrite_uses(rewrite_imports(text))


def files(args: list[str]) -> list[pathlib.Path]:
    if args:
        return [pathlib.Path(a).resolve() for a in args]
    found = [ROOT / "README.md"]
    for folder in FOLDERS:
        found += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md"))
    return [p for p in found if p.relative_to(ROOT).as_posix() not in OWN]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    changed = []
    for path in files([a for a in argv if a != "--check"]):
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    py = [str(p) for p in changed if p.suffix == ".py"]
    ruff = shutil.which("ruff") or str(pathlib.Path(sys.executable).with_name("ruff"))
    if py and not check and pathlib.Path(ruff).exists():
        subprocess.run([ruff, "check", "--quiet", "--select", "I", "--fix", *py], check=False)
    for p in changed:
        print(p.relative_to(ROOT))
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
