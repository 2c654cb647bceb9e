"""The greybox command line: exit codes, messages, --help for every command."""

import json
import subprocess
import sys

import pytest

from greybox.cli import build_parser, main
from tests.conftest import EXAMPLES


def run(*args):
    return subprocess.run([sys.executable, "-m", "greybox", *args], capture_output=True,
                          text=True, timeout=120)


def test_check_clean_file_exits_0(capsys):
    assert main(["check", str(EXAMPLES / "credit.rules")]) == 0
    out = capsys.readouterr().out
    assert "0 error(s), 0 warning(s)" in out


def test_check_with_warning_exits_1_and_json(tmp_path, capsys):
    path = tmp_path / "dead.rules"
    path.write_text("input x: int 0..3\noutput y: bool\nrule r: x > 5 -> y\n")
    assert main(["check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["warnings"] == 1 and report["findings"][0]["check"] == "dead-rule"


def test_check_and_graph_count_and_draw_the_recursive_defines_as_written(tmp_path, capsys):
    path = tmp_path / "reach.rules"
    path.write_text("set node: {a, b, c}\ninput edge(node, node): bool\n"
                    "define reach(x in node, y in node): bool =\n"
                    "    edge(x, y) or (exists z in node: edge(x, z) and reach(z, y))\n"
                    "output y: bool\nrule r: reach(a, c) -> y\n")
    main(["check", str(path)])
    assert "reach.rules: 19 variables, 1 rules" in capsys.readouterr().out
    assert main(["graph", str(path)]) == 0
    dot = capsys.readouterr().out
    assert "@" not in dot and '"reach(a, c)" -> "reach(a, c)";' in dot


def test_check_invalid_file_exits_2_with_location(tmp_path):
    path = tmp_path / "bad.rules"
    path.write_text("input x: int 0..3\noutput y: bool\nrule r: x > 5 -> \n")
    proc = run("check", str(path))
    assert proc.returncode == 2
    assert f"{path}:3:17: unexpected end of input" in proc.stderr
    assert "^" in proc.stderr and "Traceback" not in proc.stderr


def test_check_missing_file_exits_2():
    proc = run("check", "/no/such/file.rules")
    assert proc.returncode == 2 and "cannot read /no/such/file.rules" in proc.stderr


def test_entails_and_evaluate_and_graph(tmp_path, capsys):
    rules = str(EXAMPLES / "credit.rules")
    assert main(["entails", rules, "age < 18 -> not approve"]) == 0
    assert main(["entails", rules, "income > 100000 -> approve"]) == 1
    out = capsys.readouterr().out
    assert "proved" in out and "counterexample" in out
    csv = tmp_path / "data.csv"
    csv.write_text("age,income,debt_ratio,employment,years at address,reliable\n"
                   "30,50000,0.1,employed,5,True\n16,50000,0.1,employed,5,True\n")
    result = tmp_path / "out.csv"
    assert main(["evaluate", rules, str(csv), "-o", str(result)]) == 0
    assert "decision.approve" in result.read_text().splitlines()[0]
    assert main(["graph", rules]) == 0
    assert capsys.readouterr().out.count("digraph greybox") == 1


def test_evaluate_bad_data_exits_2(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("age,income,debt_ratio,employment,years at address,reliable\n"
                   "300,50000,0.1,employed,5,True\n")
    proc = run("evaluate", str(EXAMPLES / "credit.rules"), str(csv))
    assert proc.returncode == 2 and "column 'age': 300 at row 0 is outside int 0..120" in proc.stderr


@pytest.mark.parametrize("command", ["check", "entails", "evaluate", "graph", "explain"])
def test_every_command_has_help(command):
    proc = run(command, "--help")
    assert proc.returncode == 0 and "usage: greybox " + command in proc.stdout


def test_top_level_help_lists_commands():
    text = build_parser().format_help()
    for command in ("check", "entails", "evaluate", "graph", "explain"):
        assert command in text


@pytest.fixture
def saved_model(tmp_path):
    import greybox as gb

    model = gb.GreyBox(EXAMPLES / "credit.rules", {"applicant_net": _net()}, semantics="product")
    path = tmp_path / "credit.pt"
    model.save(path)
    data = tmp_path / "applicants.csv"
    data.write_text("age,income,debt_ratio,employment,years at address\n"
                    "15,50000,0.1,employed,5\n45,12000,0.9,unemployed,1\n")
    factory = tmp_path / "credit_nets.py"
    factory.write_text("import torch\n"
                       "def build():\n"
                       "    torch.manual_seed(0)\n"
                       "    return {'applicant_net': torch.nn.Linear(3, 1)}\n")
    return path, data, tmp_path


def _net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def test_explain_prints_a_decision_with_its_reason(saved_model, capsys, monkeypatch):
    path, data, folder = saved_model
    monkeypatch.chdir(folder)
    code = main(["explain", str(path), str(data), "--row", "0", "--networks",
                 "credit_nets:build", "--reason"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("row 0: approve = False")
    assert "because age = 15" in out and "would be True" in out


@pytest.mark.parametrize("fmt,check", [
    ("json", lambda out: json.loads(out)["decision"]["value"] is False),
    ("html", lambda out: out.startswith("<div><b>Explanation of approve</b>")),
])
def test_explain_formats(saved_model, capsys, monkeypatch, fmt, check):
    path, data, folder = saved_model
    monkeypatch.chdir(folder)
    assert main(["explain", str(path), str(data), "--networks", "credit_nets:build",
                 "--format", fmt, "--no-parameters"]) == 0
    assert check(capsys.readouterr().out)


@pytest.mark.parametrize("extra,message", [
    (["--row", "7"], "--row 7 is outside"),
    (["--networks", "nowhere:build"], "cannot import nowhere:build"),
])
def test_explain_errors_exit_2(saved_model, capsys, monkeypatch, extra, message):
    path, data, folder = saved_model
    monkeypatch.chdir(folder)
    args = ["explain", str(path), str(data)] + extra
    if extra[:1] == ["--row"]:
        args += ["--networks", "credit_nets:build"]
    assert main(args) == 2
    assert message in capsys.readouterr().err
