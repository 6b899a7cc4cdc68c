"""Memory bounds of issue 11: a run of the widest network the limits accept keeps the
server's memory, its events and a late browser's replay bounded, and gives its memory
back when it stops; a run over the limits is refused before anything is allocated.

Before: `filters: [512, 512]` with batch size 1 made 20 MB filters events (held twice),
grew the server by 1.7 GB in 55 s and replayed 327 MB to a late browser in 3 s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import pytest

from app.filter_images import MAX_CHANNELS, MAX_FILTERS, filters_event, from_levels
from app.hub import EventHub
from app.training import build_run
from cnn.cost import ModelLimits
from cnn.layers import Conv2D
from cnn.model import Model

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
    assert newest in history and names.count("batch") > 100  # filters pictures go first
    assert [event.id for event in history] == sorted(event.id for event in history)


def test_an_event_is_kept_once_as_the_bytes_sent():
    hub = EventHub()
    event = hub.publish("filters", {"epoch": 1, "levels": "abc"})
    assert [name for name in vars(event)] == ["id", "name", "wire"]
    assert event.data == '{"epoch":1,"levels":"abc"}'
    assert event.wire == b'event: filters\ndata: {"epoch":1,"levels":"abc"}\nid: 1\n\n'
