"""The dashboard page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from cnn.losses import LOSSES
from cnn.model import INITS, LAYER_KEYS, normalize_spec
from cnn.presets import PRESETS

from ..paths import web_dir

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(web_dir("templates")))

# What the page's network builder offers is what the engine builds: each layer type
# with its keys and their defaults (None: required), as lists to keep the engine's
# order (tojson sorts an object's keys), the losses, the initialisations, and a spec's
# own defaults (input, loss, init) as normalize_spec fills them in.
NETWORK_SCHEMA = {
    "layers": [[kind, list(keys.items())] for kind, keys in LAYER_KEYS.items()],
    "losses": list(LOSSES), "inits": list(INITS),
    "defaults": {key: value for key, value in normalize_spec(
        {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}).items()
        if key != "layers"},
}


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {
        "presets": [preset.to_dict() for preset in PRESETS.values()],
        "network_schema": NETWORK_SCHEMA})
