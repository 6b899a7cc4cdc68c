"""Memory bounds of issue 11: a run of the widest network the limits accept keeps the
server's memory, its events and a late browser's replay bounded, and gives its memory
back when it stops; a run over the limits is refused before anything is allocated.

Before: `filters: [512, 512]` with batch size 1 made 20 MB filters events (held twice),
grew the server by 1.7 GB in 55 s and replayed 327 MB to a late browser in 3 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx
import numpy as np
import pytest

from app.filter_images import MAX_CHANNELS, MAX_FILTERS, filters_event, from_levels
from app.hub import HISTORY_BYTES, EventHub
from app.settings import Settings, SettingsError
from app.run_record import build_run
from cnn.cost import ModelLimits
from cnn.layers import Conv2D
from cnn.model import Model
from hostile_files import SettledWatch as Watch
from serve_process import Serve
from server_helpers import SSE, events_only, make_app, parse_sse, run_async

# The widest conv layer the default limits accept: with the default preset's two conv
# layers, 113 x 243 filters (247,131 weights in the second, the most of any pair; one
# more filter in either layer passes CNN_LIVE_MAX_MULTIPLY_ADDS).
WIDEST = [113, 243]
# A filters event of WIDEST: 2.3 MB as floats with 5 decimals; 7 KB as sent now.
FILTERS_EVENT_CAP = 16 * 1024


def conv_weights(preset: str, filters: list[int] | None) -> list[dict]:
    """The trainer's `filters` callback payload for a freshly built network."""
    _, spec, _ = build_run(preset, {"batch_size": 1}, filters, ModelLimits())
    model = Model(spec, seed=0)
    return [{"layer": index, "weights": layer.params["weight"].copy()}
            for index, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]


def event_bytes(payload: dict) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


# -- the filters event -------------------------------------------------------------------

def test_the_widest_accepted_layer_is_at_the_edge_of_the_limits():
    conv_weights("default", WIDEST)
    for wider in ([WIDEST[0] + 1, WIDEST[1]], [WIDEST[0], WIDEST[1] + 1]):
        with pytest.raises(ValueError, match="CNN_LIVE_MAX_MULTIPLY_ADDS"):
            build_run("default", {"batch_size": 1}, wider, ModelLimits())


def test_a_filters_event_of_the_widest_accepted_layer_is_small_and_says_what_it_shows():
    layers = conv_weights("default", WIDEST)
    event = filters_event("run", 1, 2, layers)
    assert event_bytes(event) < FILTERS_EVENT_CAP
    first, second = event["layers"]
    assert first["total"] == [113, 1] and first["shown"] == [MAX_FILTERS, 1]
    assert second["total"] == [243, 113] and second["shown"] == [MAX_FILTERS, MAX_CHANNELS]
    assert second["shape"] == [243, 113, 3, 3]
    # The first filters and channels, within one level of their weights.
    for sent, item in zip(event["layers"], layers):
        shown = item["weights"][:MAX_FILTERS, :MAX_CHANNELS]
        step = (sent["high"] - sent["low"]) / 255
        np.testing.assert_allclose(from_levels(sent), shown, atol=step / 2 + 1e-6)


def test_a_small_layer_goes_whole():
    layers = conv_weights("seed", None)  # the 2017 blog's 5 filters 3x3
    (sent,) = filters_event("run", 0, 0, layers)["layers"]
    assert sent["shape"] == [5, 1, 3, 3] and sent["total"] == sent["shown"] == [5, 1]
    weights = layers[0]["weights"]
    assert (sent["low"], sent["high"]) == (weights.min(), weights.max())
    np.testing.assert_allclose(from_levels(sent), weights,
                               atol=(sent["high"] - sent["low"]) / 510 + 1e-6)


