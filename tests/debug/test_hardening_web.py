"""The web debugger under hostile clients (issue 11, items 13, 12 and 7): slow and lying
clients, huge edits, DNS rebinding, wrong content types, malformed bodies and the edit
API's field names -- each against a real server on 127.0.0.1, with raw sockets where a
well-behaved client could not send the request."""

import base64
import hashlib
import json
import re
import socket
import threading
import time
from importlib import resources

import numpy as np
import pytest

import greybox as gb
from greybox.explain.debug import _edits
from greybox.explain.debug._server import DebugServer

PROMPT = 2.0   # seconds within which a cheap request must be answered


@pytest.fixture(scope="module")
def debugger():
    model = gb.GreyBox("""
input x: real[0, 10]
output high: bool
rule big: x > 5 -> high
rule small: x <= 5 -> not high
constraint sane: x >= 0 or not high
""", semantics="product")
    x = np.linspace(0, 10, 21)
    return gb.explain.Debugger(model, {"x": x}, x > 6)


@pytest.fixture(scope="module")
def running(debugger):
    srv = DebugServer(debugger).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(running, debugger):
    """The default server, with no edit before and after each test."""
    debugger.undo(len(debugger.edits))
    yield running
    debugger.undo(len(debugger.edits))


@pytest.fixture
def quick(debugger):
    """A server that gives a connection 1.5 s to send its request."""
    srv = DebugServer(debugger, timeout=1.5, max_connections=4).start()
    yield srv
    srv.stop()


def _request(srv, method, path, body=b"", **headers) -> bytes:
    """Raw request bytes; a header given as None is left out."""
    fields = {"Host": f"127.0.0.1:{srv.port}", "X-Greybox-Token": srv.token}
    if method == "POST":
        fields.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    return head.encode("latin-1") + b"\r\n" + body


