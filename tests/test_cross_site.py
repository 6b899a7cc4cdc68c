"""Requests from other sites and other host names (issue 11, "hostile web").

- In a real Chromium: a page of another origin (a second HTTP server on 127.0.0.1,
  opened as a cross-site name and as a same-site one on another port) tries every way a
  page can send a POST without the server's leave (plain forms in the three encodings,
  fetch with mode "no-cors", CORS fetch, sendBeacon) to pause, resume, stop and step the
  run, change its hyperparameters, start a run and upload a model, with and without a
  token on the server. Each request is seen arriving (or stopped by the browser's CORS
  preflight) and refused, and from the server's side nothing changed. A DNS-rebinding
  page (another name for 127.0.0.1) gets 403 for everything. The server's own page still
  starts, pauses, resumes, steps and stops runs.
- In process: the Host allow-list (CNN_LIVE_ALLOWED_HOSTS), the Origin and
  Sec-Fetch-Site rules, the 415 for state changes that do not declare JSON (or
  application/octet-stream for a model file), and the settings' validation.

The browser tests need the system Chromium and Playwright; without them they are skipped
(they fail under CNN_LIVE_REQUIRE_BROWSER=1, as in CI). The rest always runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.security import (HostAllowList, host_name, parse_allowed_hosts, parse_allowed_origins,
                          required_content_type)
from app.settings import Settings, SettingsError
from cnn.model import Model

sys.path.insert(0, str(Path(__file__).parent))
from http_folder import serve_folder  # noqa: E402
from server_helpers import (LONG_RUN, LiveServer, make_app, start_run, unfold,  # noqa: E402
                            wait_for, wait_for_run_end)

CHROMIUM = Path("/usr/lib/chromium/chromium")
ATTACKER_NAME, REBINDING_NAME = "attacker.example", "evil.example"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Off the network, but two names for 127.0.0.1: another site, and a rebinding one.
    f"--host-resolver-rules=MAP {ATTACKER_NAME} 127.0.0.1, MAP {REBINDING_NAME} 127.0.0.1, "
    "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
TOKEN = "cross-site-test-token"
SHORT_RUN = {"preset": "seed", "epochs": 1, "train_size": 200, "test_size": 100}
SMALL_SPEC = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
# What the attacking page sends to each route that changes state (None: no body).
ATTACKS = {
    "/api/runs/current/pause": None,
    "/api/runs/current/resume": None,
    "/api/runs/current/stop": None,
    "/api/runs/current/step": None,
    "/api/runs/current/hyperparameters": {"learning_rate": 0.5, "momentum": 0.9},
    "/api/runs": {"preset": "seed", "epochs": 1, "train_size": 100, "test_size": 100},
    "/api/model": "model.npz",  # the file's bytes
}
# How the page sends them: these reach the server (and must be refused there)...
SENT = ("form-urlencoded", "form-text-plain", "form-multipart", "no-cors", "no-cors-typed",
        "no-cors-empty", "cors-simple", "beacon")
# ...and these need a CORS preflight, which the server never grants: only OPTIONS arrives.
PREFLIGHTED = ("cors-typed", "cors-with-token")
WRITES = [path for path in ATTACKS if path != "/api/model"]


# -- the attacking page ----------------------------------------------------------------------

ATTACK_PAGE = r"""<!doctype html>
<meta charset="utf-8">
<title>A page of another site</title>
<h1>You won a prize</h1>
<script>
// Every way a page may send a POST to another origin without that origin's leave.
function sink() {
  const frame = document.createElement('iframe');
  frame.name = 'sink-' + Math.random().toString(36).slice(2);
  document.body.append(frame);
  return frame;
}

function field(form, name, value) {
  const input = document.createElement('input');
  input.type = 'hidden';
  input.name = name;
  input.value = value;
  form.append(input);
}

function fileField(form, bytes) {
  const input = document.createElement('input');
  input.type = 'file';
  input.name = 'file';
  const files = new DataTransfer();
  files.items.add(new File([bytes], 'model.npz', { type: 'application/octet-stream' }));
  input.files = files.files;
  form.append(input);
}

