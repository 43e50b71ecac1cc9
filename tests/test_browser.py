"""The web page of `ragvqa serve` in a real browser: Debian's headless chromium, driven through the
DevTools protocol over a websocket, against the test session's one server (tests/test_serve.py)
on the demo world. Upload or drop an image, ask, see the answer and its evidence; edit a
template in the playground and see the re-answer beside the first; save it as a new version.
The page must load nothing from elsewhere and log no error."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import chromium
from PIL import Image
from test_serve import EDIT, Server, first_images, shared_server
from websockets.sync.client import connect

pytestmark = pytest.mark.engine
STEP_TIMEOUT_S = 240  # one answer on a busy 2-core machine


class Browser:
    """One headless chromium and one tab, spoken to in the DevTools protocol (flat sessions)."""

    def __init__(self, profile: Path):
        command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
                   f"--user-data-dir={profile}", "--window-size=1400,1100",
                   "about:blank"]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            assert self.process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium opened no DevTools port"
            time.sleep(0.2)
        port, path = port_file.read_text().split()[:2]
        self.stack = ExitStack()
        url = f"ws://127.0.0.1:{port}{path}"
        self.ws = self.stack.enter_context(connect(url, max_size=None, open_timeout=30))
        self.ids, self.events = 0, []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=self.session)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.ids += 1
        message = {"id": self.ids, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=STEP_TIMEOUT_S))
            if reply.get("id") != self.ids:
                self.events.append(reply)
                continue
            assert "error" not in reply, f"{method}: {reply['error']}"
            return reply["result"]

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.send(method, session=self.session, **params)

    def js(self, expression: str) -> Any:
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = STEP_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"not true after {timeout} s: {expression}")

    def open(self, url: str) -> None:
        self.page("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && document.body.dataset.ready === '1'")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and log errors (a CSP violation is one); the
        4xx answers the tests ask for (a missing image, a passage without a thumbnail) are
        logged by the browser too and are left out."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                if not (entry.get("source") == "network" and "status of 4" in entry["text"]):
                    found.append(entry["text"])
        return found

    def requested(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def set_files(self, selector: str, files: list[str]) -> None:
        root = self.page("DOM.getDocument")["root"]["nodeId"]
        node = self.page("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.page("DOM.setFileInputFiles", files=files, nodeId=node)

    def screenshot(self, path: Path) -> None:
        data = self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        self.stack.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(request, world, tmp_path_factory) -> Server:
    return shared_server(request, world, tmp_path_factory)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


def _text(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).textContent"


def _ask(browser: Browser, question: str) -> dict[str, Any]:
    """Type the question, press Answer, wait for the answer, and return the server's record."""
    browser.js(f"document.getElementById('question').value = {json.dumps(question)}")
    browser.js("window.__before = document.getElementById('answer-meta').textContent")
    browser.js("document.getElementById('ask-button').click()")
    meta = browser.wait(
        "(() => { const m = document.getElementById('answer-meta').textContent;"
        " return m !== window.__before && m; })()"
    )
    query_id = meta.rsplit(" · ", 1)[1]
    return browser.js(f"fetch('/v1/queries/{query_id}').then(r => r.json())")


def test_upload_ask_and_see_answer_evidence_and_timings(server, browser):
    browser.open(server.url + "/")
    assert browser.js(_text("#pipeline-name")).startswith("demo · answer/evidence_short@1")
    assert "random weights" in browser.js(_text("#notice"))
    image = first_images(server.world, 1)[0]
    browser.set_files("#image", [str(image)])
    browser.wait("!document.getElementById('preview').hidden")
    assert browser.js(_text("#status")).startswith(f"image: {image.name}")
    record = _ask(browser, "Which city is this tower in?")
    assert record["question"] == "Which city is this tower in?" and record["error"] is None
    assert browser.js(_text("#answer-text")) == (record["answer"] or "(no answer)")
    # the evidence the reader read, in order, with entity, section, score and a thumbnail
    read = [r for r in record["retrieved"] if r["passage_id"] in record["evidence"]]
    items = browser.js(
        "[...document.querySelectorAll('#evidence li')].map(li => ({"
        " title: li.querySelector('strong').textContent,"
        " meta: li.querySelector('.muted').textContent,"
        " image: li.querySelector('img') ? li.querySelector('img').naturalWidth : 0}))"
    )
    assert [i["title"] for i in items] == [r["title"] for r in read] and read
    for item, passage in zip(items, read, strict=True):
        assert item["meta"] == f"{passage['section'] or '(lead)'} · score {passage['score']:.3f}"
    assert items[0]["image"] == 64  # the KB's 64x64 drawing of the top entity
    # the other candidates, and the timings of every stage
    rows = browser.js(
        "[...document.querySelectorAll('#candidates tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))"
    )
    others = [r for r in record["retrieved"] if r["passage_id"] not in record["evidence"]]
    assert rows == [
        [str(r["rank"] + 1), r["title"], r["section"] or "(lead)", f"{r['score']:.3f}"]
        for r in others
    ]
    stages = browser.js("[...document.querySelectorAll('#timings th')].map(th => th.textContent)")
    assert stages == ["encode", "search", "generate", "queue", "batch", "round trip"]


