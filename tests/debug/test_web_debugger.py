"""The local web debugger: its JSON API, its token, and the page in a real browser."""

import json
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import greybox as gb
from greybox.explain import SetThreshold
from greybox.explain.debug._edits import _numbers, parse_edit
from greybox.explain.debug._server import DebugServer
from tests.conftest import EXAMPLES

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
#: the example's knowledge (soft constraints) and a hard constraint every row satisfies
KNOWLEDGE = """
constraint clearly_malignant weight 1.0:
    `worst area` > 1000 and `worst concave points` > 0.16 -> malignant
constraint clearly_benign weight 1.0:
    `worst area` < 600 and `worst concave points` < 0.1 -> not malignant
constraint plausible: `mean radius` < 45 or not malignant
"""


@pytest.fixture(scope="module")
def server():
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:200], (data.target == 0).to_numpy()[:200]
    torch.manual_seed(0)
    kb = gb.rules.parse(gb.rules.to_text(gb.rules.load(EXAMPLES / "breast_cancer.rules"))
                        + KNOWLEDGE)
    model = gb.GreyBox(kb, semantics="product",
                       residual=nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1)))
    model.fit(X, {"malignant": y}, epochs=2, progress=False)
    dbg = gb.explain.Debugger(model, X, y)
    srv = DebugServer(dbg).start()
    yield srv
    srv.stop()


@pytest.fixture
def clean(server):
    """The server's debugger with no edit before and after the test."""
    dbg = server.httpd.debugger
    dbg.undo(len(dbg.edits))
    yield server
    dbg.undo(len(dbg.edits))


@dataclass(frozen=True)
class StandIn:
    """A suggestion shaped as ``Debugger.suggest`` returns them (its contract), built from
    real edits and real what-if diffs: the page and its apply path are tested on them
    whether or not the debugger can suggest."""

    edits: tuple
    fixed: tuple
    broken: tuple
    accuracy_after: float
    checks: tuple = ("stand-in: what_if only, nothing certified",)
    kind: str = "threshold"

    def __str__(self):
        return (f"{'; '.join(e.describe() for e in self.edits)}: {len(self.fixed)} fixed, "
                f"{len(self.broken)} broken, accuracy after {self.accuracy_after:.3f}")


def stand_in_suggest(dbg):
    """``suggest`` from thresholds moved by a fifth, alone and the best two together."""
    def effect(edits):
        before = dbg.predictions()["correct"]
        dbg.what_if(*edits)
        after, accuracy = dbg.predictions()["correct"], dbg.accuracy
        dbg.undo(len(edits))
        return StandIn(tuple(edits), tuple(after.index[~before & after]),
                       tuple(after.index[before & ~after]), accuracy)

    def suggest(rows=None, *, validation=None, keep=(), max_edits=2, top=10):
        found = [effect([SetThreshold(r.name, k, float(n.value) * f)])
                 for r in dbg.model.to_kb().rules.values()
                 for k, n in enumerate(_numbers(r.body)) for f in (0.8, 1.25)]
        found = sorted((s for s in found if s.fixed), key=lambda s: len(s.broken) - len(s.fixed))
        pair = [found[0].edits[0]] + [s.edits[0] for s in found[1:]
                                      if s.edits[0].name != found[0].edits[0].name][:1]
        found.insert(0, effect(pair))
        found = sorted(found, key=lambda s: len(s.broken) - len(s.fixed))
        return found[:top]

    return suggest


@pytest.fixture
def suggesting(clean, monkeypatch):
    dbg = clean.httpd.debugger
    monkeypatch.setattr(dbg, "suggest", stand_in_suggest(dbg), raising=False)
    return clean


def _get(srv, path, token=True):
    sep = "&" if "?" in path else "?"
    url = f"http://127.0.0.1:{srv.port}{path}" + (f"{sep}token={srv.token}" if token else "")
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _status(srv, path):
    try:
        return 200, _get(srv, path)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


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
    for path in ["/", "/api/summary", "/api/failures", "/api/export", "/api/rules",
                 "/api/suggest", "/api/propose"]:
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