async function submitForm(action, enctype, fill) {
  const frame = sink();
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  form.enctype = enctype;
  form.target = frame.name;
  fill(form);
  document.body.append(form);
  const done = new Promise((resolve) => {
    frame.addEventListener('load', () => resolve('submitted'), { once: true });
    setTimeout(() => resolve('submitted, no load event'), 3000);
  });
  form.submit();
  const outcome = await done;
  form.remove();
  frame.remove();
  return outcome;
}

async function tryFetch(url, init) {
  try {
    const response = await fetch(url, init);
    return `answered (${response.type}, status ${response.status})`;
  } catch (error) {
    return `stopped by the browser: ${error.message}`;
  }
}

// JSON smuggled through a text/plain form: name + "=" + value reads as JSON.
function textPlainJson(text) {
  const open = text.slice(0, -1) + (text.length > 2 ? ', ' : '');
  return [open + '"pad": "', '"}'];
}

window.attack = async ({ url, json, modelUrl, token }) => {
  const bytes = modelUrl ? new Uint8Array(await (await fetch(modelUrl)).arrayBuffer()) : null;
  const text = json ?? '{}';
  const payload = bytes ?? text;
  const typed = bytes ? 'application/octet-stream' : 'application/json';
  const via = (how) => `${url}?via=${how}`;
  const outcomes = {};
  outcomes['form-urlencoded'] = await submitForm(via('form-urlencoded'),
    'application/x-www-form-urlencoded', (form) => field(form, 'body', text));
  outcomes['form-text-plain'] = await submitForm(via('form-text-plain'), 'text/plain',
    (form) => field(form, ...textPlainJson(text)));
  outcomes['form-multipart'] = await submitForm(via('form-multipart'), 'multipart/form-data',
    (form) => (bytes ? fileField(form, bytes) : field(form, 'body', text)));
  outcomes['no-cors'] = await tryFetch(via('no-cors'),
    { method: 'POST', mode: 'no-cors', body: payload });
  outcomes['no-cors-typed'] = await tryFetch(via('no-cors-typed'),
    { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': typed }, body: payload });
  outcomes['no-cors-empty'] = await tryFetch(via('no-cors-empty'),
    { method: 'POST', mode: 'no-cors' });
  outcomes['cors-simple'] = await tryFetch(via('cors-simple'),
    { method: 'POST', mode: 'cors', body: payload });
  outcomes['cors-typed'] = await tryFetch(via('cors-typed'),
    { method: 'POST', mode: 'cors', headers: { 'Content-Type': typed }, body: payload });
  outcomes['cors-with-token'] = await tryFetch(via('cors-with-token'), {
    method: 'POST', mode: 'cors', body: payload,
    headers: { 'Content-Type': typed, Authorization: `Bearer ${token || 'guess'}` },
  });
  outcomes.beacon = navigator.sendBeacon(via('beacon'), new Blob([payload], { type: 'text/plain' }))
    ? 'queued' : 'refused by the browser';
  return outcomes;
};
</script>
"""


class Recorder:
    """Pure ASGI middleware, outermost: every request the server got, with the status
    it answered (so that a refusal by the server is told apart from one by the browser)."""

    def __init__(self, app, seen: list) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = {"method": scope["method"], "path": scope["path"],
                 "query": scope["query_string"].decode(), "status": None,
                 "headers": {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]},
                 "answer_headers": {}}
        self.seen.append(entry)

        async def recording_send(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                entry["answer_headers"] = {k.decode().lower(): v.decode("latin-1")
                                           for k, v in message.get("headers", [])}
            await send(message)

        await self.app(scope, receive, recording_send)


# -- fixtures --------------------------------------------------------------------------------

def _why_no_browser() -> str | None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
        import pytest_playwright  # noqa: F401
    except ImportError as exc:
        return f"Playwright is not installed ({exc})"
    return None


@pytest.fixture(scope="module")
def chromium(request):
    """The system Chromium with two extra names for 127.0.0.1 (pytest-playwright's
    `playwright`; a browser of this module's own, for its resolver rules)."""
    why = _why_no_browser()
    if why is not None:
        if os.environ.get("CNN_LIVE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CNN_LIVE_REQUIRE_BROWSER=1 but the browser cannot run: {why}")
        pytest.skip(f"browser test skipped: {why}")
    browser = request.getfixturevalue("playwright").chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Target:
    """The server under attack: a real uvicorn on 127.0.0.1, what it received, and a
    script's client for it (no Origin, no Sec-Fetch-Site: scripts pass, with the token)."""

    def __init__(self, live: LiveServer, seen: list, token: str | None) -> None:
        self.live, self.seen, self.token = live, seen, token
        self.url = live.url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api = httpx.Client(base_url=live.url, headers=headers, timeout=10)

    def attacks(self, via_prefix: str = "via=") -> list[dict]:
        return [entry for entry in list(self.seen) if entry["query"].startswith(via_prefix)]

    def state(self) -> dict:
        """What an attack could change: the run's status and steering, the runs, the
        answering model."""
        status = self.api.get("/api/status").json()
        runs = self.api.get("/api/runs").json()
        model = self.api.get("/api/model/info")
        return {"state": status["state"], "run_id": status["run_id"],
                "learning_rate": status["learning_rate"], "momentum": status["momentum"],
                "runs": [(run["run_id"], run["state"], len(run["epochs"])) for run in runs],
                "model": model.json() if model.status_code == 200 else model.status_code}


@pytest.fixture(params=[None, TOKEN], ids=["no-token", "token"])
def target(request, mnist_dir, tmp_path):
    seen: list = []
    app = make_app(mnist_dir, token=request.param, runs_dir=str(tmp_path / "runs"))
    app.add_middleware(Recorder, seen=seen)
    with LiveServer(app) as live:
        target = Target(live, seen, request.param)
        yield target
        manager = live.manager
        if manager.current is not None and manager.current.state in ("running", "paused"):
            target.api.post("/api/runs/current/stop", json={})
        wait_for_run_end(target.api)
        target.api.close()


@pytest.fixture
def attacker_folder(tmp_path):
    folder = tmp_path / "attacker"
    folder.mkdir()
    (folder / "attack.html").write_text(ATTACK_PAGE)
    (folder / "model.npz").write_bytes(Model(SMALL_SPEC, seed=7).to_bytes({"preset": "evil"}))
    with serve_folder(folder) as base:
        yield base


@pytest.fixture
def context(chromium, target):
    """A fresh browser profile; requested after `target`, so it closes first."""
    context = chromium.new_context()
    yield context
    context.close()


# -- the attack, and what must hold after it -------------------------------------------------

def attack_all(page, target: Target) -> dict:
    """Every route of ATTACKS, every way; returns what the page saw, by route. The routes
    are attacked all at once (each its every way, in turn): each attack is a request of
    its own, seen and checked by itself, and together they take a second, not seven.
    Forgets what the server saw before, so that what it saw after is this page's."""
    target.seen.clear()
    outcomes = page.evaluate("(attacks) => Promise.all(attacks.map(window.attack))", [{
        "url": target.url + path,
        "json": None if body is None or body == "model.npz" else json.dumps(body),
        "modelUrl": "model.npz" if body == "model.npz" else None,
        "token": target.token,
    } for path, body in ATTACKS.items()])
    seen_by_page = dict(zip(ATTACKS, outcomes))
    expected = len(ATTACKS) * len(SENT)
    wait_for(lambda: len([e for e in target.attacks() if e["method"] == "POST"]) >= expected,
             10, what=f"the {expected} attacking POSTs to arrive (beacons are sent late)")
    return seen_by_page


def assert_every_attack_was_refused_by_the_server(target: Target, attacker_origin: str) -> None:
    arrived = target.attacks()
    for path in ATTACKS:
        for how in SENT:
            posts = [e for e in arrived if e["path"] == path and e["query"] == f"via={how}"
                     and e["method"] == "POST"]
            assert len(posts) == 1, f"{how} to {path}: {len(posts)} POSTs arrived"
            (post,) = posts
            assert post["status"] == 403, f"{how} to {path}: answered {post['status']}"
            assert post["headers"].get("origin") == attacker_origin, post["headers"]
            assert post["headers"].get("sec-fetch-site") in ("cross-site", "same-site")
            # The second lock: none of them could declare the type a state change needs.
            declared = post["headers"].get("content-type", "").partition(";")[0].strip()
            assert declared != required_content_type(path), (how, path, declared)
        for how in PREFLIGHTED:
            requests = [e for e in arrived if e["path"] == path and e["query"] == f"via={how}"]
            assert [e["method"] for e in requests] == ["OPTIONS"], (how, path, requests)
            assert requests[0]["status"] >= 400
            assert "access-control-allow-origin" not in requests[0]["answer_headers"]
    # No answer ever let the attacking page read it.
    assert not any("access-control-allow-origin" in e["answer_headers"] for e in arrived)


def assert_the_page_could_not_read_any_answer(seen_by_page: dict) -> None:
    for path, outcomes in seen_by_page.items():
        for how, outcome in outcomes.items():
            if how.startswith("cors"):
                assert outcome.startswith("stopped by the browser"), (path, how, outcome)
            elif how.startswith("no-cors"):
                assert outcome == "answered (opaque, status 0)", (path, how, outcome)


@pytest.fixture
def attacker_pages(context, attacker_folder):
    """The attacking page, twice: on another site (another name for 127.0.0.1), and on
    the same site on another port (127.0.0.1 too: another origin, which is all it takes).
    Each test attacks from both, one after the other, each attack checked on its own:
    [(page, origin)]."""
    pages = []
    for base in (attacker_folder.replace("127.0.0.1", ATTACKER_NAME), attacker_folder):
        page = context.new_page()
        page.goto(base + "attack.html")
        pages.append((page, base.rstrip("/")))
    return pages


def test_another_sites_page_cannot_steer_a_running_run_or_replace_the_model(
        target, attacker_pages):
    start_run(target.api, **LONG_RUN)
    wait_for(lambda: target.api.get("/api/status").json()["step"] > 0, 30,
             what="training to start")
    before = target.state()
    assert before["state"] == "running"

    for page, origin in attacker_pages:
        seen_by_page = attack_all(page, target)

        after = target.state()
        assert after["state"] == "running", "the run was paused or stopped from another site"
        assert (after["run_id"], after["learning_rate"], after["momentum"]) == \
            (before["run_id"], before["learning_rate"], before["momentum"])
        assert [run[0] for run in after["runs"]] == [before["run_id"]], "a run was started"
        assert after["model"] == 404 or after["model"]["source"] != "uploaded"
        assert_every_attack_was_refused_by_the_server(target, origin)
        assert_the_page_could_not_read_any_answer(seen_by_page)


def test_another_sites_page_cannot_start_step_or_upload_after_a_finished_run(
        target, attacker_pages):
    start_run(target.api, **SHORT_RUN)
    wait_for_run_end(target.api)
    before = target.state()
    assert before["state"] == "finished" and before["model"]["source"] == "finished"

    for page, origin in attacker_pages:
        attack_all(page, target)
        page.wait_for_timeout(300)  # a step or a run, had one got through, would have begun

        assert target.state() == before, "a run was started, stepped or the model replaced"
        assert_every_attack_was_refused_by_the_server(target, origin)


def test_a_paused_run_cannot_be_resumed_or_stepped_from_another_site(target, attacker_pages):
    start_run(target.api, **LONG_RUN)
    wait_for(lambda: target.api.get("/api/status").json()["step"] > 0, 30,
             what="training to start")
    assert target.api.post("/api/runs/current/pause", json={}).status_code == 200
    wait_for(lambda: target.api.get("/api/status").json()["state"] == "paused", 10,
             what="the pause")
    before, step = target.state(), target.api.get("/api/status").json()["step"]

    for page, origin in attacker_pages:
        attack_all(page, target)
        page.wait_for_timeout(300)  # a resume or a step, had one got through, would show

        assert target.state() == before
        assert target.api.get("/api/status").json()["step"] == step, "training went on"
        assert_every_attack_was_refused_by_the_server(target, origin)


def test_a_dns_rebinding_page_gets_403_for_the_page_and_every_request(target, context):
    """The browser thinks it is on evil.example (resolved to 127.0.0.1, as a rebinding
    attack makes it): to the browser its requests are same-origin, so only the Host
    header gives it away."""
    start_run(target.api, **LONG_RUN)
    wait_for(lambda: target.api.get("/api/status").json()["step"] > 0, 30,
             what="training to start")
    before = target.state()
    port = target.url.rsplit(":", 1)[1]
    page = context.new_page()
    answer = page.goto(f"http://{REBINDING_NAME}:{port}/")
    assert answer.status == 403
    assert "CNN_LIVE_ALLOWED_HOSTS" in page.content()

    answers = page.evaluate("""async (token) => {
        const headers = { 'Content-Type': 'application/json' };
        if (token) headers.Authorization = `Bearer ${token}`;
        const answers = {};
        for (const action of ['pause', 'stop']) {
            const response = await fetch(`/api/runs/current/${action}?via=rebinding`,
                                         { method: 'POST', headers, body: '{}' });
            answers[action] = [response.status, (await response.json()).detail];
        }
        answers.status = (await fetch('/api/status?via=rebinding')).status;
        answers.events = (await fetch('/api/events?via=rebinding')).status;
        return answers;
    }""", target.token)
    for name in ("pause", "stop"):
        status, detail = answers[name]
        assert status == 403 and "CNN_LIVE_ALLOWED_HOSTS" in detail, answers
    assert answers["status"] == answers["events"] == 403
    after = target.state()
    assert after["state"] == "running" and after["run_id"] == before["run_id"]
    assert all(e["status"] == 403 and e["headers"]["host"] == f"{REBINDING_NAME}:{port}"
               for e in target.attacks())


# -- the server's own page still works ----------------------------------------------------------

def give_token_if_asked(page, token: str | None) -> None:
    if token:
        page.locator("#token-dialog").wait_for(state="visible", timeout=10_000)
        page.fill("#token-input", token)
        page.click("#token-submit")


def test_the_servers_own_page_still_starts_pauses_resumes_steps_and_stops(target, context):
    from playwright.sync_api import expect

    page = context.new_page()
    page.goto(target.url + "/")
    expect(page.locator("#connection")).to_have_class(re.compile(r"\bconnected\b"),
                                                      timeout=10_000)
    page.select_option("#preset", "seed")
    unfold(page, "#advanced")  # the settings beyond the preset are folded away
    page.fill("#epochs", "200")
    page.click("#start")
    give_token_if_asked(page, target.token)
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    wait_for(lambda: target.api.get("/api/status").json()["step"] > 0, 30,
             what="training to start")  # a step needs a run that has begun training
    page.click("#pause")
    expect(page.locator("#state")).to_have_text("paused", timeout=10_000)
    page.wait_for_timeout(300)  # an epoch that ended as the pause came is recorded
    epochs = len(target.api.get("/api/runs").json()[0]["epochs"])
    unfold(page, "#steer")
    page.click("#step-epoch")
    wait_for(lambda: len(target.api.get("/api/runs").json()[0]["epochs"]) > epochs, 30,
             what="the stepped epoch")
    expect(page.locator("#state")).to_have_text("paused", timeout=10_000)
    page.click("#pause")  # labelled Resume
    expect(page.locator("#state")).to_have_text("running", timeout=10_000)
    page.fill("#steer-lr", "0.25")
    page.click("#steer-apply")
    wait_for(lambda: target.api.get("/api/status").json()["learning_rate"] == 0.25, 10,
             what="the new learning rate")
    page.click("#stop")
    expect(page.locator("#state")).to_have_text("finished", timeout=10_000)
    (run,) = target.api.get("/api/runs").json()
    assert run["outcome"] == "stopped"

    # What the page sent: JSON (a bodiless call too), from its own origin.
    posts = [e for e in target.seen if e["method"] == "POST"]
    # The page steers the run it follows by its id.
    sent = {e["path"].replace(run["run_id"], "ID") for e in posts}
    assert sent >= {"/api/runs", "/api/runs/ID/pause", "/api/runs/ID/resume",
                    "/api/runs/ID/step", "/api/runs/ID/hyperparameters", "/api/runs/ID/stop"}
    page_posts = [e for e in posts if "origin" in e["headers"]]
    assert page_posts and all(
        e["headers"]["origin"] == target.url and e["headers"]["sec-fetch-site"] == "same-origin"
        and e["headers"]["content-type"].startswith("application/json") for e in page_posts)
    assert all(e["status"] < 400 for e in page_posts if e["status"] != 401), page_posts
    page.close()


# -- in process: the Host allow-list ------------------------------------------------------------

@pytest.fixture(scope="module")
def client(mnist_dir):
    """One app for the module's in-process tests that change nothing (requests it refuses,
    reads): each checks that nothing changed, so one app serves them all."""
    with TestClient(make_app(mnist_dir)) as client:
        yield client


@pytest.fixture
def run_client(mnist_dir):
    """An app of the test's own, for a test that starts a run."""
    with TestClient(make_app(mnist_dir)) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/api/status", "/api/events", "/healthz",
                                  "/static/js/api.js", "/docs", "/no-such-page"])
def test_a_host_not_allowed_gets_403_naming_the_setting_on_every_route(client, path):
    response = client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 403
    assert "evil.example" in response.json()["detail"]
    assert "CNN_LIVE_ALLOWED_HOSTS" in response.json()["detail"]
    assert "content-security-policy" in response.headers  # the guard sits inside


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "testserver.evil", "[::2]:80",
                                  "", "local host", "[::1", "localhost:http", "10.0.0.1"])