def test_drop_an_image_and_errors_show_in_the_page(server, browser):
    browser.open(server.url + "/")
    browser.js("document.getElementById('question').value = 'Which city?'")
    browser.js("document.getElementById('ask-button').click()")  # no image yet
    browser.wait("document.getElementById('status').classList.contains('error')")
    assert browser.js(_text("#status")) == (
        "missing image: send an 'image' file or an 'image_url' data URI"
    )
    image = first_images(server.world, 2)[1]
    data = base64.b64encode(image.read_bytes()).decode()
    browser.js(
        "(() => { const bytes = Uint8Array.from(atob('" + data + "'), c => c.charCodeAt(0));"
        " const blob = new Blob([bytes]); const dt = new DataTransfer();"
        " dt.items.add(new File([blob], 'dropped.jpg', {type: 'image/jpeg'}));"
        " document.getElementById('drop').dispatchEvent("
        "new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); })()"
    )
    browser.wait("!document.getElementById('preview').hidden")
    assert browser.js(_text("#status")).startswith("image: dropped.jpg")
    record = _ask(browser, "When was this tower built?")
    assert browser.js(_text("#answer-text")) == (record["answer"] or "(no answer)")
    assert not browser.js("document.getElementById('status').classList.contains('error')")


def test_playground_reanswers_an_edit_beside_the_first_and_saves_it(server, browser, tmp_path):
    browser.open(server.url + "/")
    browser.set_files("#image", [str(first_images(server.world, 1)[0])])
    browser.wait("!document.getElementById('preview').hidden")
    record = _ask(browser, "Which city is this tower in?")
    # the page opens on the pipeline's template (evidence_short@1, loading its text): pick
    # another, then evidence_short@1 again, so the text edited below is the last one loaded
    browser.wait("document.getElementById('pg-text').value.includes('id: answer/evidence_short')")
    for ref in ("answer/evidence_fallback@1", "answer/evidence_short@1"):
        browser.js(
            f"(() => {{ const s = document.getElementById('pg-template'); s.value = '{ref}';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        template_id = ref.split("@")[0]
        browser.wait(f"document.getElementById('pg-text').value.includes('id: {template_id}')")
    browser.js(
        "const t = document.getElementById('pg-text');"
        f" t.value = t.value.replace({json.dumps(EDIT[0])}, {json.dumps(EDIT[1])})"
    )
    browser.js("document.getElementById('pg-run').click()")
    browser.wait("document.querySelectorAll('#pg-results .card').length === 2")
    cards = browser.js(
        "[...document.querySelectorAll('#pg-results .card')].map(c => ({"
        " draft: c.classList.contains('draft'), how: c.querySelector('.label').textContent,"
        " template: c.querySelector('.muted').textContent,"
        " answer: c.querySelector('.answer').textContent,"
        " prompt: c.querySelector('pre').textContent}))"
    )
    first, edited = cards
    assert (first["draft"], first["how"], first["template"]) == (
        False,
        "asked",
        "answer/evidence_short@1",
    )
    assert first["answer"] == (record["answer"] or "(no answer)")
    assert edited["draft"] and edited["how"] == "draft edited from answer/evidence_short@1"
    assert edited["template"].startswith("answer/evidence_short@")
    assert EDIT[1] in edited["prompt"] and "Which city is this tower in?" in edited["prompt"]
    assert f"Evidence ({record['retrieved'][0]['title']})" in edited["prompt"]
    # save the edit as a new version: written with its front matter, listed, selected
    browser.js("document.getElementById('pg-note').value = 'one-word answers'")
    browser.js("document.getElementById('pg-save').click()")
    status = browser.wait(
        "(() => { const s = document.getElementById('pg-status').textContent;"
        " return s.startsWith('saved as') || s.includes('error') ? s : ''; })()"
    )
    ref = status.removeprefix("saved as ")
    version = int(ref.rsplit("@", 1)[1])
    saved = server.prompts / "answer" / "evidence_short" / f"v{version}.j2"
    text = saved.read_text()
    assert f"version: {version}\n" in text and "parent: answer/evidence_short@1\n" in text
    assert f"v{version}: one-word answers" in text and EDIT[1] in text
    assert browser.js("document.getElementById('pg-template').value") == ref
    browser.wait(f"document.getElementById('pg-text').value.includes('version: {version}')")
    shot = tmp_path / "serve.png"  # kept for a look when the test fails
    browser.screenshot(shot)
    with Image.open(io.BytesIO(shot.read_bytes())) as img:
        assert img.size[0] > 1000 and len(img.convert("RGB").getcolors(1 << 24) or ()) > 10


def test_api_docs_page_renders_offline(server, browser):
    browser.open(server.url + "/docs")
    routes = browser.js("[...document.querySelectorAll('.route h3')].map(h => h.textContent)")
    assert {"POST /v1/answer", "POST /v1/answer_batch", "POST /v1/reread", "GET /v1/health",
            "GET /v1/pipeline", "POST /v1/templates"} <= set(routes)  # fmt: skip
    body = browser.js(_text("#routes"))
    assert "image_url" in body and "question *" in body


def test_the_pages_loaded_nothing_from_elsewhere_and_logged_no_error(server, browser):
    # runs last in this module: every page above was loaded in this browser
    assert browser.requested(), "no request was recorded"
    outside = [
        u for u in browser.requested() if not u.startswith((server.url, "data:", "blob:", "about:"))
    ]
    assert outside == []
    assert browser.problems() == []