def _parse(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _exchange(srv, request: bytes, *, timeout=10.0):
    """Send ``request`` on a fresh connection and read the whole answer."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return _parse(data)


def _json(srv, method, path, body=b"", **headers):
    status, _, answer = _exchange(srv, _request(srv, method, path, body, **headers))
    return status, json.loads(answer)


def _edit(srv, spec):
    return _json(srv, "POST", "/api/edit", json.dumps(spec).encode())


def _prompt_summary(srv):
    start = time.monotonic()
    status, summary = _json(srv, "GET", "/api/summary")
    elapsed = time.monotonic() - start
    assert status == 200 and summary["rows"] == 21
    assert elapsed < PROMPT, f"/api/summary took {elapsed:.1f} s"


# ---------------------------------------------------------------- slow and lying clients
def test_a_lying_content_length_blocks_no_one(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as liar:
        liar.sendall(_request(server, "POST", "/api/edit", b'{"op": "und',
                              Content_Length="1000"))
        time.sleep(0.2)                       # it is now waiting for 989 more bytes
        for _ in range(3):
            _prompt_summary(server)
        status, _ = _edit(server, {"op": "weight", "name": "big", "value": 2.0})
        assert status == 200


def test_a_client_that_sends_too_slowly_gets_408_and_others_are_served(quick):
    body = b'{"op": "weight", "name": "big", "value": 3}'
    with socket.create_connection(("127.0.0.1", quick.port), timeout=10) as slow:
        slow.sendall(_request(quick, "POST", "/api/edit", b""[:0],
                              Content_Length=str(len(body))))
        start = time.monotonic()
        try:
            for i in range(len(body)):        # a byte every 0.3 s: 13 s for the body
                slow.sendall(body[i:i + 1])
                _prompt_summary(quick) if i % 3 == 0 else time.sleep(0.3)
        except OSError:                        # cut off while still sending
            pass
        data = b""
        while chunk := slow.recv(65536):
            data += chunk
        status, _, answer = _parse(data)
        assert status == 408 and "did not arrive within 1.5 s" in json.loads(answer)["error"]
        assert time.monotonic() - start < 5
    assert not quick.httpd.debugger.edits


def test_a_client_dripping_its_headers_is_cut_off(quick):
    with socket.create_connection(("127.0.0.1", quick.port), timeout=10) as slow:
        slow.sendall(b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1")
        start = time.monotonic()
        _prompt_summary(quick)
        try:
            data = slow.recv(65536)          # the server closes it soon after the 1.5 s
        except ConnectionResetError:
            data = b""
        assert data == b"" and time.monotonic() - start < 5


def test_connections_beyond_the_limit_get_503_then_service_resumes(quick):
    idle = [socket.create_connection(("127.0.0.1", quick.port), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.2)
        status, headers, answer = _exchange(quick, _request(quick, "GET", "/api/summary"))
        assert status == 503 and "too many connections" in json.loads(answer)["error"]
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while True:                                # the slots come back as the idle ones close
        status, _, _ = _exchange(quick, _request(quick, "GET", "/api/summary"))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200


def test_bodies_over_one_mebibyte_get_413(server):
    status, _, answer = _exchange(server, _request(server, "POST", "/api/edit",
                                                   Content_Length=str(2 << 20)))
    assert status == 413 and "at most 1048576" in json.loads(answer)["error"]
    big = b'{"op": "add", "text": "' + b" " * (3 << 19) + b'"}'
    status, _, answer = _exchange(server, _request(server, "POST", "/api/edit", big))
    assert status == 413
    _prompt_summary(server)


def test_a_huge_edit_is_refused_at_once_and_blocks_no_one(server):
    text = "rule q: " + "x > 1 and " * 80_000 + "x > 2 -> high"      # 0.8 MB
    result = {}

    def post():
        start = time.monotonic()
        result["answer"] = _edit(server, {"op": "add", "text": text})
        result["seconds"] = time.monotonic() - start

    poster = threading.Thread(target=post)
    poster.start()
    time.sleep(0.3)
    _prompt_summary(server)
    poster.join(60)
    status, err = result["answer"]
    assert status == 400 and f"at most {_edits.MAX_EDIT_TEXT:,}" in err["error"]
    assert result["seconds"] < PROMPT
    # the deepest nesting an edit's length allows is parsed at once
    nested = "rule q: " + "(" * 9000 + "x > 1" + ")" * 9000 + " -> high"
    start = time.monotonic()
    status, _ = _edit(server, {"op": "add", "text": nested})
    assert status == 200 and time.monotonic() - start < PROMPT


# ---------------------------------------------------------------- origin and headers
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1",
                                  "127.0.0.1:{other}", "localhost.evil.example:{port}",
                                  "0.0.0.0:{port}", None])
def test_a_foreign_host_gets_421(server, host):
    given = None if host is None else host.format(port=server.port, other=server.port + 1)
    status, err = _json(server, "GET", "/api/summary", Host=given)
    assert status == 421 and f"127.0.0.1:{server.port}" in err["error"]
    status, _ = _json(server, "POST", "/api/edit", b'{"op": "disable", "name": "big"}',
                      Host=given)
    assert status == 421 and not server.httpd.debugger.edits


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}"])
def test_the_local_names_are_served(server, host):
    status, _ = _json(server, "GET", "/api/summary", Host=host.format(port=server.port))
    assert status == 200


def test_a_request_from_another_site_gets_403(server):
    status, err = _json(server, "POST", "/api/edit", b'{"op": "disable", "name": "big"}',
                        Origin="http://evil.example")
    assert status == 403 and "another site" in err["error"]
    status, _ = _json(server, "POST", "/api/undo", b"{}", Origin=f"http://127.0.0.1:{server.port}")
    assert status == 400                        # same origin: served (nothing to undo)


def test_responses_carry_security_headers_and_the_page_a_csp_by_hash(server):
    status, headers, page = _exchange(server, _request(server, "GET", "/"))
    assert status == 200
    script = re.search(rb"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    csp = headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "connect-src 'self'" in csp
    assert page == resources.files("greybox.explain.debug").joinpath("debugger.html").read_bytes()
    for path in ["/", "/api/summary", "/api/nope"]:
        _, headers, _ = _exchange(server, _request(server, "GET", path))
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    _, headers, _ = _exchange(server, _request(server, "GET", "/", X_Greybox_Token=None))
    assert "content-security-policy" in headers and headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x",
                                   "application/json; charset=latin-1", "application/jsonx"])
def test_posts_that_are_not_json_get_415(server, ctype):
    status, err = _json(server, "POST", "/api/edit", b'{"op": "disable", "name": "big"}',
                        Content_Type=ctype)
    assert status == 415 and "application/json" in err["error"]
    assert not server.httpd.debugger.edits


def test_json_with_a_utf8_charset_is_accepted(server):
    status, _ = _json(server, "POST", "/api/edit", b'{"op": "disable", "name": "big"}',
                      Content_Type="Application/JSON; charset=UTF-8")
    assert status == 200


# ---------------------------------------------------------------- malformed input (item 12)
@pytest.mark.parametrize("body, match", [
    (b'{"op": "weight", "name": "big", "value": 1e400}', "finite number"),
    (b'{"op": "weight", "name": "big", "value": 1' + b"0" * 400 + b"}", "finite number"),
    (b'{"op": "weight", "name": "big", "value": -1e400}', "finite number"),
    (b'{"op": "weight", "name": "big", "value": "1e400"}', "finite number"),
    (b'{"op": "weight", "name": "big", "value": NaN}', "NaN is not JSON"),
    (b'{"op": "weight", "name": "big", "value": Infinity}', "Infinity is not JSON"),
    (b'{"op": "weight", "name": "big", "value": true}', "must be a number"),
    (b'{"op": "threshold", "name": "big", "index": 1e400, "value": 1}', "'index' must be"),
    (b'{"op": "threshold", "name": "big", "index": -1, "value": 1}', "'index' must be"),
    (b'{"op": "threshold", "name": "big", "index": 1' + b"0" * 400 + b', "value": 1}',
     "out of range"),
    (b'{"op": "threshold", "name": "big", "index": 1' + b"0" * 5000 + b', "value": 1}',
     "not JSON"),
    (b'{"op": "add", "text": "rule q: x > 1 -> high \xff"}', "not UTF-8: byte 0xff"),
    (b"\xfe\xff\x00{", "not UTF-8"),
    (b"[" * 100_000, "not JSON"),
    (b'{"op": "add", "text": ' + b"[" * 100_000, "not JSON"),
    (b"[1, 2]", "an edit is an Edit or a mapping"),
    (b'"weight"', "an edit is an Edit or a mapping"),
    (b"{", "not JSON"),
    (b"", "an edit is an Edit or a mapping with an 'op'"),
    (b'{"op": ["weight"]}', "unknown edit"),
    (b'{"op": "weight", "name": 5, "value": 1}', "'name' must be a string"),
    (b'{"op": "add", "text": 5}', "'text' must be rule text"),
])
def test_malformed_edits_get_400_with_a_json_error(server, body, match):
    status, err = _json(server, "POST", "/api/edit", body)
    assert status == 400 and match in err["error"], err
    assert not server.httpd.debugger.edits
    _prompt_summary(server)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "12 34", "9" * 40, ""])
def test_a_content_length_that_is_no_number_gets_400(server, length):
    status, err = _json(server, "POST", "/api/edit", b"{}", Content_Length=length)
    assert status == 400 and "Content-Length" in err["error"]


def test_conflicting_content_lengths_and_chunked_bodies_are_refused(server):
    request = _request(server, "POST", "/api/undo", b"{}").replace(
        b"Content-Length: 2\r\n", b"Content-Length: 2\r\nContent-Length: 3\r\n")
    status, _, answer = _exchange(server, request)
    assert status == 400 and "Content-Length" in json.loads(answer)["error"]
    status, _, answer = _exchange(server, _request(
        server, "POST", "/api/undo", b"2\r\n{}\r\n0\r\n\r\n", Content_Length=None,
        Transfer_Encoding="chunked"))
    assert status == 411


def test_a_body_cut_short_gets_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(_request(server, "POST", "/api/edit", b'{"op"', Content_Length="50"))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status, _, answer = _parse(data)
    assert status == 400 and "ended after 5 of the 50 bytes" in json.loads(answer)["error"]


def test_garbage_requests_get_json_errors(server):
    for request in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                    b"BREW /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"]:
        status, headers, answer = _exchange(server, request)
        assert 400 <= status < 500 or status == 501
        assert "error" in json.loads(answer) and headers["x-frame-options"] == "DENY"
    _prompt_summary(server)


# ---------------------------------------------------------------- one field per concept (7)
def test_every_op_names_its_rule_by_name(server):
    for spec in [{"op": "weight", "name": "big", "value": 2},
                 {"op": "threshold", "name": "big", "index": 0, "value": 5.5},
                 {"op": "threshold", "name": "sane", "value": 0},
                 {"op": "disable", "name": "small"},
                 {"op": "replace", "name": "small", "text": "rule small: x <= 4 -> not high"},
                 {"op": "remove", "name": "sane"},
                 {"op": "add", "text": "rule mid: x > 5.5 -> high"}]:
        status, diff = _edit(server, spec)
        assert status == 200, (spec, diff)
    assert len(server.httpd.debugger.edits) == 7
    # `rule`, the older field of weight and disable, is an alias of `name`
    status, _ = _edit(server, {"op": "weight", "rule": "big", "value": 1})
    assert status == 200
    status, err = _edit(server, {"op": "weight", "rule": "big", "name": "mid", "value": 1})
    assert status == 400 and "alias of 'name'" in err["error"]
    status, err = _edit(server, {"op": "weight", "name": "big", "value": 1, "index": 0})
    assert status == 400 and "does not take 'index' (it takes name, value)" in err["error"]
    status, err = _edit(server, {"op": "threshold", "value": 1})
    assert status == 400 and "lacks 'name' (it takes name, value, index (optional))" in \
        err["error"]


def test_the_openapi_schema_says_which_op_needs_which_fields(server):
    from greybox.explain.debug._edits import EDIT_FIELDS, MAX_EDIT_TEXT

    status, spec = _json(server, "GET", "/api/openapi.json")
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/api/edit"]["post"]["requestBody"]
    assert body["required"] is True
    one_edit, many = body["content"]["application/json"]["schema"]["oneOf"]
    assert many["type"] == "array" and many["items"] == one_edit   # or several at once
    edit = schemas[one_edit["$ref"].split("/")[-1]]
    assert edit["discriminator"]["propertyName"] == "op"
    mapping = edit["discriminator"]["mapping"]
    assert set(mapping) == set(EDIT_FIELDS) == {"weight", "threshold", "disable", "remove",
                                                "add", "replace", "drop_residual"}
    assert sorted(r["$ref"] for r in edit["oneOf"]) == sorted(mapping.values())
    for op, (required, optional) in EDIT_FIELDS.items():
        one = schemas[mapping[op].split("/")[-1]]
        assert one["required"] == ["op", *required]
        assert one["properties"]["op"]["enum"] == [op]
        assert one["additionalProperties"] is False
        fields = {k for k, v in one["properties"].items() if not v.get("deprecated")}
        assert fields == {"op", *required, *optional}
        # what the schema calls required, the server requires; nothing else is taken
        for missing in required:
            sample = {"op": op, "name": "nope", "value": 1, "index": 0, "text": "?"}
            sample = {k: v for k, v in sample.items() if k in fields and k != missing}
            status, err = _edit(server, sample)
            assert status == 400 and f"lacks {missing!r}" in err["error"]
    assert "name" in schemas["WeightEdit"]["required"]
    assert "name" in schemas["DisableEdit"]["required"]
    assert schemas["AddEdit"]["properties"]["text"]["maxLength"] == MAX_EDIT_TEXT


@pytest.mark.parametrize("serve", ["never", "start", "twice"])
def test_stop_returns_whether_or_not_the_server_was_started(debugger, serve):
    # stop() of a server never started waited forever for a serving loop (the docs'
    # DebugServer section: construct, start, stop)
    srv = DebugServer(debugger)
    if serve != "never":
        srv.start()
    done = threading.Thread(target=lambda: (srv.stop(), serve == "twice" and srv.stop()),
                            daemon=True)
    done.start()
    done.join(PROMPT)
    assert not done.is_alive()
    with pytest.raises(OSError):   # the port is closed
        socket.create_connection(("127.0.0.1", srv.port), timeout=PROMPT)