def test_weights_that_are_not_finite_still_make_an_event():
    weights = np.array([[[[np.nan, np.inf], [-np.inf, 0.5]]]], dtype=np.float32)
    (sent,) = filters_event("run", 1, 1, [{"layer": 0, "weights": weights}])["layers"]
    assert (sent["low"], sent["high"]) == (0.5, 0.5)
    json.dumps(sent, allow_nan=False)


def test_a_model_that_let_go_of_its_work_arrays_trains_on_exactly_the_same():
    from cnn.optim import SGD
    from cnn.presets import PRESETS

    images = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)
    labels = np.arange(40) % 10
    models = [Model(PRESETS["default"].spec, seed=0) for _ in range(2)]
    optimizers = [SGD(0.05, 0.9) for _ in models]
    for batch in (slice(0, 32), slice(32, 33), slice(33, 40)):  # fused, single, unfused
        for i, (model, optimizer) in enumerate(zip(models, optimizers)):
            model.train_step(images[batch], labels[batch], optimizer)
            if i == 1:
                model.release_work_memory()
                assert not any(layer._buffers for layer in model.layers)
    for mine, theirs in zip(*(model.parameters() for model in models)):
        np.testing.assert_array_equal(mine, theirs)


# -- the hub's history -------------------------------------------------------------------

def test_the_history_stays_under_its_byte_limit_with_big_events_and_keeps_every_epoch():
    limit = 1024 * 1024
    hub = EventHub(history_bytes_limit=limit)
    big = "x" * 50_000  # a filters event of the old kind was 400 times this
    hub.publish("run", {"run_id": "r"})
    for epoch in range(1, 41):
        for step in range(10):
            hub.publish("batch", {"epoch": epoch, "step": step})
            hub.publish("filters", {"epoch": epoch, "step": step, "levels": big})
            hub.publish("status", {"epoch": epoch, "padding": big[:2000]})
            assert hub.history_bytes <= limit
        hub.publish("epoch", {"epoch": epoch})
        hub.publish("evaluation", {"epoch": epoch, "gallery": big})
    newest = hub.publish("filters", {"epoch": 40, "step": 10, "levels": big})

    history = hub.history()
    assert sum(len(event.wire) for event in history) == hub.history_bytes <= limit
    assert [json.loads(event.data)["epoch"] for event in history if event.name == "epoch"] \
        == list(range(1, 41))
    names = [event.name for event in history]
    assert names.count("run") == names.count("evaluation") == 1
    assert newest in history and names.count("batch") > 100  # only one filters picture stays
    assert [event.id for event in history] == sorted(event.id for event in history)


def test_a_browser_that_stops_reading_is_let_go_once_its_pending_bytes_pass_the_limit():
    async def main():
        hub = EventHub(history_bytes_limit=100_000, subscriber_backlog=2_000)
        hub.attach(asyncio.get_running_loop())
        stalled, reader = hub.subscribe(), hub.subscribe()
        for i in range(9):  # ~90 KB pending: under the limit
            hub.publish("filters", {"i": i, "levels": "x" * 10_000})
        await asyncio.sleep(0)
        assert not stalled.dropped and stalled.pending_bytes > 90_000
        assert len(await reader.next_events(1)) == 6 and await reader.next_event()  # 64 KB chunks
        for i in range(9, 11):
            hub.publish("filters", {"i": i, "levels": "x" * 10_000})
        await asyncio.sleep(0)
        assert stalled.dropped and hub.subscriber_count == 1
        assert len(stalled.pending) == 10  # 9 under the limit, the 10th took it over
        assert len(await reader.next_events(1)) == 4 and reader.pending_bytes == 0
        assert not reader.dropped

    run_async(main)


def test_cnn_live_history_mb_sets_the_hubs_byte_limit(mnist_dir):
    assert Settings.from_env({}).history_bytes_limit == HISTORY_BYTES == 8 * 2**20
    assert Settings.from_env({"CNN_LIVE_HISTORY_MB": "3"}).history_bytes_limit == 3 * 2**20
    with pytest.raises(SettingsError, match="CNN_LIVE_HISTORY_MB"):
        Settings.from_env({"CNN_LIVE_HISTORY_MB": "0"})
    app = make_app(mnist_dir, history_bytes_limit=3 * 2**20)
    assert app.state.hub.history_bytes_limit == 3 * 2**20


