"""Tests for the live event stream (/api/events) and the event hub behind it: full
replay of a run to a new subscriber, Last-Event-ID and `after` reconnection, late
and early subscribers seeing the same run, throttling, slow or stalled subscribers
that must never hold training up, keep-alive comments and shutdown with a run active.

In process through Starlette's TestClient where one client suffices; on a real
uvicorn server (socket on port 0, in a thread) where several clients or a shutdown
are involved; the hub alone, on an asyncio loop in a worker thread, for its queues."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx
import pytest
from fastapi.testclient import TestClient

from app.filter_images import from_levels
from app.hub import EventHub
from server_helpers import (LONG_RUN, SHORT_RUN, SSE, LiveServer, StreamReader,  # noqa: F401
                            epoch_payloads, events_only, fast_pings, is_done, is_last,
                            make_app, run_async, start_run, stream_events, wait_for,
                            wait_for_run_end)


def conv_shapes(spec: dict) -> dict[int, list[int]]:
    """(F, C, K, K) of each conv layer, by its index in the spec."""
    channels, shapes = spec["input"][0], {}
    for index, layer in enumerate(spec["layers"]):
        if layer["type"] == "conv":
            shapes[index] = [layer["filters"], channels, layer["kernel"], layer["kernel"]]
            channels = layer["filters"]
    return shapes


def ids(records) -> list[int]:
    return [record.id for record in events_only(records)]


# What the page draws from the newest event alone: of these, a late browser is replayed
# only the newest of each run (by the run_id the event carries).
PICTURES = ("filters", "status", "evaluation", "histograms")


def newest_pictures(events) -> set[int]:
    """The ids of the newest event of each picture kind and run among `events`."""
    newest = {(event.name, event.run_id): event.id for event in events
              if event.name in PICTURES}
    return set(newest.values())


def from_run_event(records, run_id: str) -> list[SSE]:
    """The events from the `run` event of `run_id` on."""
    events = events_only(records)
    starts = [i for i, e in enumerate(events) if e.event == "run" and e.json()["run_id"] == run_id]
    assert starts, f"no run event for {run_id}"
    return events[starts[0]:]


# -- a finished run, replayed in process -------------------------------------------------------

@pytest.fixture(scope="module")
def published():
    """Every event the `replay` server published, as the hub made it."""
    return []


@pytest.fixture(scope="module")
def replay(mnist_dir, published):
    """A server that finished a short run, and a full replay of it read by a new
    subscriber: (client, hub, records)."""
    with pytest.MonkeyPatch.context() as patch:
        from app.routers import events as events_router
        patch.setattr(events_router, "KEEPALIVE_SECONDS", 0.2)
        app = make_app(mnist_dir)
        real_publish = app.state.hub.publish_text  # every event goes through it

        def publish_text(name, data, run_id=None):
            published.append(real_publish(name, data, run_id))
            return published[-1]

        patch.setattr(app.state.hub, "publish_text", publish_text)
        with TestClient(app) as client:
            start_run(client, **SHORT_RUN)
            wait_for_run_end(client)
            hub = app.state.hub
            records = stream_events(client, is_last(hub.last_id))
            yield client, hub, records


def test_a_new_subscriber_is_first_told_it_is_connected_and_how_soon_to_retry(replay):
    _, _, records = replay
    assert records[0].comments == ("connected",)
    assert records[0].retry == 2000 and not records[0].is_event


def test_a_new_subscriber_receives_the_whole_history_of_the_finished_run(replay, published):
    _, hub, records = replay
    events = events_only(records)
    numbers = ids(records)
    assert numbers == sorted(set(numbers)) and numbers[-1] == hub.last_id
    names = [event.event for event in events]
    assert names[0] == "run" and names.count("run") == 1
    assert names.count("done") == 1 and names.index("done") > names.index("run")
    assert set(names) <= {"run", "status", "batch", "epoch", "evaluation", "histograms",
                          "filters", "done"}
    # Nothing is thinned in a short run; of the pictures (filters and status about once
    # a second, an evaluation an epoch, histograms at the start and an epoch) only the
    # newest of each run are kept.
    assert names.count("epoch") == 2
    assert names.count("filters") == names.count("evaluation") == names.count("histograms") == 1
    assert numbers == [event.id for event in published if event.name not in PICTURES
                       or event.id in newest_pictures(published)]
    assert len(numbers) < len(published)
    newest = [event.json()["epoch"] for event in events if event.event in ("evaluation",
                                                                          "histograms")]
    assert newest == [2, 2]

    run = events[0].json()
    assert run["preset"] == "default" and run["config"]["epochs"] == SHORT_RUN["epochs"]
    run_ids = {event.json()["run_id"] for event in events if event.event != "status"}
    assert run_ids == {run["run_id"]}

    epochs = epoch_payloads(records)
    assert [epoch["epoch"] for epoch in epochs] == [1, 2]
    assert all(epoch["test_total"] == SHORT_RUN["test_size"] for epoch in epochs)

    done = events_only(records, "done")[0].json()
    assert done["state"] == "finished" and done["epochs_completed"] == 2
    assert done["test_accuracy"] == epochs[-1]["test_accuracy"]
    assert events[-1].event == "status" and events[-1].json()["state"] == "finished"


def test_replayed_filters_events_have_the_shapes_of_the_conv_layers_of_the_spec(replay):
    _, _, records = replay
    spec = events_only(records, "run")[0].json()["spec"]
    expected = conv_shapes(spec)
    assert list(expected.values()) == [[8, 1, 3, 3], [16, 8, 3, 3]]
    filters = [event.json() for event in events_only(records, "filters")]
    assert [(f["epoch"], f["step"]) for f in filters] == [(2, 32)]  # only the newest: the end
    for snapshot in filters:
        assert {layer["layer"]: layer["shape"] for layer in snapshot["layers"]} == expected
        for layer in snapshot["layers"]:
            f, c, k, _ = layer["shape"]
            assert layer["total"] == layer["shown"] == [f, c]  # small layers go whole
            assert from_levels(layer).shape == (f, c, k, k)


def test_replayed_batch_events_carry_loss_progress_and_eta(replay):
    _, _, records = replay
    batches = [event.json() for event in events_only(records, "batch")]
    assert len(batches) >= 2
    for batch in batches:
        assert batch["loss"] > 0 and 1 <= batch["step"] <= batch["steps"]
        assert 0 < batch["progress"] <= 1 and batch["eta_seconds"] >= 0
    progress = [batch["progress"] for batch in batches]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert batches[-1]["eta_seconds"] == 0
    # Every epoch's last step is sent, however the throttle falls.
    assert {(b["epoch"], b["step"]) for b in batches} >= {(1, 32), (2, 32)}


@pytest.mark.parametrize("position", ["first", "middle", "second to last"])
def test_reconnecting_with_last_event_id_replays_exactly_the_events_after_it(replay, position):
    client, hub, records = replay
    events = events_only(records)
    k = {"first": 0, "middle": len(events) // 2, "second to last": len(events) - 2}[position]
    again = stream_events(client, is_last(hub.last_id),
                          headers={"Last-Event-ID": str(events[k].id)}, timeout=5)
    assert [(e.id, e.event, e.data) for e in events_only(again)] == \
        [(e.id, e.event, e.data) for e in events[k + 1:]]


def test_the_after_query_parameter_replays_like_last_event_id(replay):
    client, hub, records = replay
    events = events_only(records)
    k = len(events) // 3
    again = stream_events(client, is_last(hub.last_id), params={"after": events[k].id}, timeout=5)
    assert [(e.id, e.data) for e in events_only(again)] == [(e.id, e.data) for e in events[k + 1:]]


def test_a_last_event_id_that_is_not_a_number_replays_the_whole_run(replay):
    client, hub, records = replay
    again = stream_events(client, is_last(hub.last_id), headers={"Last-Event-ID": "abc"},
                          timeout=5)
    assert ids(again) == ids(records)


def test_a_last_event_id_from_before_a_server_restart_replays_the_current_run(replay):
    # A browser that watched an earlier server process reconnects (EventSource does so
    # by itself) with an id larger than any this server has issued: it must be given
    # the current run, not be left waiting until this server's ids catch up.
    client, hub, records = replay
    again = stream_events(client, is_last(hub.last_id),
                          headers={"Last-Event-ID": str(hub.last_id + 100_000)}, timeout=3)
    assert ids(again) == ids(records)


# -- throttling and keep-alive -----------------------------------------------------------------

def test_batch_and_filters_events_are_throttled(mnist_dir, fast_pings):
    # Epochs of a second or so, stopped once it ran 3 s and finished an epoch, so that
    # the length of the run does not depend on the machine's speed.
    app = make_app(mnist_dir)
    hub, published = app.state.hub, {}
    real_publish = hub.publish_text  # every event goes through it

    def publish_text(name, data, run_id=None):  # when the training thread sent each event
        sent = time.monotonic()
        event = real_publish(name, data, run_id)
        published[event.id] = sent
        return event

    hub.publish_text = publish_text
    with TestClient(app) as client:
        start_run(client, preset="default", epochs=100, train_size=5000, test_size=200)
        wait_for(lambda: client.get("/api/status").json()["elapsed_seconds"] >= 3
                 and client.get("/api/runs").json()[0]["epochs"],
                 timeout=30, what="3 s of training and a finished epoch")
        client.post("/api/runs/current/stop", json={})
        records = stream_events(client, is_done)
    events = events_only(records)
    done = events[-1].json()
    seconds, epochs = done["seconds"], done["epochs_completed"]
    assert seconds >= 3 and epochs >= 1 and done["state"] == "stopped"
    batches = [(event.id, event.json()) for event in events if event.event == "batch"]
    filters = [(event.id, event.json()) for event in events if event.event == "filters"]
    assert len(batches) <= 12 * seconds, f"{len(batches)} batch events in {seconds:.1f} s"
    assert len(batches) <= 10 * seconds + epochs + 1
    assert len(filters) <= 2 * seconds + epochs + 1, f"{len(filters)} filters events"
    # At most one batch event every 0.1 s, except the last step of an epoch, which is
    # always sent, and the step the run stopped at (its last point); at most one filters
    # snapshot a second, except at an epoch's end (with some leeway: the thread may be
    # held up between its clock and publish()).
    for (_, _), (later, batch) in zip(batches, batches[1:-1]):
        if batch["step"] != batch["steps"]:
            previous = max(i for i, _ in batches if i < later)
            assert published[later] - published[previous] >= 0.05, batch
    steps = batches[0][1]["steps"]
    for (earlier, _), (later, snapshot) in zip(filters, filters[1:]):
        if snapshot["step"] != steps:
            assert published[later] - published[earlier] >= 0.8, snapshot
    # Throttled, not starved: every finished epoch's last step, and steps between.
    assert {b["epoch"] for _, b in batches if b["step"] == steps} >= set(range(1, epochs + 1))
    assert len(batches) >= seconds + epochs


def test_an_idle_stream_sends_ping_comments_to_keep_the_connection_open(mnist_dir, fast_pings):
    with TestClient(make_app(mnist_dir)) as client:
        started = time.monotonic()
        records = stream_events(client, lambda r: "ping" in r.comments, timeout=5)
    assert records[0].comments == ("connected",)
    assert [r for r in records if r.is_event] == []  # nothing has happened: no events
    assert time.monotonic() - started < 5


# -- the event hub on its own ------------------------------------------------------------------

async def settle() -> None:
    """Let callbacks scheduled with call_soon_threadsafe, and the tasks they wake, run."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_a_subscriber_that_never_reads_is_dropped_after_its_backlog_while_others_get_everything():
    async def main():
        hub = EventHub(history_limit=1000, subscriber_backlog=5)
        hub.attach(asyncio.get_running_loop())
        stalled, reader = hub.subscribe(), hub.subscribe()
        received = []

        async def read():
            while (event := await reader.next_event()) is not None:
                received.append(event)
                if event.name == "done":
                    return

        task = asyncio.create_task(read())
        for i in range(5):
            hub.publish("batch", {"i": i})
            await settle()
        assert not stalled.dropped and hub.subscriber_count == 2
        hub.publish("batch", {"i": 5})  # the backlog + 1st event it has not read
        await settle()
        assert stalled.dropped and hub.subscriber_count == 1
        for i in range(6, 40):
            hub.publish("batch", {"i": i})
            await settle()
        hub.publish("done", {})
        await asyncio.wait_for(task, 5)
        assert [event.id for event in received] == list(range(1, 42))
        assert not reader.dropped
        # The dropped one still hands out what it had queued, then says it is over.
        queued = [await asyncio.wait_for(stalled.next_event(), 1) for _ in range(5)]
        assert [event.id for event in queued] == [1, 2, 3, 4, 5]
        assert await asyncio.wait_for(stalled.next_event(), 1) is None

    run_async(main)