def test_other_hosts_and_junk_are_refused(client, host):
    assert client.get("/api/status", headers={"Host": host}).status_code == 403
    response = client.post("/api/runs/current/stop", json={}, headers={"Host": host})
    assert response.status_code == 403


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LOCALHOST:1", "127.0.0.1",
                                  "127.0.0.1:8000", "127.8.9.10", "[::1]", "[::1]:8000",
                                  "[0:0:0:0:0:0:0:1]:80", "testserver"])
def test_local_hosts_are_allowed(client, host):
    assert client.get("/api/status", headers={"Host": host}).status_code == 200
    assert client.get("/", headers={"Host": host}).status_code == 200


def test_the_default_allows_only_local_names_and_the_bind_address():
    local = HostAllowList.for_server("127.0.0.1", ())
    assert local.allows("localhost") and local.allows("127.0.0.1") and local.allows("::1")
    assert not local.allows("testserver") and not local.allows("evil.example")
    named = HostAllowList.for_server("cnn.lan", ())
    assert named.allows("cnn.lan") and not named.allows("other.lan")
    for everywhere in ("0.0.0.0", "::", ""):  # listening everywhere names no host
        assert HostAllowList.for_server(everywhere, ()).names == {"localhost"}
    lan = HostAllowList.for_server("192.168.1.5", ())
    assert lan.allows("192.168.1.5") and not lan.allows("192.168.1.6")
    assert HostAllowList.for_server("2001:DB8::1", ()).allows(host_name("[2001:db8::1]:80"))
    assert HostAllowList.for_server("0.0.0.0", ("*",)).allows("anything.example")
    assert not HostAllowList.for_server("0.0.0.0", ("*",)).names - {"localhost"}


