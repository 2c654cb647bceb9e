"""The local web debugger: one page and a JSON API over a :class:`Debugger`.

Bound to 127.0.0.1 only, on a random port unless one is given, and guarded by a random
token that every request must carry (``?token=...`` or the ``X-Greybox-Token`` header);
requests without it get 403. Requests are data: an edit is parsed as rule text and
type-checked, never executed.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from greybox.errors import GreyboxError, RuleError, RuleSyntaxError

__all__ = ["DebugServer", "OPENAPI"]

MAX_BODY = 1 << 20


def _plain(value):
    """JSON-ready Python values from numpy / pandas ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA:
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    frame = frame.reset_index().rename(columns={"index": "row"})
    return [_plain(r) for r in frame.to_dict(orient="records")]


def _error(err: GreyboxError) -> dict:
    out = {"error": str(err)}
    if isinstance(err, RuleSyntaxError):
        out.update(line=err.lineno, column=err.offset)
    elif isinstance(err, RuleError) and getattr(err, "diagnostics", None):
        loc = err.diagnostics[0][1]
        if loc is not None:
            out.update(line=loc.line, column=loc.column)
    return out


#: The OpenAPI description of the JSON API (served at /api/openapi.json).
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "greybox debugger", "version": "1"},
    "components": {"securitySchemes": {
        "token": {"type": "apiKey", "in": "query", "name": "token"},
        "header": {"type": "apiKey", "in": "header", "name": "X-Greybox-Token"}}},
    "security": [{"token": []}, {"header": []}],
    "paths": {
        "/api/summary": {"get": {"summary": "output, rows, accuracy, failures, edits",
                                 "responses": {"200": {"description": "summary"}}}},
        "/api/failures": {"get": {"summary": "the wrong predictions",
                                  "responses": {"200": {"description": "list of rows"}}}},
        "/api/cohorts": {"get": {"summary": "where errors concentrate",
                                 "responses": {"200": {"description": "list of cohorts"}}}},
        "/api/rules": {"get": {"summary": "rules with their weights and numbers",
                               "responses": {"200": {"description": "list of rules"}}}},
        "/api/row": {"get": {"summary": "the explanation of one row",
                             "parameters": [{"name": "id", "in": "query", "required": True,
                                             "schema": {"type": "string"}}],
                             "responses": {"200": {"description": "explanation"},
                                           "404": {"description": "no such row"}}}},
        "/api/edit": {"post": {
            "summary": "apply an edit (weight, threshold, disable, remove, add, replace)",
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["op"],
                "properties": {"op": {"type": "string"}, "rule": {"type": "string"},
                               "name": {"type": "string"}, "index": {"type": "integer"},
                               "value": {"type": "number"}, "text": {"type": "string"}}}}}},
            "responses": {"200": {"description": "the fixed/broken diff"},
                          "400": {"description": "the edit's error, with line and column"}}}},
        "/api/undo": {"post": {"summary": "take back the last edit",
                               "responses": {"200": {"description": "diff"}}}},
        "/api/export": {"get": {"summary": "the edited rule file",
                                "responses": {"200": {"description": "rule text"}}}},
    },
}


