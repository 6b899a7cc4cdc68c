"""The `filters` event: what the page needs to draw each conv layer's filters, bounded
in bytes whatever the network.

Sent about once a second and kept in the replay history, so its size is the server's
memory and every browser's bandwidth. As the whole weights in floats with 5 decimals,
a layer of 243 filters over 113 channels (the widest the default limits accept) made
a 2.3 MB event that took 0.26 s of the training thread to build; [512, 512] made 20 MB.
The page draws at most 16 channels a filter and a tile a filter, so a layer sends at
most MAX_FILTERS filters of at most MAX_CHANNELS channels (the first ones, the same
every time, so a tile keeps showing the same filter), as whole numbers 0..255 over the
shown weights' low..high, base64 of their bytes: at most 6 KB a layer.

A layer in the event:
  layer, name    the layer's index in the network and its name ("3.conv")
  shape          the layer's whole weight shape [F, C, K, K]
  total, shown   [F, C], and how many of each are in `levels`: [min(F, 32), min(C, 16)]
  low, high      the range the levels span (the shown weights' min and max)
  levels         base64 of shown[0] x shown[1] x K x K bytes, row-major; a weight is
                 low + level / 255 * (high - low)
"""

from __future__ import annotations

import base64

import numpy as np

MAX_FILTERS = 32   # filters sent per layer: a page of tiles, not hundreds
MAX_CHANNELS = 16  # input channels sent per filter: the page's tile shows 16
LEVELS = 255


def filters_event(run_id: str, epoch: int, step: int, layers: list[dict]) -> dict:
    """The event for the trainer's `filters` callback (layers: {"layer", "weights"})."""
    return {"run_id": run_id, "epoch": epoch, "step": step,
            "layers": [filter_layer(item["layer"], item["weights"]) for item in layers]}


def filter_layer(index: int, weights: np.ndarray) -> dict:
    """One conv layer's (F, C, K, K) weights as the event sends them."""
    filters, channels, kernel, _ = weights.shape
    shown = weights[:MAX_FILTERS, :MAX_CHANNELS]
    low, high, levels = to_levels(shown)
    return {"layer": index, "name": f"{index}.conv", "shape": list(weights.shape),
            "total": [filters, channels], "shown": list(shown.shape[:2]),
            "low": low, "high": high,
            "levels": base64.b64encode(levels.tobytes()).decode("ascii")}


def to_levels(values: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(low, high, uint8 levels): values as whole numbers 0..255 over their finite
    range; a weight that is not finite (a diverging run) becomes the nearest end."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scale = LEVELS / (high - low) if high > low else 0.0
    clean = np.nan_to_num(values.astype(np.float64), nan=low, posinf=high, neginf=low)
    levels = np.rint((np.clip(clean, low, high) - low) * scale).astype(np.uint8)
    return low, high, np.ascontiguousarray(levels)


def from_levels(layer: dict) -> np.ndarray:
    """The shown weights of an event's layer back as floats (shown + kernel shape): what
    the page computes, for tests and tools."""
    filters, channels = layer["shown"]
    kernel = layer["shape"][2]
    levels = np.frombuffer(base64.b64decode(layer["levels"]), dtype=np.uint8)
    step = (layer["high"] - layer["low"]) / LEVELS
    return (layer["low"] + levels * step).reshape(filters, channels, kernel, kernel)
