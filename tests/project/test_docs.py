"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one page run in order in one fresh namespace (a page is self-contained: a
later block may use what an earlier one defined, never another page's), in a fresh process
(forked from a server that has only imported torch, greybox and the like) whose working
directory is a temporary folder showing the repository's files: a user runs the snippets
from the repository root, so ``examples/credit.rules`` is found, while what a snippet
writes lands in the temporary folder. The repository itself is not importable there
(``from examples... import`` works only in a checkout, so it fails here too).

A block that cannot run in the tests is marked on the line before its fence with
``<!-- no-test: reason -->``; keep such exceptions rare. Shell commands are ```bash
blocks, outputs are ``` or ```text blocks.

Run one page by hand, from the repository root:  python tests/project/test_docs.py docs/models.md
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)[^`]*$")
NO_TEST = re.compile(r"^\s*<!--\s*no-test:\s*(?P<reason>\S.*?)\s*-->\s*$")
#: fence tags that would hide Python from this test
PYTHON_ALIASES = {"py", "python3", "py3", "pycon", "ipython", "ipython3", "pytb"}


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def blocks(path: Path) -> list[dict]:
    """The fenced blocks of a Markdown page: language, first line number (1-based, of the
    code), code, and the no-test reason given on the line before the fence (or None)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        prev = next((s for s in reversed(lines[:i]) if s.strip()), "")
        skip = NO_TEST.match(prev)
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        if j == len(lines):
            raise ValueError(f"{path.name}:{i + 1}: unclosed code fence")
        code = "\n".join(s[min(indent, len(s) - len(s.lstrip(" "))):]
                         for s in lines[i + 1:j])
        out.append({"lang": m["info"].lower(), "line": i + 2, "code": code + "\n",
                    "skip": skip["reason"] if skip else None})
        i = j + 1
    return out


def python_blocks(path: Path) -> list[dict]:
    return [b for b in blocks(path) if b["lang"] == "python"]


def run_page(path: Path) -> None:
    """Run the page's python blocks in order in one namespace, each compiled under the
    page's name and line numbers so that a traceback points into the Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    for b in python_blocks(path):
        if b["skip"] is not None:
            print(f"{path.name}:{b['line']}: not run ({b['skip']})")
            continue
        source = "\n" * (b["line"] - 1) + b["code"]
        exec(compile(source, str(path), "exec"), namespace)   # noqa: S102 - the docs' own code
        import matplotlib.pyplot as plt

        plt.close("all")


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUNNABLE = [p for p in PAGES if any(b["skip"] is None for b in python_blocks(p))]
#: imported once by the fork server, so that each page's fresh process starts at once
PRELOAD = ["torch", "pandas", "matplotlib", "sklearn.datasets", "sklearn.model_selection",
           "greybox", "greybox.rules", "greybox.explain"]


def _run_isolated(page: str, folder: str, log: str) -> None:
    """In a fresh process: run ``page`` from ``folder``, output to ``log``, as a user
    would outside a checkout (the repository is not importable)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(fd, 1), os.dup2(fd, 2)
    hidden = {ROOT, ROOT / "tests"}
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() not in hidden]
    for name in [m for m in sys.modules if m.split(".")[0] == "examples"]:
        del sys.modules[name]
    os.chdir(folder)
    try:
        run_page(Path(page))
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        sys.stdout.flush(), sys.stderr.flush()


@pytest.fixture(scope="module")
def processes():
    """Fresh processes forked from a server that has imported the heavy modules (a fresh
    interpreter per page would spend most of this test importing torch)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
    except ValueError:   # no fork on this platform
        ctx = multiprocessing.get_context("spawn")
    return ctx


@pytest.mark.parametrize("page", RUNNABLE, ids=_ids)
def test_page_runs(page, tmp_path, processes):
    # the repository's top-level entries, seen from a folder where writes are harmless
    folder = tmp_path / "repo"
    folder.mkdir()
    for entry in ROOT.iterdir():
        if not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    log = tmp_path / "output.txt"
    proc = processes.Process(target=_run_isolated, args=(str(page), str(folder), str(log)))
    proc.start()
    proc.join(600)
    if proc.is_alive():
        proc.kill()
        proc.join()
    output = log.read_text(errors="replace") if log.exists() else ""
    if proc.exitcode != 0:
        pytest.fail(f"{_ids(page)} failed (exit code {proc.exitcode}):\n{output[-8000:]}",
                    pytrace=False)


def test_blocks_are_extracted_as_written(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n"
        "```text\nx = 2\n```\n"
        "<!-- no-test: opens a browser -->\n\n```python\nstart()\n```\n"
        "- item:\n\n  ```python\n  if x:\n      y = 2\n  ```\n"
        "````python\ns = \"\"\"\n```\n\"\"\"\n````\n", encoding="utf-8")
    found = blocks(page)
    assert [(b["lang"], b["line"], b["skip"]) for b in found] == [
        ("python", 3, None), ("text", 6, None), ("python", 11, "opens a browser"),
        ("python", 16, None), ("python", 20, None)]
    assert found[3]["code"] == "if x:\n    y = 2\n"
    assert found[4]["code"] == 's = """\n```\n"""\n'
    assert len(python_blocks(page)) == 4


def test_blocks_are_found():
    found = {_ids(p): len(python_blocks(p)) for p in PAGES}
    assert found["README.md"] >= 2
    assert sum(found.values()) >= 20, found


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_fences_are_tagged_for_this_test(page):
    """Python is tagged ``python`` (an alias would escape this test) and a no-test mark
    says why and stands before a python block."""
    for b in blocks(page):
        assert b["lang"] not in PYTHON_ALIASES, \
            f"{_ids(page)}:{b['line'] - 1}: tag python blocks ```python, not ```{b['lang']}"
        if b["skip"] is not None:
            assert b["lang"] == "python", f"{_ids(page)}:{b['line'] - 1}: no-test on a non-python block"
    text = page.read_text(encoding="utf-8")
    marks = len(re.findall(r"<!--\s*no-test", text))
    assert marks == sum(b["skip"] is not None for b in blocks(page)), \
        f"{_ids(page)}: a <!-- no-test: reason --> mark must stand right before a fence"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run_page(Path(arg).resolve())
