"""The local web debugger: its JSON API, its token, and the page in a real browser."""

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import greybox as gb
from greybox.explain.debug._server import DebugServer

from .conftest import EXAMPLES

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"


@pytest.fixture(scope="module")
def server():
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:200], (data.target == 0).to_numpy()[:200]
    torch.manual_seed(0)
    model = gb.GreyBox(gb.rules.load(EXAMPLES / "breast_cancer.rules"), semantics="product",
                       residual=nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)))
    model.fit(X, {"malignant": y}, epochs=2, progress=False)
    dbg = gb.explain.Debugger(model, X, y)
    srv = DebugServer(dbg).start()
    yield srv
    srv.stop()


def _get(srv, path, token=True):
    sep = "&" if "?" in path else "?"
    url = f"http://127.0.0.1:{srv.port}{path}" + (f"{sep}token={srv.token}" if token else "")
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _post(srv, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"X-Greybox-Token": srv.token,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_requests_without_the_token_are_refused(server):
    for path in ["/", "/api/summary", "/api/failures", "/api/export"]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10)
        assert err.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/summary?token=guess",
                               timeout=10)
    assert err.value.code == 403
    assert server.url.startswith("http://127.0.0.1:") and "token=" in server.url
    assert server.httpd.server_address[0] == "127.0.0.1"


def test_the_api_serves_failures_rows_and_edits(server):
    summary = _get(server, "/api/summary")
    assert summary["output"] == "malignant" and summary["rows"] == 200
    failures = _get(server, "/api/failures")
    assert len(failures) == summary["failures"] and {"row", "verdict"} <= set(failures[0])
    row = _get(server, f"/api/row?id={failures[0]['row']}")
    assert row["rules"] and "reason" in row and "malignant" in row["text"]
    assert _get(server, "/api/cohorts")
    spec = _get(server, "/api/openapi.json")
    assert "/api/edit" in spec["paths"]
    status, diff = _post(server, "/api/edit", {"op": "weight", "rule": "concave", "value": 0.1})
    assert status == 200 and {"fixed", "broken", "accuracy_after"} <= set(diff)
    status, err = _post(server, "/api/edit", {"op": "add",
                                              "text": "rule x weight 1: `mean radiuss` > 3 -> malignant"})
    assert status == 400 and err["line"] == 1 and err["column"] == 18
    assert "undeclared name 'mean radiuss'" in err["error"]
    status, err = _post(server, "/api/edit", {"op": "add", "text": "rule x: -> malignant"})
    assert status == 400 and err["line"] == 1
    status, _ = _post(server, "/api/undo", {})
    assert status == 200
    status, err = _post(server, "/api/undo", {})
    assert status == 400 and "no edit" in err["error"]
    assert "rule concave" in _get(server, "/api/export")["text"]
    status, err = _post(server, "/api/nope", {})
    assert status == 404


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(.ci/run installs it)")
def test_the_page_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # the page runs under its Content-Security-Policy without a violation
            problems = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            # without the token the page is refused
            response = page.goto(f"http://127.0.0.1:{server.port}/")
            assert response.status == 403
            page.goto(server.url)
            page.wait_for_selector("#failures tbody tr")
            assert "failures in 200 rows" in page.inner_text("#summary")
            page.wait_for_selector("#rules tbody tr")   # the page has loaded every table
            page.screenshot(path=str(SHOTS / "debugger_failures.png"))
            # open a failure: its decision, rules and reason
            page.click("#failures tbody tr >> nth=0")
            page.wait_for_selector("#reason")
            assert "because" in page.inner_text("#reason") or "no reason" in page.inner_text(
                "#reason")
            assert "score" in page.inner_text("#decision-text")
            page.screenshot(path=str(SHOTS / "debugger_decision.png"))
            # change a rule's weight: the fixed/broken diff appears
            weight = page.locator('input.weight[data-rule="small_smooth"]')
            weight.fill("0.2")
            weight.press("Enter")
            weight.dispatch_event("change")
            page.wait_for_selector("#diff p")
            assert "accuracy" in page.inner_text("#diff")
            expect(page.locator("#summary")).to_contain_text(
                "set the weight of small_smooth to 0.2")
            # an invalid rule: the error is shown next to the edit with line and column
            page.fill("#rule-text", "rule bad: `worst areaa` > 1 -> malignant")
            page.click("#apply-text")
            # (waited for through locators: the page's CSP forbids evaluating strings)
            expect(page.locator("#edit-error")).to_contain_text("line 1, column 11")
            page.screenshot(path=str(SHOTS / "debugger_edit.png"))
            # export the edited rules
            page.click("#export")
            page.wait_for_selector("#export-text:not([hidden])")
            text = page.inner_text("#export-text")
            assert "rule small_smooth weight 0.2" in text
            assert gb.rules.parse(text).rules["small_smooth"].weight == pytest.approx(0.2)
            # the contribution bars got their widths through the DOM, not style attributes
            page.click("#failures tbody tr >> nth=0")
            page.wait_for_selector("#decision .bar")
            assert page.eval_on_selector("#decision .bar", "el => el.style.width").endswith("px")
            csp = [p for p in problems if "Content Security Policy" in p]
            assert not csp, csp
        finally:
            browser.close()