def test_configured_hosts_are_allowed_and_star_allows_any(mnist_dir):
    with TestClient(make_app(mnist_dir, allowed_hosts=("cnn.example.org", "testserver"))) as c:
        assert c.get("/api/status", headers={"Host": "cnn.example.org:443"}).status_code == 200
        assert c.get("/api/status", headers={"Host": "evil.example"}).status_code == 403
    with TestClient(make_app(mnist_dir, allowed_hosts=("*",))) as c:
        assert c.get("/api/status", headers={"Host": "anything.example"}).status_code == 200


def test_a_server_bound_everywhere_answers_local_names_only(mnist_dir):
    with TestClient(make_app(mnist_dir, host="0.0.0.0", allowed_hosts=())) as c:
        assert c.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "192.168.1.5:8000"}).status_code == 403
        assert c.get("/healthz", headers={"Host": "testserver"}).status_code == 403


def test_a_real_server_refuses_a_foreign_host_and_answers_its_own(mnist_dir):
    with LiveServer(make_app(mnist_dir, allowed_hosts=())) as live:
        port = live.url.rsplit(":", 1)[1]
        assert httpx.get(live.url + "/healthz").status_code == 200
        assert httpx.get(live.url + "/", headers={"Host": f"localhost:{port}"}).status_code == 200
        refused = httpx.get(live.url + "/", headers={"Host": f"evil.example:{port}"})
        assert refused.status_code == 403 and "CNN_LIVE_ALLOWED_HOSTS" in refused.text