def test_publishing_from_the_training_thread_never_waits_for_subscribers():
    async def main():
        hub = EventHub(subscriber_backlog=10)
        hub.attach(asyncio.get_running_loop())
        stalled = [hub.subscribe() for _ in range(3)]
        publisher = threading.Thread(
            target=lambda: [hub.publish("batch", {"step": i}) for i in range(1000)])
        publisher.start()
        publisher.join(10)  # blocks this loop: no subscriber can read meanwhile
        assert not publisher.is_alive()
        assert len(hub.history()) == 1000
        await settle()
        assert all(subscription.dropped for subscription in stalled)
        assert hub.subscriber_count == 0

    run_async(main)


def test_a_reading_subscriber_gets_every_event_published_from_another_thread_in_order():
    async def main():
        hub = EventHub()
        hub.attach(asyncio.get_running_loop())
        subscription = hub.subscribe()

        def publish():
            for i in range(500):
                hub.publish("batch", {"step": i})
                if i % 50 == 0:
                    time.sleep(0.001)
            hub.publish("done", {})

        publisher = threading.Thread(target=publish)
        publisher.start()
        received = []
        while (event := await asyncio.wait_for(subscription.next_event(), 5)).name != "done":
            received.append(event)
        await asyncio.to_thread(publisher.join, 5)
        assert [event.id for event in received] == list(range(1, 501))
        assert [event.data for event in received][:2] == ['{"step":0}', '{"step":1}']

    run_async(main)