def test_rules_come_as_text_with_their_numbers_in_place_and_statistics(clean):
    rules = {r["name"]: r for r in _get(clean, "/api/rules")}
    kb = clean.httpd.debugger.model.to_kb()
    assert [rules[n]["kind"] for n in ("large", "clearly_malignant", "plausible")] == [
        "rule", "soft", "hard"]
    stats = clean.httpd.debugger.rule_stats()
    for name, r in rules.items():
        slots = [p for p in r["parts"] if "slot" in p]
        numbers = [p for p in slots if p["slot"] == "number"]
        # the numbers in source order, as a threshold edit counts them
        assert [p["index"] for p in numbers] == list(range(len(r["numbers"])))
        assert [p["value"] for p in numbers] == r["numbers"]
        if r["kind"] == "rule":   # the weight is a slot, also where the text omits 1.0
            assert [p["value"] for p in slots if p["slot"] == "weight"] == [r["weight"]]
            assert r["parts"][0]["text"].startswith(f"rule {name} weight ")
        # the pieces put back are the rule as the language prints it
        text = "".join(p["text"] if "text" in p else gb.rules.to_text(gb.rules.ast.Num(p["value"]))
                       if p["slot"] == "number" else repr(p["value"]) for p in r["parts"])
        assert gb.rules.engine.parse_statements(text) == gb.rules.engine.parse_statements(r["text"])
        assert r["stats"] == {k: stats.loc[name, k] for k in r["stats"]}
    assert [p.get("role") for p in rules["large_irregular"]["parts"] if "slot" in p] == [
        None, "threshold", "threshold"]
    # the index a slot carries is the one /api/edit takes
    slot = [p for p in rules["large_irregular"]["parts"] if p.get("index") == 1][0]
    status, _ = _post(clean, "/api/edit", {"op": "threshold", "name": "large_irregular",
                                           "index": slot["index"], "value": 0.125})
    assert status == 200
    edited = clean.httpd.debugger.model.to_kb().rules["large_irregular"]
    assert _numbers(edited.body)[1].value == 0.125
    assert _numbers(edited.body)[0] == _numbers(kb.rules["large_irregular"].body)[0]
    # the statistics are of the edited model
    now = {r["name"]: r for r in _get(clean, "/api/rules")}
    assert now["large_irregular"]["stats"]["fires"] == int(
        clean.httpd.debugger.rule_stats().loc["large_irregular", "fires"])


def test_several_edits_in_one_request_are_one_what_if(clean):
    dbg = clean.httpd.debugger
    edits = [{"op": "threshold", "name": "large", "value": 15.0},
             {"op": "weight", "name": "regular", "value": 0.5}]
    status, diff = _post(clean, "/api/edit", edits)
    assert status == 200 and len(diff["edits"]) == 2 == len(dbg.edits)
    fresh = gb.explain.Debugger(dbg._base, dbg.data, dbg.target)
    expected = fresh.what_if(*[parse_edit(e) for e in edits])
    assert [f["row"] for f in diff["fixed"]] == list(expected.fixed.index)
    assert [f["row"] for f in diff["broken"]] == list(expected.broken.index)
    # a bad edit in the list: nothing applied
    for body, match in [([], "1 to 20 edits"), ([edits[0]] * 21, "1 to 20 edits"),
                        ([edits[0], {"op": "weight", "name": "nope", "value": 1}],
                         "no rule named 'nope'")]:
        status, err = _post(clean, "/api/edit", body)
        assert status == 400 and match in err["error"]
        assert len(dbg.edits) == 2


def test_suggestions_are_served_and_applied_through_what_if(suggesting):
    dbg = suggesting.httpd.debugger
    assert _get(suggesting, "/api/summary")["suggest"] is True
    found = _get(suggesting, "/api/suggest?top=3")["suggestions"]
    assert 1 <= len(found) <= 3 and [s["rank"] for s in found] == list(
        range(1, len(found) + 1))
    best = found[0]
    assert {"kind", "text", "edits", "fixed", "broken", "accuracy_after", "checks"} <= set(best)
    assert all({"text", "spec"} <= set(e) for e in best["edits"]) and best["checks"]
    status, diff = _post(suggesting, "/api/edit", [e["spec"] for e in best["edits"]])
    assert status == 200
    assert [f["row"] for f in diff["fixed"]] == best["fixed"]
    assert [f["row"] for f in diff["broken"]] == best["broken"]
    assert diff["accuracy_after"] == pytest.approx(best["accuracy_after"])
    assert diff["edits"] == [e["text"] for e in best["edits"]] == [
        e.describe() for e in dbg.edits]
    # bounded, and for one row
    for query in ["top=0", "top=51", "top=ten", "top=" + "9" * 5]:
        status, err = _status(suggesting, f"/api/suggest?{query}")
        assert status == 400 and "top must be a whole number from 1 to 50" in err["error"]
    asked = []
    dbg.suggest = lambda rows=None, **kw: asked.append((rows, kw)) or []
    label = _get(suggesting, "/api/failures")[0]["row"]
    assert _get(suggesting, f"/api/suggest?top=2&row={label}")["suggestions"] == []
    assert asked == [([label], {"top": 2})]
    status, err = _status(suggesting, "/api/suggest?row=nope")
    assert status == 404 and "no row 'nope'" in err["error"]


