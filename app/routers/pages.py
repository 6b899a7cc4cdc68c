"""The dashboard page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from cnn.presets import PRESETS

from ..paths import web_dir

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(web_dir("templates")))


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {
        "presets": [preset.to_dict() for preset in PRESETS.values()]})