def test_history_thinning_keeps_every_run_epoch_and_done_event():
    hub = EventHub(history_limit=100)
    hub.publish("run", {"run_id": "r"})
    for epoch in range(1, 11):
        for step in range(50):
            hub.publish("batch", {"epoch": epoch, "step": step})
            if step % 10 == 0:
                hub.publish("filters", {"epoch": epoch, "step": step})
                hub.publish("status", {"epoch": epoch})
        hub.publish("epoch", {"epoch": epoch})
    last_batch = hub.publish("batch", {"epoch": 10, "step": 50})
    hub.publish("done", {})

    history = hub.history()
    names = [event.name for event in history]
    assert len(history) <= 100 < hub.last_id
    assert names.count("run") == 1 and names.count("done") == 1
    assert [event.data for event in history if event.name == "epoch"] == \
        ['{"epoch":%d}' % epoch for epoch in range(1, 11)]
    assert [event.id for event in history] == sorted(event.id for event in history)
    assert last_batch in history  # the oldest batches go first
    assert names.count("batch") > 50  # thinned: they fill the rest of the history
    assert [event.data for event in history if event.name in ("filters", "status")] == \
        ['{"epoch":10,"step":40}', '{"epoch":10}']  # the newest of each, never thinned


def test_a_new_run_keeps_the_history_of_the_active_runs_only_while_ids_keep_increasing():
    hub = EventHub()
    ended = [hub.publish("epoch", {"epoch": 1, "run_id": "ended"}),
             hub.publish("done", {"run_id": "ended"})]
    active = hub.publish("epoch", {"epoch": 1, "run_id": "active"})
    status = hub.publish("status", {"state": "running"})
    hub.keep_runs({"active", "next"})
    started = hub.publish("run", {"run_id": "next"})
    assert hub.history() == [active, status, started] and started.id > ended[-1].id == 2
    assert hub.history(run_id="active") == [active]