def test_the_debuggers_own_suggestions_apply_as_what_if_reports_them(clean):
    dbg = clean.httpd.debugger
    answer = _get(clean, "/api/suggest?top=3")
    assert answer["suggestions"] and answer["candidates"] >= len(answer["suggestions"])
    for s in answer["suggestions"]:
        assert s["checks"] and all(e["spec"] for e in s["edits"])
        status, diff = _post(clean, "/api/edit", [e["spec"] for e in s["edits"]])
        assert status == 200
        assert sorted(f["row"] for f in diff["fixed"]) == sorted(s["fixed"])
        assert sorted(f["row"] for f in diff["broken"]) == sorted(s["broken"])
        assert diff["accuracy_after"] == pytest.approx(s["accuracy_after"])
        dbg.undo(len(dbg.edits))


def test_learned_rules_are_served_like_suggestions(clean):
    """/api/propose serves Debugger.propose_rules: the same rules, and applying one through
    /api/edit gives exactly the rows it says it fixes and breaks."""
    dbg = clean.httpd.debugger
    assert _get(clean, "/api/summary")["propose"] is True
    learned = _get(clean, "/api/propose?top=3")["suggestions"]
    direct = dbg.propose_rules(top=3)
    assert [[e["spec"] for e in s["edits"]] for s in learned] == \
        [[e.to_spec() for e in s.edits] for s in direct]
    assert learned, "the test model's failures should leave a rule to learn"
    for s in learned:
        assert s["kind"] == "rule" and s["edits"][0]["spec"]["op"] == "add"
        status, diff = _post(clean, "/api/edit", [e["spec"] for e in s["edits"]])
        assert status == 200
        assert sorted(f["row"] for f in diff["fixed"]) == sorted(s["fixed"])
        assert sorted(f["row"] for f in diff["broken"]) == sorted(s["broken"])
        dbg.undo(len(dbg.edits))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(.ci/run installs it)")