@pytest.mark.parametrize("raw, expected", [
    ("cnn.example.org", ("cnn.example.org",)),
    (" A.Example , b.example ", ("a.example", "b.example")),
    ("[::1],::2,10.0.0.7", ("::1", "::2", "10.0.0.7")),
    ("*", ("*",)),
])
def test_allowed_hosts_are_read_from_the_environment(raw, expected):
    assert Settings.from_env({"CNN_LIVE_ALLOWED_HOSTS": raw}).allowed_hosts == expected
    assert parse_allowed_hosts(raw) == expected


@pytest.mark.parametrize("raw, words", [
    ("a.example,,b.example", "empty entry"),
    ("a.example,", "empty entry"),
    ("http://a.example", "is a URL"),
    ("a.example/path", "is a URL"),
    ("a.example:8000", "leave the port out"),
    ("[::1]:8000", "leave the port out"),
    ("bad host", "not a host name"),
    ("-a.example", "not a host name"),
    ("exämple.org", "not a host name"),
])
def test_junk_in_allowed_hosts_is_a_settings_error(raw, words):
    with pytest.raises(SettingsError, match="CNN_LIVE_ALLOWED_HOSTS") as error:
        Settings.from_env({"CNN_LIVE_ALLOWED_HOSTS": raw})
    assert words in str(error.value)


