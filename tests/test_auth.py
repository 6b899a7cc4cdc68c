"""Tests for access control (CNN_LIVE_TOKEN, CNN_LIVE_TOKEN_READ): with a token, every
route that changes state needs `Authorization: Bearer <token>` (401 with
WWW-Authenticate otherwise); reads stay open unless token_read, which closes every
/api/* route but /api/auth (the page, /static and /healthz stay open) and lets
/api/events take ?token=; tokens are compared with hmac.compare_digest; and a server
without a token is open as before. In process, with Starlette's TestClient.

Also, with `cnn-live serve` in a real process: a token that a browser could not send back
as it is (blank, edge spaces, not printable ASCII) is refused at start, and ?token=
never reaches the access log."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import hmac
import subprocess

import httpx
import pytest
from fastapi.testclient import TestClient

import app.dependencies
from app import cli as app_cli
from app.dependencies import TOKEN_NEEDED
from app.security import redact_query_tokens
from app.settings import Settings, SettingsError
from serve_process import REPO_ROOT, Serve, free_port
from server_helpers import (LONG_RUN, SHORT_RUN, fast_pings, make_app,  # noqa: F401
                            stream_events, wait_for, wait_for_run_end)

TOKEN = "s3cret-T0ken_with.symbols~"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}
WRITES = ["/api/runs", "/api/runs/current/pause", "/api/runs/current/resume",
          "/api/runs/current/stop", "/api/runs/current/step",
          "/api/runs/current/hyperparameters"]
READS = ["/api/status", "/api/runs", "/api/presets", "/api/model/info", "/api/auth"]
OPEN_ALWAYS = ["/", "/healthz", "/static/js/api.js"]


def header(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(mnist_dir):
    with TestClient(make_app(mnist_dir, token=TOKEN)) as client:
        yield client


@pytest.fixture
def read_client(mnist_dir):
    with TestClient(make_app(mnist_dir, token=TOKEN, token_read=True)) as client:
        yield client


# The same apps, one for all the tests of a kind that only send requests it refuses (each
# checks that nothing changed): one app each, not one a test.
@pytest.fixture(scope="module")
def refusing_client(mnist_dir):
    with TestClient(make_app(mnist_dir, token=TOKEN)) as client:
        yield client


@pytest.fixture(scope="module")
def refusing_read_client(mnist_dir):
    with TestClient(make_app(mnist_dir, token=TOKEN, token_read=True)) as client:
        yield client


def body_for(path: str) -> dict:
    """A JSON body for a write ({} for pause, resume, stop, step: every write is JSON)."""
    return {"/api/runs": LONG_RUN,
            "/api/runs/current/hyperparameters": {"learning_rate": 0.01}}.get(path, {})


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": TOKEN_NEEDED}
    assert response.headers["www-authenticate"] == "Bearer"


# -- settings ---------------------------------------------------------------------------------

def test_settings_read_the_token_from_the_environment():
    settings = Settings.from_env({"CNN_LIVE_TOKEN": "abc", "CNN_LIVE_TOKEN_READ": "true"})
    assert settings.token == "abc" and settings.token_read is True
    assert "abc" not in repr(settings)
    assert Settings.from_env({"CNN_LIVE_TOKEN_READ": "1"}).token_read is True
    empty = Settings.from_env({"CNN_LIVE_TOKEN": "", "CNN_LIVE_TOKEN_READ": "0"})
    assert empty.token is None and empty.token_read is False
    assert Settings.from_env({}).token is None


# -- writing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", WRITES)
@pytest.mark.parametrize("headers", [None, WRONG, {"Authorization": "Basic " + TOKEN},
                                     {"Authorization": "Bearer "}],
                         ids=["no-header", "wrong-token", "not-bearer", "empty"])
def test_a_write_without_the_right_token_gets_401(refusing_client, path, headers):
    client = refusing_client
    assert_unauthorized(client.post(path, json=body_for(path),
                                    headers=headers))
    assert client.get("/api/status").json()["state"] == "idle"
    assert client.get("/api/runs").json() == []


def test_the_right_token_starts_pauses_resumes_and_stops_a_run(client):
    response = client.post("/api/runs", json=LONG_RUN, headers=header(TOKEN))
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "running"
    for action, state in (("pause", "paused"), ("resume", "running")):
        response = client.post(f"/api/runs/current/{action}", json={}, headers=header(TOKEN))
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state
    response = client.post("/api/runs/current/stop", json={}, headers=header(TOKEN))
    assert response.status_code == 200 and response.json()["state"] in ("stopping", "finished")
    assert wait_for_run_end(client)["state"] == "finished"


def test_reads_and_predictions_stay_open_without_token_read(client):
    for path in READS + OPEN_ALWAYS:
        assert client.get(path).status_code == 200, path
    assert client.get("/api/auth").json() == {"write": True, "read": False}
    drawing = [[0] * 28 for _ in range(28)]
    for row in range(6, 22):
        drawing[row][14] = 255
    response = client.post("/api/predict", json={"image": drawing})
    assert response.status_code == 200, response.text
    with client.stream("GET", "/api/events") as response:
        assert response.status_code == 200


# -- reading, with token_read -----------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", p) for p in READS if p != "/api/auth"]
                         + [("POST", "/api/predict"), ("GET", "/api/events"),
                            ("GET", "/api/runs/run-1/metrics.csv"), ("POST", "/api/runs")])
def test_with_token_read_every_api_route_needs_the_token(refusing_read_client, method, path):
    read_client = refusing_read_client
    body = {"image": [[0] * 28] * 28} if path == "/api/predict" else \
        body_for(path) if method == "POST" else None
    assert_unauthorized(read_client.request(method, path, json=body))
    assert_unauthorized(read_client.request(method, path, json=body, headers=header("nope")))


def test_with_token_read_the_token_opens_the_api(read_client):
    for path in READS:
        assert read_client.get(path, headers=header(TOKEN)).status_code == 200, path
    assert read_client.get("/api/auth").json() == {"write": True, "read": True}


def test_with_token_read_the_page_static_files_and_health_stay_open(read_client):
    for path in OPEN_ALWAYS:
        response = read_client.get(path)
        assert response.status_code == 200, path
    assert read_client.get("/api/auth").status_code == 200  # the page asks it first


def test_with_token_read_the_event_stream_takes_the_token_as_a_query_parameter(
        read_client, fast_pings):
    response = read_client.post("/api/runs", json=SHORT_RUN, headers=header(TOKEN))
    assert response.status_code == 201, response.text
    records = stream_events(read_client, lambda r: r.event == "run", params={"token": TOKEN})
    assert records[-1].json()["run_id"] == response.json()["run_id"]
    records = stream_events(read_client, lambda r: r.event == "run", headers=header(TOKEN))
    assert records[-1].event == "run"
    assert_unauthorized(read_client.get("/api/events", params={"token": "nope"}))
    read_client.headers.update(AUTH)  # for wait_for_run_end's status polls
    wait_for_run_end(read_client)


# -- how tokens are compared, and no token at all ---------------------------------------------

def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(app.dependencies, "compare_digest", spy)
    assert_unauthorized(client.post("/api/runs/current/stop", json={}, headers=WRONG))
    assert calls == [(b"not-the-token", TOKEN.encode())]
    assert client.post("/api/runs/current/stop", json={},
                       headers=header(TOKEN)).status_code == 409
    assert calls[-1] == (TOKEN.encode(), TOKEN.encode())


def test_the_event_stream_query_token_is_compared_in_constant_time(read_client, monkeypatch):
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(app.dependencies, "compare_digest", spy)
    assert_unauthorized(read_client.get("/api/events", params={"token": "guess"}))
    assert calls == [(b"guess", TOKEN.encode())]


def test_without_a_token_everything_is_open_as_before(mnist_dir):
    with TestClient(make_app(mnist_dir)) as client:
        assert client.get("/api/auth").json() == {"write": False, "read": False}
        response = client.post("/api/runs", json=SHORT_RUN)
        assert response.status_code == 201, response.text
        wait_for_run_end(client)


def test_token_read_without_a_token_changes_nothing(mnist_dir):
    with TestClient(make_app(mnist_dir, token_read=True)) as client:
        assert client.get("/api/auth").json() == {"write": False, "read": False}
        assert client.get("/api/status").status_code == 200


# -- tokens a browser could not send back: refused at start -------------------------------------

BAD_TOKENS = {
    "   ": "only whitespace",
    "\t\n": "only whitespace",
    " padded-secret": "starts or ends with whitespace",
    "padded-secret\n": "starts or ends with whitespace",
    "s\u00e9cret-t\u00f6ken": "printable ASCII",
    "tab\tinside": "printable ASCII",
    "bell\x07inside": "printable ASCII",
}


@pytest.mark.parametrize("raw", list(BAD_TOKENS), ids=repr)
def test_a_token_a_browser_could_not_send_is_a_settings_error(raw):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"CNN_LIVE_TOKEN": raw})
    message = str(error.value)
    assert message.startswith("CNN_LIVE_TOKEN ") and BAD_TOKENS[raw] in message
    if raw.strip():
        assert raw.strip() not in message, "the message repeats the secret"


def test_tokens_with_inner_spaces_and_punctuation_are_kept_as_they_are():
    for raw in ("a b c", TOKEN, "~!@#$%^&*()_+{}|:<>?"):
        assert Settings.from_env({"CNN_LIVE_TOKEN": raw}).token == raw


@pytest.mark.parametrize("raw", ["   ", "s\u00e9cret", " padded"], ids=repr)
def test_serve_with_a_bad_token_exits_2_with_a_one_line_message(capsys, monkeypatch, raw):
    monkeypatch.setenv("CNN_LIVE_TOKEN", raw)
    assert app_cli.main(["serve", "--port", str(free_port())]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnn-live: error: CNN_LIVE_TOKEN ")


@pytest.mark.parametrize("raw", ["   ", "t\u00f6k\u00e9n-secret"], ids=["blank", "non-ascii"])
def test_cnn_live_serve_refuses_a_bad_token_before_it_listens(raw, mnist_dir):
    import os
    import sys

    env = {**os.environ, "CNN_LIVE_TOKEN": raw, "CNN_LIVE_DATA_DIR": str(mnist_dir),
           "CNN_LIVE_DOWNLOAD": "0"}
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnn-live: error: CNN_LIVE_TOKEN "), lines
    assert "Traceback" not in done.stderr and "Uvicorn running" not in done.stdout + done.stderr


# -- ?token= out of the access log ---------------------------------------------------------------

LOG_TOKEN = "query-T0ken-must-not-be-logged"


@pytest.mark.parametrize("text, expected", [
    ("/api/events?token=abc", "/api/events?token=[redacted]"),
    ("/api/events?x=1&Token=abc&y=2", "/api/events?x=1&Token=[redacted]&y=2"),
    ("/api/events?to%6Ben=abc", "/api/events?to%6Ben=[redacted]"),
    ("/api/events?access_token=abc&token", "/api/events?access_token=[redacted]&token=[redacted]"),
    ("/api/events?x=token", "/api/events?x=token"),
    ("/api/status", "/api/status"),
])
def test_query_tokens_are_redacted(text, expected):
    assert redact_query_tokens(text) == expected


def test_the_token_in_a_query_string_never_reaches_the_access_log(tmp_path, mnist_dir):
    with Serve(tmp_path, mnist_dir, "--log-level", "info", CNN_LIVE_TOKEN=LOG_TOKEN,
               CNN_LIVE_TOKEN_READ="1") as server:
        base = f"http://127.0.0.1:{server.port}"
        # As the page's EventSource sends it: the stream opens with the token.
        with httpx.stream("GET", base + "/api/events", params={"token": LOG_TOKEN},
                          timeout=10) as response:
            assert response.status_code == 200
            next(response.iter_bytes())
        for query in (f"?token={LOG_TOKEN}", f"?x=1&Token={LOG_TOKEN}&y=2",
                      f"?to%6Ben={LOG_TOKEN}", f"?access_token={LOG_TOKEN}"):
            status, _ = server.send("GET", "/api/status" + query)
            assert status == 401  # /api/status takes the header only; logged all the same
        status, _ = server.send("GET", "/api/events?token=a-wrong-guess")
        assert status == 401
        assert server.terminate() == 0
    log = server.log()
    assert LOG_TOKEN not in log and "a-wrong-guess" not in log
    assert '"GET /api/events?token=[redacted] HTTP/1.1" 200' in log
    assert '"GET /api/status?x=1&Token=[redacted]&y=2 HTTP/1.1" 401' in log
    assert log.count("[redacted]") == 6


def test_the_token_stays_out_of_the_log_of_plain_uvicorn_too(tmp_path, mnist_dir):
    """`uvicorn app.main:app`, without cnn-live serve's logging setup."""
    import os
    import sys

    port, log_path = free_port(), tmp_path / "uvicorn.log"
    env = {**os.environ, "CNN_LIVE_TOKEN": LOG_TOKEN, "CNN_LIVE_TOKEN_READ": "1",
           "CNN_LIVE_DATA_DIR": str(mnist_dir), "CNN_LIVE_DOWNLOAD": "0",
           "CNN_LIVE_RUNS_DIR": str(tmp_path / "runs"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port",
                                    str(port)], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base + "/healthz"), 30, what="uvicorn to start")
        assert httpx.get(base + "/api/status", params={"token": LOG_TOKEN}).status_code == 401
    finally:
        process.terminate()
        process.wait(20)
    log = log_path.read_text()
    assert '"GET /api/status?token=[redacted] HTTP/1.1" 401' in log, log
    assert LOG_TOKEN not in log


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