def publish_two_runs(hub, published, epochs=range(1, 4), steps=30) -> None:
    """Two runs training side by side: a batch of each a step, a filters event of each
    and a status (carrying one run's id) every third step, an epoch of each an epoch."""
    for epoch in epochs:
        for step in range(steps):
            for run_id in ("a", "b"):
                published.append(hub.publish("batch", {"run_id": run_id, "step": step}))
                if step % 3 == 0:
                    published.append(hub.publish("filters", {"run_id": run_id, "step": step}))
                    published.append(hub.publish("status", {"run_id": run_id, "step": step}))
        for run_id in ("a", "b"):
            published.append(hub.publish("epoch", {"run_id": run_id, "epoch": epoch}))


def test_a_late_browser_is_replayed_the_newest_filters_and_status_of_each_run_only():
    hub = EventHub()
    published = [hub.publish("status", {"state": "idle"}),  # the server's, of no run
                 hub.publish("run", {"run_id": "a"}), hub.publish("run", {"run_id": "b"})]
    publish_two_runs(hub, published)

    replay = list(hub.subscribe().replay)
    assert [event.id for event in replay] == sorted(event.id for event in replay)
    pictures = [(event.name, event.run_id) for event in replay
                if event.name in ("filters", "status")]
    assert len(pictures) == len(set(pictures)) == 5  # a filters and a status a run; idle
    assert {event.id for event in replay if event.name in ("filters", "status")} == \
        newest_pictures(published)  # the newest of each
    # Every run, batch and epoch event is there, in order.
    assert [event for event in replay if event.name not in ("filters", "status")] == \
        [event for event in published if event.name not in ("filters", "status")]
    assert hub.history_bytes == sum(len(event.wire) for event in replay)


