"""The local web debugger: one page and a JSON API over a :class:`Debugger`.

Bound to 127.0.0.1 only, on a random port unless one is given, and guarded by a random
token that every request must carry (``?token=...`` or the ``X-Greybox-Token`` header);
requests without it get 403. Requests are data: an edit is parsed as rule text and
type-checked, never executed.

The server is the standard library's threaded HTTP server (one thread per connection,
HTTP/1.0, one request per connection), hardened rather than replaced by an ASGI stack: the
API is ten small endpoints, and every defence below is a few lines with its own test.
What each endpoint answers is built in ``_views.py``; this module routes and guards.

- A connection has ``timeout`` seconds (default 10) from being accepted to send its whole
  request; a slower or lying client (a ``Content-Length`` longer than what it sends) gets
  408 or is closed, in its own thread. At most ``max_connections`` are served at once;
  more get 503 at once.
- Bodies are read before the debugger's lock is taken, at most 1 MiB (413), only with a
  ``Content-Length`` (411 for chunked bodies; 400 when it is not a number), only as
  ``Content-Type: application/json`` in UTF-8 (415), strict JSON (400 otherwise, never 500).
  Edit texts are capped by :data:`~greybox.explain.debug._edits.MAX_EDIT_TEXT`.
- ``Host`` must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (421 otherwise: a page on
  another name that resolves to 127.0.0.1, DNS rebinding, reaches nothing), and an
  ``Origin``, when sent, that same origin (403).
- Every response says ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and a Content-Security-Policy
  (the page may run only its own inline script and style, by hash, and talk only to this
  server).
- The lock is held only while the debugger works; the response is written after it is
  released, so a client that does not read its answer delays no one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

from greybox.errors import GreyboxError, RuleError
from greybox.rules.engine import timeout_seconds

from . import _views as V
from ._edits import EDIT_FIELDS, MAX_EDIT_TEXT, MAX_NAME, parse_edit

__all__ = ["DebugServer", "OPENAPI"]

#: The largest request body accepted, in bytes (413 beyond).
MAX_BODY = 1 << 20
#: Seconds a connection has to send its whole request (line, headers and body).
TIMEOUT = 10.0
#: Connections served at once (503 beyond).
MAX_CONNECTIONS = 32
#: The most suggestions one request asks for (GET /api/suggest?top=...).
MAX_TOP = 50
#: The most edits one POST /api/edit applies together.
MAX_EDITS = 20
#: The Content-Security-Policy of API responses (the page's adds its script and style).
_CSP_API = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class _Refused(Exception):
    """A request answered with an error before (or instead of) any debugger work."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_FIELD_SCHEMAS = {
    "name": {"type": "string", "maxLength": MAX_NAME,
             "description": "the rule or constraint edited"},
    "value": {"type": "number", "description": "the new weight or number (finite)"},
    "index": {"type": "integer", "minimum": 0, "default": 0,
              "description": "which number of the rule or constraint, in source order"},
    "text": {"type": "string", "maxLength": MAX_EDIT_TEXT,
             "description": "rule text: rules and constraints"},
}
_OP_SUMMARIES = {
    "weight": "give rule `name` the weight `value`",
    "threshold": "set number `index` of rule or constraint `name` to `value`",
    "disable": "switch rule `name` off (weight 0, fixed)",
    "remove": "remove rule or constraint `name`",
    "add": "add the rules and constraints written in `text`",
    "replace": "replace rule or constraint `name` by the one written in `text`",
    "drop_residual": "leave out the residual network of output `name`",
}


def _edit_schema(op: str) -> dict:
    """The request body of one edit op: exactly the fields it takes."""
    required, optional = EDIT_FIELDS[op]
    props = {"op": {"type": "string", "enum": [op]}}
    props.update({k: _FIELD_SCHEMAS[k] for k in (*required, *optional)})
    if "name" in props:
        props["rule"] = {"type": "string", "deprecated": True,
                         "description": "an older alias of `name`"}
    return {"type": "object", "description": _OP_SUMMARIES[op], "required": ["op", *required],
            "properties": props, "additionalProperties": False}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}


