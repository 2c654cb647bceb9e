"""Hardening of the command line (issue 11, items 12 and 15): bad option values, busy
ports and endless input give CLI-worded errors and exit 2, never a traceback."""

import socket
import time

import pytest

import greybox as gb
from greybox.cli import main

from .conftest import EXAMPLES

CREDIT = str(EXAMPLES / "credit.rules")


@pytest.mark.parametrize("command", [["check", CREDIT], ["entails", CREDIT, "true"]])
@pytest.mark.parametrize("value,message", [
    ("nan", "expected a finite number of seconds above 0, got 'nan'"),
    ("inf", "expected a finite number of seconds above 0, got 'inf'"),
    ("1e400", "expected a finite number of seconds above 0"),
    ("-1", "expected a finite number of seconds above 0, got '-1'"),
    ("0", "expected a finite number of seconds above 0"),
    ("soon", "expected a number of seconds, got 'soon'"),
])
def test_bad_timeouts_are_refused_by_the_cli(capsys, command, value, message):
    with pytest.raises(SystemExit) as info:
        main([*command, "--timeout", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --timeout: {message}" in err and "Traceback" not in err


@pytest.fixture
def saved(tmp_path):
    model = gb.GreyBox("input x: real  output y: bool  rule r: x > ~1 -> y",
                       semantics="product")
    path = tmp_path / "m.pt"
    model.save(path)
    data = tmp_path / "data.csv"
    data.write_text("x,y\n0.5,False\n2.0,True\n3.0,True\n")
    return str(path), str(data)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_port_out_of_range_is_refused_by_the_cli(capsys, saved, port):
    with pytest.raises(SystemExit) as info:
        main(["debug", *saved, "--target", "y", "--port", port])
    assert info.value.code == 2
    assert "argument --port:" in capsys.readouterr().err


def test_a_busy_port_is_a_cli_error(capsys, saved):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["debug", *saved, "--target", "y", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"greybox debug: cannot listen on 127.0.0.1:{port}: " in err
    assert "choose another --port" in err


def test_check_on_an_endless_stream_stops_at_the_size_limit(capsys):
    start = time.perf_counter()
    assert main(["check", "/dev/zero"]) == 2
    assert time.perf_counter() - start < 1.5
    assert "larger than 10,000,000 bytes, the limit for a rule file" in capsys.readouterr().err


def test_check_reports_non_utf8_bytes_by_line_and_column(tmp_path, capsys):
    path = tmp_path / "latin1.rules"
    path.write_bytes(b"input x: bool\n# caf\xe9\noutput y: bool\n")
    assert main(["check", str(path)]) == 2
    assert f"{path}:2:6: not UTF-8 text: byte 0xe9" in capsys.readouterr().err


def test_a_csv_cell_too_large_for_a_float_names_column_and_row(tmp_path, capsys):
    data = tmp_path / "big.csv"
    data.write_text("age,income,debt_ratio,employment,years at address\n"
                    f"30,100,0.1,employed,5\n1{'0' * 400},100,0.1,employed,5\n")
    assert main(["evaluate", CREDIT, str(data)]) == 2
    err = capsys.readouterr().err
    assert "column 'age'" in err and "at row 1" in err and "Traceback" not in err


def test_writing_the_output_into_a_missing_folder_is_a_cli_error(tmp_path, capsys):
    data = tmp_path / "ok.csv"
    data.write_text("age,income,debt_ratio,employment,years at address,reliable\n"
                    "30,100,0.1,employed,5,True\n")
    out = tmp_path / "missing" / "out.csv"
    assert main(["evaluate", CREDIT, str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"greybox evaluate: cannot write {out}: ") and "missing" in err


PEOPLE_RULES = """set person
input smokes(person): bool
output cancer(person): bool
rule own(p in person): smokes(p) -> cancer(p)
"""


def test_sets_taken_from_the_data_are_given_on_the_command_line(capsys, tmp_path):
    """Red team, item 20: `greybox check` on a file with `set person` said to pass
    sets={...}, which the command line cannot do: --set NAME=a,b,c or @FILE.csv:COLUMN."""
    rules = tmp_path / "people.rules"
    rules.write_text(PEOPLE_RULES)
    assert main(["check", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "takes its members from the data" in err
    assert "on the command line, give the members of person with --set person=a,b,c or " \
           "--set person=@FILE.csv:COLUMN" in err
    assert main(["check", str(rules), "--set", "person=anna, bob"]) in (0, 1)
    out = capsys.readouterr().out
    assert "2 variables" not in out and "4 variables" in out   # smokes, cancer of 2 people
    table = tmp_path / "people.csv"
    table.write_text("name,age\nanna,30\nbob,40\nanna,30\ncarl,50\n")
    assert main(["graph", str(rules), "--set", f"person=@{table}:name"]) == 0
    assert "cancer(carl)" in capsys.readouterr().out
    assert main(["entails", str(rules), "smokes(anna) -> cancer(anna)",
                 "--set", "person=anna"]) == 0
    data = tmp_path / "data.csv"
    data.write_text("smokes(anna),smokes(bob)\n1,0\n")
    assert main(["evaluate", str(rules), str(data), "--set", "person=anna,bob"]) == 0
    for spec, message in [(f"person=@{table}", "has 2 columns; name one"),
                          (f"person=@{table}:who", "has no column 'who' (columns: name, age)"),
                          (f"person=@{tmp_path / 'none.csv'}:name", "cannot read"),
                          ("person=anna,,bob", "an empty member")]:
        assert main(["check", str(rules), "--set", spec]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["check", str(rules), "--set", "person"])
    assert info.value.code == 2
    assert "expected NAME=a,b,c or NAME=@FILE.csv:COLUMN" in capsys.readouterr().err