def test_a_browser_that_reconnects_with_its_last_event_id_gets_what_it_missed():
    hub = EventHub()
    published = [hub.publish("run", {"run_id": "a"}), hub.publish("run", {"run_id": "b"})]
    publish_two_runs(hub, published, epochs=range(1, 3))
    seen = published[-7].id  # the browser read up to here, then lost its connection
    publish_two_runs(hub, published, epochs=range(3, 5), steps=10)

    again = list(hub.subscribe(last_event_id=seen).replay)
    # Everything after its last event, but the pictures a newer one replaced.
    assert again == [event for event in published if event.id > seen and (
        event.name not in PICTURES or event.id in newest_pictures(published))]
    names = [event.name for event in again]
    assert names.count("filters") == 2 and names.count("status") == 2  # one of each run
    assert names.count("batch") == 2 * 2 + 2 * 2 * 10  # steps 28 and 29 of epoch 2, and on
    # One that saw the newest pictures already is replayed none of them.
    last = hub.subscribe(last_event_id=published[-1].id)
    assert list(last.replay) == []


def test_a_new_run_keeps_one_picture_of_each_kind_and_run_and_the_byte_count_right():
    hub = EventHub()
    for run_id in ("ended", "active", "ended", "active"):
        hub.publish("filters", {"run_id": run_id, "levels": "x" * 100})
        hub.publish("status", {"run_id": run_id})
    hub.keep_runs({"active", "next"})
    newest = [hub.publish("status", {"run_id": "next"}),
              hub.publish("filters", {"run_id": "active"}), hub.publish("status", {})]
    history = hub.history()
    assert [(event.name, event.run_id) for event in history] == [
        ("status", "active"), ("status", "next"), ("filters", "active"), ("status", None)]
    assert history[1:] == newest
    assert hub.history_bytes == sum(len(event.wire) for event in history)