def test_unset_or_blank_allowed_hosts_add_nothing():
    assert Settings.from_env({}).allowed_hosts == ()
    assert Settings.from_env({"CNN_LIVE_ALLOWED_HOSTS": "  "}).allowed_hosts == ()


def test_allowed_origins_are_read_and_checked():
    raw = "https://CNN.example.org, http://proxy.lan:8080, https://x.org:443"
    settings = Settings.from_env({"CNN_LIVE_ALLOWED_ORIGINS": raw})
    assert settings.allowed_origins == ("https://cnn.example.org", "http://proxy.lan:8080",
                                        "https://x.org")
    for junk in ("cnn.example.org", "https://cnn.example.org/path", "ftp://a.example", "null",
                 "https://a.example,", "https://a.example:99999"):
        with pytest.raises(SettingsError, match="CNN_LIVE_ALLOWED_ORIGINS"):
            Settings.from_env({"CNN_LIVE_ALLOWED_ORIGINS": junk})
    assert parse_allowed_origins("http://[::1]:8000") == ("http://[::1]:8000",)


def test_host_names_are_read_like_a_browser_writes_them():
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:80") == "::1" and host_name("[0::1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    for junk in ("", "::1", "[::1", "a b", "a.example:port", "[nope]", "a.example:80:80"):
        assert host_name(junk) is None, junk


# -- in process: Origin and Sec-Fetch-Site on state changes ---------------------------------------

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://attacker.example:8000"},
    {"Origin": "null"},  # sandboxed frames, file: pages
    {"Origin": "https://testserver"},  # another scheme is another origin
    {"Origin": "http://testserver:8080"},  # another port too
    {"Origin": "http://testserver", "Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://testserver, http://evil.example"},
], ids=lambda headers: " ".join(f"{k}={v}" for k, v in headers.items()))
@pytest.mark.parametrize("path", WRITES)
def test_a_state_change_from_another_origin_gets_403(client, path, headers):
    response = client.post(path, json=ATTACKS[path] or {}, headers=headers)
    assert response.status_code == 403, response.text
    assert "another" in response.json()["detail"]
    assert client.get("/api/status").json()["state"] == "idle"
    assert client.get("/api/runs").json() == []