def test_the_page_in_a_real_browser(clean, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    server, dbg = clean, clean.httpd.debugger
    if not hasattr(dbg, "suggest"):   # the panel on stand-ins: real edits and diffs
        monkeypatch.setattr(dbg, "suggest", stand_in_suggest(dbg), raising=False)
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
            problems.clear()
            page.goto(server.url)
            page.wait_for_selector("#failures tbody tr")
            assert "failures in 200 rows" in page.inner_text("#summary")
            page.wait_for_selector("#rules tbody tr")   # the page has loaded every table
            page.screenshot(path=str(SHOTS / "debugger_failures.png"))
            # the rules as text, each number an input where it stands, labelled
            row = page.locator('#rules tr[data-rule="large_irregular"]')
            assert "`worst area` >" in row.inner_text() and "-> malignant" in row.inner_text()
            exact = dbg.model.to_kb().rules["large_irregular"]
            threshold = row.locator('input.threshold[data-index="0"]')
            assert threshold.input_value() == f"{_numbers(exact.body)[0].value:.4g}"
            assert "threshold 0" in row.locator(".slot small >> nth=1").inner_text()
            assert row.locator(".slot small >> nth=0").inner_text() == "weight"
            threshold.focus()   # the exact value while editing
            assert threshold.input_value() == repr(_numbers(exact.body)[0].value)
            threshold.blur()
            expect(page.locator('#rules tr[data-rule="clearly_malignant"] .badge')).to_have_text(
                "soft constraint")
            expect(page.locator('#rules tr[data-rule="plausible"] .badge')).to_have_text(
                "hard constraint")
            stats = dbg.rule_stats().loc["concave"]
            expect(page.locator('#rules tr[data-rule="concave"]')).to_contain_text(
                f"{stats['fires']} rows")
            page.locator("#rule-editor").screenshot(path=str(SHOTS / "debugger_rules.png"))
            # the learned-rules panel only where the debugger learns rules
            expect(page.locator("#learn-panel")).to_be_visible(
                visible=hasattr(dbg, "propose_rules"))
            # a suggestion applied: the diff is what_if's
            page.click("#suggest")
            page.wait_for_selector("#suggestions tbody tr")
            best = _get(server, "/api/suggest?top=1")["suggestions"][0]
            page.click("#suggestions button.apply >> nth=0")
            expect(page.locator("#diff-fixed")).to_have_text(f"{len(best['fixed'])} fixed")
            expect(page.locator("#diff-broken")).to_have_text(f"{len(best['broken'])} broken")
            expect(page.locator("#suggestions button.apply >> nth=0")).to_have_text("applied")
            fresh = gb.explain.Debugger(dbg._base, dbg.data, dbg.target)
            expected = fresh.what_if(*[parse_edit(e["spec"]) for e in best["edits"]])
            assert (len(expected.fixed), len(expected.broken)) == (len(best["fixed"]),
                                                                    len(best["broken"]))
            expect(page.locator("#summary")).to_contain_text(best["edits"][0]["text"])
            top, bottom = (page.locator(f"#{i}").bounding_box() for i in ("effect",
                                                                          "suggest-panel"))
            page.screenshot(path=str(SHOTS / "debugger_suggestions.png"), full_page=True, clip={
                "x": top["x"] - 4, "y": top["y"] - 4, "width": top["width"] + 8,
                "height": bottom["y"] + bottom["height"] - top["y"] + 8})
            # open a failure: its decision, rules, reason and attributions largest first
            page.click("#failures tbody tr >> nth=0")
            page.wait_for_selector("#reason")
            assert "because" in page.inner_text("#reason") or "no reason" in page.inner_text(
                "#reason")
            assert "score" in page.inner_text("#decision-text")
            groups = page.locator("#attributions > div")
            assert groups.count()
            for k in range(groups.count()):   # each concept's, largest first
                shown = [abs(float(t)) for t in groups.nth(k).locator("td[title]").evaluate_all(
                    "els => els.map(e => e.title)")]
                assert shown == sorted(shown, reverse=True)
                assert groups.nth(k).locator("details.more").count() == (len(shown) > 10)
            page.locator("#decision").screenshot(path=str(SHOTS / "debugger_decision.png"))
            # change a rule's weight in place: the fixed/broken diff appears
            weight = page.locator('input.weight[data-rule="small_smooth"]')
            weight.fill("0.2")
            expect(weight).to_have_value("0.2")
            weight.press("Enter")
            expect(page.locator("#summary")).to_contain_text(
                "set the weight of small_smooth to 0.2")
            assert "accuracy" in page.inner_text("#diff")
            # so far no error at all in the console: no CSP violation, no favicon refused
            assert not problems, problems
            # an invalid rule: the error is shown next to the edit with line and column
            page.fill("#rule-text", "rule bad: `worst areaa` > 1 -> malignant")
            page.click("#apply-text")
            # (waited for through locators: the page's CSP forbids evaluating strings)
            expect(page.locator("#edit-error")).to_contain_text("line 1, column 11")
            page.locator("#rule-editor").screenshot(path=str(SHOTS / "debugger_edit.png"))
            # export the edited rules
            page.click("#export")
            page.wait_for_selector("#export-text:not([hidden])")
            text = page.inner_text("#export-text")
            assert "rule small_smooth weight 0.2" in text
            assert gb.rules.parse(text).rules["small_smooth"].weight == pytest.approx(0.2)
            exported = gb.rules.parse(text).rules   # the applied suggestion is in it
            for e in best["edits"]:
                spec = e["spec"]
                if spec["op"] == "threshold":
                    assert _numbers(exported[spec["name"]].body)[spec.get("index", 0)].value \
                        == pytest.approx(spec["value"])
                elif spec["op"] == "weight":
                    assert exported[spec["name"]].weight == pytest.approx(spec["value"])
            # the contribution bars got their widths through the DOM, not style attributes
            page.click("#failures tbody tr >> nth=0")
            page.wait_for_selector("#decision .bar")
            assert page.eval_on_selector("#decision .bar", "el => el.style.width").endswith("px")
            csp = [p for p in problems if "Content Security Policy" in p]
            assert not csp, csp
        finally:
            browser.close()