def test_grouped_batches_replay_each_runs_batches_as_one_event_in_order():
    """GET /api/events?group_batches=true (the page's late start): each run's replayed
    batches as one "batches" event, in the place and with the id of the last; the rest
    as it was; a run's batches never cross its "run" event (it clears the curves)."""
    hub = EventHub()
    published = [hub.publish("run", {"run_id": "a"}), hub.publish("run", {"run_id": "b"})]
    publish_two_runs(hub, published, epochs=range(1, 3), steps=6)
    published.append(hub.publish("run", {"run_id": "a", "continued_from": 1}))  # stepped
    later = [hub.publish("batch", {"run_id": "a", "step": step}) for step in (100, 101)]

    plain = list(hub.subscribe().replay)
    grouped = list(hub.subscribe(group_batches=True).replay)
    assert [event for event in grouped if event.name != "batches"] == \
        [event for event in plain if event.name != "batch"]
    assert [event.id for event in grouped] == sorted(event.id for event in grouped)
    groups = [event for event in grouped if event.name == "batches"]
    assert [event.run_id for event in groups] == ["a", "b", "a"]   # in the place of each last
    batch_ids = {json.dumps(json.loads(event.data)): event.id for event in plain
                 if event.name == "batch"}
    for event in groups:
        data = json.loads(event.data)
        assert data["run_id"] == event.run_id
        assert all(b["run_id"] == event.run_id for b in data["batches"])
        assert event.id == batch_ids[json.dumps(data["batches"][-1])]   # the last one's id
    groups = [(event.run_id, json.loads(event.data)) for event in groups]
    # Every batch once, in order: run a's before its second "run" event, then after it.
    a_before, b_all, a_after = (data["batches"] for _, data in groups)
    assert [b["step"] for b in b_all] == list(range(6)) * 2
    assert [b["step"] for b in a_before] == list(range(6)) * 2
    assert [b["step"] for b in a_after] == [100, 101]
    assert grouped.index(next(e for e in grouped if e.name == "run" and e.id == published[-1].id)) \
        < len(grouped) - 1 and grouped[-1].id == later[-1].id
    # Live events after the replay still come one by one.
    assert hub.subscribe(hub.last_id, group_batches=True).replay == deque()


def test_the_page_asks_for_grouped_batches_and_gets_the_same_batches(replay):
    client, hub, records = replay
    grouped = stream_events(client, is_last(hub.last_id), params={"group_batches": "true"},
                            timeout=5)
    batches = [b for event in events_only(grouped, "batches") for b in event.json()["batches"]]
    assert batches == [event.json() for event in events_only(records, "batch")]
    assert len(events_only(grouped, "batches")) == 1 and not events_only(grouped, "batch")
    assert ids(grouped)[-1] == ids(records)[-1]


def test_a_run_stream_gets_only_its_run_replayed_and_live():
    async def main():
        hub = EventHub()
        hub.attach(asyncio.get_running_loop())
        mine = hub.publish("epoch", {"epoch": 1, "run_id": "mine"})
        hub.publish("epoch", {"epoch": 1, "run_id": "other"})
        hub.publish("status", {"state": "running"})
        subscription = hub.subscribe(run_id="mine")
        assert list(subscription.replay) == [mine]
        hub.publish("batch", {"step": 1, "run_id": "other"})
        live = hub.publish("batch", {"step": 1, "run_id": "mine"})
        await asyncio.sleep(0)
        assert await subscription.next_events(1.0) == [mine]
        assert await subscription.next_events(1.0) == [live]
    run_async(main)


# -- real server: several clients ------------------------------------------------------------

