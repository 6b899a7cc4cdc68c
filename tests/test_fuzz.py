"""Fuzzing every endpoint from the app's own OpenAPI schema (schemathesis).

The endpoints are read from the schema, not listed here, so an endpoint added later is
fuzzed too. Each gets requests that fit its schema (positive) and requests that break
it (negative: wrong types, out-of-range numbers, missing fields, bodies that are not
JSON), sent to a real uvicorn server on the real MNIST. No answer may be a 5xx, and the
server must still answer afterwards.

State matters to the write endpoints (pause, resume, stop, step, hyperparameters), so
each request is sent with the server in a drawn state: no active run, a run training,
or a paused one; path parameters naming a run are half the time a real run's id. After
each request any active run is stopped and its thread awaited, so the runs the fuzzer
starts (epochs=1000 on 60,000 images, say) cost a few batches each.

Prints the number of requests per endpoint and mode and the status codes they got.
CNN_LIVE_FUZZ_EXAMPLES sets the examples per endpoint and mode (default 8, which keeps
the whole suite within CI's time; more for a deeper search)."""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest
import requests  # schemathesis's own HTTP client
import schemathesis  # the `test` extra installs it
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.security import SAFE_METHODS, required_content_type
from server_helpers import ACTIVE_STATES, LiveServer, make_app, stop_every_run, wait_for

EXAMPLES = int(os.environ.get("CNN_LIVE_FUZZ_EXAMPLES", "8"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
STATES = ("no run", "running", "paused")
# The run that a state of "running" or "paused" starts: long (stopped after the
# request), made of tiny steps so that pausing and stopping take effect at once.
BACKGROUND_RUN = {"preset": "seed", "epochs": 1000, "train_size": 200, "test_size": 50}
KNOWN_RUN = {"preset": "default", "epochs": 1, "train_size": 500, "test_size": 200}


@pytest.fixture(scope="module")
def server(mnist_dir, tmp_path_factory):
    app = make_app(mnist_dir, runs_dir=str(tmp_path_factory.mktemp("fuzz-runs")))
    with LiveServer(app) as live:
        yield live


# -- the server's state around each request ------------------------------------------------

def settle(server: LiveServer) -> None:
    """Stop whatever runs are queued or active and wait for their workers to end."""
    stop_every_run(server.manager)


def enter(server: LiveServer, state: str) -> None:
    if state == "no run":
        return
    response = requests.post(server.url + "/api/runs", json=BACKGROUND_RUN, timeout=30)
    assert response.status_code == 201, response.text
    wait_for(lambda: server.manager.status()["step"] > 0, timeout=30, what="training to start")
    if state == "paused":
        assert requests.post(server.url + "/api/runs/current/pause", json={}, timeout=30).ok


def finished_run(server: LiveServer) -> str:
    """A run that finished an epoch (confusion cells, metrics to read): its id."""
    response = requests.post(server.url + "/api/runs", json=KNOWN_RUN, timeout=30)
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    run = server.manager.runs[run_id]
    wait_for(lambda: run.state not in ACTIVE_STATES, timeout=60, what="the known run to end")
    settle(server)  # its thread too
    assert run.state == "finished" and run.epochs
    return run_id


# -- sending a case ----------------------------------------------------------------------------

def streams(operation) -> bool:
    """Whether the operation answers with an endless event stream."""
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (answer or {}).get("content", {})
               for answer in responses.values())


def takes_input(operation) -> bool:
    """Whether a request to it can be wrong at all (parameters or a body)."""
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


RESET = 0  # tallied in place of a status: the server closed the connection


def send(session: requests.Session, case, base_url: str, stream: bool,
         max_body: int) -> int:
    """The case sent over HTTP; its status code. A stream is closed after its start.

    A body over the server's limit is answered 413 and the connection closed while the
    client may still be sending it: the kernel then resets the connection, and the
    client can lose the answer, or the end of it after its head (HTTP allows a server to
    close there). That is RESET; a reset for any other request fails the test."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    if kwargs["method"].upper() not in SAFE_METHODS:
        # A write must declare its type, also without a body (CrossSiteGuard): say it as
        # the page does, unless the case chose a type itself.
        path = kwargs["url"].removeprefix(base_url).partition("?")[0]
        kwargs["headers"].setdefault("Content-Type", required_content_type(path))
    try:
        with session.request(**kwargs, stream=stream, timeout=60) as response:
            if stream and response.status_code == 200:
                next(response.iter_content(256), None)  # the `connected` comment
            return response.status_code
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        if body_size(kwargs) > max_body:
            return RESET
        raise


def body_size(kwargs: dict) -> int:
    """About how many bytes the request's body is (its JSON, or its data as it is)."""
    if kwargs.get("json") is not None:
        return len(json.dumps(kwargs["json"]).encode())
    data = kwargs.get("data") or b""
    return len(data.encode() if isinstance(data, str) else data) \
        if isinstance(data, (str, bytes)) else 0


# -- the test ----------------------------------------------------------------------------------

def test_fuzzing_every_endpoint_from_the_schema_gives_no_server_error(server, capsys):
    known = finished_run(server)
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    session = requests.Session()
    statuses: dict[tuple[str, str], collections.Counter] = {}
    errors: list[str] = []
    unsatisfiable: list[str] = []

    for operation in operations:
        stream = streams(operation)
        names_a_run = any(p.name == "run_id" for p in operation.iter_parameters())
        for mode in MODES if takes_input(operation) else MODES[:1]:
            tally = statuses.setdefault((operation.label, mode.value), collections.Counter())

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode),
                   state=st.sampled_from(STATES), real_run=st.booleans())
            def fuzz(case, state, real_run):
                if names_a_run and real_run and mode is GenerationMode.POSITIVE:
                    case.path_parameters = {**(case.path_parameters or {}), "run_id": known}
                enter(server, state)
                try:
                    status = send(session, case, server.url, stream,
                                  server.app.state.settings.max_body_bytes)
                finally:
                    settle(server)
                tally[status] += 1
                if status >= 500:
                    errors.append(f"{status} in state {state!r}: {case.as_curl_command()}")

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing to get wrong (no parameters, no body): no negative cases.
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request"
                unsatisfiable.append(operation.label)

    health = requests.get(server.url + "/healthz", timeout=10)
    with capsys.disabled():
        total = sum(sum(counter.values()) for counter in statuses.values())
        print(f"\nfuzzed {len(operations)} operations from the OpenAPI schema, {total} requests "
              f"(up to {EXAMPLES} per operation and mode):")
        for (label, mode), counter in statuses.items():
            codes = ", ".join(f"{code}: {n}" for code, n in sorted(counter.items()))
            print(f"  {label:45s} {mode:8s} {sum(counter.values()):4d}  {codes}")
        print(f"  (no negative cases: the operations without parameters or body"
              f"{', and ' + ', '.join(unsatisfiable) if unsatisfiable else ''})")
        for error in errors[:10]:
            print("  SERVER ERROR:", error)
    assert errors == []
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert all(sum(statuses[(op.label, GenerationMode.POSITIVE.value)].values()) > 0
               for op in operations), "an operation got no request"
