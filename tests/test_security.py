"""Security headers: a strict Content-Security-Policy and friends on every response."""

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import make_app  # noqa: E402


@pytest.fixture
def client(mnist_dir):
    with TestClient(make_app(mnist_dir)) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/status", "/api/presets",
                                  "/static/js/main.js", "/static/favicon.svg", "/no-such-page"])
def test_every_response_carries_a_strict_content_security_policy(client, path):
    response = client.get(path)
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_error_answers_carry_the_headers_too(client):
    response = client.post("/api/runs", json={"preset": "nope"})
    assert response.status_code == 422
    assert "content-security-policy" in response.headers
    too_big = client.post("/api/predict", content=b"x" * (3 * 1024 * 1024),
                          headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    assert "content-security-policy" in too_big.headers


def test_the_event_stream_carries_the_headers(client):
    with client.stream("GET", "/api/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-security-policy" in response.headers


def test_only_the_api_docs_page_may_run_its_inline_script(client):
    policy = client.get("/docs").headers["content-security-policy"]
    assert "'unsafe-inline'" in policy and "unsafe-eval" not in policy


def test_the_page_has_no_inline_scripts_handlers_or_styles(client):
    html = client.get("/").text
    assert "<script>" not in html and " style=" not in html
    assert " onclick=" not in html and " onload=" not in html
    assert "<style" not in html


def test_the_pages_scripts_and_styles_are_compressed_and_answers_are_not(client):
    """/static is sent gzip-compressed to a browser that accepts it (with its security
    headers); API answers and the event stream are not compressed."""
    gzip = {"Accept-Encoding": "gzip"}
    for path in ("/static/dist/app.js", "/static/css/app.css"):
        response = client.get(path, headers=gzip)
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        # Sent compressed, read decoded (the bundle, 180 KB, goes in chunks: no length).
        assert response.num_bytes_downloaded < len(response.content) / 2
        assert response.headers["vary"] == "Accept-Encoding"
        assert "content-security-policy" in response.headers
    plain = client.get("/static/dist/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert "content-encoding" not in client.get("/api/presets", headers=gzip).headers