def test_a_client_joining_midway_ends_with_the_same_events_as_one_there_from_the_start(
        mnist_dir, fast_pings):
    with LiveServer(make_app(mnist_dir)) as server:
        early = StreamReader(server.url).start_subscribed()
        response = httpx.post(server.url + "/api/runs", json={**SHORT_RUN, "epochs": 3})
        assert response.status_code == 201
        run_id = response.json()["run_id"]
        wait_for(lambda: server.manager.runs[run_id].epochs, what="the first epoch")
        assert server.manager.current.state == "running"  # midway indeed
        late = StreamReader(server.url).start_subscribed()
        early_records, late_records = early.result(), late.result()

    assert [e["epoch"] for e in epoch_payloads(early_records)] == [1, 2, 3]
    assert epoch_payloads(late_records) == epoch_payloads(early_records)
    # The same events, but of the pictures (filters, status, evaluations, histograms)
    # the late client was replayed only the newest: it ends with the same ones.
    def triples(records, pictures):
        return [(e.id, e.event, e.data) for e in from_run_event(records, run_id)
                if (e.event in PICTURES) == pictures]
    assert triples(late_records, False) == triples(early_records, False)
    for name in PICTURES:
        assert [t for t in triples(late_records, True) if t[1] == name][-1] == \
            [t for t in triples(early_records, True) if t[1] == name][-1]
    assert len(triples(late_records, True)) < len(triples(early_records, True))


def stalled_browser(url: str) -> socket.socket:
    """A connection that asks for the stream and then never reads a byte."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    return sock


def test_stalled_browsers_never_block_training_or_the_other_browsers(mnist_dir, fast_pings):
    # Many small epochs make a dense stream (an epoch, a batch and a filters event each,
    # ~150 a second); small socket buffers and a small backlog make it overflow.
    run = {"preset": "seed", "epochs": 150, "train_size": 40, "test_size": 10, "filters": [16]}
    app = make_app(mnist_dir, subscriber_backlog=20)
    with LiveServer(app, send_buffer=8192) as server:
        stalled = [stalled_browser(server.url) for _ in range(5)]
        try:
            hub = app.state.hub
            wait_for(lambda: hub.subscriber_count == 5, what="the stalled streams to subscribe")
            reader = StreamReader(server.url).start_subscribed()
            response = httpx.post(server.url + "/api/runs", json=run)
            assert response.status_code == 201
            run_id = response.json()["run_id"]
            assert httpx.get(server.url + "/healthz").status_code == 200
            records = reader.result()
            assert httpx.get(server.url + "/api/status").json()["state"] == "finished"
            assert len(server.manager.runs[run_id].epochs) == run["epochs"]
            # The reader got every event of the run, in order, with no gap.
            run_events = from_run_event(records, run_id)
            assert [e["epoch"] for e in epoch_payloads(run_events)] == \
                list(range(1, run["epochs"] + 1))
            assert ids(run_events) == list(range(run_events[0].id, run_events[-1].id + 1))
            assert run_events[-1].event == "done"
            # The stalled ones were let go of, rather than buffered without end.
            wait_for(lambda: hub.subscriber_count == 0, timeout=5,
                     what="the stalled streams to be dropped")
        finally:
            for sock in stalled:
                sock.close()


def test_shutting_the_server_down_stops_the_active_run_as_interrupted(mnist_dir, fast_pings):
    server = LiveServer(make_app(mnist_dir))
    with server:
        watcher = StreamReader(server.url, until=lambda r: False, timeout=20)
        watcher.start_subscribed()  # an open browser must not hold the shutdown up
        response = httpx.post(server.url + "/api/runs", json={**LONG_RUN, "epochs": 500})
        assert response.status_code == 201
        run_id = response.json()["run_id"]
        manager = server.manager
        wait_for(lambda: manager.status()["step"] > 0, what="training to start")
        assert server.stop(timeout=8), "uvicorn did not stop within 8 s"
        # Recorded as interrupted: a server started again continues it from its checkpoint.
        run = manager.runs[run_id]
        assert run.state == run.outcome == "interrupted"
        assert len(run.epochs) < 500 and run.message.startswith("the server stopped during")
        assert not [t for t in threading.enumerate() if t.name == f"training-{run_id}"]
        watcher.close()
        watcher.join(5)
        assert not watcher.is_alive()