def test_the_model_upload_from_another_origin_gets_403(client):
    before = client.get("/api/model/info").json()
    model = Model(SMALL_SPEC, seed=1).to_bytes()
    response = client.post("/api/model", content=model, headers={
        "Content-Type": "application/octet-stream", "Origin": "http://evil.example"})
    assert response.status_code == 403
    assert client.get("/api/model/info").json() == before


@pytest.mark.parametrize("headers", [
    {},  # a script
    {"Origin": "http://testserver"},
    {"Origin": "HTTP://TestServer:80"},  # the default port, any case
    {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},  # typed by the user
], ids=lambda headers: " ".join(f"{k}={v}" for k, v in headers.items()) or "script")
def test_a_state_change_from_the_servers_own_origin_or_a_script_passes(run_client, headers):
    response = run_client.post("/api/runs", json=SHORT_RUN, headers=headers)
    assert response.status_code == 201, response.text
    run_client.post("/api/runs/current/stop", json={})  # the 201 is what counts: train no more
    wait_for_run_end(run_client)


def test_an_allowed_origin_may_change_state(mnist_dir):
    app = make_app(mnist_dir, allowed_origins=("https://cnn.example.org",))
    with TestClient(app) as client:
        response = client.post("/api/runs", json=SHORT_RUN,
                               headers={"Origin": "https://cnn.example.org",
                                        "Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 201, response.text
        client.post("/api/runs/current/stop", json={})  # the 201 is what counts
        wait_for_run_end(client)
        assert client.post("/api/runs", json=SHORT_RUN, headers={
            "Origin": "https://other.example.org"}).status_code == 403


def test_reads_from_another_origin_are_answered_without_leave_to_read_them(client):
    response = client.get("/api/status", headers={"Origin": "http://evil.example",
                                                  "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_a_preflight_is_never_granted(client):
    response = client.options("/api/runs/current/stop", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers


# -- in process: state changes must declare their type ----------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx",
                                          "application/octet-stream",
                                          "application/json, text/plain"])
@pytest.mark.parametrize("path", WRITES + ["/api/predict"])
def test_a_state_change_that_is_not_declared_json_gets_415(client, path, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = "{}" if content_type is not None else None
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert "Content-Type: application/json" in detail and path in detail
    assert "content-security-policy" in response.headers
    assert client.get("/api/status").json()["state"] == "idle"


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain",
                                          "multipart/form-data; boundary=x"])
def test_a_model_upload_that_is_not_declared_binary_gets_415(client, content_type):
    before = client.get("/api/model/info").json()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/api/model", content=Model(SMALL_SPEC, seed=2).to_bytes(),
                           headers=headers)
    assert response.status_code == 415
    assert "application/octet-stream" in response.json()["detail"]
    assert client.get("/api/model/info").json() == before


def test_a_bodiless_control_declared_json_passes_with_or_without_a_body(run_client):
    start_run(run_client, **LONG_RUN)
    assert run_client.post("/api/runs/current/pause", headers=JSON).status_code == 200
    assert run_client.post("/api/runs/current/resume", content="{}", headers={
        "Content-Type": "Application/JSON; charset=utf-8"}).status_code == 200
    assert run_client.post("/api/runs/current/stop", json={}).status_code == 200
    wait_for_run_end(run_client)


def test_other_methods_need_the_type_too(client):
    for method in ("PUT", "PATCH", "DELETE"):
        response = client.request(method, "/api/runs/current/stop")
        assert response.status_code == 415, method
        assert client.request(method, "/api/runs/current/stop", headers={
            "Origin": "http://evil.example", **JSON}).status_code == 403
        # Declared and same-origin, the route itself answers: it has no such method.
        assert client.request(method, "/api/runs/current/stop", headers=JSON).status_code == 405