_EDIT_NAMES = {op: "".join(w.capitalize() for w in op.split("_")) + "Edit"
               for op in EDIT_FIELDS}

#: The OpenAPI description of the JSON API (served at /api/openapi.json).
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "greybox debugger", "version": "2",
             "description": "Every request needs the token; POST bodies are JSON "
                            f"(Content-Type: application/json, UTF-8, at most {MAX_BODY} "
                            "bytes). Errors are {\"error\": message} with a 4xx status."},
    "components": {
        "securitySchemes": {
            "token": {"type": "apiKey", "in": "query", "name": "token"},
            "header": {"type": "apiKey", "in": "header", "name": "X-Greybox-Token"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"},
                "line": {"type": "integer", "description": "in the edit's text"},
                "column": {"type": "integer"}}},
            **{_EDIT_NAMES[op]: _edit_schema(op) for op in EDIT_FIELDS},
            "Edit": {"oneOf": [{"$ref": f"#/components/schemas/{n}"}
                               for n in _EDIT_NAMES.values()],
                     "discriminator": {"propertyName": "op", "mapping": {
                         op: f"#/components/schemas/{n}" for op, n in _EDIT_NAMES.items()}}},
        }},
    "security": [{"token": []}, {"header": []}],
    "paths": {
        "/api/summary": {"get": {"summary": "output, rows, accuracy, failures, edits",
                                 "responses": {"200": {"description": "summary"}}}},
        "/api/failures": {"get": {"summary": "the wrong predictions",
                                  "responses": {"200": {"description": "list of rows"}}}},
        "/api/cohorts": {"get": {"summary": "where errors concentrate",
                                 "responses": {"200": {"description": "list of cohorts"}}}},
        "/api/rules": {"get": {
            "summary": "rules and constraints (kind rule, hard or soft): text, weight, numbers "
                       "(in the order threshold edits count them), the text cut at its numbers "
                       "(parts) and statistics by crisp evaluation on every row (rows where it "
                       "fires, accuracy there, failing rows there, share of all failures)",
            "responses": {"200": {"description": "list of rules"}}}},
        **{path: {"get": {
            "summary": summary + ": each with its edits (text and the spec /api/edit "
                                 "takes), the rows it fixes and breaks, the accuracy after "
                                 "and what was checked",
            "parameters": [
                {"name": "top", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": 10}},
                {"name": "row", "in": "query", "schema": {"type": "string"},
                 "description": "fix this failing row (default: every failure)"}],
            "responses": {"200": {"description": "{suggestions: ranked list, candidates, "
                                                 "measured, seconds, notes}"},
                          "400": _error_response("a bad top"),
                          "404": _error_response("no such row, or the debugger has none")}}}
            for path, summary in [("/api/suggest", "ranked suggested fixes (Debugger.suggest)"),
                                  ("/api/propose", "rules learned from failures "
                                                   "(Debugger.propose_rules)")]},
        "/api/row": {"get": {"summary": "the explanation of one row",
                             "parameters": [{"name": "id", "in": "query", "required": True,
                                             "schema": {"type": "string"}}],
                             "responses": {"200": {"description": "explanation"},
                                           "404": _error_response("no such row")}}},
        "/api/edit": {"post": {
            "summary": "apply an edit, or a list of edits together (one what-if), on top "
                       "of the earlier ones: " + "; ".join(
                f"{op}: {text}" for op, text in _OP_SUMMARIES.items()),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"$ref": "#/components/schemas/Edit"},
                          {"type": "array", "minItems": 1, "maxItems": MAX_EDITS,
                           "items": {"$ref": "#/components/schemas/Edit"}}]}}}},
            "responses": {
                "200": {"description": "the fixed/broken diff against the original model"},
                "400": _error_response("the edit's error (with line and column for rule "
                                       "text), or a body that is not JSON"),
                "408": _error_response("the body did not arrive in time"),
                "413": _error_response(f"a body over {MAX_BODY} bytes"),
                "415": _error_response("a body that is not application/json")}}},
        "/api/undo": {"post": {"summary": "take back the last edit",
                               "responses": {"200": {"description": "diff"},
                                             "400": _error_response("no edit to undo")}}},
        "/api/export": {"get": {"summary": "the edited rule file",
                                "responses": {"200": {"description": "rule text"}}}},
    },
}