def test_an_event_is_kept_once_as_the_bytes_sent():
    hub = EventHub()
    event = hub.publish("filters", {"epoch": 1, "levels": "abc"})
    assert [name for name in vars(event)] == ["id", "name", "wire", "run_id"]
    assert event.data == '{"epoch":1,"levels":"abc"}'
    assert event.wire == b'event: filters\ndata: {"epoch":1,"levels":"abc"}\nid: 1\n\n'


# -- a real server -----------------------------------------------------------------------

MB = 2**20
HISTORY_MB = 1  # the server's CNN_LIVE_HISTORY_MB here: tight, so that the bound means something
LATE_SECONDS = 10  # when the late browser joins the run
# Every health check answered, within 1 s rather than Watch's 0.1 s: memory is what these
# tests hold the server to. On this 2-core machine shared with other test runs (load
# average 5), single checks took up to 79 ms with the server idle and 114-245 ms during
# the run (median 8 ms).
HEALTH_LIMIT = 1.0
UNLIMITED_MINUTES = str(10**9)  # CNN_LIVE_MAX_RUN_MINUTES out of the way (see below)
# The widest network at batch size 1, as the adversarial test ran it, in two shapes:
# one that reaches its first epoch end (evaluation, histograms, checkpoint) before the
# late browser joins; one on every image (220 MB of float32 images) that does not.
LARGEST_RUNS = {
    "epoch-end": {"preset": "default", "filters": WIDEST, "batch_size": 1, "epochs": 50,
                  "train_size": 200, "test_size": 1000},
    "all-images": {"preset": "default", "filters": WIDEST, "batch_size": 1, "epochs": 50},
}
# Over a limit: refused with a 422 naming it (its environment variable), before anything
# is allocated. [4096, 4096] passes several limits: any of them may be named first.
OVER_THE_LIMITS = {
    "filters [512, 512]": ({"filters": [512, 512]}, {"CNN_LIVE_MAX_MULTIPLY_ADDS"}),
    "filters [4096, 4096]": ({"filters": [4096, 4096]},
                             {"CNN_LIVE_MAX_PARAMETERS", "CNN_LIVE_MAX_MULTIPLY_ADDS",
                              "CNN_LIVE_MAX_VALUES_PER_IMAGE"}),
    "batch_size 60000": ({"batch_size": 60000}, {"CNN_LIVE_MAX_RUN_MEMORY_MB"}),
}


def run_to_the_end(server: Serve, run: dict) -> None:
    status, body = server.request("POST", "/api/runs", run)
    assert status == 201, body
    server.wait_for_state("finished")


def epochs_done(server: Serve) -> int:
    return len(server.request("GET", "/api/runs")[1][-1]["epochs"])


def late_browser(server: Serve, seconds: float = 1.5) -> tuple[int, list[SSE]]:
    """What a browser joining now is sent in its first `seconds`: the bytes and the
    records (the replayed history, at once, then a moment of live events)."""
    received = bytearray()
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}/api/events",
                      timeout=10) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
            if time.monotonic() > deadline:
                break
    return len(received), list(parse_sse(received.decode("utf-8", "replace").splitlines()))


