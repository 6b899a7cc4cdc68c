"""Hostile numbers and JSON shapes, generated (hypothesis), sent to every endpoint that
takes a JSON body: never a 5xx, and every refusal short and never echoing the input.

Schemathesis (test_fuzz.py) sends what the OpenAPI schema allows or almost allows;
an adversary sends what JSON parsers allow: NaN and Infinity (Python's json reads
them), 1e309 (read as infinity), integers of thousands of digits, deep nesting,
100,000 unknown keys, megabyte keys. Each of these once made a 500, a 10 MB answer or
seconds of work on the event loop. The endpoints and their fields are read from the
app's own OpenAPI schema, so a field or an endpoint added later is covered too.

CNN_LIVE_HOSTILE_EXAMPLES sets the bodies per endpoint (default 60); the test prints
the requests sent and the statuses they got.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import make_app, stop_every_run  # noqa: E402

EXAMPLES = int(os.environ.get("CNN_LIVE_HOSTILE_EXAMPLES", "60"))
MAX_ERROR_BYTES = 4096  # a refusal says what is wrong in a few lines, whatever was sent


@dataclass(frozen=True)
class Literal:
    """JSON text written as is: numbers that json.dumps cannot make (1e309, 5000 digits)."""
    text: str


HOSTILE_NUMBERS = [Literal(text) for text in (
    "NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1e-400", "-0", "-0.0", "4.9e-324",
    "1.7976931348623157e308", "2147483648", "-2147483649", "9223372036854775808",
    "18446744073709551616", "1" + "0" * 400, "9" * 4000, "9" * 5000, "-" + "9" * 5000,
    "64.0", "1e2", "0.5", "1E+2")]
HOSTILE_STRINGS = ["", " ", "\u0000", "é", "\ud800", "x" * 100_000, "../../etc/passwd",
                   "<script>", "64", "true", "null", "NaN"]


def to_json(value) -> str:
    """JSON text of `value`, where a Literal stands for itself."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(key)) + ":" + to_json(item)
                              for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(to_json, value)) + "]"
    return json.dumps(value)


scalars = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(HOSTILE_STRINGS),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=50))
shapes = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=6),
                      max_leaves=40)


def deep(depth: int, opener: str) -> Literal:
    closer = {"[": "]", "{\"a\":": "}"}[opener]
    return Literal(opener * depth + "1" + closer * depth)


def many_keys(count: int) -> Literal:
    return Literal("{" + ",".join(f'"k{i}":{i}' for i in range(count)) + "}")


whole_bodies = st.sampled_from([
    deep(100, "["), deep(5000, "["), deep(100_000, "["), deep(5000, "{\"a\":"),
    many_keys(100_000), Literal('{"' + "k" * 1_000_000 + '":1}'), Literal("[]"),
    Literal("null"), Literal('"a string"'), Literal("{"), Literal("{}x"),
    Literal("\ufeff{}"), Literal("{\"a\":1,\"a\":2}")])


def bodies(fields: list[str]):
    """A body: the endpoint's own fields with hostile values (each field present or
    not, sometimes a stranger key), a hostile value at one field inside a list, or a
    hostile document whole."""
    named = st.fixed_dictionaries({}, optional={name: shapes for name in fields})
    with_stranger = st.builds(lambda body, key, value: {**body, key: value}, named,
                              st.text(min_size=1, max_size=20), shapes)
    return st.one_of(named, with_stranger, whole_bodies)


def json_endpoints(app) -> list[tuple[str, list[str]]]:
    """(path, its body's field names) for every POST that takes a JSON body."""
    schema = app.openapi()
    components = schema.get("components", {}).get("schemas", {})
    found = []
    for path, operations in schema["paths"].items():
        body = operations.get("post", {}).get("requestBody", {})
        content = body.get("content", {}).get("application/json")
        if content is None:
            continue
        ref = content["schema"].get("$ref", "")
        properties = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
        found.append((path.replace("{run_id}", "current"), sorted(properties)))
    return found


@pytest.fixture(scope="module")
def client(mnist_dir, tmp_path_factory):
    app = make_app(mnist_dir, runs_dir=str(tmp_path_factory.mktemp("hostile-runs")))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client


def settle(client: TestClient) -> None:
    """A body that happened to be a valid run request (or comparison) started runs:
    stop them."""
    stop_every_run(client.app.state.manager)


def test_the_json_endpoints_are_found_in_the_schema(client):
    paths = dict(json_endpoints(client.app))
    assert {"/api/runs", "/api/runs/current/hyperparameters", "/api/predict"} <= set(paths)
    assert "learning_rate" in paths["/api/runs"] and "pixels" in paths["/api/predict"]


def test_hostile_numbers_and_shapes_never_get_a_server_error_or_a_long_answer(client, capsys):
    statuses: dict[str, collections.Counter] = {}
    problems: list[str] = []
    for path, fields in json_endpoints(client.app):
        tally = statuses.setdefault(path, collections.Counter())

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=bodies(fields))
        def send(body):
            text = to_json(body).encode("utf-8", "surrogatepass")
            try:
                answer = client.post(path, content=text,
                                     headers={"Content-Type": "application/json"})
            finally:
                settle(client)
            tally[answer.status_code] += 1
            if answer.status_code >= 500:
                problems.append(f"{answer.status_code} from {path} for {text[:200]!r}")
            elif answer.status_code >= 400:
                if len(answer.content) > MAX_ERROR_BYTES:
                    problems.append(f"{len(answer.content)}-byte {answer.status_code} from "
                                    f"{path} for {text[:200]!r}")
                assert answer.json()["detail"], answer.text

        send()
    with capsys.disabled():
        total = sum(sum(counter.values()) for counter in statuses.values())
        print(f"\nhostile JSON: {total} requests to {len(statuses)} endpoints")
        for path, counter in statuses.items():
            print(f"  {path:40s} " + ", ".join(f"{code}: {n}" for code, n in sorted(counter.items())))
    assert problems == []
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("path, body, expected", [
    ("/api/predict", '{"pixels": "AAAA", "width": 1e309}', "width"),
    ("/api/runs", '{"preset": "seed", "learning_rate": NaN}', "finite"),
    ("/api/runs/current/hyperparameters", '{"learning_rate": Infinity}', "finite"),
    ("/api/runs", '{"epochs": ' + "9" * 5000 + "}", "pars"),
    ("/api/runs", many_keys(100_000).text, "99,995 more"),
    ("/api/runs", '{"preset": "' + "x" * 100_000 + '"}', "at most 64"),
])
def test_the_cases_the_adversarial_test_found_get_a_short_4xx(client, path, body, expected):
    answer = client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})
    settle(client)
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert len(answer.content) < MAX_ERROR_BYTES
    assert expected in json.dumps(answer.json()["detail"])
    assert "x" * 100 not in answer.text  # the input is never echoed back
