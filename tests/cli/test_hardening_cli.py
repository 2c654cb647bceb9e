"""Hardening of the command line (issue 11, items 12 and 15): bad option values, busy
ports and endless input give CLI-worded errors and exit 2, never a traceback."""

import socket
import time

import pytest

import greybox as gb
from greybox.cli import main
from tests.conftest import EXAMPLES

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


# files the command line reads: local, regular, bounded (issue 26, item 6) -------------------

@pytest.fixture
def people(tmp_path):
    rules = tmp_path / "people.rules"
    rules.write_text(PEOPLE_RULES)
    return str(rules)


@pytest.mark.parametrize("spec,message", [
    ("/dev/zero", "--set person: /dev/zero is not a regular file (a device, a pipe or a "
     "folder); greybox reads local files only"),
    ("http://127.0.0.1:9/people.csv", "is a URL; greybox reads local files only (download it "
     "first)"),
])
def test_set_files_are_local_regular_files(capsys, people, spec, message):
    for option in (f"person=@{spec}:name", f"person=@{spec}"):   # a column, its only one
        assert main(["check", people, "--set", option]) == 2
        err = capsys.readouterr().err
        assert f"--set person: {spec}" in err and message in err


def _spy_reads(monkeypatch, cls):
    """How many bytes ``cls.read`` handed out (what was decompressed)."""
    read, got = cls.read, [0]

    def counted(self, *args):
        data = read(self, *args)
        got[0] += len(data)
        return data

    monkeypatch.setattr(cls, "read", counted)
    return got


def test_a_compressed_file_is_bounded_on_its_inflated_size_while_streaming(
        capsys, tmp_path, people, monkeypatch):
    import gzip

    from greybox import cli

    monkeypatch.setattr(cli, "MAX_SET_BYTES", 100_000)
    bomb = tmp_path / "people.csv.gz"      # 30 MB of CSV in about 30 KB
    bomb.write_bytes(gzip.compress(b"name\n" + b"anna\n" * 6_000_000))
    inflated = _spy_reads(monkeypatch, gzip.GzipFile)
    assert main(["check", people, "--set", f"person=@{bomb}:name"]) == 2
    assert f"--set person: {bomb} is larger than 100,000 bytes once decompressed, the " \
           "command line's limit for the members of a set" in capsys.readouterr().err
    assert inflated[0] < 200_000           # the header, then the limit: never 30 MB
    small = tmp_path / "few.csv.gz"
    small.write_bytes(gzip.compress(b"name\nanna\nbob\n"))
    assert main(["graph", people, "--set", f"person=@{small}:name"]) == 0
    assert "cancer(bob)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".zip"])
def test_data_files_are_read_compressed_and_bounded(capsys, tmp_path, people, monkeypatch,
                                                     suffix):
    import bz2
    import gzip
    import lzma
    import zipfile

    from greybox import cli

    text = b"smokes(anna),smokes(bob)\n1,0\n" + b"0,1\n" * 50
    path = tmp_path / f"data{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("data.csv", text)
    else:
        pack = {".csv": bytes, ".csv.gz": gzip.compress, ".csv.bz2": bz2.compress,
                ".csv.xz": lzma.compress}[suffix]
        path.write_bytes(pack(text))
    command = ["evaluate", people, str(path), "--set", "person=anna,bob"]
    assert main(command) == 0
    assert "crisp evaluation of 51 rows" in capsys.readouterr().out
    monkeypatch.setattr(cli, "MAX_DATA_BYTES", 100)
    assert main(command) == 2
    once = "" if suffix == ".csv" else " once decompressed"
    assert f"DATA: {path} is larger than 100 bytes{once}, the command line's limit for " \
           "data" in capsys.readouterr().err


@pytest.mark.parametrize("header,column", [("age,income,age", "age"),
                                           ('"a,b",x,"a,b"', "a,b")])
def test_a_csv_naming_a_column_twice_is_refused(capsys, tmp_path, people, header, column):
    # pandas reads the second one as 'age.1', silently (issue 26, item 8)
    path = tmp_path / "twice.csv"
    path.write_text(f"{header}\n1,2,3\n")
    assert main(["evaluate", people, str(path), "--set", "person=anna"]) == 2
    assert f"DATA: {path} names the column {column!r} twice in its header (columns 1 and " \
           "3); name each column once" in capsys.readouterr().err
    assert main(["check", people, "--set", f"person=@{path}:x"]) == 2
    assert f"--set person: {path} names the column {column!r} twice" in capsys.readouterr().err