@pytest.mark.parametrize("shape", LARGEST_RUNS)
def test_the_largest_accepted_run_keeps_memory_and_a_late_browsers_replay_bounded(
        tmp_path, mnist_dir, shape):
    run = LARGEST_RUNS[shape]
    # RUN_MINUTES: memory is what this test holds the server to, not the run-time limit
    # (the `all-images` run's 50 epochs of 60,000 single images are estimated at days).
    with Serve(tmp_path, mnist_dir, CNN_LIVE_HISTORY_MB=str(HISTORY_MB),
               CNN_LIVE_MAX_RUN_MINUTES=UNLIMITED_MINUTES) as server:
        # The baseline: a server that has trained this network once, on 50 images. MNIST
        # is read once and kept (55 MB of uint8), and an ended run is kept for a step and
        # predictions until the next run starts (its weights, Adam's moments, the average,
        # the histograms' references, the predictor's raw and averaged snapshots: ~40 MB
        # for this network). Measured: ends 35-41 MB above it (1-9 MB before the default
        # preset averaged its weights); peaks 433-520 MB.
        run_to_the_end(server, {**run, "epochs": 1, "train_size": 50, "test_size": 50})
        with Watch(server) as watch:
            started = time.monotonic()
            status, body = server.request("POST", "/api/runs", run)
            assert status == 201, body
            if shape == "epoch-end":
                server.wait_until(lambda: epochs_done(server) >= 1, "the first epoch", 120)
            time.sleep(max(0.0, started + LATE_SECONDS - time.monotonic()))
            assert server.request("GET", "/api/status")[1]["state"] == "running"

            replayed, records = late_browser(server)
            status, body = server.request("POST", "/api/runs/current/stop", {})
            assert status == 200, body
            server.wait_for_state("finished")

        end = watch.end_rss(within=50 * MB)  # the lowest over 3 s, or the first under the bound
        print(f"{shape}: {watch.report()}; end {end / MB:.0f} MB; late browser sent "
              f"{replayed:,} bytes in 1.5 s")
        assert replayed < HISTORY_MB * MB
        filters = [json.loads(record.data) for record in events_only(records, "filters")]
        assert filters and all(layer["shown"] == [MAX_FILTERS, min(layer["total"][1], MAX_CHANNELS)]
                               for event in filters for layer in event["layers"])
        assert len(events_only(records, "run")) == 1
        if shape == "epoch-end":
            assert events_only(records, "epoch") and events_only(records, "evaluation")
        assert watch.peak_rss <= 800 * MB and end <= watch.start_rss + 50 * MB, watch.report()
        assert watch.health_seconds and not watch.health_failures, watch.health_failures[:3]
        assert max(watch.health_seconds) <= HEALTH_LIMIT, watch.report()


def test_a_run_over_a_limit_gets_a_422_naming_it_and_the_server_allocates_nothing(
        tmp_path, mnist_dir):
    with Serve(tmp_path, mnist_dir) as server:
        with Watch(server) as watch:
            for name, (overrides, limits) in OVER_THE_LIMITS.items():
                status, body = server.request("POST", "/api/runs",
                                              {"preset": "default", **overrides})
                assert status == 422, (name, body)
                named = set(re.findall(r"CNN_LIVE_MAX_[A-Z_]+", json.dumps(body)))
                assert named and named <= limits, (name, body)
            assert server.request("GET", "/api/status")[1]["state"] == "idle"
        end = watch.end_rss(settle=1.0, within=5 * MB)
    print(f"{watch.report()}; end {end / MB:.0f} MB")
    assert watch.peak_rss <= watch.start_rss + 5 * MB and end <= watch.start_rss + 5 * MB


def test_the_model_limits_are_read_from_their_environment_variables():
    settings = Settings.from_env({"CNN_LIVE_MAX_PARAMETERS": "123", "CNN_LIVE_MAX_LAYERS": "7",
                                  "CNN_LIVE_MAX_RUN_MEMORY_MB": "2"})
    assert settings.model_limits == ModelLimits(parameters=123, layers=7,
                                                run_memory_bytes=2 * 2**20)
    assert Settings.from_env({}).model_limits == ModelLimits()
    for junk in ("0", "-5", "1e6", "many"):
        with pytest.raises(SettingsError, match="CNN_LIVE_MAX_MULTIPLY_ADDS"):
            Settings.from_env({"CNN_LIVE_MAX_MULTIPLY_ADDS": junk})