def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: its own inline script and style, by hash."""
    text = resources.files("greybox.explain.debug").joinpath("debugger.html").read_text()

    def hashes(tag: str) -> str:
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
            for m in re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S))

    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
           "connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; "
           "form-action 'none'; frame-ancestors 'none'")
    return text.encode(), csp


class _Handler(BaseHTTPRequestHandler):
    server_version = "greybox-debugger"
    sys_version = ""
    default_request_version = "HTTP/1.0"   # errors to malformed requests carry headers too

    def log_message(self, format, *args):  # quiet
        pass

    # connection ---------------------------------------------------------------------------
    def setup(self):
        self.timeout = self.server.request_timeout   # each read and write on the socket
        super().setup()
        self._deadline = time.monotonic() + self.server.request_timeout
        self._expired = False
        self._unread = False                          # a body left in the socket
        # a client dripping its request line or headers is cut off a little after the
        # deadline (a body is read against the deadline itself, and answered with 408)
        self._watchdog = threading.Timer(self.server.request_timeout + 1.0, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self):
        self._expired = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self):
        self._watchdog.cancel()
        try:
            super().finish()
        except OSError:
            pass
        if self._unread and not self._expired:   # let the client read the answer: a close
            self._drain()                         # with unread data would reset it

    def _drain(self):
        try:
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + 1.0
            received = 0
            while received < 4 * MAX_BODY and time.monotonic() < end:
                self.connection.settimeout(max(0.01, end - time.monotonic()))
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
        except OSError:
            pass

    # plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, body, content_type="application/json", csp=_CSP_API):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(V.plain(body)).encode())
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", csp)
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:   # the client went away
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a malformed request line, headers too
        long, an unsupported method) as JSON with the same headers."""
        self.close_connection = True
        self._unread = getattr(self, "command", None) == "POST"
        self._send(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def _allowed_hosts(self) -> set[str]:
        port = self.server.server_address[1]
        hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        return hosts | {"127.0.0.1", "localhost"} if port == 80 else hosts

    def _check_origin(self) -> None:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0].strip().lower() not in self._allowed_hosts():
            given = ", ".join(repr(h[:100]) for h in hosts) or "none"
            raise _Refused(421, f"this debugger answers to 127.0.0.1:{self.server.server_address[1]} "
                                f"and localhost:{self.server.server_address[1]} only (Host: {given})")
        origin = self.headers.get("Origin")
        if origin is not None and origin.strip().lower() not in {
                f"http://{h}" for h in self._allowed_hosts()}:
            raise _Refused(403, f"requests from another site are refused (Origin: {origin[:100]!r})")

    def _authorised(self, query) -> bool:
        token = self.server.token
        given = self.headers.get("X-Greybox-Token") or (query.get("token") or [""])[0]
        return secrets.compare_digest(given.encode(), token.encode())

    def _length(self) -> int:
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refused(411, "send the body with a Content-Length (chunked bodies are not "
                                "accepted)")
        given = self.headers.get_all("Content-Length") or []
        if not given:
            return 0
        if len(set(v.strip() for v in given)) != 1 or not re.fullmatch(r"[0-9]{1,15}",
                                                                         given[0].strip()):
            raise _Refused(400, "Content-Length must be one whole number of bytes, got "
                                + ", ".join(repr(v[:40]) for v in given))
        length = int(given[0])
        if length > MAX_BODY:
            raise _Refused(413, f"request too large: {length} bytes (at most {MAX_BODY})")
        return length

    def _read_body(self, length: int) -> bytes:
        """The body, read against the connection's deadline (before any lock)."""
        chunks, got = [], 0
        while got < length:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0 or self._expired:
                raise _Refused(408, f"the request did not arrive within "
                                    f"{self.server.request_timeout:g} s ({got} of {length} "
                                    "body bytes)")
            self.connection.settimeout(remaining)
            try:
                chunk = self.rfile.read1(min(65536, length - got))
            except TimeoutError:
                chunk = None
            except OSError:
                chunk = b""
            if chunk is None or self._expired:
                raise _Refused(408, f"the request did not arrive within "
                                    f"{self.server.request_timeout:g} s ({got} of {length} "
                                    "body bytes)")
            if not chunk:
                raise _Refused(400, f"the body ended after {got} of the {length} bytes its "
                                    "Content-Length announced")
            chunks.append(chunk)
            got += len(chunk)
        self.connection.settimeout(self.server.request_timeout)
        return b"".join(chunks)

    def _json(self, body: bytes):
        ctype = (self.headers.get("Content-Type") or "").split(";")
        params = {k.strip().lower(): v.strip().strip('"').lower()
                  for k, _, v in (p.partition("=") for p in ctype[1:])}
        if ctype[0].strip().lower() != "application/json" or params.get(
                "charset", "utf-8") != "utf-8":
            raise _Refused(415, "POST bodies must be JSON sent as Content-Type: "
                                "application/json (UTF-8), got "
                                f"{(self.headers.get('Content-Type') or 'none')[:100]!r}")
        if not body:
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _Refused(400, f"the body is not UTF-8: byte 0x{body[err.start]:02x} at "
                                f"offset {err.start}") from None

        def constant(name):
            raise ValueError(f"{name} is not JSON")

        try:
            return json.loads(text, parse_constant=constant)
        except RecursionError:
            raise _Refused(400, "not JSON: nested too deeply") from None
        except ValueError as err:
            raise _Refused(400, f"not JSON: {str(err)[:200]}") from None

    def _route(self, method: str):
        if self._expired:
            return None
        self._watchdog.cancel()
        self._unread = method == "POST"
        try:
            self._check_origin()
            url = urlparse(self.path)
            query = parse_qs(url.query)
            spec = None
            if method == "POST":
                body = self._read_body(self._length())
                self._unread = False
            if not self._authorised(query):
                raise _Refused(403, "missing or wrong access token")
            if method == "POST":
                spec = self._json(body)
            status, answer, *rest = self._dispatch(method, url.path, query, spec)
        except _Refused as err:
            self.close_connection = True
            return self._send(err.status, {"error": str(err)})
        except GreyboxError as err:
            return self._send(400, V.error(err))
        except Exception as err:  # noqa: BLE001 - a bug must not kill the page's request
            return self._send(500, {"error": f"internal error: {type(err).__name__}: {err}"})
        return self._send(status, answer, *rest)

    def _dispatch(self, method, path, query, spec):
        """(status, body[, content type, CSP]); the lock is held only around the
        debugger's own work, never while reading or writing the socket."""
        if method == "GET" and path == "/":
            page, csp = self.server.page
            return 200, page, "text/html; charset=utf-8", csp
        if method == "GET" and path == "/api/openapi.json":
            return 200, OPENAPI
        dbg, lock = self.server.debugger, self.server.lock
        if method == "GET" and path == "/api/summary":
            with lock:
                now = dbg.predictions()
                return 200, {"output": dbg.output, "rows": len(now),
                             "accuracy": dbg.accuracy, "failures": int((~now["correct"]).sum()),
                             "edits": [e.describe() for e in dbg.edits],
                             "suggest": hasattr(dbg, "suggest"),
                             "propose": hasattr(dbg, "propose_rules")}
        if method == "GET" and path == "/api/failures":
            with lock:
                return 200, V.records(dbg.failures())
        if method == "GET" and path == "/api/cohorts":
            with lock:
                return 200, V.records(dbg.cohorts())
        if method == "GET" and path == "/api/rules":
            with lock:
                return 200, V.rules(dbg)
        if method == "GET" and path == "/api/row":
            ident = (query.get("id") or [""])[0]
            with lock:
                match = [i for i in dbg.batch.index if str(i) == ident]
                if not match:
                    return 404, {"error": f"no row {ident[:100]!r}"}
                return 200, V.row(dbg, match[0])
        if method == "GET" and path == "/api/export":
            with lock:
                return 200, {"text": dbg.export()}
        if method == "GET" and path in ("/api/suggest", "/api/propose"):
            find = getattr(dbg, "suggest" if path == "/api/suggest" else "propose_rules", None)
            if find is None:
                return 404, {"error": f"this debugger has no {path[5:]}"}
            top, ident = _top(query), (query.get("row") or [None])[0]
            with lock:
                rows = None
                if ident is not None:
                    rows = [i for i in dbg.batch.index if str(i) == ident]
                    if not rows:
                        return 404, {"error": f"no row {ident[:100]!r}"}
                return 200, V.suggestions(find(rows, top=top), top)
        if method == "POST" and path == "/api/edit":
            edits = _edits(spec)   # checked before the lock
            with lock:
                return 200, V.diff(dbg.what_if(*edits))
        if method == "POST" and path == "/api/undo":
            with lock:
                if not dbg.edits:
                    return 400, {"error": "no edit to undo"}
                return 200, V.diff(dbg.undo())
        return 404, {"error": f"no such endpoint: {method} {path[:100]}"}

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