class _Handler(BaseHTTPRequestHandler):
    server_version = "greybox-debugger"

    def log_message(self, format, *args):  # quiet
        pass

    # plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(_plain(body)).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self, query) -> bool:
        token = self.server.token
        given = self.headers.get("X-Greybox-Token") or (query.get("token") or [""])[0]
        return secrets.compare_digest(given.encode(), token.encode())

    def _route(self, method: str):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            return self._send(403, {"error": "missing or wrong access token"})
        dbg = self.server.debugger
        try:
            with self.server.lock:
                return self._dispatch(method, url.path, query, dbg)
        except GreyboxError as err:
            return self._send(400, _error(err))
        except Exception as err:  # noqa: BLE001 - a bug must not kill the page's request
            return self._send(500, {"error": f"internal error: {type(err).__name__}: {err}"})

    def _dispatch(self, method, path, query, dbg):
        if method == "GET" and path == "/":
            page = resources.files("greybox.explain").joinpath("debugger.html").read_text()
            return self._send(200, page, "text/html; charset=utf-8")
        if method == "GET" and path == "/api/openapi.json":
            return self._send(200, OPENAPI)
        if method == "GET" and path == "/api/summary":
            failures = int((~dbg.predictions()["correct"]).sum())
            return self._send(200, {"output": dbg.output, "rows": len(dbg.predictions()),
                                    "accuracy": dbg.accuracy, "failures": failures,
                                    "edits": [e.describe() for e in dbg.edits]})
        if method == "GET" and path == "/api/failures":
            return self._send(200, _records(dbg.failures()))
        if method == "GET" and path == "/api/cohorts":
            return self._send(200, _records(dbg.cohorts()))
        if method == "GET" and path == "/api/rules":
            return self._send(200, _rules(dbg))
        if method == "GET" and path == "/api/row":
            return self._row(dbg, (query.get("id") or [""])[0])
        if method == "GET" and path == "/api/export":
            return self._send(200, {"text": dbg.export()})
        if method == "POST" and path == "/api/edit":
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._send(413, {"error": "request too large"})
            try:
                spec = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as err:
                return self._send(400, {"error": f"not JSON: {err}"})
            return self._send(200, _diff(dbg.what_if(spec)))
        if method == "POST" and path == "/api/undo":
            if not dbg.edits:
                return self._send(400, {"error": "no edit to undo"})
            return self._send(200, _diff(dbg.undo()))
        return self._send(404, {"error": f"no such endpoint: {method} {path}"})

    def _row(self, dbg, ident: str):
        index = dbg.batch.index
        match = [i for i in index if str(i) == ident]
        if not match:
            return self._send(404, {"error": f"no row {ident!r}"})
        return self._send(200, _row(dbg, match[0]))

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


def _diff(w) -> dict:
    return {"edits": list(w.edits), "accuracy_before": w.accuracy_before,
            "accuracy_after": w.accuracy_after, "fixed": _records(w.fixed),
            "broken": _records(w.broken), "changed": w.changed}


def _rules(dbg) -> list[dict]:
    from greybox.rules import _ast as A
    from greybox.rules import to_text

    kb = dbg.model.to_kb()
    out = []
    for s in kb.statements:
        if isinstance(s, (A.Rule, A.Constraint)):
            body = s.body if isinstance(s, A.Rule) else s.formula
            out.append({"name": s.name, "kind": "rule" if isinstance(s, A.Rule) else "constraint",
                        "text": to_text(s), "weight": getattr(s, "weight", None),
                        "numbers": [n.value for n in A.walk(body) if isinstance(n, A.Num)]})
    return out


def _row(dbg, label) -> dict:
    import torch

    from ._explain import explain

    pos = dbg.batch.index.get_loc(label)
    sub = dbg.batch.take(torch.as_tensor([pos]))
    ex = explain(dbg.model, sub, dbg.output, parameters=False)
    attributions = {}
    for key, a in ex.attributions.items():
        values = a[0].detach().cpu()
        shape = ex._image_shape(key)
        attributions[key] = {"values": values.flatten().tolist(),
                             "shape": list(shape) if shape else None,
                             "names": None if shape else ex._attribution_names(key,
                                                                                values.numel())}
    info = dbg.predictions().loc[label]
    out = {"row": label, "text": ex.row_text(0),
           "decision": _records(ex.decision)[0], "rules": _records(ex.rules.drop(columns="row")),
           "concepts": _records(ex.concepts.drop(columns="row")),
           "attributions": attributions, "target": info["target"],
           "correct": bool(info["correct"])}
    try:
        out["reason"] = str(ex.reason(0))
    except GreyboxError as err:
        out["reason"] = f"no reason: {err}"
    try:
        out["counterfactual"] = str(ex.counterfactual(0))
    except GreyboxError as err:
        out["counterfactual"] = f"no counterfactual: {err}"
    return out


class DebugServer:
    """Serve a :class:`Debugger` on ``http://127.0.0.1:PORT/?token=TOKEN``.

    ``port=0`` picks a free port. ``start()`` serves in a background thread (tests,
    notebooks); ``serve_forever()`` blocks (the CLI); ``stop()`` shuts down.
    """

    def __init__(self, debugger, *, port: int = 0, token: str | None = None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.debugger = debugger
        self.httpd.token = token or secrets.token_urlsafe(24)
        self.httpd.lock = threading.Lock()
        self.thread: threading.Thread | None = None

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
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