def _top(query) -> int:
    """The ``top`` of a query: how many suggestions, 1 to :data:`MAX_TOP` (10 unless given)."""
    given = (query.get("top") or ["10"])[0]
    if not re.fullmatch(r"[0-9]{1,4}", given.strip()) or not 1 <= int(given) <= MAX_TOP:
        raise _Refused(400, f"top must be a whole number from 1 to {MAX_TOP}, got "
                            f"{given[:40]!r}")
    return int(given)


def _edits(spec) -> list:
    """The edits of an /api/edit body: one edit, or a list of them applied together."""
    if not isinstance(spec, list):
        return [parse_edit({} if spec is None else spec)]
    if not 1 <= len(spec) <= MAX_EDITS:
        raise RuleError(f"a list of edits holds 1 to {MAX_EDITS} edits, got {len(spec)}")
    return [parse_edit(e) for e in spec]


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once (503 beyond)."""

    daemon_threads = True

    def __init__(self, address, *, max_connections: int, request_timeout: float):
        super().__init__(address, _Handler)
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._page = None

    @property
    def page(self) -> tuple[bytes, str]:
        if self._page is None:
            self._page = _page()
        return self._page

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            body = b'{"error": "too many connections; try again"}'
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nContent-Length: " + str(len(body)).encode()
                                + b"\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        pass   # a client that hangs up mid-request is not the server's error


class DebugServer:
    """Serve a :class:`Debugger` on ``http://127.0.0.1:PORT/?token=TOKEN``.

    ``port=0`` picks a free port. ``start()`` serves in a background thread (tests,
    notebooks); ``serve_forever()`` blocks (the CLI); ``stop()`` shuts down. ``timeout``:
    the seconds a connection has to send its whole request; ``max_connections``: how many
    are served at once (see the module's notes on hardening).
    """

    def __init__(self, debugger, *, port: int = 0, token: str | None = None,
                 timeout: float = TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        timeout = timeout_seconds(timeout)
        self.httpd = _Server(("127.0.0.1", port), max_connections=max_connections,
                             request_timeout=timeout)
        self.httpd.debugger = debugger
        self.httpd.token = token or secrets.token_urlsafe(24)
        self.httpd.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._served = False   # whether a serving loop was started (stop() waits for it)

    @property
    def token(self) -> str:
        return self.httpd.token

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> DebugServer:
        self._served = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self._served = True
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the port (at once for a server never started)."""
        if self._served:   # shutdown() waits for a serving loop: forever without one
            self.httpd.shutdown()
        self.httpd.server_close()
